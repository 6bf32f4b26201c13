"""Waypoint's Telegram channel: python-telegram-bot 22 inside the Rasa server.

How an update flows: the webhook checks the secret (403 otherwise), drops an
update it has already answered (``update_id``, in the shared channel store, so
a retry that reaches another server is dropped too), answers 200 at once and
handles the update in a background task, one chat at a time in arrival order.
Polling feeds the same ``dispatch``. Text goes to Rasa with the metadata
``language_hint`` (Telegram's ``language_code``); replies go back through
:class:`TelegramOutput` (split under Telegram's limit, buttons as inline
keyboards, long payloads behind short ids kept in the shared store).

Why not python-telegram-bot's ``ext.Application``: Waypoint needs per-chat
ordering inside Rasa's own Sanic server, de-duplication and button payloads that
work across several servers (PTB's callback-data cache and persistence are per
process), and the message ids of a chat for deleting both sides; PTB's
``Update.de_json`` and its ``Bot`` (wrapped in channels/telegram/bot.py, with
its HTTPX request class) are used as they are.

Privacy: Rasa's sender id is a keyed hash of the chat id (channels/base.py),
so the tracker store never holds a Telegram identity. The chat id needed to
answer is kept encrypted under that hash (channels/state.py) for 48 hours, and
so are the ids of the chat's messages (never their text), so that ``/delete``
or "delete my data" can delete both sides of the chat for the 48 hours the Bot
API allows.

The hand-off (handoff/): updates from ``WAYPOINT_OPERATORS_CHAT_ID`` go to the
operators' desk; every user message goes through the relay first (a live case
takes it; a crisis is answered at once); ``/end`` and ``/cancel`` close or
withdraw a case; voice notes and photos during a live case reach the counsellor.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Set, Tuple

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

from channels import base
from channels.state import ChannelState, get_state
from channels.telegram.bot import TelegramBot
from channels.telegram.settings import Settings
from content import languages
from content.text import cut_text, split_text
from content.texts import text as message_text

logger = logging.getLogger(__name__)

PLATFORM = "telegram"
WEBHOOK_PATH = "/webhooks/telegram/webhook"
CALLBACK_DATA_LIMIT = 64  # bytes
PAYLOAD_PREFIX = "~p:"
COMMAND_PAYLOADS = {"help": "/ask_help_helplines", "human": "/request_human"}
DELETE_PAYLOAD = "/request_data_deletion"
MEDIA = (
    "sticker",
    "photo",
    "voice",
    "audio",
    "video",
    "video_note",
    "document",
    "animation",
    "dice",
    "poll",
    "game",
    "story",
    "invoice",
    "paid_media",
)
RELAYED_MEDIA = {"voice": "voice", "audio": "voice", "video_note": "voice", "photo": "photo"}


def sender_id_for(chat_id: int, secret: bytes) -> str:
    return base.sender_id_for(PLATFORM, chat_id, secret, prefix="tg")


class TelegramOutput(OutputChannel):
    """Sends one turn's replies to one chat and notes what it sent."""

    def __init__(self, channel: "TelegramInput", chat_id: Optional[int] = None):
        self.channel = channel
        self.chat_id = chat_id
        self.sent: List[int] = []
        self.markers: List[Dict[str, Any]] = []
        self.replies = 0

    @classmethod
    def name(cls) -> str:
        return PLATFORM

    @property
    def forget_requested(self) -> bool:
        return base.marker(({"custom": m} for m in self.markers), base.FORGET) is not None

    def _chat(self, recipient_id: str) -> Optional[int]:
        return self.chat_id if self.chat_id is not None else self.channel.chat_of(recipient_id)

    async def send_response(self, recipient_id: str, message: Dict[str, Any]) -> None:
        custom = message.get("custom")
        if custom is not None:
            await self.send_custom_json(recipient_id, custom)
        lines = [message.get("text") or ""]
        for key in ("image", "attachment"):
            if isinstance(message.get(key), str):
                lines.append(message[key])
        text = "\n\n".join(line for line in lines if line).strip()
        buttons = message.get("buttons") or message.get("quick_replies") or []
        if text or buttons:
            await self.send_text_with_buttons(recipient_id, text, buttons)

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self.send_text_with_buttons(recipient_id, text, [])

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: List[Dict[str, Any]], **kwargs: Any
    ) -> None:
        chat_id = self._chat(recipient_id)
        if chat_id is None:
            logger.warning("Telegram: no chat known for a reply")
            return
        self.replies += 1
        self.sent.extend(await self.channel.send_and_log(chat_id, recipient_id, text, buttons))

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await self.send_text_message(recipient_id, image)

    async def send_attachment(self, recipient_id: str, attachment: str, **kwargs: Any) -> None:
        await self.send_text_message(recipient_id, str(attachment))

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        if base.is_marker(json_message):
            self.markers.append(json_message)  # acted on after the turn (TelegramInput.to_rasa)


class TelegramInput(InputChannel):
    """The ``telegram`` channel: webhook ``/webhooks/telegram/webhook``, or polling."""

    def __init__(self, settings: Optional[Settings] = None, state: Optional[ChannelState] = None):
        self.settings = settings or Settings.from_env()
        self._state = state
        self.client: Optional[TelegramBot] = None
        self.locks = base.KeyedLocks()
        self.limiter = base.Throttle(self.settings.max_messages_per_minute)
        self.tasks: Set[asyncio.Task] = set()
        self.pending_deletions: Dict[asyncio.Task, Tuple[int, str, List[int]]] = {}
        self.app: Any = None
        self.on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]] = None
        self._poller: Optional[asyncio.Task] = None
        self.secret = base.id_secret()
        if not self.settings.enabled:
            logger.info("Telegram channel off: TELEGRAM_BOT_TOKEN is not set")

    @classmethod
    def name(cls) -> str:
        return PLATFORM

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "TelegramInput":
        if credentials:
            logger.warning("Telegram: credentials.yml entries are ignored; the channel reads its environment")
        return cls()

    def get_output_channel(self) -> Optional[OutputChannel]:
        return TelegramOutput(self) if self.settings.enabled else None

    @property
    def state(self) -> ChannelState:
        if self._state is None:
            self._state = get_state()
        return self._state

    @property
    def relay(self) -> Any:
        return base.relay_for(self.app)

    def chat_of(self, sender: str) -> Optional[int]:
        address = self.state.address(PLATFORM, sender)
        return int(address) if address and re.fullmatch(r"-?\d+", address) else None

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self, app: Any = None) -> None:
        if not self.settings.enabled or self.client is not None:
            return
        self.app = app or self.app
        self.client = TelegramBot(self.settings.token, self.settings.api_base_url)
        await self.client.start()
        relay = self.relay
        relay.senders[PLATFORM] = self.push
        from handoff import attach_operators

        attach_operators(relay, self.client)
        if self.settings.polling:
            await self.client.delete_webhook()
            self._poller = asyncio.ensure_future(self._poll())
            logger.info("Telegram channel on: polling getUpdates (webhook removed)")
        else:
            logger.info("Telegram channel on: webhook %s", WEBHOOK_PATH)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        for task, (chat_id, sender, ids) in list(self.pending_deletions.items()):
            task.cancel()
            await self._delete_notice(chat_id, sender, ids)  # do not leave the confirmation behind
        self.pending_deletions.clear()
        busy = [task for task in self.tasks if not task.done()]
        if busy:
            await asyncio.wait(busy, timeout=15)
        if self.client is not None:
            await self.client.stop()
            self.client = None

    # -- the blueprint --------------------------------------------------------------------------------
    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        self.on_new_message = on_new_message
        hook = Blueprint("telegram_webhook")

        @hook.listener("after_server_start")
        async def _started(app: Any, _loop: Any) -> None:
            self.app = app
            await self.start(app)

        @hook.listener("before_server_stop")
        async def _stopping(_app: Any, _loop: Any) -> None:
            await self.stop()

        @hook.route("/", methods=["GET"])
        async def health(_request: Request) -> Any:
            return response.json({"status": "ok" if self.settings.enabled else "off"})

        @hook.route("/webhook", methods=["POST"])
        async def webhook(request: Request) -> Any:
            if not self.settings.enabled or self.client is None:
                return response.json({"status": "Telegram channel is off"}, status=503)
            given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
            if not hmac.compare_digest(given.encode(), self.settings.webhook_secret.encode()):
                logger.warning("Telegram: webhook call with a wrong or missing secret refused")
                return response.json({"status": "forbidden"}, status=403)
            self.app = request.app
            try:
                data = request.json
            except Exception:  # noqa: BLE001
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                logger.warning("Telegram: webhook body is not an update; ignored")
                return response.text("ignored")
            self.dispatch_json(data)
            return response.text("ok")

        return hook

    # -- dispatch -------------------------------------------------------------------------------------
    def _bot_key(self) -> str:
        return self.settings.token.split(":", 1)[0] if self.settings.token else "bot"  # the bot's public id

    def dispatch_json(self, data: Dict[str, Any]) -> bool:
        from telegram import Update

        if self.state.seen(PLATFORM, f"{self._bot_key()}:{data['update_id']}"):
            logger.info("Telegram: update seen before, ignored")
            return False
        try:
            update = Update.de_json(data, self.client.bot if self.client else None)
        except Exception as error:  # noqa: BLE001
            logger.warning("Telegram: update not understood (%s); ignored", type(error).__name__)
            return False
        self._spawn(self._handle(update))
        return True

    def dispatch(self, update: Any) -> bool:
        if self.state.seen(PLATFORM, f"{self._bot_key()}:{update.update_id}"):
            return False
        self._spawn(self._handle(update))
        return True

    def _spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _poll(self) -> None:
        offset: Optional[int] = None
        while True:
            try:
                updates = await self.client.get_updates(offset)  # type: ignore[union-attr]
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001
                logger.warning("Telegram: polling failed (%s)", type(error).__name__)
                await asyncio.sleep(5)
                continue
            for update in updates:
                offset = update.update_id + 1
                self.dispatch(update)

    # -- handling -------------------------------------------------------------------------------------
    async def _handle(self, update: Any) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        async with self.locks(chat.id):
            try:
                await self._handle_in_order(update, chat)
            except Exception as error:
                logger.error("Telegram: update handling failed (%s)", type(error).__name__)
                logger.debug("Telegram: update handling failure", exc_info=True)

    async def _handle_in_order(self, update: Any, chat: Any) -> None:
        user = update.effective_user
        hint = getattr(user, "language_code", None)
        if chat.type != "private":
            await self._not_private(update, chat, hint)
            return
        if update.my_chat_member is not None:
            return  # the user started or blocked the bot: nothing to say
        sender = sender_id_for(chat.id, self.secret)
        self.state.put_address(PLATFORM, sender, str(chat.id))

        if update.callback_query is not None:
            await self._button(update.callback_query, chat.id, sender, hint)
            return
        message = update.message or update.edited_message
        if message is None:
            return
        self.state.add_messages(PLATFORM, sender, [message.message_id])
        allowed, tell = self.limiter.check(chat.id)
        if not allowed:
            logger.info("Telegram: a chat exceeded %d messages a minute", self.limiter.limit)
            if tell:
                await self._say(chat.id, sender, "rate_limited", await self._language(sender, hint))
            return
        if update.edited_message is not None:
            await self._say(chat.id, sender, "edited_message", await self._language(sender, hint))
            return
        if message.text is not None:
            await self._text(message.text, chat.id, sender, hint)
            return
        if message.location or message.venue or message.contact:
            await self._say(chat.id, sender, "personal_data_not_needed", await self._language(sender, hint))
            return
        kind = next((k for k in MEDIA if getattr(message, k, None)), None)
        if kind is None:
            return  # a service message (e.g. the auto-delete timer changed): nothing to answer
        if kind in RELAYED_MEDIA and await self._relay_media(message, kind, sender):
            pass  # the counsellor has it; the words under it follow as a message of their own
        else:
            await self._say(chat.id, sender, "non_text", await self._language(sender, hint))
        if message.caption and message.caption.strip():
            await self._text(message.caption, chat.id, sender, hint)

    async def _relay_media(self, message: Any, kind: str, sender: str) -> bool:
        media = getattr(message, kind)
        file_id = media[-1].file_id if isinstance(media, (list, tuple)) else getattr(media, "file_id", None)
        if not file_id or self.client is None:
            return False
        client = self.client
        return await self.relay.intercept_media(sender, PLATFORM, RELAYED_MEDIA[kind], lambda: client.download(file_id))

    async def _not_private(self, update: Any, chat: Any, hint: Optional[str]) -> None:
        if self.settings.operators_chat_id and str(chat.id) == self.settings.operators_chat_id:
            desk = self.relay.desk
            if desk is not None:
                await desk.on_update(update)
            return
        member = update.my_chat_member
        if member is not None and member.new_chat_member.status in ("left", "kicked"):
            return  # removed from the group: nothing to do
        if self.state.seen(PLATFORM, f"left:{chat.id}"):
            return  # already leaving it
        language = languages.normalise_hint(hint) or languages.DEFAULT
        if chat.type != "channel":
            await self.client.send_text(chat.id, message_text("private_only", language))  # type: ignore[union-attr]
        await self.client.leave_chat(chat.id)  # type: ignore[union-attr]
        logger.info("Telegram: left a %s chat (the bot talks in private chats only)", chat.type)

    async def _button(self, query: Any, chat_id: int, sender: str, hint: Optional[str]) -> None:
        data = query.data or ""
        payload = self.state.payload(data[len(PAYLOAD_PREFIX) :]) if data.startswith(PAYLOAD_PREFIX) else data
        client = self.client
        if client is None:
            return  # Telegram is not started: there is no one to answer
        if not payload:
            await client.answer_callback(query.id, message_text("button_expired", await self._language(sender, hint)))
            return
        await client.answer_callback(query.id)
        if query.message is not None and getattr(query.message, "message_id", None):
            await client.remove_keyboard(chat_id, query.message.message_id)
        if await self._intercepted(sender, payload):
            return  # e.g. an old button pressed while a counsellor is talking
        await self.to_rasa(payload, chat_id, sender, hint)

    async def _intercepted(self, sender: str, text: str) -> bool:
        try:
            return await self.relay.intercept(sender, text, PLATFORM)
        except Exception as error:  # noqa: BLE001 - the assistant still answers
            logger.error("Telegram: hand-off relay failed (%s)", type(error).__name__)
            return False

    async def _text(self, text: str, chat_id: int, sender: str, hint: Optional[str]) -> None:
        text = text.strip()
        if not text:
            return  # Telegram does not deliver empty messages anyway
        if text.startswith("/"):
            command, _, rest = text[1:].partition(" ")
            command = command.split("@", 1)[0].lower()
            if re.fullmatch(r"[a-z0-9_]{1,32}", command):
                await self._command(command, rest, text, chat_id, sender, hint)
                return
        if len(text) > self.settings.max_text_chars:
            text = cut_text(text, self.settings.max_text_chars)
            await self._say(chat_id, sender, "too_long", await self._language(sender, hint))
        if await self._intercepted(sender, text):
            return
        await self.to_rasa(text, chat_id, sender, hint)

    async def _command(
        self, command: str, rest: str, text: str, chat_id: int, sender: str, hint: Optional[str]
    ) -> None:
        if command == "start":
            language = await self._language(sender, hint)
            await self.send_and_log(chat_id, sender, message_text("intro", language), languages.language_buttons())
            await self._mark_intro_shown(sender)
        elif command == "language":
            language = await self._language(sender, hint)
            await self.send_and_log(
                chat_id, sender, message_text("ask_language", language), languages.language_buttons()
            )
        elif command == "delete":
            await self._delete_command(chat_id, sender, hint)
        elif command in ("end", "cancel") and await self.relay.command(sender, command):
            return
        elif await self._intercepted(sender, text):
            return  # e.g. during a live hand-off: relayed to the counsellor
        elif command in COMMAND_PAYLOADS:
            await self.to_rasa(COMMAND_PAYLOADS[command], chat_id, sender, hint)
        else:
            # Not ours (e.g. "/end" typed when no hand-off is open): the words without the slash.
            words = (command.replace("_", " ") + " " + rest).strip()
            await self.to_rasa(words, chat_id, sender, hint)

    # -- Rasa -----------------------------------------------------------------------------------------
    @property
    def agent(self) -> Any:
        return getattr(getattr(self.app, "ctx", None), "agent", None)

    async def to_rasa(
        self, text: str, chat_id: int, sender: str, hint: Optional[str], apologise: bool = True
    ) -> TelegramOutput:
        output = TelegramOutput(self, chat_id)
        hint = base.language_hint(sender, hint)
        metadata = {"language_hint": hint} if hint else None
        message = UserMessage(text, output, sender, input_channel=self.name(), metadata=metadata)
        if not await base.run_turn(self.on_new_message, message, "Telegram"):  # type: ignore[arg-type]
            if apologise:
                await self.send_and_log(chat_id, sender, base.sorry(await self._language(sender, hint))["text"])
            return output
        if output.replies == 0 and not output.forget_requested and apologise:
            logger.warning("Telegram: the assistant produced no reply; the user is told")
            await self.send_and_log(chat_id, sender, base.sorry(await self._language(sender, hint))["text"])
        requested = base.marker(({"custom": m} for m in output.markers), base.HANDOFF)
        if requested:
            await self.relay.case_requested(sender, requested, PLATFORM)
        if output.forget_requested:
            forgotten = base.marker(({"custom": m} for m in output.markers), base.FORGET) or {}
            base.remember_language(sender, forgotten.get("language"))
            await self._delete_everything(chat_id, sender, keep=output.sent)
        return output

    async def _language(self, sender: str, hint: Optional[str]) -> str:
        return await base.conversation_language(self.agent, sender, hint)

    async def _mark_intro_shown(self, sender: str) -> None:
        """After /start showed the safety notice, the first answer does not repeat it."""
        agent = self.agent
        if agent is None or agent.processor is None:
            return
        from rasa.shared.core.events import SlotSet

        try:
            async with agent.lock_store.lock(sender):
                tracker = await agent.processor.fetch_tracker_with_initial_session(sender)
                if tracker.get_slot("intro_shown") is not True and "intro_shown" in tracker.slots:
                    tracker.update(SlotSet("intro_shown", True))
                    await agent.tracker_store.save(tracker)
        except Exception as error:  # noqa: BLE001
            logger.warning("Telegram: could not note the shown introduction (%s)", type(error).__name__)

    # -- deleting -------------------------------------------------------------------------------------
    async def _delete_command(self, chat_id: int, sender: str, hint: Optional[str]) -> None:
        """/delete runs the same path as "delete my data": the assistant's own
        confirmation, then the chat's messages, the conversation and any
        hand-off case. If the assistant cannot do it, the channel deletes
        everything itself and confirms."""
        language = await self._language(sender, hint)
        await self.relay.forget(sender)  # an open hand-off closes first (the assistant resumes)
        output = await self.to_rasa(DELETE_PAYLOAD, chat_id, sender, hint, apologise=False)
        if output.forget_requested:
            return
        logger.warning("Telegram: /delete not confirmed by the assistant; the channel deletes the conversation itself")
        notice = await self.client.send_text(chat_id, message_text("deleted", language))  # type: ignore[union-attr]
        await self._delete_everything(chat_id, sender, keep=[notice] if notice else [])

    async def _delete_everything(self, chat_id: int, sender: str, keep: Sequence[int]) -> None:
        keep_ids = [i for i in keep if i]
        ids = [i for i in self.state.message_ids(PLATFORM, sender) if i not in keep_ids]
        deleted = await self.client.delete_messages(chat_id, ids) if ids and self.client else 0
        agent = self.agent
        if agent is not None:
            try:
                await base.forget_everything(agent, sender, self.relay)
            except Exception as error:  # noqa: BLE001
                logger.error("Telegram: conversation not deleted (%s)", type(error).__name__)
        self.state.forget(PLATFORM, sender)
        logger.info("Telegram: conversation deleted; %d of %d chat messages removed", deleted, len(ids))
        if keep_ids:
            self.state.add_messages(PLATFORM, sender, keep_ids)  # until the notice is gone, /delete still finds it
            task = self._spawn(self._delete_notice_later(chat_id, sender, keep_ids))
            self.pending_deletions[task] = (chat_id, sender, keep_ids)
            task.add_done_callback(lambda t: self.pending_deletions.pop(t, None))

    async def _delete_notice_later(self, chat_id: int, sender: str, ids: List[int]) -> None:
        await asyncio.sleep(self.settings.delete_notice_seconds)
        await self._delete_notice(chat_id, sender, ids)

    async def _delete_notice(self, chat_id: int, sender: str, ids: List[int]) -> None:
        if self.client is not None:
            await self.client.delete_messages(chat_id, ids)
        self.state.remove_messages(PLATFORM, sender, ids)

    # -- sending --------------------------------------------------------------------------------------
    def _callback_data(self, payload: str) -> str:
        if len(payload.encode()) <= CALLBACK_DATA_LIMIT and not payload.startswith(PAYLOAD_PREFIX):
            return payload
        return PAYLOAD_PREFIX + self.state.payload_key(payload)

    def keyboard(self, buttons: Sequence[Dict[str, Any]]) -> List[List[Any]]:
        from telegram import InlineKeyboardButton

        rows = []
        for button in buttons:
            title = str(button.get("title") or button.get("payload") or "")[:64] or "…"
            payload = str(button.get("payload") or button.get("url") or title)
            if button.get("type") == "web_url" or re.match(r"https?://", payload) or button.get("url"):
                rows.append([InlineKeyboardButton(title, url=button.get("url") or payload)])
            else:
                rows.append([InlineKeyboardButton(title, callback_data=self._callback_data(payload))])
        return rows

    async def send(self, chat_id: int, sender: str, text: str, buttons: Sequence[Dict[str, Any]] = ()) -> List[int]:
        """Sends a reply (split if long; the keyboard on its last part); returns the message ids."""
        parts = split_text(text) or (["👇"] if buttons else [])
        ids = []
        for i, part in enumerate(parts):
            keyboard = self.keyboard(buttons) if buttons and i == len(parts) - 1 else None
            message_id = await self.client.send_text(chat_id, part, keyboard)  # type: ignore[union-attr]
            if message_id is not None:
                ids.append(message_id)
        return ids

    async def send_and_log(
        self, chat_id: int, sender: str, text: str, buttons: Sequence[Dict[str, Any]] = ()
    ) -> List[int]:
        ids = await self.send(chat_id, sender, text, buttons)
        self.state.add_messages(PLATFORM, sender, ids)
        return ids

    async def _say(self, chat_id: int, sender: str, key: str, language: str) -> List[int]:
        return await self.send_and_log(chat_id, sender, message_text(key, language))

    async def push(self, sender: str, messages: List[Dict[str, Any]]) -> bool:
        """For the hand-off relay: messages to a user whose chat is known (on any server)."""
        chat_id = self.chat_of(sender)
        if chat_id is None or self.client is None:
            return False
        ok = True
        for item in messages:
            ok = bool(await self.send_and_log(chat_id, sender, item.get("text", ""), item.get("buttons") or ())) and ok
        return ok
