"""A fake Telegram Bot API server for the tests: a small aiohttp server on a
loopback port, in its own thread, that answers like Telegram (``{"ok": true,
"result": ...}``), records every call, can fail on purpose (429 with
``retry_after``, 502) and serves queued updates to getUpdates.

python-telegram-bot's real HTTP stack talks to it through ``base_url``
(``TELEGRAM_API_BASE_URL``); so does the Rasa server started by the tests.
Files: ``add_file`` registers a file a user sent (getFile answers for it and
``/file/bot<token>/<path>`` serves its bytes, as Telegram's file server does);
sendVoice, sendPhoto and sendDocument take multipart uploads and keep the
uploaded bytes in the call (``Call.files``).

Also builds the update JSON Telegram posts to a webhook.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from aiohttp import web

BOT_ID = 777000111
BOT_USERNAME = "waypoint_test_bot"
JSON_FIELDS = {
    "reply_markup",
    "message_ids",
    "allowed_updates",
    "link_preview_options",
    "commands",
    "chat_id",
    "message_id",
    "offset",
    "timeout",
    "limit",
    "max_connections",
    "drop_pending_updates",
    "reply_parameters",
    "user_id",
}


@dataclasses.dataclass
class Call:
    method: str
    params: Dict[str, Any]
    at: float  # time.monotonic()
    status: int = 200
    result: Any = None
    files: Dict[str, bytes] = dataclasses.field(default_factory=dict)  # uploaded files: field -> bytes


@dataclasses.dataclass
class Failure:
    method: str
    status: int
    retry_after: Optional[int]
    times: int
    match: Callable[[Dict[str, Any]], bool]


class FakeTelegram:
    def __init__(self, token: str):
        self.token = token
        self.calls: List[Call] = []
        self._failures: List[Failure] = []
        self._updates: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._message_ids = itertools.count(50000)  # the bot's messages; tests number the users' below this
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self.port = 0
        self.webhook: Optional[Dict[str, Any]] = None
        self.members: Dict[tuple, str] = {}  # (chat id, user id) -> getChatMember status; others have "left"
        self.files: Dict[str, Dict[str, Any]] = {}  # file_id -> {"data": bytes, "path": str}
        self._uploads = itertools.count(1)

    # lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeTelegram":
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application()
            app.router.add_route("*", "/bot{token}/{method}", self._handle)
            app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._download)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-telegram", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake Telegram did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # controlling it --------------------------------------------------------------------------------
    def fail(
        self,
        method: str,
        status: int = 429,
        retry_after: Optional[int] = 1,
        times: int = 1,
        match: Callable[[Dict[str, Any]], bool] = lambda params: True,
    ) -> None:
        """The next ``times`` calls of ``method`` matching ``match`` fail with ``status``."""
        with self._lock:
            self._failures.append(Failure(method, status, retry_after, times, match))

    def queue_update(self, update: Dict[str, Any]) -> None:
        with self._lock:
            self._updates.append(update)

    def set_member(self, chat_id: int, user_id: int, status: str = "member") -> None:
        with self._lock:
            self.members[(int(chat_id), int(user_id))] = status

    def add_file(self, file_id: str, data: bytes, path: Optional[str] = None) -> None:
        """A file a user sent: getFile describes it, the file server serves it."""
        with self._lock:
            self.files[file_id] = {"data": bytes(data), "path": path or f"documents/{file_id}.bin"}

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._failures.clear()

    # reading what happened -------------------------------------------------------------------------
    def calls_of(self, method: str, chat_id: Optional[int] = None, ok_only: bool = True) -> List[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.method == method
                and (not ok_only or c.status == 200)
                and (chat_id is None or c.params.get("chat_id") == chat_id)
            ]

    def texts_to(self, chat_id: int) -> List[str]:
        return [c.params.get("text", "") for c in self.calls_of("sendMessage", chat_id)]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 60, what: str = "a call") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(0.1)
        recent = self.calls[-30:]
        raise AssertionError(
            f"the fake Telegram never saw {what}; calls: "
            + ", ".join(f"{c.method}{'' if c.status == 200 else f'({c.status})'}" for c in recent)
            + "; texts: "
            + " | ".join(c.params.get("text", "")[:80] for c in recent if c.method == "sendMessage")
        )

    def wait_for_texts(self, chat_id: int, count: int = 1, timeout: float = 90) -> List[str]:
        return self.wait_for(
            lambda: (lambda t: t if len(t) >= count else None)(self.texts_to(chat_id)),
            timeout,
            f"{count} message(s) to chat {chat_id}",
        )

    # the API ---------------------------------------------------------------------------------------
    async def _params(self, request: web.Request, files: Optional[Dict[str, bytes]] = None) -> Dict[str, Any]:
        raw: Dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            raw.update(await request.json())
        elif request.can_read_body:
            for key, value in (await request.post()).items():
                if isinstance(value, str):
                    raw[key] = value
                elif hasattr(value, "file"):  # an uploaded file (multipart)
                    data = value.file.read()
                    if files is not None:
                        files[key] = data
                    raw[key] = {"filename": value.filename, "size": len(data)}
        params = {}
        for key, value in raw.items():
            if key in JSON_FIELDS and isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            params[key] = value
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        files: Dict[str, bytes] = {}
        params = await self._params(request, files)
        call = Call(method, params, time.monotonic(), files=files)
        with self._lock:
            self.calls.append(call)
            failure = next((f for f in self._failures if f.method == method and f.times > 0 and f.match(params)), None)
            if failure:
                failure.times -= 1
        if failure:
            call.status = failure.status
            if failure.status == 429:
                return web.json_response(
                    {
                        "ok": False,
                        "error_code": 429,
                        "description": f"Too Many Requests: retry after {failure.retry_after}",
                        "parameters": {"retry_after": failure.retry_after},
                    },
                    status=429,
                )
            if failure.status == 400:
                return web.json_response(
                    {"ok": False, "error_code": 400, "description": "Bad Request: message can't be deleted"}, status=400
                )
            return web.Response(status=failure.status, text="Bad Gateway")
        if method == "getUpdates":
            return await self._get_updates(params)
        handler = getattr(self, "_api_" + method, None)
        if handler is None:
            call.status = 404
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        try:
            call.result = handler(params)
            return web.json_response({"ok": True, "result": call.result})
        except web.HTTPException as error:
            call.status = error.status
            raise

    def _bot_user(self) -> Dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Waypoint",
            "username": BOT_USERNAME,
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _api_getMe(self, params: Dict[str, Any]) -> Any:
        return self._bot_user()

    def _api_sendMessage(self, params: Dict[str, Any]) -> Any:
        chat_id = int(params["chat_id"])
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "from": self._bot_user(),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "text": params.get("text", ""),
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        return message

    def _media_message(self, params: Dict[str, Any], content: Dict[str, Any]) -> Dict[str, Any]:
        chat_id = int(params["chat_id"])
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "from": self._bot_user(),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            **content,
        }
        if params.get("caption"):
            message["caption"] = params["caption"]
        return message

    def _upload_id(self, params: Dict[str, Any], field: str) -> str:
        if not isinstance(params.get(field), dict):  # a file_id or URL instead of an upload
            return str(params.get(field) or "")
        return f"uploaded-{field}-{next(self._uploads)}"

    def _api_sendVoice(self, params: Dict[str, Any]) -> Any:
        file_id = self._upload_id(params, "voice")
        return self._media_message(
            params,
            {"voice": {"file_id": file_id, "file_unique_id": file_id[-16:], "duration": 1, "mime_type": "audio/ogg"}},
        )

    def _api_sendPhoto(self, params: Dict[str, Any]) -> Any:
        file_id = self._upload_id(params, "photo")
        return self._media_message(
            params, {"photo": [{"file_id": file_id, "file_unique_id": file_id[-16:], "width": 90, "height": 90}]}
        )

    def _api_sendDocument(self, params: Dict[str, Any]) -> Any:
        file_id = self._upload_id(params, "document")
        return self._media_message(params, {"document": {"file_id": file_id, "file_unique_id": file_id[-16:]}})

    def _api_getFile(self, params: Dict[str, Any]) -> Any:
        file_id = str(params.get("file_id") or "")
        with self._lock:
            known = self.files.get(file_id)
        if known is None:
            raise web.HTTPBadRequest(
                text=json.dumps({"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}),
                content_type="application/json",
            )
        return {
            "file_id": file_id,
            "file_unique_id": file_id[-16:],
            "file_size": len(known["data"]),
            "file_path": known["path"],
        }

    async def _download(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        call = Call("download", {"path": path}, time.monotonic())
        with self._lock:
            self.calls.append(call)
            found = next((f["data"] for f in self.files.values() if f["path"] == path), None)
        if request.match_info["token"] != self.token or found is None:
            call.status = 404
            return web.Response(status=404, text="Not Found")
        return web.Response(body=found, content_type="application/octet-stream")

    def _api_editMessageText(self, params: Dict[str, Any]) -> Any:
        chat_id = int(params["chat_id"])
        message = {
            "message_id": int(params["message_id"]),
            "date": int(time.time()),
            "edit_date": int(time.time()),
            "from": self._bot_user(),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "text": params.get("text", ""),
        }
        if (params.get("reply_markup") or {}).get("inline_keyboard"):
            message["reply_markup"] = params["reply_markup"]
        return message

    def _api_getChatMember(self, params: Dict[str, Any]) -> Any:
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        with self._lock:
            status = self.members.get((chat_id, user_id), "left")
        member: Dict[str, Any] = {"status": status, "user": {"id": user_id, "is_bot": False, "first_name": "Someone"}}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(
                {
                    flag: False
                    for flag in (
                        "can_be_edited",
                        "is_anonymous",
                        "can_manage_chat",
                        "can_delete_messages",
                        "can_manage_video_chats",
                        "can_restrict_members",
                        "can_promote_members",
                        "can_change_info",
                        "can_invite_users",
                        "can_post_stories",
                        "can_edit_stories",
                        "can_delete_stories",
                    )
                }
            )
        return member

    def _api_answerCallbackQuery(self, params: Dict[str, Any]) -> Any:
        return True

    def _api_editMessageReplyMarkup(self, params: Dict[str, Any]) -> Any:
        return True

    def _api_deleteMessages(self, params: Dict[str, Any]) -> Any:
        ids = params.get("message_ids") or []
        if not 1 <= len(ids) <= 100:
            raise web.HTTPBadRequest(
                text=json.dumps({"ok": False, "error_code": 400, "description": "Bad Request: too many messages"}),
                content_type="application/json",
            )
        return True

    def _api_deleteMessage(self, params: Dict[str, Any]) -> Any:
        return True

    def _api_leaveChat(self, params: Dict[str, Any]) -> Any:
        return True

    def _api_setWebhook(self, params: Dict[str, Any]) -> Any:
        self.webhook = params
        return True

    def _api_deleteWebhook(self, params: Dict[str, Any]) -> Any:
        self.webhook = None
        return True

    def _api_setMyCommands(self, params: Dict[str, Any]) -> Any:
        return True

    def _api_getWebhookInfo(self, params: Dict[str, Any]) -> Any:
        return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}

    async def _get_updates(self, params: Dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 2.0)  # short long-polls keep tests quick
        while True:
            with self._lock:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = list(self._updates)
            if ready or time.monotonic() >= deadline:
                return web.json_response({"ok": True, "result": ready})
            await asyncio.sleep(0.05)


# -- updates as Telegram posts them ------------------------------------------------------------------

_update_ids = itertools.count(900000)
_message_ids = itertools.count(100)


def next_update_id() -> int:
    return next(_update_ids)


def next_message_id() -> int:
    return next(_message_ids)


def user(user_id: int, language_code: Optional[str] = "en") -> Dict[str, Any]:
    data = {"id": user_id, "is_bot": False, "first_name": "Test"}
    if language_code:
        data["language_code"] = language_code
    return data


def private_chat(chat_id: int) -> Dict[str, Any]:
    return {"id": chat_id, "type": "private", "first_name": "Test"}


def message(
    chat_id: int,
    language_code: Optional[str] = "en",
    message_id: Optional[int] = None,
    chat: Optional[Dict[str, Any]] = None,
    **content: Any,
) -> Dict[str, Any]:
    data = {
        "message_id": message_id or next_message_id(),
        "date": int(time.time()),
        "from": user(chat_id if chat is None else 4242, language_code),
        "chat": chat or private_chat(chat_id),
    }
    data.update(content)
    return data


def text_update(
    chat_id: int,
    text: str,
    language_code: Optional[str] = "en",
    update_id: Optional[int] = None,
    message_id: Optional[int] = None,
) -> Dict[str, Any]:
    content: Dict[str, Any] = {"text": text}
    if text.startswith("/"):
        content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {
        "update_id": update_id or next_update_id(),
        "message": message(chat_id, language_code, message_id, **content),
    }


def sticker_update(chat_id: int, language_code: Optional[str] = "en") -> Dict[str, Any]:
    sticker = {
        "file_id": "CAACAgIAAxkBAAEBsticker",
        "file_unique_id": "AgADsticker",
        "type": "regular",
        "width": 512,
        "height": 512,
        "is_animated": False,
        "is_video": False,
        "emoji": "🙂",
    }
    return {"update_id": next_update_id(), "message": message(chat_id, language_code, sticker=sticker)}


def photo_update(
    chat_id: int,
    caption: Optional[str] = None,
    language_code: Optional[str] = "en",
    file_id: str = "AgACAgIAAxkBAAEBphoto",
) -> Dict[str, Any]:
    """A photo in the sizes Telegram gives (the largest last; ``file_id`` is the largest's)."""
    photo = [
        {"file_id": file_id + "-small", "file_unique_id": "AQADphotos", "width": 90, "height": 90},
        {"file_id": file_id, "file_unique_id": "AQADphoto", "width": 800, "height": 800},
    ]
    content: Dict[str, Any] = {"photo": photo}
    if caption:
        content["caption"] = caption
    return {"update_id": next_update_id(), "message": message(chat_id, language_code, **content)}


def voice_update(
    chat_id: int, file_id: str = "AwACAgIAAxkBAAEBvoice", duration: int = 3, language_code: Optional[str] = "en"
) -> Dict[str, Any]:
    voice = {"file_id": file_id, "file_unique_id": "AgADvoice", "duration": duration, "mime_type": "audio/ogg"}
    return {"update_id": next_update_id(), "message": message(chat_id, language_code, voice=voice)}


def location_update(chat_id: int, language_code: Optional[str] = "en") -> Dict[str, Any]:
    return {
        "update_id": next_update_id(),
        "message": message(chat_id, language_code, location={"latitude": 3.139, "longitude": 101.6869}),
    }


def edited_update(chat_id: int, text: str, message_id: int, language_code: Optional[str] = "en") -> Dict[str, Any]:
    edited = message(chat_id, language_code, message_id, text=text)
    edited["edit_date"] = int(time.time())
    return {"update_id": next_update_id(), "edited_message": edited}


def group_update(group_id: int, text: str, language_code: Optional[str] = "en") -> Dict[str, Any]:
    chat = {"id": group_id, "type": "group", "title": "Some group"}
    return {"update_id": next_update_id(), "message": message(group_id, language_code, chat=chat, text=text)}


def person(
    user_id: int, first_name: str, username: Optional[str] = None, language_code: Optional[str] = "en"
) -> Dict[str, Any]:
    data = {"id": user_id, "is_bot": False, "first_name": first_name}
    if username:
        data["username"] = username
    if language_code:
        data["language_code"] = language_code
    return data


def named_text_update(chat_id: int, text: str, who: Dict[str, Any]) -> Dict[str, Any]:
    """A private message from a user with a name and username of their own."""
    update = text_update(chat_id, text, language_code=who.get("language_code"))
    update["message"]["from"] = who
    update["message"]["chat"] = {
        "id": chat_id,
        "type": "private",
        "first_name": who["first_name"],
        **({"username": who["username"]} if who.get("username") else {}),
    }
    return update


def group_chat(group_id: int) -> Dict[str, Any]:
    return {"id": group_id, "type": "supergroup", "title": "Counsellors"}


def group_message_update(
    group_id: int,
    who: Dict[str, Any],
    text: Optional[str] = None,
    reply_to: Optional[Dict[str, Any]] = None,
    **content: Any,
) -> Dict[str, Any]:
    """A message in a group from ``who``, optionally replying to one of the bot's messages
    (``reply_to``: the message as the fake returned it)."""
    data: Dict[str, Any] = {
        "message_id": next_message_id(),
        "date": int(time.time()),
        "from": who,
        "chat": group_chat(group_id),
    }
    if text is not None:
        data["text"] = text
        if text.startswith("/"):
            data["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    if reply_to is not None:
        data["reply_to_message"] = {**reply_to, "chat": group_chat(group_id)}
    data.update(content)
    return {"update_id": next_update_id(), "message": data}


def group_callback_update(group_id: int, who: Dict[str, Any], data: str, message: Dict[str, Any]) -> Dict[str, Any]:
    """A press on an inline button of the bot's ``message`` (as the fake returned it) in a group."""
    return {
        "update_id": next_update_id(),
        "callback_query": {
            "id": f"cq{next_update_id()}",
            "from": who,
            "chat_instance": "-777",
            "message": {**message, "chat": group_chat(group_id)},
            "data": data,
        },
    }


def callback_update(chat_id: int, data: str, message_id: int, language_code: Optional[str] = "en") -> Dict[str, Any]:
    bot_message = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": private_chat(chat_id),
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "Waypoint"},
        "text": "…",
    }
    return {
        "update_id": next_update_id(),
        "callback_query": {
            "id": f"cq{next_update_id()}",
            "from": user(chat_id, language_code),
            "chat_instance": "-1234",
            "message": bot_message,
            "data": data,
        },
    }


# -- driving a Telegram channel without Rasa ---------------------------------------------------------


class FakeAssistant:
    """Stands in for Rasa's ``on_new_message`` in tests that drive
    ``channels.telegram.TelegramInput`` directly: records what reached the
    assistant and answers as the assistant would, in English: "delete my data"
    gets the ``deleted`` text and the ``forget_conversation`` marker, a request
    for a person the ``handoff_waiting`` text and a ``handoff_requested``
    marker (its case ids in ``cases``), anything else one short answer."""

    DELETE = ("/request_data_deletion", "delete my data")
    HUMAN = ("/request_human",)
    ANSWER = "The assistant's answer."

    def __init__(self, country: Optional[str] = "MY") -> None:
        self.texts: List[str] = []
        self.senders: List[str] = []
        self.cases: List[str] = []
        self.country = country

    async def __call__(self, message: Any) -> None:
        import os

        from content.texts import text as message_text

        self.texts.append(message.text)
        self.senders.append(message.sender_id)
        out, sender = message.output_channel, message.sender_id
        if message.text in self.DELETE:
            await out.send_response(sender, {"text": message_text("deleted", "en")})
            await out.send_response(sender, {"custom": {"waypoint": "forget_conversation", "language": "en"}})
        elif message.text in self.HUMAN:
            case_id = "WP-" + os.urandom(3).hex().upper()
            self.cases.append(case_id)
            await out.send_response(sender, {"text": message_text("handoff_waiting", "en")})
            await out.send_response(
                sender,
                {
                    "custom": {
                        "waypoint": "handoff_requested",
                        "case_id": case_id,
                        "language": "en",
                        "country": self.country,
                        "topic": None,
                        "summary": None,
                    }
                },
            )
        else:
            await out.send_response(sender, {"text": self.ANSWER})


async def settle(*owners: Any, timeout: float = 20) -> None:
    """Waits until the background work of channels and relays (pass both) is
    done; a deletion notice waiting to go and a case's expiry timer are not work."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = []
        for owner in owners:
            idle = set(getattr(owner, "pending_deletions", {})) | set(getattr(owner, "timers", {}).values())
            busy += [t for t in list(getattr(owner, "tasks", ())) if not t.done() and t not in idle]
        if not busy:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("background work did not finish")
