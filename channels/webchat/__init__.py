"""The web chat: a page at ``/chat`` and the JSON channel it talks to.

Registered in credentials.yml as ``channels.webchat.WebChatInput:``. Rasa
mounts the channel's blueprint under ``/webhooks/webchat/``:

- ``POST /webhooks/webchat/webhook`` ``{"sender", "message", "metadata": {"language_hint"}}``
  returns the bot's messages as a JSON list of ``{"text", "buttons"}`` (markers
  such as ``{"waypoint": "forget_conversation"}`` never leave the server). A
  refused message (too long: 413, too fast: 429, server trouble: 503) gets the
  same shape: a list holding one kind answer in the user's language. Malformed
  requests get 400 with ``{"error": ...}``.
- ``POST /webhooks/webchat/delete`` ``{"sender"}`` deletes the conversation from
  the tracker store (the page's "Delete this conversation" and quick exit), and
  closes an open hand-off.
- ``POST /webhooks/webchat/poll`` ``{"sender"}`` returns ``{"messages": [...],
  "handoff": "waiting" | "live" | null}``: what a counsellor wrote since the last
  poll (held in memory only, channels/operators.py). The webhook's answer ends
  with ``{"handoff": state}`` while a hand-off is waiting or live (and once with
  null when it ends); the page polls every 3 s only then, and shows a "Stop
  waiting" / "End chat" control that sends ``/cancel`` / ``/end``.
- ``GET /webhooks/webchat/static/<file>``: the page's own CSS, JS and icon,
  from ``channels/web/``; ``GET /webhooks/webchat/i18n.js``: the page's words
  in five languages, made from the ``webchat_*`` keys of data/messages.yml.
- ``GET /chat``: the page, added to the app itself when the blueprint is
  registered (a blueprint's routes all live under its prefix).

The page's random session id becomes the sender id ``web-<id>``, so the web
chat can neither read nor delete another channel's conversation.

Every response carries a Content-Security-Policy without 'unsafe-inline',
``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and
``Cache-Control: no-store`` (the conversation never lands in the browser's disk
cache). Sites allowed to embed the page and call the webhook from their own
pages are listed in WAYPOINT_WEBCHAT_ORIGINS (comma-separated origins; they
become CORS origins and CSP frame-ancestors; leave Rasa's own ``--cors`` unset).

Settings (environment, else the credentials.yml block, else the default):
WAYPOINT_WEBCHAT_ORIGINS (none), WAYPOINT_WEBCHAT_EXIT_URL (a weather search),
WAYPOINT_WEBCHAT_MAX_CHARS (2000), WAYPOINT_WEBCHAT_RATE_SESSION (20 messages a
minute per session), WAYPOINT_WEBCHAT_RATE_ADDRESS (60 a minute per client
address). Behind a reverse proxy set Sanic's SANIC_PROXIES_COUNT or
SANIC_REAL_IP_HEADER so each visitor gets their own address limit. Addresses are
kept only in memory, as keyed hashes, for the one-minute window.

Logs hold counts, statuses and error types, never a message's text.
"""
from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import html
import json
import logging
import os
import pathlib
import re
import time
from typing import Any, Awaitable, Callable, Deque, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import tracker_store

logger = logging.getLogger(__name__)

LANGUAGES = ("en", "id", "ms", "vi", "th")
WEB_DIR = pathlib.Path(__file__).resolve().parent / "web"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png"}
SENDER_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SENDER_PREFIX = "web-"
MAX_BODY_BYTES = 64 * 1024
POLLS_PER_MINUTE = 40  # the page polls every 3 s while a hand-off is waiting or live
DEFAULTS = {"exit_url": "https://www.google.com/search?q=weather", "origins": "", "max_chars": 2000,
            "rate_session": 20, "rate_address": 60}


# -- settings -----------------------------------------------------------------

def _setting(credentials: Dict[str, Any], key: str) -> Any:
    env = os.environ.get(f"WAYPOINT_WEBCHAT_{key.upper()}")
    if env not in (None, ""):
        return env
    value = credentials.get(key)
    return DEFAULTS[key] if value in (None, "") else value


def parse_origins(value: Any) -> Tuple[str, ...]:
    """``"https://a.org, https://b.org:8443/"`` -> normalised origins; ``*`` allows any."""
    items = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    origins = []
    for item in (str(i).strip() for i in items):
        if item == "*":
            origins.append("*")
            continue
        parts = urlsplit(item)
        if parts.scheme in ("http", "https") and parts.netloc:
            origins.append(f"{parts.scheme}://{parts.netloc}".lower())
        elif item:
            logger.warning("webchat: ignoring an origin that is not scheme://host[:port]")
    return tuple(dict.fromkeys(origins))


def _exit_url(value: Any) -> str:
    url = str(value)
    if urlsplit(url).scheme not in ("http", "https"):
        logger.warning("webchat: the quick exit URL must be http(s); using the default")
        return DEFAULTS["exit_url"]
    return url


# -- rate limits ----------------------------------------------------------------

class SlidingWindow:
    """At most ``limit`` events per key in any ``window`` seconds, in memory."""

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 200_000):
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self.events: Dict[str, Deque[float]] = {}
        self._calls = 0

    def _recent(self, key: str, now: float) -> Deque[float]:
        times = self.events.get(key)
        if times is None:
            return collections.deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def full(self, key: str, now: float) -> bool:
        return self.limit > 0 and len(self._recent(key, now)) >= self.limit

    def add(self, key: str, now: float) -> None:
        self._calls += 1
        if self._calls % 1000 == 0 or len(self.events) >= self.max_keys:
            self.prune(now)
        self.events.setdefault(key, collections.deque()).append(now)

    def prune(self, now: float) -> None:
        for key in list(self.events):
            if not self._recent(key, now):
                del self.events[key]
        while len(self.events) >= self.max_keys:  # still full of active keys: drop the oldest
            del self.events[next(iter(self.events))]


class RateLimiter:
    def __init__(self, per_session: int, per_address: int, window: float = 60.0):
        self.sessions = SlidingWindow(per_session, window)
        self.addresses = SlidingWindow(per_address, window)
        self._key = os.urandom(16)  # addresses are hashed with a key that dies with the process

    def address_key(self, address: str) -> str:
        return hmac.new(self._key, address.encode(), hashlib.sha256).hexdigest()[:24]

    def allow(self, session: str, address: str, now: Optional[float] = None) -> bool:
        """Counts the message and says yes, or says no without counting it."""
        now = time.monotonic() if now is None else now
        address = self.address_key(address)
        if self.sessions.full(session, now) or self.addresses.full(address, now):
            return False
        self.sessions.add(session, now)
        self.addresses.add(address, now)
        return True


# -- texts --------------------------------------------------------------------

def _messages() -> Dict[str, Dict[str, str]]:
    from actions.content import get_content

    return get_content().messages


def message(key: str, language: str, **values: Any) -> str:
    texts = _messages()[key]
    text = texts.get(language) or texts["en"]
    return text.format(**values) if values else text


def i18n_script() -> str:
    """The page's dictionary: every ``webchat_*`` message, per language, as JS."""
    words: Dict[str, Dict[str, str]] = {lang: {} for lang in LANGUAGES}
    for key, texts in _messages().items():
        if key.startswith("webchat_") and "{" not in "".join(texts.values()):
            for lang in LANGUAGES:
                words[lang][key[len("webchat_"):]] = texts.get(lang) or texts.get("en", "")
    payload = json.dumps(words, ensure_ascii=False, sort_keys=True).replace("<", "\\u003c")
    return f"window.WAYPOINT_I18N = {payload};\n"


def language_code(value: Any) -> Optional[str]:
    """``"ms-MY"`` -> ``"ms"``; anything else outside the five -> None."""
    if not isinstance(value, str):
        return None
    code = value.strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else None


async def conversation_language(request: Request, sender_id: str, hint: Optional[str]) -> str:
    """The conversation's ``language`` slot, else the page's choice, else English."""
    try:
        tracker = await request.app.ctx.agent.tracker_store.retrieve(sender_id)
        slot = tracker.get_slot("language") if tracker else None
    except Exception as error:  # noqa: BLE001 - a kind answer must not depend on the store
        logger.warning("webchat: could not read the conversation's language (%s)", type(error).__name__)
        slot = None
    return slot if slot in LANGUAGES else hint or "en"


def visible(messages: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """What the page may show: text and buttons; never markers or other custom payloads."""
    shown = []
    for msg in messages:
        custom = msg.get("custom")
        if custom is not None and (tracker_store.is_marker(custom) or isinstance(custom, dict)):
            continue
        item: Dict[str, Any] = {}
        if isinstance(msg.get("text"), str) and msg["text"]:
            item["text"] = msg["text"]
        buttons = [{"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
                   for b in msg.get("buttons") or [] if isinstance(b, dict) and b.get("payload")]
        if buttons:
            item["buttons"] = buttons
        if item:
            shown.append(item)
    return shown


# -- HTTP helpers -----------------------------------------------------------------

class BadRequest(Exception):
    pass


def read_json(request: Request) -> Dict[str, Any]:
    body = request.body or b""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest("body too large")
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, or nested too deep
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def read_sender(data: Dict[str, Any]) -> str:
    sender = data.get("sender")
    if not isinstance(sender, str) or not SENDER_RE.match(sender):
        raise BadRequest("sender must be 16 to 64 letters, digits, '-' or '_'")
    return SENDER_PREFIX + sender


def client_address(request: Request) -> str:
    return request.remote_addr or request.ip or "unknown"


def handoff_relay(request: Request) -> Any:
    """The hand-off relay of this server (channels/operators.py)."""
    from channels import operators

    relay = operators.get_relay()
    relay.app = request.app
    return relay


async def after_turn(relay: Any, sender_id: str, messages: List[Dict[str, Any]], channel_name: str) -> Optional[str]:
    """Acts on the turn's markers (a new hand-off case, "delete my data");
    returns the hand-off's state for the page."""
    from channels import operators

    case_id = operators.marker_case(messages)
    if case_id:
        await relay.case_requested(sender_id, case_id, channel_name)
    if operators.marker_case(messages, "forget_conversation"):
        await relay.forget(sender_id)
    return relay.state_of(sender_id)


async def forget_everything(agent: Any, sender_id: str, relay: Any = None) -> None:
    """What "delete my data" deletes: the conversation and any hand-off case of it."""
    if relay is not None:
        try:
            await relay.forget(sender_id)  # an open hand-off closes; its relayed messages go
        except Exception as error:  # noqa: BLE001 - the deletion itself must go on
            logger.error("webchat: hand-off relay failed (%s)", type(error).__name__)
    async with agent.lock_store.lock(sender_id):  # not while a message of it is being handled
        await tracker_store.forget(agent.tracker_store, sender_id)
    from actions import store

    removed = await asyncio.get_running_loop().run_in_executor(None, store.delete_for_sender, sender_id)
    if removed:
        logger.info("webchat: %d hand-off case(s) removed", removed)


class WebChatInput(InputChannel):
    """The web chat channel (see the module's docstring)."""

    @classmethod
    def name(cls) -> str:
        return "webchat"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "WebChatInput":
        credentials = credentials or {}
        return cls(exit_url=_exit_url(_setting(credentials, "exit_url")),
                   origins=parse_origins(_setting(credentials, "origins")),
                   max_chars=int(_setting(credentials, "max_chars")),
                   rate_session=int(_setting(credentials, "rate_session")),
                   rate_address=int(_setting(credentials, "rate_address")))

    def __init__(self, exit_url: str = DEFAULTS["exit_url"], origins: Tuple[str, ...] = (),
                 max_chars: int = DEFAULTS["max_chars"], rate_session: int = DEFAULTS["rate_session"],
                 rate_address: int = DEFAULTS["rate_address"]) -> None:
        self.exit_url = exit_url
        self.origins = origins
        self.max_chars = max_chars
        self.limiter = RateLimiter(rate_session, rate_address)
        # polls every few seconds while a hand-off is open: a budget of their own
        self.poll_limiter = RateLimiter(POLLS_PER_MINUTE, POLLS_PER_MINUTE * 10)

    # -- headers ----------------------------------------------------------------

    def csp(self) -> str:
        ancestors = " ".join(["'self'", *self.origins]) if "*" not in self.origins else "*"
        return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
                f"form-action 'self'; frame-ancestors {ancestors}")

    def secure(self, resp: HTTPResponse) -> HTTPResponse:
        resp.headers["Content-Security-Policy"] = self.csp()
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if not self.origins:
            resp.headers["X-Frame-Options"] = "SAMEORIGIN"
        return resp

    def origin_allowed(self, request: Request) -> bool:
        """No Origin (not a browser, or same-origin GET), our own host, or a listed origin."""
        origin = request.headers.get("origin")
        if not origin:
            return True
        if "*" in self.origins or origin.lower() in self.origins:
            return True
        return origin != "null" and urlsplit(origin).netloc.lower() == (request.host or "").lower()

    def allowed_sender(self, request: Request) -> "str | HTTPResponse":
        """The request's sender id, or the error response (403 origin, 400 body)."""
        if not self.origin_allowed(request):
            return response.json({"error": "origin not allowed"}, status=403)
        try:
            return read_sender(read_json(request))
        except BadRequest as error:
            return response.json({"error": str(error)}, status=400)

    def add_cors(self, request: Request, resp: HTTPResponse) -> None:
        origin = request.headers.get("origin")
        if origin and ("*" in self.origins or origin.lower() in self.origins):
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
            if request.method == "OPTIONS":
                resp.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
                resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
                resp.headers["Access-Control-Max-Age"] = "600"

    # -- the page ---------------------------------------------------------------

    def page(self) -> str:
        template = (WEB_DIR / "index.html").read_text(encoding="utf-8")
        return (template.replace("{{EXIT_URL}}", html.escape(self.exit_url, quote=True))
                .replace("{{MAX_CHARS}}", str(self.max_chars)))

    def static_files(self) -> Dict[str, Tuple[bytes, str]]:
        files = {}
        for path in sorted(WEB_DIR.iterdir()):
            if path.is_file() and path.suffix in STATIC_TYPES:
                files[path.name] = (path.read_bytes(), STATIC_TYPES[path.suffix])
        return files

    # -- the blueprint ------------------------------------------------------------

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        channel = self
        static = self.static_files()
        page = self.page()

        class WebChatBlueprint(Blueprint):
            def register(self, app, options):  # noqa: ANN001 - Sanic's signature
                super().register(app, options)
                if not getattr(app.ctx, "waypoint_chat_page", False):
                    app.add_route(chat_page, "/chat", methods=["GET"], name="waypoint_webchat_page")
                    app.ctx.waypoint_chat_page = True

        bp = WebChatBlueprint("waypoint_webchat", __name__)

        async def chat_page(request: Request) -> HTTPResponse:
            return channel.secure(response.html(page))

        @bp.middleware("response")
        async def headers(request: Request, resp: HTTPResponse) -> None:
            channel.secure(resp)
            channel.add_cors(request, resp)

        @bp.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/static/<name>", methods=["GET"])
        async def asset(request: Request, name: str) -> HTTPResponse:
            if name not in static:
                return response.json({"error": "not found"}, status=404)
            body, content_type = static[name]
            return response.raw(body, content_type=content_type)

        @bp.route("/i18n.js", methods=["GET"])
        async def i18n(request: Request) -> HTTPResponse:
            return response.text(i18n_script(), content_type="text/javascript; charset=utf-8")

        async def preflight(request: Request) -> HTTPResponse:
            return response.empty()

        bp.add_route(preflight, "/webhook", methods=["OPTIONS"], name="webhook_preflight")
        bp.add_route(preflight, "/delete", methods=["OPTIONS"], name="delete_preflight")
        bp.add_route(preflight, "/poll", methods=["OPTIONS"], name="poll_preflight")

        @bp.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if not channel.origin_allowed(request):
                return response.json({"error": "origin not allowed"}, status=403)
            try:
                data = read_json(request)
                sender_id = read_sender(data)
                text = data.get("message")
                if not isinstance(text, str) or not text.strip():
                    raise BadRequest("message must be a non-empty string")
                metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
                hint = language_code(metadata.get("language_hint"))
            except BadRequest as error:
                return response.json({"error": str(error)}, status=400)

            if not channel.limiter.allow(sender_id, client_address(request)):
                logger.info("webchat: message refused, rate limit")
                language = await conversation_language(request, sender_id, hint)
                return response.json([{"text": message("rate_limited", language)}], status=429)
            if len(text) > channel.max_chars:
                logger.info("webchat: message refused, %d characters", len(text))
                language = await conversation_language(request, sender_id, hint)
                return response.json([{"text": message("webchat_too_long", language, limit=channel.max_chars)}],
                                     status=413)

            relay = handoff_relay(request)
            try:
                if await relay.intercept(sender_id, text, channel.name()):  # a hand-off is waiting or live
                    return response.json(relay.take(sender_id) + [{"handoff": relay.state_of(sender_id)}])
            except Exception as error:  # noqa: BLE001 - the assistant still answers
                logger.error("webchat: hand-off relay failed (%s)", type(error).__name__)
            before = relay.take(sender_id)

            collector = CollectingOutputChannel()
            user_message = UserMessage(text, collector, sender_id, input_channel=channel.name(),
                                       metadata={"language_hint": hint} if hint else None)
            try:
                await on_new_message(user_message)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - answered kindly, logged without text
                logger.error("webchat: the message could not be handled (%s)", type(error).__name__)
                language = await conversation_language(request, sender_id, hint)
                return response.json([{"text": message("webchat_error", language)}], status=503)
            replies = before + visible(collector.messages)
            try:
                state = await after_turn(relay, sender_id, collector.messages, channel.name())
            except Exception as error:  # noqa: BLE001
                logger.error("webchat: hand-off relay failed (%s)", type(error).__name__)
                state = None
            replies += relay.take(sender_id)
            if state:
                replies.append({"handoff": state})  # the page polls while a hand-off is waiting or live
            return response.json(replies)

        @bp.route("/poll", methods=["POST"])
        async def poll(request: Request) -> HTTPResponse:
            """What a counsellor (or the relay) said since the page last asked,
            and the hand-off's state; polled only while one is waiting or live."""
            sender_id = channel.allowed_sender(request)
            if isinstance(sender_id, HTTPResponse):
                return sender_id
            if not channel.poll_limiter.allow(sender_id, client_address(request)):
                return response.json({"error": "rate limited"}, status=429)
            relay = handoff_relay(request)
            return response.json({"messages": relay.take(sender_id), "handoff": relay.state_of(sender_id)})

        @bp.route("/delete", methods=["POST"])
        async def delete(request: Request) -> HTTPResponse:
            sender_id = channel.allowed_sender(request)
            if isinstance(sender_id, HTTPResponse):
                return sender_id
            if channel.limiter.addresses.full(channel.limiter.address_key(client_address(request)), time.monotonic()):
                return response.json({"error": "rate limited"}, status=429)
            try:
                await forget_everything(request.app.ctx.agent, sender_id, handoff_relay(request))
            except Exception as error:  # noqa: BLE001
                logger.error("webchat: conversation not deleted (%s)", type(error).__name__)
                return response.json({"error": "not deleted"}, status=503)
            logger.info("webchat: conversation deleted on the user's request")
            return response.json({"deleted": True})

        return bp
