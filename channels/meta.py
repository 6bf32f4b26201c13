"""What Waypoint's Messenger and WhatsApp channels share (both are Meta
platforms behind the Graph API): the webhook's subscription handshake and
signature check, a small Graph API client with back-off, the pieces of a
webhook body, and :class:`MetaInput`, the input channel both build on.

How a webhook POST flows: the ``X-Hub-Signature-256`` header must be the
HMAC-SHA256 of the raw body under the app secret (compared in constant time;
otherwise 403, nothing parsed, one log line); a body that is not a JSON object
gets 400; an ``object`` that is not the platform's, or events without the
fields we need, get 200 and are ignored. Every event's message id is checked
in the shared channel store (:mod:`channels.state`, hashed: a WhatsApp message
id carries the sender's phone number), so a retry that reaches any server is
answered once. The webhook answers 200 at once; each event is handled in a
background task, one user at a time in arrival order.

Identity: Rasa's sender id is a keyed hash of the platform's user id
(:func:`channels.base.sender_id_for`); the platform id needed to answer is kept
only encrypted (``ChannelState.put_address``), together with the time of the
user's last message (the platforms' messaging windows). Logs hold counts, error
types and Graph error codes, never text, ids, names or phone numbers.

Why no client library: Messenger has no maintained Python client; pywa 4.5.0
(WhatsApp) installs beside Rasa 3.6 with ``pip check`` clean, but it fixes the
Graph base URL to graph.facebook.com (``META_GRAPH_API_URL`` and the tests'
fake could only be reached by changing a private attribute), does not back off
on the rate-limit codes, and logs request arguments (the recipient's number,
the text) at DEBUG. This client is ~150 lines on httpx, already installed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import json
import logging
import random
import re
import time
import unicodedata
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

from channels import base
from channels.state import ChannelState, get_state
from content import languages
from content.text import cut_text, split_text, utf16_len
from content.texts import text as message_text

logger = logging.getLogger(__name__)

# httpx logs every request URL at INFO; Graph URLs name users (profile, media).
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

# Graph error codes that mean "too many calls, try later": 4 (app), 17 (user),
# 32 (page), 613 (calls within a time), 80007 (WhatsApp account), 130429 (Cloud
# API throughput), 131056 (too many messages to one user).
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
TRANSIENT_CODES = frozenset({1, 2, 131000, 131016})  # unknown / temporary service errors
MAX_BODY = 3 * 1024 * 1024  # a webhook body; Meta batches events, far below this
MAX_TEXT_CHARS = 4000  # longer user messages are cut before the NLU sees them (the user is told)
MAX_MESSAGES_PER_MINUTE = 30  # per user; beyond it the user is asked to slow down
MEDIA_LIMIT = 25 * 1024 * 1024  # Messenger's attachment limit (WhatsApp's audio: 16 MB)
DAY = 24 * 3600
USER_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
MEDIA_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")

# Postback payloads of the channel's own (the Get Started button, the persistent menu).
START, LANGUAGE, DELETE = "WAYPOINT_START", "WAYPOINT_LANGUAGE", "WAYPOINT_DELETE"
PAYLOAD_PREFIX = "~p:"  # a long button payload, kept in the channel store
MORE_PREFIX = "~more:"  # the buttons beyond a platform's limit, kept in the channel store
DELETE_PAYLOAD = "/request_data_deletion"
COMMAND_PAYLOADS = {"help": "/ask_help_helplines", "human": "/request_human"}
EMPTY_BODY = "👇"  # a message that is only buttons still needs a text


# -- the webhook's gate ----------------------------------------------------------------------------------


def signature_valid(raw: bytes, header: Optional[str], app_secret: str) -> bool:
    """``X-Hub-Signature-256: sha256=<hex>`` is the HMAC-SHA256 of the raw body
    under the app secret (constant-time comparison). No secret: nothing is valid."""
    if not app_secret or not header or not isinstance(header, str):
        return False
    scheme, _, given = header.strip().partition("=")
    if scheme.strip().lower() != "sha256" or not given:
        return False
    expected = hmac.new(app_secret.encode(), raw or b"", hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, given.strip().lower().encode("utf-8", "replace"))


def sign(raw: bytes, app_secret: str) -> str:
    """The header value Meta would send (tests, tools)."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def handshake(args: Mapping[str, Any], verify_token: str) -> Tuple[int, str]:
    """Meta's subscription check: ``hub.mode=subscribe`` with our verify token
    is answered with ``hub.challenge``; anything else is refused (403)."""

    def one(name: str) -> str:
        value = args.get(name) if hasattr(args, "get") else None
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        return value if isinstance(value, str) else ""

    challenge = one("hub.challenge")
    if (
        verify_token
        and one("hub.mode") == "subscribe"
        and challenge
        and len(challenge) <= 512
        and hmac.compare_digest(one("hub.verify_token").encode(), verify_token.encode())
    ):
        return 200, challenge
    return 403, "forbidden"


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or None (never raises: deep nesting, huge numbers, bad UTF-8)."""
    try:
        return json.loads((raw or b"").decode("utf-8"))  # strict: no lone surrogates from raw bytes
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError):
        return None


# -- pieces of a body --------------------------------------------------------------------------------------


def dicts(value: Any) -> List[Dict[str, Any]]:
    """The mappings in a list (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def mapping(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def string(value: Any, limit: int = 100_000) -> str:
    """A string field (numbers as text), else ''."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        return ""
    value = value[:limit]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in the JSON): replaced
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def user_id(value: Any) -> Optional[str]:
    """A platform's user id (PSID, WhatsApp id), or None when it is not one."""
    text = string(value, 100)
    return text if USER_ID_RE.fullmatch(text) else None


def seconds(value: Any, divisor: float = 1.0) -> float:
    """A timestamp field as epoch seconds; now when missing, never in the future."""
    now = time.time()
    try:
        at = float(value) / divisor
    except (TypeError, ValueError, OverflowError):
        return now
    return min(at, now) if at == at and at > 0 else now


@dataclasses.dataclass
class Incoming:
    """One event of a webhook body, as the channel handles it."""

    user: str  # the platform's id of the user: never logged, never given to Rasa
    kind: str  # text | button | media | personal | edited | start | status
    key: Optional[str] = None  # the platform's id of the message (de-duplication)
    text: str = ""  # text, a button's title, a caption
    payload: str = ""  # a button's payload
    media: str = ""  # voice | photo | sticker | video | file | other
    ref: str = ""  # where the media is: a WhatsApp media id, a Messenger attachment URL
    at: float = 0.0  # when the user sent it (epoch seconds)
    codes: Tuple[int, ...] = ()  # a failed delivery's error codes (statuses)


# -- the Graph API client -------------------------------------------------------------------------------------


@dataclasses.dataclass
class GraphResult:
    ok: bool
    status: int = 0  # HTTP status; 0: no answer
    data: Any = None
    code: Optional[int] = None  # the Graph error code
    subcode: Optional[int] = None


def _result(resp: Any) -> GraphResult:
    try:
        data = resp.json()
    except Exception:  # noqa: BLE001 - an answer that is not JSON
        data = None
    if 200 <= resp.status_code < 300:
        return GraphResult(True, resp.status_code, data)
    error = mapping(mapping(data).get("error"))
    code, subcode = error.get("code"), error.get("error_subcode")
    return GraphResult(
        False,
        resp.status_code,
        None,
        code if isinstance(code, int) else None,
        subcode if isinstance(subcode, int) else None,
    )


def _retry_after(resp: Any) -> Optional[float]:
    try:
        value = float(resp.headers.get("retry-after", ""))
    except (TypeError, ValueError):
        return None
    return value if 0 <= value <= 3600 else None


class MediaError(Exception):
    pass


class GraphClient:
    """The few Graph API calls the channels make, on httpx. Every call backs off
    and retries on 429, 5xx, network errors and the rate-limit codes; any other
    refusal is returned at once (a 4xx for one user never holds up the others:
    each user's messages are sent from their own task). Logs name the call and
    the error code, never a path (paths hold user ids), a body or the token."""

    def __init__(
        self,
        token: str,
        base_url: str,
        label: str,
        max_attempts: int = 5,
        max_wait: float = 60.0,
        backoff: float = 1.0,
        timeout: float = 20.0,
    ) -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.label = label
        self.max_attempts, self.max_wait, self.backoff, self.timeout = max_attempts, max_wait, backoff, timeout
        self._client: Any = None
        self.failures: Dict[str, int] = collections.Counter()

    @property
    def client(self) -> Any:
        import httpx

        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None and not self._client.is_closed:
            await self._client.aclose()
        self._client = None

    def _auth(self) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _delay(self, attempt: int, slow: bool) -> float:
        base_delay = self.backoff * (4 if slow else 1)
        return min(base_delay * 2 ** (attempt - 1), 30.0) * (0.8 + 0.4 * random.random())

    async def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: Optional[Dict[str, Any]] = None,
        params: Optional[Dict[str, Any]] = None,
        attempts: Optional[int] = None,
        quiet: bool = False,
    ) -> GraphResult:
        import httpx

        url = f"{self.base_url}/{path.lstrip('/')}"
        attempts = attempts or self.max_attempts
        waited = 0.0
        last = GraphResult(False)
        for attempt in range(1, attempts + 1):
            retry_after = None
            try:
                resp = await self.client.request(method, url, json=body, params=params, headers=self._auth())
            except httpx.HTTPError as error:
                last, reason, slow = GraphResult(False), type(error).__name__, False
            else:
                last = _result(resp)
                if last.ok:
                    return last
                slow = resp.status_code == 429 or last.code in RATE_LIMIT_CODES
                if not (slow or resp.status_code >= 500 or last.code in TRANSIENT_CODES):
                    return self._failed(what, last, quiet)
                reason, retry_after = f"HTTP {resp.status_code}, code {last.code}", _retry_after(resp)
            delay = retry_after if retry_after is not None else self._delay(attempt, slow)
            if attempt == attempts or waited + delay > self.max_wait:
                return self._failed(what, last, quiet)
            logger.info("%s: %s failed (%s), retry %d in %.1f s", self.label, what, reason, attempt, delay)
            await asyncio.sleep(delay)
            waited += delay
        return self._failed(what, last)  # pragma: no cover

    def _failed(self, what: str, result: GraphResult, quiet: bool = False) -> GraphResult:
        self.failures[what] += 1
        (logger.info if quiet else logger.warning)(
            "%s: %s failed (HTTP %s, code %s, subcode %s)",
            self.label,
            what,
            result.status or "none",
            result.code,
            result.subcode,
        )
        return result

    async def download(self, url: str, limit: int = MEDIA_LIMIT, auth: bool = True) -> Tuple[bytes, str]:
        """A file into memory only (never to disk): (bytes, content type)."""
        if not re.match(r"https?://", url or ""):
            raise MediaError("not an http(s) URL")
        headers = self._auth() if auth else {}
        async with self.client.stream("GET", url, headers=headers) as resp:
            if resp.status_code != 200:
                raise MediaError(f"HTTP {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise MediaError("too large")
            chunks, size = [], 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise MediaError("too large")
                chunks.append(chunk)
            return b"".join(chunks), resp.headers.get("content-type", "").split(";")[0].strip()


MEDIA_EXTENSIONS = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp4": "m4a",
    "audio/aac": "m4a",
    "audio/amr": "amr",
    "video/mp4": "mp4",
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
}


def media_filename(kind: str, mime_type: str) -> str:
    return f"{kind}.{MEDIA_EXTENSIONS.get((mime_type or '').split(';')[0].strip().lower(), 'bin')}"


# -- shaping replies ---------------------------------------------------------------------------------------------

ORPHANS = "\u1039\u17d2\u200c\u200d"  # Burmese virama, Khmer coeng, zero-width (non-)joiner


def shorten(text: str, limit: int) -> str:
    """At most ``limit`` characters (counted as UTF-16 units, so never more than a
    platform counts): whole words when there are spaces, never a combining mark
    without its letter, "…" when something was left out."""
    text = " ".join(str(text or "").split())
    if utf16_len(text) <= limit:
        return text
    cut = ""
    for char in text:
        if utf16_len(cut + char) > limit - 1:
            break
        cut += char
    while cut and unicodedata.category(text[len(cut)]) in ("Mn", "Mc", "Me"):
        cut = cut[:-1]  # the next character belongs to the last letter: leave both out
    cut = cut.rstrip(ORPHANS)
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—/(").rstrip(ORPHANS) + "…"


def button_title(button: Dict[str, Any], limit: int) -> str:
    """The guides' ``short_title`` when present, else the title, shortened sensibly."""
    short = button.get("short_title")
    title = (
        short if isinstance(short, str) and short.strip() else str(button.get("title") or button.get("payload") or "")
    )
    return shorten(title, limit) or "…"


def is_link(button: Dict[str, Any]) -> bool:
    payload = str(button.get("payload") or "")
    return bool(button.get("url")) or button.get("type") == "web_url" or bool(re.match(r"https?://", payload))


class TurnCollector(CollectingOutputChannel):
    """A turn's messages, as the assistant sent them (buttons keep their
    ``short_title``); the channel sends them when the turn is over."""

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        self.messages.append({k: v for k, v in dict(message).items() if v is not None})


class MetaOutput(OutputChannel):
    """For Rasa's own proactive messages (``/conversations/<id>/trigger_intent``):
    sent to a user whose address is still known."""

    def __init__(self, channel: "MetaInput") -> None:
        self.channel = channel

    @classmethod
    def name(cls) -> str:
        return "meta"

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        shown = self.channel.shown([message])
        if shown:
            await self.channel.send_messages(recipient_id, shown)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self.send_response(recipient_id, {"text": text})


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    token: str
    app_secret: str
    verify_token: str
    graph_url: str
    phone_number_id: str = ""  # WhatsApp


# -- the channel ----------------------------------------------------------------------------------------------------


class MetaInput(InputChannel):
    """What Messenger and WhatsApp do alike; each subclass parses its own
    webhook bodies and sends in its own format."""

    platform = "meta"  # the channel's name (Rasa's input_channel, the hand-off's channel)
    label = "Meta"  # in logs
    prefix = "mt"  # of the hashed sender ids
    token_setting = ""

    def __init__(
        self,
        config: Optional[MetaConfig] = None,
        state: Optional[ChannelState] = None,
        relay: Any = None,
        backoff: float = 1.0,
        max_wait: float = 60.0,
    ) -> None:
        self.config = config or self.config_from_env()
        self._state = state
        self._relay = relay
        self.backoff, self.max_wait = backoff, max_wait
        self.secret = base.id_secret()
        self.graph: Optional[GraphClient] = None
        self.locks = base.KeyedLocks()
        self.limiter = base.Throttle(MAX_MESSAGES_PER_MINUTE)
        self.tasks: Set[asyncio.Task] = set()
        self.app: Any = None
        self.on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]] = None
        self._refused = 0
        self._refused_logged = 0.0
        if not self.config.token:
            logger.info("%s channel off: %s is not set", self.label, self.token_setting)
        elif not self.secret:
            logger.error("%s channel off: set WAYPOINT_ID_SECRET (the key that hides users' ids)", self.label)
        elif not self.config.app_secret:
            logger.error("%s: the app secret is not set; every webhook POST will be refused", self.label)

    # -- configuration ------------------------------------------------------------------------------
    @classmethod
    def config_from_env(cls, env: Optional[Dict[str, str]] = None) -> MetaConfig:  # pragma: no cover - per platform
        raise NotImplementedError

    @classmethod
    def name(cls) -> str:
        return cls.platform

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "MetaInput":
        if credentials:
            logger.warning("%s: credentials.yml entries are ignored; the channel reads its environment", cls.label)
        return cls()

    @property
    def enabled(self) -> bool:
        return bool(self.config.token) and bool(self.secret)

    def get_output_channel(self) -> Optional[OutputChannel]:
        return self.output_class()(self) if self.enabled else None

    def output_class(self) -> type:
        return MetaOutput

    @property
    def state(self) -> ChannelState:
        if self._state is None:
            self._state = get_state()
        return self._state

    @property
    def relay(self) -> Any:
        return self._relay if self._relay is not None else base.relay_for(self.app)

    @property
    def agent(self) -> Any:
        return getattr(getattr(self.app, "ctx", None), "agent", None)

    def sender_of(self, user: str) -> str:
        return base.sender_id_for(self.platform, user, self.secret, prefix=self.prefix)

    def _key(self, kind: str, raw: str) -> str:
        """A message id as the shared store keeps it: hashed (a WhatsApp message
        id carries the sender's phone number)."""
        digest = hmac.new(self.secret, f"{self.platform}:{raw}".encode(), hashlib.sha256).hexdigest()[:40]
        return f"{kind}:{digest}"

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self, app: Any = None) -> None:
        self.app = app or self.app
        if not self.enabled or self.graph is not None:
            return
        self.graph = GraphClient(
            self.config.token, self.config.graph_url, self.label, backoff=self.backoff, max_wait=self.max_wait
        )
        try:
            self.relay.senders[self.platform] = self.push
        except Exception as error:  # noqa: BLE001 - the channel works without the hand-off
            logger.error("%s: hand-off relay unavailable (%s)", self.label, type(error).__name__)
        logger.info("%s channel on: webhook /webhooks/%s/webhook", self.label, self.platform)

    async def stop(self) -> None:
        busy = [task for task in self.tasks if not task.done()]
        if busy:
            await asyncio.wait(busy, timeout=15)
        if self.graph is not None:
            await self.graph.close()
            self.graph = None

    # -- the blueprint --------------------------------------------------------------------------------
    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        self.on_new_message = on_new_message
        hook = Blueprint(f"{self.platform}_webhook")

        @hook.listener("after_server_start")
        async def _started(app: Any, _loop: Any) -> None:
            await self.start(app)

        @hook.listener("before_server_stop")
        async def _stopping(_app: Any, _loop: Any) -> None:
            await self.stop()

        @hook.route("/", methods=["GET"])
        async def health(_request: Request) -> Any:
            return response.json({"status": "ok" if self.enabled else "off"})

        @hook.route("/webhook", methods=["GET"])
        async def verify(request: Request) -> Any:
            status, body = handshake(request.args, self.config.verify_token if self.enabled else "")
            if status != 200:
                logger.warning("%s: subscription handshake refused", self.label)
            return response.text(body, status=status)

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> Any:
            return await self.receive(request)

        return hook

    def _log_refused(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= 60:
            logger.warning(
                "%s: %d webhook POST(s) with a missing or wrong signature refused", self.label, self._refused
            )
            self._refused, self._refused_logged = 0, now

    async def receive(self, request: Request) -> Any:
        if not self.enabled:
            return response.json({"status": f"{self.label} channel is off"}, status=503)
        raw = request.body or b""
        if not signature_valid(raw, request.headers.get("x-hub-signature-256"), self.config.app_secret):
            self._log_refused()
            return response.text("forbidden", status=403)
        if len(raw) > MAX_BODY:
            logger.warning("%s: a webhook body of %d bytes refused", self.label, len(raw))
            return response.json({"error": "body too large"}, status=413)
        self.app = request.app
        data = parse_json(raw)
        if not isinstance(data, dict):
            logger.warning("%s: a webhook body that is not a JSON object", self.label)
            return response.json({"error": "body must be a JSON object"}, status=400)
        try:
            events = self.parse(data)
        except Exception as error:  # noqa: BLE001 - a body we did not foresee is never a 500
            logger.warning("%s: webhook body not understood (%s); ignored", self.label, type(error).__name__)
            return response.text("ignored")
        if events is None:
            logger.info("%s: a webhook body for another object; ignored", self.label)
            return response.text("ignored")
        self.dispatch(events)
        return response.text("EVENT_RECEIVED")

    # -- dispatch -----------------------------------------------------------------------------------
    def parse(self, data: Dict[str, Any]) -> Optional[List[Incoming]]:  # pragma: no cover - per platform
        """The body's events, or None when its ``object`` is not this platform's."""
        raise NotImplementedError

    def dispatch(self, events: Sequence[Incoming]) -> int:
        """Starts handling the events not seen before (on any server), in order
        per user (a batch sorted by time); returns how many."""
        started = 0
        for event in sorted(events, key=lambda e: e.at):
            if event.key and self.state.seen(self.platform, self._key("m", event.key)):
                logger.info("%s: a message seen before was not answered again", self.label)
                continue
            self._spawn(self._handle(event))
            started += 1
        return started

    def _spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def settle(self, timeout: float = 30) -> None:
        """Until every event handled so far is done (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [task for task in self.tasks if not task.done()]
            if not busy:
                return
            await asyncio.wait(busy, timeout=max(0.01, deadline - time.monotonic()))

    # -- handling -----------------------------------------------------------------------------------
    async def _handle(self, event: Incoming) -> None:
        sender = self.sender_of(event.user)  # nothing awaited before the lock: arrival order holds
        async with self.locks(sender):
            try:
                await self._handle_in_order(event, sender)
            except Exception as error:
                logger.error("%s: message handling failed (%s)", self.label, type(error).__name__)
                logger.debug("%s: message handling failure", self.label, exc_info=True)

    async def _handle_in_order(self, event: Incoming, sender: str) -> None:
        if event.kind == "status":
            await self.on_status(event, sender)
            return
        self.note_user_message(sender, event.user, event.at)
        allowed, tell = self.limiter.check(sender)
        if not allowed:
            logger.info("%s: a user exceeded %d messages a minute", self.label, self.limiter.limit)
            if tell:
                await self._say(sender, "rate_limited", await self._language(sender, None))
            return
        hint = await self.hint_for(event, sender)
        if event.kind == "text":
            await self._text(event.text, sender, hint)
        elif event.kind == "button":
            await self._button(event.payload, event.text, sender, hint)
        elif event.kind == "start":
            await self._start(sender, hint)
        elif event.kind == "edited":
            await self._say(sender, "edited_message", await self._language(sender, hint))
        elif event.kind == "personal":
            await self._say(sender, "personal_data_not_needed", await self._language(sender, hint))
        elif event.kind == "media":
            if event.media in ("voice", "photo") and await self._relay_media(event, sender):
                if event.text.strip():
                    await self._intercepted(sender, event.text.strip())  # the caption goes with it
                return
            await self._say(sender, "non_text", await self._language(sender, hint))
            if event.text.strip():
                await self._text(event.text, sender, hint)

    async def hint_for(self, event: Incoming, sender: str) -> Optional[str]:
        """The platform's language hint for this user (never a fact), if any."""
        return None

    async def on_status(self, event: Incoming, sender: str) -> None:
        """A delivery report (WhatsApp)."""

    # -- the user's address and messaging window -------------------------------------------------------
    def note_user_message(self, sender: str, user: str, at: float) -> None:
        """The encrypted address, with the time of the user's latest message
        (to the minute, rounded down: the window never looks longer than it is)."""
        at = int(min(at or time.time(), time.time()) // 60 * 60)
        known = self.target(sender)
        if known is not None and known[0] == user and known[1] >= at:
            at = known[1]
        self.state.put_address(self.platform, sender, json.dumps({"id": user, "at": at}, separators=(",", ":")))

    def target(self, sender: str) -> Optional[Tuple[str, int]]:
        """(the platform id, time of the user's last message) of a hashed sender, if known."""
        raw = self.state.address(self.platform, sender)
        if not raw:
            return None
        try:
            data = json.loads(raw)
            user, at = data["id"], int(data["at"])
        except (ValueError, KeyError, TypeError):
            return None
        return (user, at) if isinstance(user, str) and user_id(user) else None

    def window(self, last_at: float) -> Optional[str]:  # pragma: no cover - per platform
        """How a message may be sent this long after the user's last one: a mode
        for :meth:`send_one`, or None when the platform's window has closed."""
        raise NotImplementedError

    # -- the user's messages ----------------------------------------------------------------------------
    async def _intercepted(self, sender: str, text: str) -> bool:
        try:
            return await self.relay.intercept(sender, text, self.platform)
        except Exception as error:  # noqa: BLE001 - the assistant still answers
            logger.error("%s: hand-off relay failed (%s)", self.label, type(error).__name__)
            return False

    async def _relay_media(self, event: Incoming, sender: str) -> bool:
        if self.graph is None or not event.ref:
            return False
        try:
            return await self.relay.intercept_media(sender, self.platform, event.media, lambda: self.fetch_media(event))
        except Exception as error:  # noqa: BLE001
            logger.error("%s: hand-off relay failed (%s)", self.label, type(error).__name__)
            return False

    async def fetch_media(self, event: Incoming) -> Tuple[bytes, str]:  # pragma: no cover - per platform
        raise NotImplementedError

    async def _text(self, text: str, sender: str, hint: Optional[str]) -> None:
        text = text.strip()
        if not text:
            return
        if text.startswith("/"):
            command, _, rest = text[1:].partition(" ")
            command = command.lower()
            if re.fullmatch(r"[a-z0-9_]{1,32}", command):
                await self._command(command, rest, text, sender, hint)
                return
            text = text.lstrip("/").strip()  # typed text is never taken as a button's payload
            if not text:
                return
        if len(text) > MAX_TEXT_CHARS:
            text = cut_text(text, MAX_TEXT_CHARS)
            await self._say(sender, "too_long", await self._language(sender, hint))
        if await self._intercepted(sender, text):
            return
        await self.to_rasa(text, sender, hint)

    async def _command(self, command: str, rest: str, text: str, sender: str, hint: Optional[str]) -> None:
        """The commands Telegram has, for users who type them here too."""
        if command == "start":
            await self._start(sender, hint)
        elif command == "language":
            await self._ask_language(sender, hint)
        elif command == "delete":
            await self._delete_command(sender, hint)
        elif command in ("end", "cancel") and await self.relay.command(sender, command):
            return
        elif await self._intercepted(sender, text):
            return  # e.g. during a live hand-off: relayed to the counsellor
        elif command in COMMAND_PAYLOADS:
            await self.to_rasa(COMMAND_PAYLOADS[command], sender, hint)
        else:
            words = (command.replace("_", " ") + " " + rest).strip()
            await self.to_rasa(words[:MAX_TEXT_CHARS], sender, hint)

    async def _button(self, payload: str, title: str, sender: str, hint: Optional[str]) -> None:
        if payload == START:
            await self._start(sender, hint)
            return
        if payload == LANGUAGE:
            await self._ask_language(sender, hint)
            return
        if payload == DELETE:
            await self._delete_command(sender, hint)
            return
        if payload.startswith(MORE_PREFIX):
            await self._more(payload[len(MORE_PREFIX) :], sender, hint)
            return
        if payload.startswith(PAYLOAD_PREFIX):
            payload = self.state.payload(payload[len(PAYLOAD_PREFIX) :]) or ""
            if not payload:
                await self._say(sender, "button_expired", await self._language(sender, hint))
                return
        if not payload.startswith("/"):
            await self._text(title or payload, sender, hint)  # not one of ours: its words
            return
        if await self._intercepted(sender, payload):
            return  # e.g. an old button pressed while a counsellor is talking
        await self.to_rasa(payload, sender, hint)

    async def _start(self, sender: str, hint: Optional[str]) -> None:
        language = await self._language(sender, hint)
        await self.send_messages(
            sender,
            [{"text": message_text("intro", language), "buttons": languages.language_buttons()}],
            language=language,
        )
        await self._mark_intro_shown(sender)

    async def _ask_language(self, sender: str, hint: Optional[str]) -> None:
        language = await self._language(sender, hint)
        await self.send_messages(
            sender,
            [{"text": message_text("ask_language", language), "buttons": languages.language_buttons()}],
            language=language,
        )

    async def _more(self, key: str, sender: str, hint: Optional[str]) -> None:
        """The next page of buttons that did not fit."""
        language = await self._language(sender, hint)
        stored = parse_json((self.state.payload(key) or "").encode())
        buttons = [b for b in dicts(mapping(stored).get("more")) if b.get("payload")]
        if not buttons:
            await self._say(sender, "button_expired", language)
            return
        await self.send_messages(
            sender, [{"text": message_text("more_options", language), "buttons": buttons}], language=language
        )

    # -- Rasa ----------------------------------------------------------------------------------------
    async def to_rasa(self, text: str, sender: str, hint: Optional[str], apologise: bool = True) -> bool:
        """One turn; its replies sent; the hand-off or the deletion it asked for
        done. True when the assistant deleted the conversation."""
        collector = TurnCollector()
        metadata = {"language_hint": hint} if hint else None
        message = UserMessage(text, collector, sender, input_channel=self.platform, metadata=metadata)
        answered = await base.run_turn(self.on_new_message, message, self.label)  # type: ignore[arg-type]
        shown = self.shown(collector.messages)
        forget = base.marker(collector.messages, base.FORGET)
        requested = base.marker(collector.messages, base.HANDOFF)
        language = None
        if any(m.get("buttons") for m in shown):
            language = await self._language(sender, hint)
        if shown:
            await self.send_messages(sender, shown, language=language)
        if apologise and (not answered or not shown and forget is None):
            if answered:
                logger.warning("%s: the assistant produced no reply; the user is told", self.label)
            await self.send_messages(sender, [base.sorry(await self._language(sender, hint))])
        if requested:
            try:
                await self.relay.case_requested(sender, requested, self.platform)
            except Exception as error:  # noqa: BLE001
                logger.error("%s: hand-off relay failed (%s)", self.label, type(error).__name__)
        if forget is not None:
            await self._delete_everything(sender)
            return True
        return False

    @staticmethod
    def shown(messages: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """What a user may see of a turn: text (with any image or attachment
        link) and buttons; never a marker or another custom payload."""
        out = []
        for message in messages:
            if not isinstance(message, dict) or message.get("custom") is not None:
                continue
            lines = [message.get("text") if isinstance(message.get("text"), str) else ""]
            lines += [message[k] for k in ("image", "attachment") if isinstance(message.get(k), str)]
            text = "\n\n".join(line for line in lines if line).strip()
            buttons = [
                b
                for b in (message.get("buttons") or message.get("quick_replies") or [])
                if isinstance(b, dict) and (b.get("payload") or b.get("url"))
            ]
            if text or buttons:
                out.append({"text": text, "buttons": buttons})
        return out

    async def _language(self, sender: str, hint: Optional[str]) -> str:
        return await base.conversation_language(self.agent, sender, hint)

    async def _mark_intro_shown(self, sender: str) -> None:
        """After Get Started showed the safety notice, the first answer does not repeat it."""
        agent = self.agent
        if agent is None or getattr(agent, "processor", None) is None:
            return
        from rasa.shared.core.events import SlotSet

        try:
            async with agent.lock_store.lock(sender):
                tracker = await agent.processor.fetch_tracker_with_initial_session(sender)
                if tracker.get_slot("intro_shown") is not True and "intro_shown" in tracker.slots:
                    tracker.update(SlotSet("intro_shown", True))
                    await agent.tracker_store.save(tracker)
        except Exception as error:  # noqa: BLE001
            logger.warning("%s: could not note the shown introduction (%s)", self.label, type(error).__name__)

    # -- deleting -----------------------------------------------------------------------------------
    async def _delete_command(self, sender: str, hint: Optional[str]) -> None:
        """The menu's "delete": the assistant's own confirmation (which says that
        the chat stays in the app), then everything on the server. If the
        assistant cannot do it, the channel deletes and confirms itself."""
        language = await self._language(sender, hint)
        try:
            await self.relay.forget(sender)  # an open hand-off closes first (the assistant resumes)
        except Exception as error:  # noqa: BLE001
            logger.error("%s: hand-off relay failed while deleting (%s)", self.label, type(error).__name__)
        if await self.to_rasa(DELETE_PAYLOAD, sender, hint, apologise=False):
            return
        logger.warning(
            "%s: deletion not confirmed by the assistant; the channel deletes the conversation itself", self.label
        )
        await self.send_messages(sender, [{"text": message_text("deleted_app_copy", language)}])
        await self._delete_everything(sender)

    async def _delete_everything(self, sender: str) -> None:
        """Everything the server holds of this user, at once: the conversation,
        any hand-off case, the encrypted address. The chat itself stays in the
        user's app (a bot cannot delete it there; the user was told how)."""
        agent = self.agent
        try:
            if agent is not None:
                await base.forget_everything(agent, sender, self.relay)
            else:
                await self.relay.forget(sender)
        except Exception as error:  # noqa: BLE001
            logger.error("%s: conversation not deleted (%s)", self.label, type(error).__name__)
        self.state.forget(self.platform, sender)
        self.forget_local(sender)
        logger.info("%s: conversation deleted on the user's request", self.label)

    def forget_local(self, sender: str) -> None:
        self.limiter.forget(sender)

    # -- sending ---------------------------------------------------------------------------------------
    def stored_payload(self, payload: str, limit: int) -> str:
        """A payload that fits ``limit`` bytes, else a short key to it in the channel store."""
        if len(payload.encode()) <= limit and not payload.startswith(PAYLOAD_PREFIX):
            return payload  # the assistant's payloads, and our own "more" pages
        return PAYLOAD_PREFIX + self.state.payload_key(payload)

    def paged(self, buttons: Sequence[Dict[str, Any]], limit: int, language: str) -> List[Dict[str, Any]]:
        """At most ``limit`` buttons: beyond it the first ``limit - 1`` and a
        "more" button that shows the rest (kept in the channel store)."""
        unique: List[Dict[str, Any]] = []
        payloads: Set[str] = set()
        for button in buttons:
            payload = str(button.get("payload") or "")
            if payload and payload not in payloads:
                payloads.add(payload)
                unique.append(button)
        if len(unique) <= limit:
            return unique
        rest = [{k: v for k, v in b.items() if k in ("title", "short_title", "payload")} for b in unique[limit - 1 :]]
        key = self.state.payload_key(json.dumps({"more": rest}, ensure_ascii=False, sort_keys=True))
        return unique[: limit - 1] + [
            {"title": message_text("label_more_options", language), "payload": MORE_PREFIX + key}
        ]

    @staticmethod
    def links_in_text(text: str, buttons: Sequence[Dict[str, Any]]) -> Tuple[str, List[Dict[str, Any]]]:
        """Link buttons become lines of the text (quick replies cannot open links)."""
        links = [b for b in buttons if is_link(b)]
        if not links:
            return text, list(buttons)
        lines = [f"{b.get('title') or ''}: {b.get('url') or b.get('payload')}".strip(": ") for b in links]
        return "\n\n".join(part for part in [text, "\n".join(lines)] if part), [b for b in buttons if not is_link(b)]

    async def send_messages(
        self,
        sender: str,
        messages: Sequence[Dict[str, Any]],
        language: Optional[str] = None,
        mode: str = "response",
        relayed: bool = False,
    ) -> bool:
        """Sends messages to a user whose address is known; False when any failed."""
        target = self.target(sender)
        if target is None or self.graph is None:
            logger.warning("%s: no address known for a reply", self.label)
            return False
        if language is None and any(m.get("buttons") for m in messages):
            language = await self._language(sender, None)
        for message in messages:
            text, buttons = self.links_in_text(str(message.get("text") or ""), message.get("buttons") or [])
            ids = await self.send_one(target[0], text, buttons, mode, language or languages.DEFAULT)
            if ids is None:
                return False
            if relayed:
                for message_id in ids:
                    self.state.seen(self.platform, self._key("relayed", message_id))
        return True

    async def send_one(
        self, user: str, text: str, buttons: Sequence[Dict[str, Any]], mode: str, language: str
    ) -> Optional[List[str]]:  # pragma: no cover - per platform
        """One reply (split at the platform's limit, buttons on its last part);
        the sent messages' ids, or None when the platform refused it."""
        raise NotImplementedError

    async def _say(self, sender: str, key: str, language: str) -> bool:
        return await self.send_messages(sender, [{"text": message_text(key, language)}])

    async def push(self, sender: str, messages: List[Dict[str, Any]]) -> bool:
        """For the hand-off relay (a counsellor's words, the case's notices):
        False when the user cannot be reached (address unknown, the platform's
        window closed, the platform refused), so the operators are told."""
        target = self.target(sender)
        if target is None or self.graph is None:
            return False
        mode = self.window(target[1])
        if mode is None:
            logger.warning(
                "%s: a hand-off message was not sent: the platform's messaging window has closed", self.label
            )
            return False
        return await self.send_messages(
            sender,
            [
                {"text": m.get("text") or "", "buttons": m.get("buttons") or []}
                for m in messages
                if m.get("text") or m.get("buttons")
            ],
            mode=mode,
            relayed=True,
        )


def split_for(text: str, limit: int) -> List[str]:
    """A reply cut into messages of at most ``limit`` characters (counted as
    UTF-16 units: never more than the platforms count)."""
    return split_text(text, limit)
