"""What the messaging channels must remember between messages, in the Rasa
server's own store (SQLite by default, PostgreSQL with the scale-out settings,
beside the hand-off tables), so that any server behind the balancer can take
the next message of a conversation:

- ``seen``: the platform's update or message ids already answered (Telegram's
  ``update_id``, Messenger's ``mid``, WhatsApp's ``wamid``): a retry is answered
  once, whichever server gets it; kept two days;
- ``addresses``: how to reach a user (a Telegram chat id), by hashed sender id,
  **encrypted** with a key derived from ``WAYPOINT_ID_SECRET``: the store never
  holds a platform identity in clear; kept 48 hours after the last message;
- ``messages``: ids of a chat's messages (never their text) for "delete my
  data" on both sides, for the 48 hours a Telegram bot may delete them;
- ``payloads``: the bot's own long button payloads behind short ids (Telegram's
  callback data holds 64 bytes); kept 30 days.

When the store cannot be reached, each call logs once and the channel goes on
with this process's memory (nothing a user sent is lost: it is only answered
without the cross-server guarantees until the store is back).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import logging
import secrets
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from handoff.repository import create_tables, open_engine

logger = logging.getLogger(__name__)

SEEN_FOR = 2 * 24 * 3600
ADDRESS_FOR = 48 * 3600
MESSAGES_FOR = 48 * 3600  # the Bot API lets a bot delete messages of a private chat for 48 hours
PAYLOADS_FOR = 30 * 24 * 3600


class _Memory:
    """The fallback, and the cache in front of the SQL store."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.seen: "collections.OrderedDict[Tuple[str, str], float]" = collections.OrderedDict()
        self.addresses: Dict[Tuple[str, str], Tuple[str, float]] = {}
        self.messages: Dict[Tuple[str, str], Dict[int, float]] = {}
        self.payloads: Dict[str, str] = {}

    def mark_seen(self, platform: str, key: str) -> bool:
        with self.lock:
            item = (platform, key)
            if item in self.seen:
                return True
            self.seen[item] = time.time()
            while len(self.seen) > self.size:
                self.seen.popitem(last=False)
            return False


class ChannelState:
    def __init__(self, url: str, secret: bytes) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.memory = _Memory()
        self._warned = False
        self._fernet = _fernet(secret)
        self.engine = open_engine(url)
        meta = sa.MetaData()
        self.seen_t = sa.Table(
            "waypoint_channel_seen",
            meta,
            sa.Column("platform", sa.String(16), primary_key=True),
            sa.Column("key", sa.String(200), primary_key=True),
            sa.Column("at", sa.Float, nullable=False, index=True),
        )
        self.addresses_t = sa.Table(
            "waypoint_channel_addresses",
            meta,
            sa.Column("platform", sa.String(16), primary_key=True),
            sa.Column("sender_id", sa.String(128), primary_key=True),
            sa.Column("address", sa.Text, nullable=False),
            sa.Column("at", sa.Float, nullable=False, index=True),
        )
        self.messages_t = sa.Table(
            "waypoint_channel_messages",
            meta,
            sa.Column("platform", sa.String(16), primary_key=True),
            sa.Column("sender_id", sa.String(128), primary_key=True),
            sa.Column("message_id", sa.BigInteger, primary_key=True),
            sa.Column("at", sa.Float, nullable=False, index=True),
        )
        self.payloads_t = sa.Table(
            "waypoint_channel_payloads",
            meta,
            sa.Column("key", sa.String(32), primary_key=True),
            sa.Column("payload_hash", sa.String(64), nullable=False, unique=True),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("at", sa.Float, nullable=False, index=True),
        )
        self._last_purge = 0.0
        try:
            create_tables(meta, self.engine)
        except Exception as error:  # noqa: BLE001 - the channel starts anyway, on memory
            self._failed(error)

    # -- failures ------------------------------------------------------------------------------------
    def _failed(self, error: Exception) -> None:
        if not self._warned:
            logger.warning(
                "channel state: store unreachable (%s); this server's memory until it is back", type(error).__name__
            )
            self._warned = True

    def _ok(self) -> None:
        if self._warned:
            logger.info("channel state: store reachable again")
        self._warned = False

    def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._last_purge > 600:
            self._last_purge = time.monotonic()
            self.purge()

    # -- seen ----------------------------------------------------------------------------------------
    def seen(self, platform: str, key: Any) -> bool:
        """True if this update/message id was seen before (on any server); otherwise remembers it."""
        key = str(key)[:200]
        if self.memory.mark_seen(platform, key):
            return True
        try:
            with self.engine.begin() as connection:
                connection.execute(self.seen_t.insert().values(platform=platform, key=key, at=time.time()))
            self._ok()
        except self.sa.exc.IntegrityError:
            return True
        except Exception as error:  # noqa: BLE001
            self._failed(error)
        self._purge_now_and_then()
        return False

    # -- addresses -----------------------------------------------------------------------------------
    def put_address(self, platform: str, sender_id: str, address: str) -> None:
        """Written to the store on every message (its time is the user's last
        message, and a row another server deleted comes back at once); kept in
        this process's memory only while the store cannot be reached."""
        now = time.time()
        token = self._fernet.encrypt(address.encode()).decode()
        try:
            with self.engine.begin() as connection:
                done = connection.execute(
                    self.addresses_t.update()
                    .where(self.addresses_t.c.platform == platform, self.addresses_t.c.sender_id == sender_id)
                    .values(address=token, at=now)
                ).rowcount
                if not done:
                    connection.execute(
                        self.addresses_t.insert().values(platform=platform, sender_id=sender_id, address=token, at=now)
                    )
            self._ok()
            with self.memory.lock:
                self.memory.addresses.pop((platform, sender_id), None)
        except Exception as error:  # noqa: BLE001
            self._failed(error)
            with self.memory.lock:
                self.memory.addresses[(platform, sender_id)] = (address, now)

    def address(self, platform: str, sender_id: str) -> Optional[str]:
        """From the store (the truth every server shares); from this process's
        memory only what it kept while the store was unreachable."""
        try:
            with self.engine.connect() as connection:
                token = connection.execute(
                    self.sa.select(self.addresses_t.c.address).where(
                        self.addresses_t.c.platform == platform,
                        self.addresses_t.c.sender_id == sender_id,
                        self.addresses_t.c.at > time.time() - ADDRESS_FOR,
                    )
                ).scalar()
            self._ok()
        except Exception as error:  # noqa: BLE001
            self._failed(error)
            token = None
        if token is None:
            with self.memory.lock:
                known = self.memory.addresses.get((platform, sender_id))
            return known[0] if known is not None and known[1] > time.time() - ADDRESS_FOR else None
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except Exception:  # noqa: BLE001 - another key (WAYPOINT_ID_SECRET changed): unknown
            return None

    # -- message ids ---------------------------------------------------------------------------------
    def add_messages(self, platform: str, sender_id: str, message_ids: Iterable[int]) -> None:
        now = time.time()
        ids = [int(i) for i in message_ids if i]
        if not ids:
            return
        with self.memory.lock:
            self.memory.messages.setdefault((platform, sender_id), {}).update({i: now for i in ids})
        try:
            with self.engine.begin() as connection:
                have = set(
                    connection.execute(
                        self.sa.select(self.messages_t.c.message_id).where(
                            self.messages_t.c.platform == platform,
                            self.messages_t.c.sender_id == sender_id,
                            self.messages_t.c.message_id.in_(ids),
                        )
                    )
                    .scalars()
                    .all()
                )
                rows = [
                    {"platform": platform, "sender_id": sender_id, "message_id": i, "at": now}
                    for i in ids
                    if i not in have
                ]
                if rows:
                    connection.execute(self.messages_t.insert(), rows)
            self._ok()
        except Exception as error:  # noqa: BLE001
            self._failed(error)
        self._purge_now_and_then()

    def message_ids(self, platform: str, sender_id: str) -> List[int]:
        cutoff = time.time() - MESSAGES_FOR
        with self.memory.lock:
            ids = {i for i, at in self.memory.messages.get((platform, sender_id), {}).items() if at > cutoff}
        try:
            with self.engine.connect() as connection:
                ids |= set(
                    connection.execute(
                        self.sa.select(self.messages_t.c.message_id).where(
                            self.messages_t.c.platform == platform,
                            self.messages_t.c.sender_id == sender_id,
                            self.messages_t.c.at > cutoff,
                        )
                    )
                    .scalars()
                    .all()
                )
            self._ok()
        except Exception as error:  # noqa: BLE001
            self._failed(error)
        return sorted(int(i) for i in ids)

    def remove_messages(self, platform: str, sender_id: str, message_ids: Optional[Iterable[int]] = None) -> None:
        ids = None if message_ids is None else [int(i) for i in message_ids]
        with self.memory.lock:
            if ids is None:
                self.memory.messages.pop((platform, sender_id), None)
            else:
                for i in ids:
                    self.memory.messages.get((platform, sender_id), {}).pop(i, None)
        where = [self.messages_t.c.platform == platform, self.messages_t.c.sender_id == sender_id]
        if ids is not None:
            where.append(self.messages_t.c.message_id.in_(ids))
        try:
            with self.engine.begin() as connection:
                connection.execute(self.messages_t.delete().where(*where))
            self._ok()
        except Exception as error:  # noqa: BLE001
            self._failed(error)

    # -- payloads ------------------------------------------------------------------------------------
    def payload_key(self, payload: str) -> str:
        digest = hashlib.sha256(payload.encode()).hexdigest()
        with self.memory.lock:
            for known_key, known in self.memory.payloads.items():
                if known == payload:
                    return known_key
        stored: Optional[str] = None
        try:
            with self.engine.begin() as connection:
                stored = connection.execute(
                    self.sa.select(self.payloads_t.c.key).where(self.payloads_t.c.payload_hash == digest)
                ).scalar()
                if stored is None:
                    stored = secrets.token_hex(8)
                    connection.execute(
                        self.payloads_t.insert().values(
                            key=stored, payload_hash=digest, payload=payload, at=time.time()
                        )
                    )
            self._ok()
        except Exception as error:  # noqa: BLE001
            self._failed(error)
        key = stored or secrets.token_hex(8)
        with self.memory.lock:
            self.memory.payloads[key] = payload
            while len(self.memory.payloads) > 20000:
                self.memory.payloads.pop(next(iter(self.memory.payloads)))
        return key

    def payload(self, key: str) -> Optional[str]:
        with self.memory.lock:
            known = self.memory.payloads.get(key)
        if known is not None:
            return known
        try:
            with self.engine.connect() as connection:
                found = connection.execute(
                    self.sa.select(self.payloads_t.c.payload).where(
                        self.payloads_t.c.key == key, self.payloads_t.c.at > time.time() - PAYLOADS_FOR
                    )
                ).scalar()
            self._ok()
            return found
        except Exception as error:  # noqa: BLE001
            self._failed(error)
            return None

    # -- forgetting ----------------------------------------------------------------------------------
    def forget(self, platform: str, sender_id: str) -> None:
        """What the channel knows of a user, gone ("delete my data")."""
        with self.memory.lock:
            self.memory.addresses.pop((platform, sender_id), None)
        self.remove_messages(platform, sender_id)
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    self.addresses_t.delete().where(
                        self.addresses_t.c.platform == platform, self.addresses_t.c.sender_id == sender_id
                    )
                )
            self._ok()
        except Exception as error:  # noqa: BLE001
            self._failed(error)

    def purge(self) -> int:
        now = time.time()
        try:
            with self.engine.begin() as connection:
                removed = connection.execute(self.seen_t.delete().where(self.seen_t.c.at < now - SEEN_FOR)).rowcount
                removed += connection.execute(
                    self.addresses_t.delete().where(self.addresses_t.c.at < now - ADDRESS_FOR)
                ).rowcount
                removed += connection.execute(
                    self.messages_t.delete().where(self.messages_t.c.at < now - MESSAGES_FOR)
                ).rowcount
                removed += connection.execute(
                    self.payloads_t.delete().where(self.payloads_t.c.at < now - PAYLOADS_FOR)
                ).rowcount
            self._ok()
            return removed
        except Exception as error:  # noqa: BLE001
            self._failed(error)
            return 0

    def close(self) -> None:
        self.engine.dispose()


def _fernet(secret: bytes) -> Any:
    from cryptography.fernet import Fernet

    key = hashlib.sha256(b"waypoint channel addresses\0" + (secret or b"")).digest()
    return Fernet(base64.urlsafe_b64encode(key))


_state: Optional[ChannelState] = None


def get_state() -> ChannelState:
    """This process's channel state (one store for every channel)."""
    global _state
    if _state is None:
        from channels.base import id_secret
        from content import settings

        _state = ChannelState(settings.state_url(), id_secret())
    return _state


def reset() -> None:
    global _state
    if _state is not None:
        _state.close()
    _state = None
