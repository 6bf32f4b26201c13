"""Waypoint's Telegram channel: python-telegram-bot 22 wrapped in a Rasa input channel.

Registered in credentials.yml by module path (``channels.telegram_channel.TelegramInput:``
with nothing under it); configured only from the environment:

=============================== ==========================================================
``TELEGRAM_BOT_TOKEN``          the bot's token. Not set: the channel is off (its webhook
                                answers 503) and Rasa starts as usual.
``TELEGRAM_WEBHOOK_SECRET``     the ``X-Telegram-Bot-Api-Secret-Token`` Telegram must send
                                (1-256 of ``A-Za-z0-9_-``). Not set: derived from the token.
``TELEGRAM_API_BASE_URL``       a Bot API server other than Telegram's (a self-hosted Bot
                                API server, the tests' fake), e.g. ``http://127.0.0.1:8081``.
``WAYPOINT_ID_SECRET``          key of the sender-id hash. Not set: derived from the token
                                (then a new token starts new conversations).
``TELEGRAM_POLLING``            ``1``: the Rasa server polls getUpdates itself (development
                                without a public address: ``python -m channels.telegram_channel poll``).
``TELEGRAM_DELETE_NOTICE_SECONDS`` how long the "deleted" confirmation stays (default 30).
``TELEGRAM_MAX_TEXT_CHARS``     longer messages are cut before Rasa sees them (default 4000).
``TELEGRAM_MAX_MESSAGES_PER_MINUTE`` per chat; beyond it the user is asked to slow down (30).
``WAYPOINT_OPERATORS_CHAT_ID``  the operators' group chat (hand-off relay, see below).
=============================== ==========================================================

How an update flows: the webhook checks the secret (403 otherwise), drops an
``update_id`` it has already seen (an LRU of recent ids, so Telegram's retries
never produce a second answer), answers 200 at once and handles the update in a
background task, one chat at a time in arrival order. Polling feeds the same
``dispatch``. Text goes to Rasa with the metadata ``language_hint`` (Telegram's
``language_code``); the replies go back through :class:`TelegramOutput`
(paragraph-split under Telegram's 4096-character limit, buttons as inline
keyboards, long payloads mapped to short ``callback_data`` ids).

Privacy: Rasa's sender id is an HMAC of the chat id, so the tracker store never
holds a Telegram identity; the chat id needed to answer is only in memory (and
in the update being handled). To delete both sides of a chat on ``/delete`` or
"delete my data", the ids of the chat's messages (never their text) are kept
for 48 hours (the Bot API's limit for deleting them) in ``$WAYPOINT_VAR/telegram.db``
under the hashed sender id.

Hooks for the hand-off relay (channels/operators.py, built separately): if a
module ``channels.operators`` exists and defines ``attach(channel)``, it is
called once when the server starts; it may set

- ``channel.operators_handler(update, channel)``: updates from the operators'
  chat (``WAYPOINT_OPERATORS_CHAT_ID``), which the bot never leaves;
- ``channel.handoff_handler(sender_id, case_id)``: a hand-off case was created;
- ``channel.message_interceptor(sender_id, text) -> bool``: True when a user's
  message (text, a command the channel does not handle itself, or a button's
  payload) was dealt with (e.g. relayed to a counsellor) and must not go to Rasa;
- ``channel.command_handlers["end"] = fn(sender_id, chat_id)``: extra commands
  (a handler returning False leaves the command to the assistant);
- ``channel.forget_handler(sender_id)``: the user deletes their conversation
  (called before ``/delete`` goes to the assistant, and when the channel deletes);

and it can reach a user with ``await channel.send_to_sender(sender_id, text)``.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import os
import pathlib
import random
import re
import sqlite3
import sys
import time
import warnings
from typing import Any, Awaitable, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request

logger = logging.getLogger(__name__)

# httpx logs every request URL at INFO, and Telegram's URLs contain the bot token.
for _noisy in ("httpx", "httpcore", "telegram"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

LANGUAGES = ("en", "id", "ms", "vi", "th")
LANGUAGE_LABELS = {"en": "English", "id": "Bahasa Indonesia", "ms": "Bahasa Melayu", "vi": "Tiếng Việt",
                   "th": "ภาษาไทย"}
WEBHOOK_PATH = "/webhooks/telegram/webhook"
ALLOWED_UPDATES = ("message", "edited_message", "callback_query", "my_chat_member")
TEXT_LIMIT = 4096  # Telegram's limit for one message (UTF-16 code units)
CALLBACK_DATA_LIMIT = 64  # bytes
DELETABLE_FOR = 48 * 3600  # the Bot API lets a bot delete messages of a private chat for 48 hours
DELETE_BATCH = 100  # deleteMessages takes at most 100 ids
COMMAND_PAYLOADS = {"help": "/ask_help_helplines", "human": "/request_human"}
DELETE_PAYLOAD = "/request_data_deletion"
MEDIA = ("sticker", "photo", "voice", "audio", "video", "video_note", "document", "animation", "dice", "poll",
         "game", "story", "invoice", "paid_media")


# -- configuration -------------------------------------------------------------------------------

def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True)
class Settings:
    token: str
    webhook_secret: str
    api_base_url: Optional[str]
    id_secret: bytes
    polling: bool
    delete_notice_seconds: float
    max_text_chars: int
    max_messages_per_minute: int
    operators_chat_id: Optional[str]
    state_db: pathlib.Path

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    @classmethod
    def from_env(cls, env: Optional[Dict[str, str]] = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
        secret = env.get("TELEGRAM_WEBHOOK_SECRET", "").strip() or (_derive(token, "waypoint webhook") if token else "")
        id_secret = env.get("WAYPOINT_ID_SECRET", "").strip() or (_derive(token, "waypoint sender ids") if token else "")
        var = pathlib.Path(env.get("WAYPOINT_VAR", "var"))
        return cls(
            token=token,
            webhook_secret=secret,
            api_base_url=env.get("TELEGRAM_API_BASE_URL", "").strip().rstrip("/") or None,
            id_secret=id_secret.encode(),
            polling=env.get("TELEGRAM_POLLING", "").strip().lower() in ("1", "true", "yes", "on"),
            delete_notice_seconds=float(env.get("TELEGRAM_DELETE_NOTICE_SECONDS", "30") or 30),
            max_text_chars=int(env.get("TELEGRAM_MAX_TEXT_CHARS", "4000") or 4000),
            max_messages_per_minute=int(env.get("TELEGRAM_MAX_MESSAGES_PER_MINUTE", "30") or 30),
            operators_chat_id=env.get("WAYPOINT_OPERATORS_CHAT_ID", "").strip() or None,
            state_db=pathlib.Path(env.get("TELEGRAM_STATE_DB", "") or var / "telegram.db"),
        )


def sender_id_for(chat_id: int, id_secret: bytes) -> str:
    """Rasa's sender id for a Telegram chat: a keyed hash, so the tracker store
    never holds a Telegram identity (and without the key it cannot be reversed
    by trying every possible id)."""
    return "tg-" + hmac.new(id_secret, f"telegram:{chat_id}".encode(), hashlib.sha256).hexdigest()[:32]


def language_of_hint(hint: Optional[str]) -> Optional[str]:
    code = (hint or "").lower().replace("_", "-").split("-")[0]
    code = {"in": "id", "zsm": "ms", "may": "ms"}.get(code, code)
    return code if code in LANGUAGES else None


def message_text(key: str, language: str, **values: Any) -> str:
    from actions.content import get_content

    texts = get_content().messages[key]
    text = texts.get(language) or texts["en"]
    return text.format(**values) if values else text


# -- output shaping ------------------------------------------------------------------------------

def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = TEXT_LIMIT) -> List[str]:
    """Splits a reply into messages of at most ``limit`` UTF-16 units (how
    Telegram counts), on paragraph boundaries first, then lines, sentences,
    words, and only as a last resort inside a word."""
    text = text.strip()
    if not text:
        return []
    return [part.strip() for part in _split(text, limit, SPLIT_LEVELS) if part.strip()]


# (where to split, what joins two pieces again)
SPLIT_LEVELS = ((r"\n[ \t]*\n\s*", "\n\n"), (r"\n", "\n"), (r"(?<=[.!?。])\s+", " "), (r"[ \t]+", " "))


def _split(text: str, limit: int, levels: Sequence[Tuple[str, str]]) -> List[str]:
    if utf16_len(text) <= limit:
        return [text]
    if not levels:
        return _hard_cut(text, limit)
    pattern, joiner = levels[0]
    pieces = re.split(pattern, text)
    if len(pieces) == 1:
        return _split(text, limit, levels[1:])
    chunks: List[str] = []
    current: Optional[str] = None
    for piece in pieces:
        candidate = piece if current is None else current + joiner + piece
        if utf16_len(candidate) <= limit:
            current = candidate
            continue
        if current is not None:
            chunks.append(current)
        if utf16_len(piece) <= limit:
            current = piece
        else:
            sub = _split(piece, limit, levels[1:])
            chunks.extend(sub[:-1])
            current = sub[-1]
    if current is not None:
        chunks.append(current)
    return chunks


def _hard_cut(text: str, limit: int) -> List[str]:
    parts, current, size = [], [], 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if size + width > limit:
            parts.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    return parts + ["".join(current)]


def cut_text(text: str, limit: int) -> str:
    """The first ``limit`` characters, ending on a word boundary when one is near."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit - 200 else head


class PayloadTable:
    """Button payloads longer than callback_data's 64 bytes travel as short ids.

    Payloads are the bot's own (intent names, entity JSON), never user text; the
    table is bounded and lives in memory (a press on a button older than the
    table, or from before a restart, is answered kindly)."""

    PREFIX = "~p:"

    def __init__(self, size: int = 20000):
        self.size = size
        self._ids: "collections.OrderedDict[str, str]" = collections.OrderedDict()
        self._by_payload: Dict[str, str] = {}

    def data_for(self, payload: str) -> str:
        if len(payload.encode()) <= CALLBACK_DATA_LIMIT and not payload.startswith(self.PREFIX):
            return payload
        key = self._by_payload.get(payload)
        if key is None:
            key = os.urandom(8).hex()
            self._ids[key] = payload
            self._by_payload[payload] = key
            while len(self._ids) > self.size:
                old_key, old_payload = self._ids.popitem(last=False)
                self._by_payload.pop(old_payload, None)
        else:
            self._ids.move_to_end(key)
        return self.PREFIX + key

    def payload_for(self, data: str) -> Optional[str]:
        if not data.startswith(self.PREFIX):
            return data
        return self._ids.get(data[len(self.PREFIX):])


class RecentIds:
    """The update ids already handled: a bounded LRU."""

    def __init__(self, size: int = 10000):
        self.size = size
        self._seen: "collections.OrderedDict[int, None]" = collections.OrderedDict()

    def seen(self, update_id: int) -> bool:
        """True if already seen; otherwise remembers it."""
        if update_id in self._seen:
            self._seen.move_to_end(update_id)
            return True
        self._seen[update_id] = None
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._seen)


class SharedRecentIds(RecentIds):
    """Update ids shared by every Rasa server through Redis, when the scale-out
    settings name one (``WAYPOINT_REDIS_HOST``): a retry that Telegram sends and
    the balancer gives to another server is recognised there too. One key per
    update (``SET NX`` with a day's expiry), holding nothing but the id. While
    Redis cannot be reached, this process's memory decides alone (one warning)."""

    TTL_SECONDS = 24 * 3600

    def __init__(self, client: Any, namespace: str, size: int = 10000):
        super().__init__(size)
        self.client, self.namespace, self._warned = client, namespace, False

    def seen(self, update_id: int) -> bool:
        if super().seen(update_id):
            return True
        try:
            return not self.client.set(f"{self.namespace}:{update_id}", b"1", nx=True, ex=self.TTL_SECONDS)
        except Exception as error:  # Redis down: memory only, as with one server
            if not self._warned:
                logger.warning("Telegram: Redis unreachable for update ids (%s); this server's memory only",
                               type(error).__name__)
                self._warned = True
            return False

    @classmethod
    def from_env(cls, token: str, env: Optional[Dict[str, str]] = None) -> RecentIds:
        from channels.relay_state import client_from_env

        client = client_from_env(env)
        if client is None:
            return RecentIds()
        bot = token.split(":", 1)[0] if token else "bot"  # the bot's public id, never the token
        return cls(client, f"waypoint:telegram:update:{bot}")


class ExpiringMap:
    """A small in-memory map whose entries expire (sender id -> chat id)."""

    def __init__(self, ttl: float, size: int = 100000):
        self.ttl, self.size = ttl, size
        self._items: "collections.OrderedDict[Any, Tuple[float, Any]]" = collections.OrderedDict()

    def put(self, key: Any, value: Any) -> None:
        self._items[key] = (time.monotonic() + self.ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, key: Any) -> Any:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        return item[1]

    def pop(self, key: Any) -> Any:
        item = self._items.pop(key, None)
        return item[1] if item else None


class RateLimiter:
    """Messages per chat in a sliding minute."""

    def __init__(self, per_minute: int, size: int = 50000):
        self.per_minute, self.size = per_minute, size
        self._windows: "collections.OrderedDict[int, Deque[float]]" = collections.OrderedDict()
        self._warned: Dict[int, float] = {}

    def allow(self, chat_id: int) -> Tuple[bool, bool]:
        """(allowed, tell the user) for a new message from this chat."""
        now = time.monotonic()
        window = self._windows.setdefault(chat_id, collections.deque())
        self._windows.move_to_end(chat_id)
        while window and window[0] < now - 60:
            window.popleft()
        while len(self._windows) > self.size:
            old, _ = self._windows.popitem(last=False)
            self._warned.pop(old, None)
        if len(window) < self.per_minute:
            window.append(now)
            return True, False
        tell = self._warned.get(chat_id, 0) < now - 60
        if tell:
            self._warned[chat_id] = now
        return False, tell


class MessageLog:
    """Ids of the chat's messages (both sides, never their text) for 48 hours,
    keyed by the hashed sender id, so ``/delete`` can remove them from the chat.
    The chat id itself is not stored: it comes with the update that asks."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS chat_messages (sender TEXT NOT NULL, message_id INTEGER NOT NULL,"
                         " at REAL NOT NULL, PRIMARY KEY (sender, message_id))")
        self._db.execute("CREATE INDEX IF NOT EXISTS chat_messages_at ON chat_messages (at)")
        self._last_purge = 0.0
        self.purge()

    def add(self, sender: str, message_ids: Iterable[int], at: Optional[float] = None) -> None:
        at = time.time() if at is None else at
        rows = [(sender, int(i), at) for i in message_ids]
        if rows:
            self._db.executemany("INSERT OR IGNORE INTO chat_messages VALUES (?, ?, ?)", rows)
        if time.monotonic() - self._last_purge > 600:
            self.purge()

    def ids(self, sender: str) -> List[int]:
        cutoff = time.time() - DELETABLE_FOR
        return [row[0] for row in self._db.execute(
            "SELECT message_id FROM chat_messages WHERE sender = ? AND at > ? ORDER BY message_id", (sender, cutoff))]

    def remove(self, sender: str, message_ids: Optional[Iterable[int]] = None) -> None:
        if message_ids is None:
            self._db.execute("DELETE FROM chat_messages WHERE sender = ?", (sender,))
        else:
            self._db.executemany("DELETE FROM chat_messages WHERE sender = ? AND message_id = ?",
                                 [(sender, int(i)) for i in message_ids])

    def purge(self) -> int:
        self._last_purge = time.monotonic()
        return self._db.execute("DELETE FROM chat_messages WHERE at <= ?", (time.time() - DELETABLE_FOR,)).rowcount

    def close(self) -> None:
        self._db.close()


class KeyedLocks:
    """One asyncio lock per chat (FIFO), dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: Dict[Any, Tuple[asyncio.Lock, int]] = {}

    def __call__(self, key: Any) -> "_KeyedLock":
        return _KeyedLock(self, key)


class _KeyedLock:
    def __init__(self, owner: KeyedLocks, key: Any):
        self.owner, self.key = owner, key

    async def __aenter__(self) -> None:
        lock, users = self.owner._locks.get(self.key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self.owner._locks[self.key] = (lock, users + 1)
        await lock.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        lock, users = self.owner._locks[self.key]
        lock.release()
        if users <= 1:
            self.owner._locks.pop(self.key, None)
        else:
            self.owner._locks[self.key] = (lock, users - 1)


# -- the Bot API client (PTB's Bot, wrapped) --------------------------------------------------------

def retry_after_seconds(error: Exception) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = getattr(error, "retry_after", 1)
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class TelegramBot:
    """python-telegram-bot's ``Bot`` behind the few calls Waypoint makes.

    Every call respects 429's ``retry_after``, retries network errors with
    backoff, and on failure logs the method and the error type (never the text,
    never the chat) and returns None: a failed send never takes the server down."""

    def __init__(self, token: str, api_base_url: Optional[str] = None, max_attempts: int = 5,
                 max_wait: float = 120.0, backoff: float = 0.5):
        from telegram import Bot
        from telegram.request import HTTPXRequest

        kwargs: Dict[str, Any] = {}
        if api_base_url and "{" in api_base_url:  # PTB's own form, e.g. http://host/bot{token}
            kwargs.update(base_url=api_base_url, base_file_url=api_base_url.replace("/bot", "/file/bot", 1))
        elif api_base_url:
            base = api_base_url[:-4] if api_base_url.endswith("/bot") else api_base_url
            kwargs.update(base_url=f"{base}/bot", base_file_url=f"{base}/file/bot")
        self.bot = Bot(token, request=HTTPXRequest(connection_pool_size=64, read_timeout=15, write_timeout=15,
                                                    connect_timeout=10, pool_timeout=10),
                       get_updates_request=HTTPXRequest(connection_pool_size=2, read_timeout=10, connect_timeout=10),
                       **kwargs)
        self.max_attempts, self.max_wait, self.backoff = max_attempts, max_wait, backoff
        self.failures: Dict[str, int] = collections.Counter()

    async def start(self) -> bool:
        try:
            await self.bot.initialize()
            return True
        except Exception as error:  # the server keeps running; every call retries on its own
            logger.warning("Telegram: getMe failed (%s); will keep trying on each call", type(error).__name__)
            return False

    async def stop(self) -> None:
        try:
            await self.bot.shutdown()
        except Exception:  # pragma: no cover - shutting down anyway
            pass

    async def call(self, method: str, factory: Callable[[], Awaitable[Any]], *, quiet: Tuple[type, ...] = ()) -> Any:
        from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await factory()
            except RetryAfter as error:
                delay = retry_after_seconds(error)
                if waited + delay > self.max_wait or attempt == self.max_attempts:
                    return self._failed(method, error)
                logger.info("Telegram: %s rate-limited, retrying after %.1f s", method, delay)
                await asyncio.sleep(delay)
                waited += delay
            except (BadRequest, Forbidden, InvalidToken) as error:  # BadRequest is a NetworkError: check it first
                if quiet and isinstance(error, quiet):
                    logger.debug("Telegram: %s refused (%s)", method, type(error).__name__)
                    return None
                return self._failed(method, error)
            except (NetworkError, TimedOut) as error:
                if attempt == self.max_attempts:
                    return self._failed(method, error)
                delay = min(self.backoff * 2 ** (attempt - 1), 30) * (0.8 + 0.4 * random.random())
                logger.info("Telegram: %s failed (%s), retry %d in %.1f s", method, type(error).__name__, attempt, delay)
                await asyncio.sleep(delay)
                waited += delay
            except Exception as error:
                return self._failed(method, error)
        return None  # pragma: no cover

    def _failed(self, method: str, error: Exception) -> None:
        self.failures[method] += 1
        logger.warning("Telegram: %s failed for good (%s)", method, type(error).__name__)
        logger.debug("Telegram: %s failure detail", method, exc_info=True)
        return None

    # the calls -------------------------------------------------------------------------------
    async def send_text(self, chat_id: int, text: str, keyboard: Optional[Sequence[Sequence[Any]]] = None,
                        reply_to: Optional[int] = None) -> Optional[int]:
        from telegram import InlineKeyboardMarkup, LinkPreviewOptions, ReplyParameters

        markup = InlineKeyboardMarkup(keyboard) if keyboard else None
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        message = await self.call("sendMessage", lambda: self.bot.send_message(
            chat_id, text, reply_markup=markup, reply_parameters=reply,
            link_preview_options=LinkPreviewOptions(is_disabled=True)))
        return message.message_id if message is not None else None

    async def edit_text(self, chat_id: int, message_id: int, text: str,
                        keyboard: Optional[Sequence[Sequence[Any]]] = None) -> bool:
        """Replaces a message's text; without ``keyboard`` its inline keyboard goes."""
        from telegram import InlineKeyboardMarkup, LinkPreviewOptions
        from telegram.error import BadRequest

        markup = InlineKeyboardMarkup(keyboard or [])
        return bool(await self.call("editMessageText", lambda: self.bot.edit_message_text(
            text, chat_id=chat_id, message_id=message_id, reply_markup=markup,
            link_preview_options=LinkPreviewOptions(is_disabled=True)), quiet=(BadRequest,)))

    async def member_status(self, chat_id: int, user_id: int) -> Optional[str]:
        """A user's status in a chat (``member``, ``administrator``, ``creator``, ``left``...), None if unknown."""
        from telegram.error import BadRequest

        member = await self.call("getChatMember", lambda: self.bot.get_chat_member(chat_id, user_id), quiet=(BadRequest,))
        return getattr(member, "status", None)

    async def answer_callback(self, callback_id: str, text: Optional[str] = None) -> bool:
        return bool(await self.call("answerCallbackQuery",
                                    lambda: self.bot.answer_callback_query(callback_id, text=text)))

    async def remove_keyboard(self, chat_id: int, message_id: int) -> None:
        from telegram.error import BadRequest

        await self.call("editMessageReplyMarkup", lambda: self.bot.edit_message_reply_markup(
            chat_id=chat_id, message_id=message_id, reply_markup=None), quiet=(BadRequest,))

    async def delete_messages(self, chat_id: int, message_ids: Sequence[int]) -> int:
        """Deletes in batches of at most 100; a refused batch is retried one by one.
        Returns how many ids were sent in accepted calls."""
        from telegram.error import BadRequest

        ids = sorted(set(int(i) for i in message_ids))
        done = 0
        for start in range(0, len(ids), DELETE_BATCH):
            batch = ids[start:start + DELETE_BATCH]
            if await self.call("deleteMessages", lambda b=batch: self.bot.delete_messages(chat_id, b), quiet=(BadRequest,)):
                done += len(batch)
                continue
            for message_id in batch:
                if await self.call("deleteMessage", lambda m=message_id: self.bot.delete_message(chat_id, m),
                                   quiet=(BadRequest,)):
                    done += 1
        return done

    async def leave_chat(self, chat_id: int) -> bool:
        return bool(await self.call("leaveChat", lambda: self.bot.leave_chat(chat_id)))

    async def set_webhook(self, url: str, secret: str) -> bool:
        return bool(await self.call("setWebhook", lambda: self.bot.set_webhook(
            url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES), max_connections=40)))

    async def delete_webhook(self) -> bool:
        return bool(await self.call("deleteWebhook", lambda: self.bot.delete_webhook(drop_pending_updates=False)))

    async def set_commands(self) -> int:
        from telegram import BotCommand

        done = 0
        for language in (None,) + LANGUAGES:
            lang = language or "en"
            commands = [BotCommand("start", message_text("command_start", lang)),
                        BotCommand("language", message_text("command_language", lang)),
                        BotCommand("help", message_text("label_helplines", lang)),
                        BotCommand("human", message_text("label_talk_to_person", lang)),
                        BotCommand("delete", message_text("command_delete", lang))]
            if await self.call("setMyCommands", lambda c=commands, l=language: self.bot.set_my_commands(c, language_code=l)):
                done += 1
        return done

    async def get_updates(self, offset: Optional[int], timeout: int = 25) -> Sequence[Any]:
        from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter

        try:
            return await self.bot.get_updates(offset=offset, timeout=timeout, allowed_updates=list(ALLOWED_UPDATES))
        except RetryAfter as error:
            await asyncio.sleep(retry_after_seconds(error))
        except (Conflict, InvalidToken) as error:
            logger.warning("Telegram: getUpdates refused (%s); is a webhook set or another poller running?",
                           type(error).__name__)
            await asyncio.sleep(10)
        except NetworkError as error:
            logger.info("Telegram: getUpdates failed (%s)", type(error).__name__)
            await asyncio.sleep(2)
        return ()


# -- output ---------------------------------------------------------------------------------------

class TelegramOutput(OutputChannel):
    """Sends one turn's replies to one chat and notes what it sent."""

    def __init__(self, channel: "TelegramInput", chat_id: Optional[int] = None):
        self.channel = channel
        self.chat_id = chat_id
        self.sent: List[int] = []
        self.forget_requested = False
        self.replies = 0

    @classmethod
    def name(cls) -> str:
        return "telegram"

    def _chat(self, recipient_id: str) -> Optional[int]:
        return self.chat_id if self.chat_id is not None else self.channel.chats.get(recipient_id)

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

    async def send_text_with_buttons(self, recipient_id: str, text: str, buttons: List[Dict[str, Any]],
                                     **kwargs: Any) -> None:
        chat_id = self._chat(recipient_id)
        if chat_id is None:
            logger.warning("Telegram: no chat known for a reply (conversation not active here)")
            return
        self.replies += 1
        self.sent.extend(await self.channel.send_and_log(chat_id, recipient_id, text, buttons))

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        await self.send_text_message(recipient_id, image)

    async def send_attachment(self, recipient_id: str, attachment: str, **kwargs: Any) -> None:
        await self.send_text_message(recipient_id, str(attachment))

    async def send_custom_json(self, recipient_id: str, json_message: Dict[str, Any], **kwargs: Any) -> None:
        from channels.tracker_store import is_marker

        if not is_marker(json_message):
            logger.debug("Telegram: custom message not shown")
            return
        if json_message.get("waypoint") == "forget_conversation":
            self.forget_requested = True
        elif json_message.get("waypoint") == "handoff_requested":
            logger.info("Telegram: hand-off case %s requested", json_message.get("case_id"))
            await self.channel.run_hook(self.channel.handoff_handler, recipient_id, json_message.get("case_id"))


# -- input ----------------------------------------------------------------------------------------

Hook = Optional[Callable[..., Awaitable[Any]]]


class TelegramInput(InputChannel):
    """The ``telegram`` channel: webhook ``/webhooks/telegram/webhook``, or polling."""

    def __init__(self, settings: Optional[Settings] = None):
        self.settings = settings or Settings.from_env()
        self.client: Optional[TelegramBot] = None
        self.log: Optional[MessageLog] = None
        self.recent = SharedRecentIds.from_env(self.settings.token)
        self.payloads = PayloadTable()
        self.chats = ExpiringMap(ttl=DELETABLE_FOR)  # sender id -> chat id, memory only
        self.locks = KeyedLocks()
        self.limiter = RateLimiter(self.settings.max_messages_per_minute)
        self.left_groups = RecentIds(size=1000)
        self.tasks: Set[asyncio.Task] = set()
        self.pending_deletions: Dict[asyncio.Task, Tuple[int, str, List[int]]] = {}
        self.app: Any = None
        self.on_new_message: Optional[Callable[[UserMessage], Awaitable[Any]]] = None
        self._poller: Optional[asyncio.Task] = None
        # hooks for the hand-off relay (module docstring)
        self.operators_handler: Hook = None
        self.handoff_handler: Hook = None
        self.message_interceptor: Hook = None
        self.forget_handler: Hook = None
        self.command_handlers: Dict[str, Callable[..., Awaitable[Any]]] = {}
        if not self.settings.enabled:
            logger.info("Telegram channel off: TELEGRAM_BOT_TOKEN is not set")

    @classmethod
    def name(cls) -> str:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> "TelegramInput":
        if credentials:
            logger.warning("Telegram: credentials.yml entries are ignored; the channel reads its environment")
        return cls()

    def get_output_channel(self) -> Optional[OutputChannel]:
        return TelegramOutput(self) if self.settings.enabled else None

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self, app: Any = None) -> None:
        if not self.settings.enabled or self.client is not None:
            return
        self.app = app or self.app
        self.client = TelegramBot(self.settings.token, self.settings.api_base_url)
        self.log = MessageLog(self.settings.state_db)
        await self.client.start()
        self._attach_operators_relay()
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
        if self.log is not None:
            self.log.close()
            self.log = None

    def _attach_operators_relay(self) -> None:
        try:
            import importlib

            module = importlib.import_module("channels.operators")
        except ModuleNotFoundError as error:
            if error.name != "channels.operators":
                logger.warning("Telegram: the operators' relay failed to import (%s)", type(error).__name__)
            return
        attach = getattr(module, "attach", None)
        if callable(attach):
            attach(self)
            logger.info("Telegram: operators' relay attached")

    async def run_hook(self, hook: Hook, *args: Any) -> Any:
        if hook is None:
            return None
        try:
            return await hook(*args)
        except Exception as error:
            logger.error("Telegram: hand-off hook failed (%s)", type(error).__name__)
            return None

    # the blueprint -------------------------------------------------------------------------------
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
            except Exception:
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                logger.warning("Telegram: webhook body is not an update; ignored")
                return response.text("ignored")
            self.dispatch_json(data)
            return response.text("ok")

        return hook

    # dispatch ------------------------------------------------------------------------------------
    def dispatch_json(self, data: Dict[str, Any]) -> bool:
        from telegram import Update

        if self.recent.seen(data["update_id"]):
            logger.info("Telegram: update seen before, ignored")
            return False
        try:
            update = Update.de_json(data, self.client.bot if self.client else None)
        except Exception as error:
            logger.warning("Telegram: update not understood (%s); ignored", type(error).__name__)
            return False
        self._spawn(self._handle(update))
        return True

    def dispatch(self, update: Any) -> bool:
        if self.recent.seen(update.update_id):
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
                updates = await self.client.get_updates(offset)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("Telegram: polling failed (%s)", type(error).__name__)
                await asyncio.sleep(5)
                continue
            for update in updates:
                offset = update.update_id + 1
                self.dispatch(update)

    # handling ----------------------------------------------------------------------------------
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
        sender = sender_id_for(chat.id, self.settings.id_secret)
        self.chats.put(sender, chat.id)

        if update.callback_query is not None:
            await self._button(update.callback_query, chat.id, sender, hint)
            return
        message = update.message or update.edited_message
        if message is None:
            return
        self.log.add(sender, [message.message_id])
        allowed, tell = self.limiter.allow(chat.id)
        if not allowed:
            logger.info("Telegram: a chat exceeded %d messages a minute", self.limiter.per_minute)
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
        if not any(getattr(message, kind, None) for kind in MEDIA):
            return  # a service message (e.g. the auto-delete timer changed): nothing to answer
        await self._say(chat.id, sender, "non_text", await self._language(sender, hint))
        if message.caption and message.caption.strip():
            await self._text(message.caption, chat.id, sender, hint)

    async def _not_private(self, update: Any, chat: Any, hint: Optional[str]) -> None:
        if self.settings.operators_chat_id and str(chat.id) == self.settings.operators_chat_id:
            if self.operators_handler is None:
                logger.debug("Telegram: operators' chat update ignored (no relay attached)")
            await self.run_hook(self.operators_handler, update, self)
            return
        member = update.my_chat_member
        if member is not None and member.new_chat_member.status in ("left", "kicked"):
            return  # removed from the group: nothing to do
        if self.left_groups.seen(chat.id):
            return  # already leaving it
        language = language_of_hint(hint) or "en"
        if chat.type != "channel":
            await self.client.send_text(chat.id, message_text("private_only", language))
        await self.client.leave_chat(chat.id)
        logger.info("Telegram: left a %s chat (the bot talks in private chats only)", chat.type)

    async def _button(self, query: Any, chat_id: int, sender: str, hint: Optional[str]) -> None:
        payload = self.payloads.payload_for(query.data or "")
        if not payload:
            await self.client.answer_callback(query.id, message_text("button_expired", await self._language(sender, hint)))
            return
        await self.client.answer_callback(query.id)
        if query.message is not None and getattr(query.message, "message_id", None):
            await self.client.remove_keyboard(chat_id, query.message.message_id)
        if self.message_interceptor is not None and await self.run_hook(self.message_interceptor, sender, payload):
            return  # e.g. an old button pressed while a counsellor is talking
        await self._to_rasa(payload, chat_id, sender, hint)

    async def _text(self, text: str, chat_id: int, sender: str, hint: Optional[str]) -> None:
        text = text.strip()
        if not text:
            return  # nothing to answer; Telegram does not deliver empty messages anyway
        if text.startswith("/"):
            command, _, rest = text[1:].partition(" ")
            command = command.split("@", 1)[0].lower()
            if re.fullmatch(r"[a-z0-9_]{1,32}", command):
                await self._command(command, rest, text, chat_id, sender, hint)
                return
        if len(text) > self.settings.max_text_chars:
            text = cut_text(text, self.settings.max_text_chars)
            await self._say(chat_id, sender, "too_long", await self._language(sender, hint))
        if self.message_interceptor is not None and await self.run_hook(self.message_interceptor, sender, text):
            return
        await self._to_rasa(text, chat_id, sender, hint)

    async def _command(self, command: str, rest: str, text: str, chat_id: int, sender: str,
                       hint: Optional[str]) -> None:
        if command == "start":
            language = await self._language(sender, hint)
            await self.send_and_log(chat_id, sender, message_text("intro", language), self.language_buttons())
            await self._mark_intro_shown(sender)
        elif command == "language":
            language = await self._language(sender, hint)
            await self.send_and_log(chat_id, sender, message_text("ask_language", language), self.language_buttons())
        elif command == "delete":
            await self._delete_command(chat_id, sender, hint)
        elif command in self.command_handlers and await self.run_hook(self.command_handlers[command], sender,
                                                                       chat_id) is not False:
            return  # handled (a handler returns False to leave the command to the assistant)
        elif self.message_interceptor is not None and await self.run_hook(self.message_interceptor, sender, text):
            return  # e.g. during a live hand-off: relayed to the counsellor
        elif command in COMMAND_PAYLOADS:
            await self._to_rasa(COMMAND_PAYLOADS[command], chat_id, sender, hint)
        else:
            # Not ours (e.g. "/end" typed when no hand-off is open): the words without the slash.
            words = (command.replace("_", " ") + " " + rest).strip()
            await self._to_rasa(words, chat_id, sender, hint)

    @staticmethod
    def language_buttons() -> List[Dict[str, str]]:
        return [{"title": LANGUAGE_LABELS[code], "payload": f'/choose_language{{"language_choice":"{code}"}}'}
                for code in LANGUAGES]

    # Rasa ------------------------------------------------------------------------------------------
    @property
    def agent(self) -> Any:
        return getattr(getattr(self.app, "ctx", None), "agent", None)

    async def _to_rasa(self, text: str, chat_id: int, sender: str, hint: Optional[str],
                       apologise: bool = True) -> TelegramOutput:
        output = TelegramOutput(self, chat_id)
        metadata = {"language_hint": hint} if hint else None
        try:
            await self.on_new_message(UserMessage(text, output, sender, input_channel=self.name(), metadata=metadata))
        except Exception as error:
            logger.error("Telegram: the assistant failed on a message (%s)", type(error).__name__)
            logger.debug("Telegram: assistant failure", exc_info=True)
            if apologise:
                await self._say(chat_id, sender, "error_try_again", await self._language(sender, hint))
            return output
        if output.replies == 0 and not output.forget_requested:
            logger.warning("Telegram: the assistant produced no reply to a message")
        if output.forget_requested:
            await self._delete_everything(chat_id, sender, keep=output.sent)
        return output

    async def _language(self, sender: str, hint: Optional[str]) -> str:
        agent = self.agent
        if agent is not None:
            try:
                tracker = await agent.tracker_store.retrieve(sender)
                language = tracker.get_slot("language") if tracker is not None else None
                if language in LANGUAGES:
                    return language
            except Exception as error:
                logger.warning("Telegram: conversation language unknown (%s)", type(error).__name__)
        return language_of_hint(hint) or "en"

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
        except Exception as error:
            logger.warning("Telegram: could not note the shown introduction (%s)", type(error).__name__)

    # deleting ---------------------------------------------------------------------------------------
    async def _delete_command(self, chat_id: int, sender: str, hint: Optional[str]) -> None:
        """/delete runs the same path as "delete my data": the assistant's own
        deletion (hand-off cases in the action server, the tracker) and its
        confirmation, then the chat's messages. If the assistant cannot do it,
        the channel deletes the conversation itself and confirms."""
        language = await self._language(sender, hint)
        await self.run_hook(self.forget_handler, sender)  # an open hand-off closes first (the assistant resumes)
        output = await self._to_rasa(DELETE_PAYLOAD, chat_id, sender, hint, apologise=False)
        if output.forget_requested:
            return
        logger.warning("Telegram: /delete not confirmed by the assistant; the channel deletes the conversation itself")
        notice = await self.client.send_text(chat_id, message_text("deleted", language))
        await self._delete_everything(chat_id, sender, keep=[notice] if notice else [])

    async def _delete_everything(self, chat_id: int, sender: str, keep: Sequence[int]) -> None:
        await self.run_hook(self.forget_handler, sender)  # also after "delete my data" typed as text
        keep_ids = [i for i in keep if i]
        ids = [i for i in self.log.ids(sender) if i not in keep_ids]
        deleted = await self.client.delete_messages(chat_id, ids) if ids else 0
        self.log.remove(sender)
        agent = self.agent
        if agent is not None:
            from channels.tracker_store import forget

            try:
                await forget(agent.tracker_store, sender)
            except Exception as error:
                logger.error("Telegram: conversation not deleted from the tracker store (%s)", type(error).__name__)
        logger.info("Telegram: conversation deleted; %d of %d chat messages removed", deleted, len(ids))
        if keep_ids:
            self.log.add(sender, keep_ids)  # until the notice is gone, a new /delete still finds it
            task = self._spawn(self._delete_notice_later(chat_id, sender, keep_ids))
            self.pending_deletions[task] = (chat_id, sender, keep_ids)
            task.add_done_callback(lambda t: self.pending_deletions.pop(t, None))
        self.chats.pop(sender)

    async def _delete_notice_later(self, chat_id: int, sender: str, ids: List[int]) -> None:
        await asyncio.sleep(self.settings.delete_notice_seconds)
        await self._delete_notice(chat_id, sender, ids)

    async def _delete_notice(self, chat_id: int, sender: str, ids: List[int]) -> None:
        if self.client is not None:
            await self.client.delete_messages(chat_id, ids)
        if self.log is not None:
            self.log.remove(sender, ids)

    # sending ---------------------------------------------------------------------------------------
    def keyboard(self, buttons: Sequence[Dict[str, Any]]) -> List[List[Any]]:
        from telegram import InlineKeyboardButton

        rows = []
        for button in buttons:
            title = str(button.get("title") or button.get("payload") or "")[:64] or "…"
            payload = str(button.get("payload") or button.get("url") or title)
            if button.get("type") == "web_url" or re.match(r"https?://", payload) or button.get("url"):
                rows.append([InlineKeyboardButton(title, url=button.get("url") or payload)])
            else:
                rows.append([InlineKeyboardButton(title, callback_data=self.payloads.data_for(payload))])
        return rows

    async def send(self, chat_id: int, sender: str, text: str, buttons: Sequence[Dict[str, Any]] = ()) -> List[int]:
        """Sends a reply (split if long; the keyboard on its last part); returns the message ids."""
        parts = split_text(text) or (["👇"] if buttons else [])
        ids = []
        for i, part in enumerate(parts):
            keyboard = self.keyboard(buttons) if buttons and i == len(parts) - 1 else None
            message_id = await self.client.send_text(chat_id, part, keyboard)
            if message_id is not None:
                ids.append(message_id)
        return ids

    async def send_and_log(self, chat_id: int, sender: str, text: str,
                            buttons: Sequence[Dict[str, Any]] = ()) -> List[int]:
        ids = await self.send(chat_id, sender, text, buttons)
        self.log.add(sender, ids)
        return ids

    async def _say(self, chat_id: int, sender: str, key: str, language: str) -> List[int]:
        return await self.send_and_log(chat_id, sender, message_text(key, language))

    async def send_to_sender(self, sender: str, text: str, buttons: Sequence[Dict[str, Any]] = ()) -> bool:
        """For the hand-off relay: a message to a user whose chat is still known here."""
        chat_id = self.chats.get(sender)
        if chat_id is None or self.client is None:
            return False
        return bool(await self.send_and_log(chat_id, sender, text, buttons))


# -- command line -----------------------------------------------------------------------------------

def webhook_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith(WEBHOOK_PATH) else url + WEBHOOK_PATH


async def _set_webhook(url: str, settings: Settings) -> int:
    client = TelegramBot(settings.token, settings.api_base_url)
    try:
        await client.start()
        target = webhook_url(url)
        if not target.startswith("https://"):
            print("Note: Telegram only delivers to https:// addresses.", file=sys.stderr)
        if not await client.set_webhook(target, settings.webhook_secret):
            print("Setting the webhook failed (see the log line above).", file=sys.stderr)
            return 1
        commands = await client.set_commands()
        print(f"Webhook set: {target} (with the secret; updates: {', '.join(ALLOWED_UPDATES)}); "
              f"command menus set for {commands} language(s).")
        return 0
    finally:
        await client.stop()


async def _delete_webhook(settings: Settings) -> int:
    client = TelegramBot(settings.token, settings.api_base_url)
    try:
        ok = await client.delete_webhook()
        print("Webhook removed." if ok else "Removing the webhook failed.")
        return 0 if ok else 1
    finally:
        await client.stop()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m channels.telegram_channel", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    set_hook = commands.add_parser("set-webhook", help="point Telegram at this server's webhook (once)")
    set_hook.add_argument("url", help="public https address of the Rasa server (the webhook path is added)")
    commands.add_parser("delete-webhook", help="stop webhook delivery")
    commands.add_parser("poll", help="start Waypoint (as `make run`) with the Telegram channel polling getUpdates")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = Settings.from_env()
    if not settings.enabled:
        print("TELEGRAM_BOT_TOKEN is not set.", file=sys.stderr)
        return 2
    if args.command == "set-webhook":
        return asyncio.run(_set_webhook(args.url, settings))
    if args.command == "delete-webhook":
        return asyncio.run(_delete_webhook(settings))
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "TELEGRAM_POLLING": "1"}
    os.execvpe("bash", ["bash", str(root / "scripts" / "run.sh")], env)
    return 0  # pragma: no cover - exec does not return


if __name__ == "__main__":
    sys.exit(main())
