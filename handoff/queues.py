"""What waits for a web chat or REST user during a hand-off (what a counsellor
wrote, notices): these channels cannot push a message, so it waits until the
page polls or the user writes again. The only place relayed text is held, and
never on disk:

- :class:`MemoryQueues`: in this process (one Rasa server, the embedded defaults);
- :class:`RedisQueues`: in Redis (``WAYPOINT_REDIS_*``), so the page's next poll
  may reach any server; each queue expires after ``ttl`` and is deleted when taken;
- :class:`FallbackQueues`: Redis while it answers, this process's memory when it
  does not (one warning), so a hand-off never stops for an outage.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Any, Deque, Dict, List, Optional

logger = logging.getLogger(__name__)

LIMIT = 200  # undelivered messages kept per user
TTL = 48 * 3600.0  # ... and for how long when the page never asks for them
PREFIX = "waypoint:handoff:queue:"


class MemoryQueues:
    def __init__(self, limit: int = LIMIT, ttl: float = TTL) -> None:
        self.limit, self.ttl = limit, ttl
        self._lock = threading.Lock()
        self._queues: Dict[str, Deque[Dict[str, Any]]] = {}
        self._at: Dict[str, float] = {}

    def push(self, sender_id: str, items: List[Dict[str, Any]]) -> None:
        with self._lock:
            self._drop_old()
            queue = self._queues.setdefault(sender_id, collections.deque(maxlen=self.limit))
            queue.extend(items)
            self._at[sender_id] = time.monotonic()

    def take(self, sender_id: str) -> List[Dict[str, Any]]:
        with self._lock:
            self._at.pop(sender_id, None)
            return list(self._queues.pop(sender_id, ()))

    def _drop_old(self) -> None:
        cutoff = time.monotonic() - self.ttl
        for sender in [s for s, at in self._at.items() if at < cutoff]:
            self._queues.pop(sender, None)
            self._at.pop(sender, None)


class RedisQueues:
    def __init__(self, client: Any, limit: int = LIMIT, ttl: float = TTL) -> None:
        self.client, self.limit, self.ttl = client, limit, ttl

    def push(self, sender_id: str, items: List[Dict[str, Any]]) -> None:
        if not items:
            return
        key = PREFIX + sender_id
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(key, *[json.dumps(i, ensure_ascii=False) for i in items])
        pipe.ltrim(key, -self.limit, -1)
        pipe.expire(key, int(self.ttl))
        pipe.execute()

    def take(self, sender_id: str) -> List[Dict[str, Any]]:
        key = PREFIX + sender_id
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raw, _ = pipe.execute()
        return [json.loads(r) for r in raw or []]


class FallbackQueues:
    def __init__(self, primary: Optional[RedisQueues], fallback: Optional[MemoryQueues] = None) -> None:
        self.primary, self.fallback = primary, fallback or MemoryQueues()
        self._warned = False

    def _failed(self, error: Exception) -> None:
        if not self._warned:
            logger.warning(
                "hand-off queues: Redis unreachable (%s); this server's memory until it is back", type(error).__name__
            )
            self._warned = True

    def push(self, sender_id: str, items: List[Dict[str, Any]]) -> None:
        if self.primary is not None:
            try:
                self.primary.push(sender_id, items)
                self._warned = False
                return
            except Exception as error:  # noqa: BLE001 - any Redis failure: memory instead
                self._failed(error)
        self.fallback.push(sender_id, items)

    def take(self, sender_id: str) -> List[Dict[str, Any]]:
        taken: List[Dict[str, Any]] = []
        if self.primary is not None:
            try:
                taken = self.primary.take(sender_id)
            except Exception as error:  # noqa: BLE001
                self._failed(error)
        return taken + self.fallback.take(sender_id)


def redis_client(env: Optional[Dict[str, str]] = None) -> Any:
    """A Redis client for the scale-out settings, or None without WAYPOINT_REDIS_HOST."""
    from content import settings

    host = settings.get("WAYPOINT_REDIS_HOST", env)
    if not host:
        return None
    import redis

    return redis.Redis(
        host=host,
        port=settings.get_int("WAYPOINT_REDIS_PORT", env),
        password=settings.get("WAYPOINT_REDIS_PASSWORD", env) or None,
        db=settings.get_int("WAYPOINT_REDIS_DB", env),
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )


def from_settings(env: Optional[Dict[str, str]] = None) -> FallbackQueues:
    client = redis_client(env)
    return FallbackQueues(RedisQueues(client) if client is not None else None)
