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
  poll (handoff/queues.py). The webhook's answer ends
  with ``{"handoff": state}`` while a hand-off is waiting or live (and once with
  null when it ends); the page polls every 3 s only then, and shows a "Stop
  waiting" / "End chat" control that sends ``/cancel`` / ``/end``.
- ``GET /webhooks/webchat/static/<file>``: the page's own CSS, JS and icon,
  from ``channels/webchat/static/``; ``GET /webhooks/webchat/i18n.js``: the
  languages (data/languages.yml) and the page's words in each, made from the
  ``webchat_*`` keys of data/messages.yml.
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

import html
import json
import logging
import pathlib
import re
import time
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple
from urllib.parse import urlsplit

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import base
from channels.base import RateLimiter, SlidingWindow  # noqa: F401 - part of this channel's interface
from content import languages
from content.texts import text as message

logger = logging.getLogger(__name__)

WEB_DIR = pathlib.Path(__file__).resolve().parent / "static"
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
SENDER_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SENDER_PREFIX = "web-"
MAX_BODY_BYTES = 64 * 1024
POLLS_PER_MINUTE = 40  # the page polls every 3 s while a hand-off is waiting or live
DEFAULT_EXIT_URL = "https://www.google.com/search?q=weather"
DEFAULTS: Dict[str, Any] = {
    "exit_url": DEFAULT_EXIT_URL,
    "origins": "",
    "max_chars": 2000,
    "rate_session": 20,
    "rate_address": 60,
}


# -- settings -----------------------------------------------------------------


def _setting(credentials: Dict[str, Any], key: str) -> Any:
    from content import settings

    name = f"WAYPOINT_WEBCHAT_{key.upper()}"
    if settings.get(name) != settings.BY_NAME[name].default:
        return settings.get(name)
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
        return DEFAULT_EXIT_URL
    return url


# -- texts --------------------------------------------------------------------


def i18n_script() -> str:
    """The page's languages (the registry) and its words in each (every
    ``webchat_*`` message of data/messages.yml), as JS."""
    from content.loader import get_content

    words: Dict[str, Dict[str, str]] = {lang: {} for lang in languages.CODES}
    for key, texts in get_content().messages.items():
        if key.startswith("webchat_") and "{" not in "".join(texts.values()):
            for lang in languages.CODES:
                words[lang][key[len("webchat_") :]] = texts.get(lang) or texts.get(languages.DEFAULT, "")
    listed = [{"code": lang.code, "name": lang.native_name, "script": lang.script} for lang in languages.REGISTRY]
    words_js = json.dumps(words, ensure_ascii=False, sort_keys=True).replace("<", "\\u003c")
    listed_js = json.dumps(listed, ensure_ascii=False).replace("<", "\\u003c")
    return f"window.WAYPOINT_LANGUAGES = {listed_js};\nwindow.WAYPOINT_I18N = {words_js};\n"


def language_code(value: Any) -> Optional[str]:
    """``"ms-MY"`` -> ``"ms"``; anything else that is not one of ours -> None."""
    return languages.normalise_hint(value) if isinstance(value, str) else None


async def conversation_language(request: Request, sender_id: str, hint: Optional[str]) -> str:
    """The conversation's ``language`` slot, else the page's choice, else English."""
    return await base.conversation_language(request.app.ctx.agent, sender_id, hint)


visible = base.visible


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
    """The hand-off relay of this server (handoff/relay.py)."""
    return base.relay_for(request.app)


class WebChatInput(InputChannel):
    """The web chat channel (see the module's docstring)."""

    @classmethod
    def name(cls) -> str:
        return "webchat"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "WebChatInput":
        credentials = credentials or {}
        return cls(
            exit_url=_exit_url(_setting(credentials, "exit_url")),
            origins=parse_origins(_setting(credentials, "origins")),
            max_chars=int(_setting(credentials, "max_chars")),
            rate_session=int(_setting(credentials, "rate_session")),
            rate_address=int(_setting(credentials, "rate_address")),
        )

    def __init__(
        self,
        exit_url: str = DEFAULT_EXIT_URL,
        origins: Tuple[str, ...] = (),
        max_chars: int = 2000,
        rate_session: int = 20,
        rate_address: int = 60,
    ) -> None:
        self.exit_url = exit_url
        self.origins = origins
        self.max_chars = max_chars
        self.limiter = RateLimiter(rate_session, rate_address)
        # polls every few seconds while a hand-off is open: a budget of their own
        self.poll_limiter = RateLimiter(POLLS_PER_MINUTE, POLLS_PER_MINUTE * 10)

    # -- headers ----------------------------------------------------------------

    def csp(self) -> str:
        ancestors = " ".join(["'self'", *self.origins]) if "*" not in self.origins else "*"
        return (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
            f"form-action 'self'; frame-ancestors {ancestors}"
        )

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
        return template.replace("{{EXIT_URL}}", html.escape(self.exit_url, quote=True)).replace(
            "{{MAX_CHARS}}", str(self.max_chars)
        )

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
            def register(self, app, options):
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
                metadata = data.get("metadata") or {}
                if not isinstance(metadata, dict):
                    metadata = {}
                hint = language_code(base.language_hint(sender_id, metadata.get("language_hint")))
            except BadRequest as error:
                return response.json({"error": str(error)}, status=400)

            if not channel.limiter.allow(sender_id, client_address(request)):
                logger.info("webchat: message refused, rate limit")
                language = await conversation_language(request, sender_id, hint)
                return response.json([{"text": message("rate_limited", language)}], status=429)
            if len(text) > channel.max_chars:
                logger.info("webchat: message refused, %d characters", len(text))
                language = await conversation_language(request, sender_id, hint)
                return response.json(
                    [{"text": message("webchat_too_long", language, limit=channel.max_chars)}], status=413
                )

            relay = handoff_relay(request)
            try:
                if await relay.intercept(sender_id, text, channel.name()):  # a hand-off is waiting or live
                    return response.json(relay.take(sender_id) + [{"handoff": relay.state_of(sender_id)}])
            except Exception as error:  # noqa: BLE001 - the assistant still answers
                logger.error("webchat: hand-off relay failed (%s)", type(error).__name__)
            before = relay.take(sender_id)

            collector = CollectingOutputChannel()
            user_message = UserMessage(
                text,
                collector,
                sender_id,
                input_channel=channel.name(),
                metadata={"language_hint": hint} if hint else None,
            )
            if not await base.run_turn(on_new_message, user_message, channel.name()):
                language = await conversation_language(request, sender_id, hint)
                return response.json(before + [{"text": message("webchat_error", language)}], status=503)
            shown = visible(collector.messages)
            if not shown and not base.marker(collector.messages, base.FORGET):
                logger.warning("webchat: the assistant produced no reply; the user is told")
                shown = [base.sorry(await conversation_language(request, sender_id, hint))]
            replies = before + shown
            try:
                state = await base.after_turn(relay, sender_id, collector.messages, channel.name())
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
                await base.forget_everything(request.app.ctx.agent, sender_id, handoff_relay(request))
            except Exception as error:  # noqa: BLE001
                logger.error("webchat: conversation not deleted (%s)", type(error).__name__)
                return response.json({"error": "not deleted"}, status=503)
            logger.info("webchat: conversation deleted on the user's request")
            return response.json({"deleted": True})

        return bp
