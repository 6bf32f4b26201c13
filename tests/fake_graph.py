"""A fake Meta Graph API for the Messenger and WhatsApp tests: a small aiohttp
server on a loopback port, in its own thread (like tests/fake_telegram.py),
that answers like the Graph API (``{"error": {"code": ...}}`` on refusal),
records every call, checks what Meta checks (the bearer token; Messenger's
2,000-character text and 13 quick replies of 20 characters; WhatsApp's 4,096
characters, 3 reply buttons of 20, lists of 10 rows of 24 with descriptions of
72, interactive text of 1,024), knows each user's messaging window (WhatsApp:
24 hours, error 131047; Messenger: 24 hours, then the HUMAN_AGENT tag for 7
days), serves media (WhatsApp: a media id, then its URL with the token;
Messenger: a CDN URL) and fails on purpose (429, the rate-limit codes, 5xx).

The channels reach it through ``META_GRAPH_API_URL`` (:attr:`FakeGraph.graph_url`).

Also here, for the channel tests: webhook bodies as Meta posts them, a stub
assistant, a small agent (in-memory tracker and lock stores), a Sanic server
running a channel's real blueprint in the test's event loop, and the
operators' chat of a hand-off on tests/fake_telegram.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import socket
import threading
import time
import types
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from aiohttp import web

from tests import fake_telegram as tg

VERSION = "v21.0"
DAY = 24 * 3600


@dataclasses.dataclass
class Call:
    kind: str  # messenger_send, whatsapp_send, profile, messenger_profile, media_info, media_download, cdn
    method: str
    path: str
    params: Dict[str, Any]
    body: Any
    at: float  # time.monotonic()
    status: int = 200
    result: Any = None
    authorized: bool = True


@dataclasses.dataclass
class Failure:
    kind: str
    status: int
    code: Optional[int]
    times: int
    retry_after: Optional[int]
    match: Callable[[Any], bool]


def error_body(code: int, message: str, subcode: Optional[int] = None) -> Dict[str, Any]:
    error: Dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


class FakeGraph:
    def __init__(self, tokens: Iterable[str], phone_number_id: str = "1098765432101") -> None:
        self.tokens = set(tokens)
        self.phone_number_id = phone_number_id
        self.calls: List[Call] = []
        self._failures: List[Failure] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.locales: Dict[str, str] = {}  # PSID -> Messenger locale (others: no permission)
        self.last_inbound: Dict[str, float] = {}  # user -> when they last wrote (the messaging window)
        self.media: Dict[str, Tuple[bytes, str]] = {}  # WhatsApp media id -> (bytes, MIME type)
        self.files: Dict[str, Tuple[bytes, str]] = {}  # Messenger CDN name -> (bytes, MIME type)
        self.rejected_locales: set = set()  # messenger_profile refuses these (code 100)
        self.profile: Optional[Dict[str, Any]] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self.port = 0

    # lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/{VERSION}"

    def start(self) -> "FakeGraph":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application(client_max_size=8 * 1024 * 1024)
            app.router.add_route("GET", "/media/{media_id}", self._media_download)
            app.router.add_route("GET", "/cdn/{name}", self._cdn)
            app.router.add_route("*", "/" + VERSION + "/{path:.*}", self._graph)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-graph", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Graph API did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # controlling it --------------------------------------------------------------------------------
    def fail(
        self,
        kind: str,
        status: int = 429,
        code: Optional[int] = None,
        times: int = 1,
        retry_after: Optional[int] = None,
        match: Callable[[Any], bool] = lambda body: True,
    ) -> None:
        """The next ``times`` calls of ``kind`` matching ``match`` fail with
        ``status`` and the Graph error ``code``."""
        with self._lock:
            self._failures.append(Failure(kind, status, code, times, retry_after, match))

    def user_wrote(self, user: str, at: Optional[float] = None) -> None:
        with self._lock:
            self.last_inbound[str(user)] = time.time() if at is None else at

    def add_media(self, media_id: str, data: bytes, mime_type: str = "audio/ogg") -> None:
        self.media[media_id] = (data, mime_type)

    def add_file(self, name: str, data: bytes, mime_type: str = "audio/mp4") -> str:
        self.files[name] = (data, mime_type)
        return f"{self.url}/cdn/{name}"

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._failures.clear()
            self.last_inbound.clear()
            self.locales.clear()
            self.rejected_locales.clear()
            self.profile = None

    # reading what happened -------------------------------------------------------------------------
    def calls_of(self, kind: str, ok_only: bool = True) -> List[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind and (not ok_only or c.status == 200)]

    def messenger_sent(self, psid: Optional[str] = None) -> List[Dict[str, Any]]:
        """The ``message`` objects sent to a PSID (or anyone)."""
        return [
            c.body["message"]
            for c in self.calls_of("messenger_send")
            if psid is None or c.body["recipient"]["id"] == psid
        ]

    def messenger_texts(self, psid: Optional[str] = None) -> List[str]:
        return [m.get("text", "") for m in self.messenger_sent(psid)]

    def whatsapp_sent(self, to: Optional[str] = None) -> List[Dict[str, Any]]:
        return [c.body for c in self.calls_of("whatsapp_send") if to is None or c.body.get("to") == to]

    def whatsapp_texts(self, to: Optional[str] = None) -> List[str]:
        texts = []
        for body in self.whatsapp_sent(to):
            if body.get("type") == "text":
                texts.append(body["text"]["body"])
            elif body.get("type") == "interactive":
                texts.append(body["interactive"]["body"]["text"])
        return texts

    async def until(self, predicate: Callable[[], Any], timeout: float = 10, what: str = "a call") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            await asyncio.sleep(0.02)
        recent = self.calls[-20:]
        raise AssertionError(
            f"the fake Graph API never saw {what}; calls: " + ", ".join(f"{c.kind}({c.status})" for c in recent)
        )

    # the API ---------------------------------------------------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[len("Bearer ") :] in self.tokens

    def _kind(self, method: str, path: str, params: Dict[str, Any]) -> str:
        parts = [p for p in path.split("/") if p]
        if method == "POST" and parts == ["me", "messages"]:
            return "messenger_send"
        if method == "POST" and parts == ["me", "messenger_profile"]:
            return "messenger_profile"
        if method == "POST" and len(parts) == 2 and parts[1] == "messages":
            return "whatsapp_send"
        if method == "GET" and len(parts) == 1 and parts[0] in self.media:
            return "media_info"
        if method == "GET" and len(parts) == 1 and "fields" in params:
            return "profile"
        if method == "GET" and len(parts) == 1:
            return "media_info"
        return "unknown"

    def _failure(self, kind: str, body: Any) -> Optional[Failure]:
        with self._lock:
            failure = next((f for f in self._failures if f.kind == kind and f.times > 0 and f.match(body)), None)
            if failure:
                failure.times -= 1
        return failure

    @staticmethod
    def _answer(call: Call, status: int, data: Any, headers: Optional[Dict[str, str]] = None) -> web.Response:
        call.status, call.result = status, data
        return web.json_response(data, status=status, headers=headers)

    async def _graph(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        params = dict(request.query)
        body: Any = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        kind = self._kind(request.method, path, params)
        call = Call(kind, request.method, path, params, body, time.monotonic(), authorized=self._authorized(request))
        with self._lock:
            self.calls.append(call)
        if not call.authorized:
            return self._answer(call, 401, error_body(190, "Invalid OAuth access token."))
        failure = self._failure(kind, body)
        if failure:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else None
            if failure.code is None and failure.status >= 500:
                call.status = failure.status
                return web.Response(status=failure.status, text="Service Unavailable", headers=headers)
            return self._answer(
                call,
                failure.status,
                error_body(
                    failure.code or 4,
                    "(#4) Application request limit reached" if failure.code in (None, 4) else "refused on purpose",
                ),
                headers,
            )
        handler = getattr(self, "_api_" + kind, None)
        if handler is None:
            return self._answer(call, 400, error_body(100, "Unsupported request"))
        status, data = handler(path, params, body)
        return self._answer(call, status, data)

    # Messenger ----------------------------------------------------------------------------------------
    def _api_messenger_send(self, path: str, params: Dict[str, Any], body: Any) -> Tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, error_body(100, "Invalid body")
        psid = str((body.get("recipient") or {}).get("id") or "")
        message = body.get("message") or {}
        text = message.get("text")
        if not psid or not isinstance(text, str) or not text or len(text) > 2000:
            return 400, error_body(100, "(#100) Length of param message[text] must be less than or equal to 2000")
        quick = message.get("quick_replies") or []
        if len(quick) > 13 or any(
            not 0 < len(q.get("title") or "") <= 20
            or len(q.get("payload") or "") > 1000
            or q.get("content_type") != "text"
            for q in quick
        ):
            return 400, error_body(100, "(#100) Invalid quick replies")
        kind = body.get("messaging_type")
        if kind not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return 400, error_body(100, "(#100) messaging_type is required")
        with self._lock:
            last = self.last_inbound.get(psid)
        if last is not None:
            age = time.time() - last
            tagged = kind == "MESSAGE_TAG" and body.get("tag") == "HUMAN_AGENT"
            if age > 7 * DAY or (age > DAY and not tagged):
                return 400, error_body(10, "(#10) This message is sent outside of allowed window.", 2018278)
        return 200, {"recipient_id": psid, "message_id": f"m_fake{next(self._ids)}"}

    def _api_profile(self, path: str, params: Dict[str, Any], body: Any) -> Tuple[int, Any]:
        psid = path.strip("/")
        if params.get("fields") != "locale":
            return 400, error_body(100, "only the locale field is served here")
        if psid not in self.locales:
            return 400, error_body(10, "(#10) Requires pages_user_locale permission")
        return 200, {"locale": self.locales[psid], "id": psid}

    def _api_messenger_profile(self, path: str, params: Dict[str, Any], body: Any) -> Tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, error_body(100, "Invalid body")
        for item in body.get("greeting") or []:
            if item.get("locale") in self.rejected_locales or not 0 < len(item.get("text") or "") <= 160:
                return 400, error_body(100, "(#100) Invalid greeting")
        for menu in body.get("persistent_menu") or []:
            if menu.get("locale") in self.rejected_locales:
                return 400, error_body(100, "(#100) Invalid locale")
            if any(len(item.get("title") or "") > 30 for item in menu.get("call_to_actions") or []):
                return 400, error_body(100, "(#100) Title too long")
        self.profile = body
        return 200, {"result": "success"}

    # WhatsApp -----------------------------------------------------------------------------------------
    def _api_whatsapp_send(self, path: str, params: Dict[str, Any], body: Any) -> Tuple[int, Any]:
        number = path.strip("/").split("/")[0]
        if number != self.phone_number_id:
            return 400, error_body(100, "(#100) Unsupported post request.")
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp" or not body.get("to"):
            return 400, error_body(100, "(#100) The parameter messaging_product is required.")
        problem = self._whatsapp_problem(body)
        if problem:
            return 400, error_body(131009, f"(#131009) Parameter value is not valid: {problem}")
        to = str(body["to"])
        with self._lock:
            last = self.last_inbound.get(to)
        if last is not None and time.time() - last > DAY and body.get("type") != "template":
            return 400, error_body(131047, "(#131047) Re-engagement message")
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": f"wamid.FAKE{next(self._ids):08d}"}],
        }

    @staticmethod
    def _whatsapp_problem(body: Dict[str, Any]) -> Optional[str]:
        kind = body.get("type")
        if kind == "text":
            text = (body.get("text") or {}).get("body")
            return None if isinstance(text, str) and 0 < len(text) <= 4096 else "text body"
        if kind != "interactive":
            return "type"
        interactive = body.get("interactive") or {}
        text = (interactive.get("body") or {}).get("text")
        if not isinstance(text, str) or not 0 < len(text) <= 1024:
            return "interactive body"
        action = interactive.get("action") or {}
        if interactive.get("type") == "button":
            buttons = action.get("buttons") or []
            titles = [(b.get("reply") or {}).get("title") or "" for b in buttons]
            ids = [(b.get("reply") or {}).get("id") or "" for b in buttons]
            if (
                not 1 <= len(buttons) <= 3
                or any(not 0 < len(t) <= 20 for t in titles)
                or len(set(titles)) < len(titles)
            ):
                return "buttons"
            if any(not 0 < len(i) <= 256 for i in ids) or len(set(ids)) < len(ids):
                return "button ids"
            return None
        if interactive.get("type") == "list":
            label = action.get("button") or ""
            sections = action.get("sections") or []
            rows = [row for section in sections for row in section.get("rows") or []]
            if not 0 < len(label) <= 20 or not 1 <= len(rows) <= 10:
                return "list"
            if any(len(section.get("title") or "") > 24 for section in sections):
                return "section title"
            for row in rows:
                if not 0 < len(row.get("title") or "") <= 24 or len(row.get("description") or "") > 72:
                    return "row"
                if not 0 < len(row.get("id") or "") <= 200:
                    return "row id"
            if len({row["id"] for row in rows}) < len(rows):
                return "row ids"
            return None
        return "interactive type"

    def _api_media_info(self, path: str, params: Dict[str, Any], body: Any) -> Tuple[int, Any]:
        media_id = path.strip("/")
        if media_id not in self.media:
            return 400, error_body(100, "(#100) Invalid media id")
        data, mime_type = self.media[media_id]
        return 200, {
            "messaging_product": "whatsapp",
            "url": f"{self.url}/media/{media_id}",
            "mime_type": mime_type,
            "sha256": "0" * 64,
            "file_size": len(data),
            "id": media_id,
        }

    async def _media_download(self, request: web.Request) -> web.Response:
        media_id = request.match_info["media_id"]
        call = Call("media_download", "GET", media_id, {}, None, time.monotonic(), authorized=self._authorized(request))
        with self._lock:
            self.calls.append(call)
        if not call.authorized:
            call.status = 401
            return web.Response(status=401, text="unauthorized")
        if self._failure("media_download", None) or media_id not in self.media:
            call.status = 404
            return web.Response(status=404, text="not found")
        data, mime_type = self.media[media_id]
        return web.Response(body=data, content_type=mime_type)

    async def _cdn(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        call = Call(
            "cdn", "GET", name, {}, None, time.monotonic(), authorized="Authorization" not in request.headers
        )  # the CDN never needs our token
        with self._lock:
            self.calls.append(call)
        if name not in self.files:
            call.status = 404
            return web.Response(status=404, text="not found")
        data, mime_type = self.files[name]
        return web.Response(body=data, content_type=mime_type)


# -- webhook bodies as Meta posts them ------------------------------------------------------------------

_mids = itertools.count(1)


def messenger_event(psid: str, **content: Any) -> Dict[str, Any]:
    return {"sender": {"id": psid}, "recipient": {"id": "PAGE_ID_1"}, "timestamp": int(time.time() * 1000), **content}


def messenger_body(*events: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "object": "page",
        "entry": [{"id": "PAGE_ID_1", "time": int(time.time() * 1000), "messaging": list(events)}],
    }


def messenger_text(psid: str, text: str, mid: Optional[str] = None) -> Dict[str, Any]:
    return messenger_event(psid, message={"mid": mid or f"m_user{next(_mids)}", "text": text})


def messenger_quick_reply(psid: str, title: str, payload: str) -> Dict[str, Any]:
    return messenger_event(
        psid, message={"mid": f"m_user{next(_mids)}", "text": title, "quick_reply": {"payload": payload}}
    )


def messenger_postback(psid: str, payload: str, title: str = "Get Started") -> Dict[str, Any]:
    return messenger_event(psid, postback={"mid": f"m_pb{next(_mids)}", "title": title, "payload": payload})


def messenger_attachment(psid: str, kind: str, url: str = "https://cdn.example/x", **payload: Any) -> Dict[str, Any]:
    return messenger_event(
        psid,
        message={"mid": f"m_user{next(_mids)}", "attachments": [{"type": kind, "payload": {"url": url, **payload}}]},
    )


def whatsapp_body(
    phone_number_id: str,
    messages: Iterable[Dict[str, Any]] = (),
    statuses: Iterable[Dict[str, Any]] = (),
    name: str = "Somchai Test",
) -> Dict[str, Any]:
    messages, statuses = list(messages), list(statuses)
    value: Dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
    }
    if messages:
        value["contacts"] = [{"profile": {"name": name}, "wa_id": messages[0]["from"]}]
        value["messages"] = messages
    if statuses:
        value["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA_ID_1", "changes": [{"value": value, "field": "messages"}]}],
    }


def wamid() -> str:
    return f"wamid.HBgLNjY4MTIzNDU2NzgVAgASGBQz{next(_mids):012d}"


def whatsapp_message(
    wa_id: str, kind: str, content: Dict[str, Any], message_id: Optional[str] = None, at: Optional[float] = None
) -> Dict[str, Any]:
    return {
        "from": wa_id,
        "id": message_id or wamid(),
        "timestamp": str(int(at or time.time())),
        "type": kind,
        kind: content,
    }


def whatsapp_text(
    wa_id: str, text: str, message_id: Optional[str] = None, at: Optional[float] = None
) -> Dict[str, Any]:
    return whatsapp_message(wa_id, "text", {"body": text}, message_id, at)


def whatsapp_reply(wa_id: str, reply_id: str, title: str, list_reply: bool = False) -> Dict[str, Any]:
    key = "list_reply" if list_reply else "button_reply"
    return whatsapp_message(wa_id, "interactive", {"type": key, key: {"id": reply_id, "title": title}})


def whatsapp_failed(wa_id: str, message_id: str, code: int = 131047) -> Dict[str, Any]:
    return {
        "id": message_id,
        "status": "failed",
        "timestamp": str(int(time.time())),
        "recipient_id": wa_id,
        "errors": [
            {
                "code": code,
                "title": "Re-engagement message",
                "error_data": {"details": "more than 24 hours have passed"},
            }
        ],
    }


# -- the channel under test -------------------------------------------------------------------------------


class StubAssistant:
    """Stands for Rasa's ``on_new_message``: records every message and answers
    from a script; keeps a tracker per sender in the agent's store, so deleting
    it can be checked."""

    def __init__(self, agent: Any = None) -> None:
        self.agent = agent
        self.messages: List[Any] = []
        self.script: Dict[str, List[Dict[str, Any]]] = {}
        self.delay = 0.0

    @property
    def texts(self) -> List[str]:
        return [m.text for m in self.messages]

    async def __call__(self, message: Any) -> None:
        from content.texts import text as message_text

        self.messages.append(message)
        if self.agent is not None:
            from rasa.shared.core.events import UserUttered
            from rasa.shared.core.trackers import DialogueStateTracker

            store = self.agent.tracker_store
            tracker = await store.retrieve(message.sender_id) or DialogueStateTracker(message.sender_id, [])
            tracker.update(UserUttered(message.text, input_channel=message.input_channel, metadata=message.metadata))
            await store.save(tracker)
        if self.delay:
            await asyncio.sleep(self.delay)
        out, sender, text = message.output_channel, message.sender_id, message.text
        if text == "boom":
            raise RuntimeError("a turn that fails")
        if text in ("/request_data_deletion", "delete my data"):
            replies = [
                {"text": message_text("deleted_app_copy", "en")},
                {"custom": {"waypoint": "forget_conversation", "language": "en"}},
            ]
        elif text == "silence":
            replies = []
        elif text in self.script:
            replies = [dict(m) for m in self.script[text]]
        else:
            replies = [{"text": f"echo: {text}"}]
        for reply in replies:
            await out.send_response(sender, reply)


def small_agent() -> Any:
    from rasa.core.lock_store import InMemoryLockStore
    from rasa.core.tracker_store import InMemoryTrackerStore
    from rasa.shared.core.domain import Domain

    return types.SimpleNamespace(
        tracker_store=InMemoryTrackerStore(Domain.empty()), lock_store=InMemoryLockStore(), processor=None
    )


def make_relay(app: Any = None) -> Any:
    """A hand-off relay of its own (cases in memory), as a Rasa server has one."""
    from handoff.queues import FallbackQueues, MemoryQueues
    from handoff.relay import Relay
    from handoff.repository import MemoryRepository

    relay = Relay(MemoryRepository(), FallbackQueues(None, MemoryQueues()), timeout=600)
    relay.app = app
    return relay


async def attach_operators(relay: Any, telegram: tg.FakeTelegram, token: str, chat_id: int) -> Any:
    """The operators' Telegram chat for ``relay`` (the Telegram channel's real
    client against the fake); returns the client."""
    from channels.telegram.bot import TelegramBot
    from handoff.operators import OperatorsDesk

    client = TelegramBot(token, telegram.url, backoff=0.01, max_attempts=2)
    await client.start()
    relay.desk = OperatorsDesk(relay, client, chat_id=chat_id, language="en")
    return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChannelServer:
    """A Sanic app with one channel's real blueprint under
    ``/webhooks/<name>/``, served on a loopback port in the test's own event
    loop (so the channel's background tasks run beside the test)."""

    def __init__(self, channel: Any, assistant: Any, agent: Any = None) -> None:
        self.channel, self.assistant, self.agent = channel, assistant, agent
        self.port = free_port()
        self.server: Any = None
        self.app: Any = None
        self.http: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/{self.channel.name()}"

    async def __aenter__(self) -> "ChannelServer":
        import httpx
        from sanic import Sanic

        Sanic.test_mode = True  # several apps in one process (Sanic's own switch for tests)
        app = Sanic(f"test_{self.channel.name()}_{uuid.uuid4().hex[:12]}")
        app.config.ACCESS_LOG = False
        app.config.MOTD = False
        app.ctx.agent = self.agent
        self.app = app
        app.blueprint(self.channel.blueprint(self.assistant), url_prefix=f"/webhooks/{self.channel.name()}")
        self.server = await app.create_server(
            host="127.0.0.1", port=self.port, return_asyncio_server=True, access_log=False
        )
        await self.server.startup()  # create_server has already started listening
        await self.server.before_start()
        await self.server.after_start()
        self.http = httpx.AsyncClient(timeout=30)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.aclose()
        await self.server.before_stop()
        closing = self.server.close()
        if closing is not None:
            await closing
        await self.server.after_stop()

    async def post(
        self, body: Any, secret: Optional[str], raw: Optional[bytes] = None, signature: Optional[str] = None
    ) -> Any:
        from channels.meta import sign

        data = raw if raw is not None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        elif secret is not None:
            headers["X-Hub-Signature-256"] = sign(data, secret)
        return await self.http.post(self.url + "/webhook", content=data, headers=headers)

    async def get(self, params: Dict[str, str]) -> Any:
        return await self.http.get(self.url + "/webhook", params=params)


# -- the real servers behind a Meta channel (end-to-end tests) ---------------------------------------------------


@contextlib.contextmanager
def meta_servers(var: Any, channel: str, env: Dict[str, str]) -> Iterator[Any]:
    """An action server and a Rasa server with the REST channel and ``channel``
    (e.g. "channels.messenger.MessengerInput"), configured by ``env``."""
    from tests.servers import ROOT, ActionServer, RasaServer

    credentials = var / "credentials.yml"
    credentials.write_text(f"channels.rest.RestInput:\n{channel}:\n")
    actions = ActionServer(var / "actions", env)
    actions.start()
    rasa = RasaServer(var / "rasa", ROOT / "endpoints.yml", actions, credentials=credentials, env=env)
    try:
        rasa.start()
        yield rasa
    finally:
        rasa.stop()
        actions.stop()


def post_signed(server: Any, platform: str, body: Dict[str, Any], secret: str) -> int:
    """A signed POST to /webhooks/<platform>/webhook; its HTTP status."""
    import urllib.request

    from channels.meta import sign

    raw = json.dumps(body).encode()
    request = urllib.request.Request(
        f"{server.url}/webhooks/{platform}/webhook",
        data=raw,
        method="POST",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(raw, secret)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def settled_texts(texts: Callable[[], List[str]], at_least: int, quiet: float = 2.0, timeout: float = 90) -> List[str]:
    """The texts sent to a user once there are ``at_least`` and no new one has
    come for ``quiet`` seconds (a turn's messages go out one by one)."""
    deadline = time.monotonic() + timeout
    seen, since = texts(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = texts()
        if now != seen:
            seen, since = now, time.monotonic()
        elif len(seen) >= at_least and time.monotonic() - since >= quiet:
            return seen
    raise AssertionError(f"{at_least} message(s) to the user never came, or never stopped coming: {seen}")
