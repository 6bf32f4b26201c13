"""What every input channel shares: sender ids that hide platform identities,
the conversation's language for a channel's own messages, what a user may be
shown of a turn, the hand-off around a turn, "delete my data", rate limits,
one user's messages in order (``KeyedLocks``),
and running a turn so that a failure is answered kindly, never with silence.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import logging
import os
import time
from typing import Any, Awaitable, Callable, Deque, Dict, Iterable, List, Optional, Tuple

from content import languages, settings
from content.texts import text as message_text

logger = logging.getLogger(__name__)

FORGET = "forget_conversation"
HANDOFF = "handoff_requested"
MARKERS = (FORGET, HANDOFF)


# -- identities ----------------------------------------------------------------------------------------


def _derive(key: str, purpose: str) -> str:
    return hmac.new(key.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def id_secret(env: Optional[Dict[str, str]] = None) -> bytes:
    """Key of the sender-id hashes: WAYPOINT_ID_SECRET, else derived from the
    Telegram token (then a new token starts new conversations)."""
    explicit = settings.get("WAYPOINT_ID_SECRET", env)
    if explicit:
        return explicit.encode()
    token = settings.get("TELEGRAM_BOT_TOKEN", env)
    return _derive(token, "waypoint sender ids").encode() if token else b""


def sender_id_for(platform: str, platform_id: Any, secret: bytes, prefix: Optional[str] = None) -> str:
    """Rasa's sender id for a platform's user: a keyed hash, so the tracker store
    never holds a platform identity (and without the key it cannot be reversed by
    trying every possible id)."""
    digest = hmac.new(secret, f"{platform}:{platform_id}".encode(), hashlib.sha256).hexdigest()[:32]
    return f"{prefix or platform[:2]}-{digest}"


# -- what users see ------------------------------------------------------------------------------------


def is_marker(custom: Any) -> bool:
    return isinstance(custom, dict) and custom.get("waypoint") in MARKERS


def marker(messages: Iterable[Dict[str, Any]], kind: str) -> Optional[Dict[str, Any]]:
    for item in messages:
        custom = item.get("custom") if isinstance(item, dict) else None
        if isinstance(custom, dict) and custom.get("waypoint") == kind:
            return custom
    return None


def visible(messages: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Text and buttons only; never the assistant's markers or other custom payloads."""
    shown = []
    for msg in messages:
        if msg.get("custom") is not None:
            continue
        item: Dict[str, Any] = {}
        if isinstance(msg.get("text"), str) and msg["text"]:
            item["text"] = msg["text"]
        buttons = [
            {"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
            for b in msg.get("buttons") or []
            if isinstance(b, dict) and b.get("payload")
        ]
        if buttons:
            item["buttons"] = buttons
        if item:
            shown.append(item)
    return shown


async def conversation_language(agent: Any, sender_id: str, hint: Optional[str] = None) -> str:
    """The conversation's ``language`` slot, else the channel's hint, else English
    (for the channel's own kind answers: too long, too fast, not text)."""
    slot = None
    if agent is not None:
        try:
            tracker = await agent.tracker_store.retrieve(sender_id)
            slot = tracker.get_slot("language") if tracker is not None else None
        except Exception as error:  # noqa: BLE001 - a kind answer must not depend on the store
            logger.warning("channel: the conversation's language is unknown (%s)", type(error).__name__)
    return str(slot) if languages.is_supported(slot) else (languages.normalise_hint(hint) or languages.DEFAULT)


# -- the hand-off and deletion around a turn ----------------------------------------------------------


def relay_for(app: Any = None) -> Any:
    from handoff import get_relay

    return get_relay(app)


async def after_turn(relay: Any, sender_id: str, messages: List[Dict[str, Any]], channel: str) -> Optional[str]:
    """Acts on a turn's markers (a consented hand-off, "delete my data");
    returns the hand-off's state for channels that show it."""
    requested = marker(messages, HANDOFF)
    if requested:
        await relay.case_requested(sender_id, requested, channel)
    forgotten = marker(messages, FORGET)
    if forgotten:
        remember_language(sender_id, forgotten.get("language"))
        await relay.forget(sender_id)
    return relay.state_of(sender_id)


# After "delete my data" the conversation is gone, its language with it: the
# next message would be answered in whatever a short text looks like. The
# language alone (never the text) is kept in this process's memory for a few
# minutes and passed as the channel's hint for that sender's next message.
_LANGUAGE_AFTER_DELETION: Dict[str, Any] = {}
LANGUAGE_AFTER_DELETION_SECONDS = 600.0


def remember_language(sender_id: str, language: Optional[str]) -> None:
    if languages.is_supported(language):
        now = time.monotonic()
        for key in [k for k, (_, at) in _LANGUAGE_AFTER_DELETION.items() if now - at > LANGUAGE_AFTER_DELETION_SECONDS]:
            _LANGUAGE_AFTER_DELETION.pop(key, None)
        _LANGUAGE_AFTER_DELETION[sender_id] = (language, now)


def language_hint(sender_id: str, hint: Optional[str]) -> Optional[str]:
    """The hint to pass with a message: the language of a conversation the user
    just deleted, else the channel's own."""
    kept = _LANGUAGE_AFTER_DELETION.get(sender_id)
    if kept and time.monotonic() - kept[1] <= LANGUAGE_AFTER_DELETION_SECONDS:
        return kept[0]
    return hint


async def forget_everything(agent: Any, sender_id: str, relay: Any = None) -> None:
    """What "delete my data" deletes on the server: any hand-off case and its
    relayed messages, and the conversation."""
    from plugins.tracker_store import forget

    if relay is not None:
        try:
            await relay.forget(sender_id)
        except Exception as error:  # noqa: BLE001 - the deletion itself must go on
            logger.error("channel: hand-off relay failed while deleting (%s)", type(error).__name__)
    async with agent.lock_store.lock(sender_id):  # not while a message of it is being handled
        await forget(agent.tracker_store, sender_id)


# -- rate limits ---------------------------------------------------------------------------------------


class SlidingWindow:
    """At most ``limit`` events per key in any ``window`` seconds, in memory."""

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 200_000):
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self.events: Dict[Any, Deque[float]] = {}
        self._calls = 0

    def _recent(self, key: Any, now: float) -> Deque[float]:
        times = self.events.get(key)
        if times is None:
            return collections.deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def full(self, key: Any, now: float) -> bool:
        return self.limit > 0 and len(self._recent(key, now)) >= self.limit

    def add(self, key: Any, now: float) -> None:
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

    def allow(self, key: Any, now: Optional[float] = None) -> bool:
        """Counts the event and says yes, or says no without counting it."""
        now = time.monotonic() if now is None else now
        if self.full(key, now):
            return False
        self.add(key, now)
        return True


class Throttle:
    """A user's messages per minute (:class:`SlidingWindow`), and whether to
    tell them to slow down: at most once a minute each."""

    def __init__(self, limit: int):
        self.limiter = SlidingWindow(limit)
        self._told: Dict[Any, float] = {}

    @property
    def limit(self) -> int:
        return self.limiter.limit

    @limit.setter
    def limit(self, value: int) -> None:
        self.limiter.limit = value

    def check(self, key: Any) -> Tuple[bool, bool]:
        """(allowed, tell the user) for a new message of ``key``."""
        if self.limiter.allow(key):
            return True, False
        now = time.monotonic()
        tell = self._told.get(key, 0) < now - 60
        if tell:
            self._told[key] = now
            if len(self._told) > 50000:
                self._told.clear()
        return False, tell

    def forget(self, key: Any) -> None:
        self._told.pop(key, None)


class RateLimiter:
    """Per session (or chat) and per hashed client address."""

    def __init__(self, per_session: int, per_address: int, window: float = 60.0):
        self.sessions = SlidingWindow(per_session, window)
        self.addresses = SlidingWindow(per_address, window)
        self._key = os.urandom(16)  # addresses are hashed with a key that dies with the process

    def address_key(self, address: str) -> str:
        return hmac.new(self._key, address.encode(), hashlib.sha256).hexdigest()[:24]

    def allow(self, session: str, address: str, now: Optional[float] = None) -> bool:
        now = time.monotonic() if now is None else now
        address = self.address_key(address)
        if self.sessions.full(session, now) or self.addresses.full(address, now):
            return False
        self.sessions.add(session, now)
        self.addresses.add(address, now)
        return True


# -- running a turn -----------------------------------------------------------------------------------


async def run_turn(on_new_message: Callable[[Any], Awaitable[Any]], user_message: Any, channel: str) -> bool:
    """One message through Rasa. False (logged without text) when it failed;
    the caller then answers with :func:`sorry`."""
    import asyncio

    try:
        await on_new_message(user_message)
        return True
    except asyncio.CancelledError:
        logger.error("%s: a turn was cancelled", channel)
        return False
    except Exception as error:
        logger.error("%s: a turn failed (%s)", channel, type(error).__name__)
        logger.debug("%s: turn failure", channel, exc_info=True)
        return False


def sorry(language: str) -> Dict[str, Any]:
    """The answer when the assistant could not answer: kind, with the word to
    type in an emergency."""
    return {"text": message_text("error_try_again", language)}


class KeyedLocks:
    """One asyncio lock per user (FIFO), dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: Dict[Any, Tuple[asyncio.Lock, int]] = {}

    def __call__(self, key: Any) -> "_KeyedLock":
        return _KeyedLock(self, key)

    def __len__(self) -> int:
        return len(self._locks)


class _KeyedLock:
    def __init__(self, owner: KeyedLocks, key: Any):
        self.owner, self.key = owner, key

    async def __aenter__(self) -> None:
        lock, users = self.owner._locks.get(self.key, (None, 0))
        lock = lock or asyncio.Lock()
        self.owner._locks[self.key] = (lock, users + 1)
        await lock.acquire()

    async def __aexit__(self, *exc: Any) -> None:
        lock, users = self.owner._locks[self.key]
        lock.release()
        if users <= 1:
            self.owner._locks.pop(self.key, None)
        else:
            self.owner._locks[self.key] = (lock, users - 1)
