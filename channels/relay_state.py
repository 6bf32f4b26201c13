"""The hand-off relay's state shared by every Rasa server through Redis
(channels/operators.py), when the scale-out settings name one
(``WAYPOINT_REDIS_HOST``, ``WAYPOINT_REDIS_PORT``, ``WAYPOINT_REDIS_PASSWORD``,
``WAYPOINT_REDIS_DB``, as channels/telegram_channel.py's ``SharedRecentIds``).

Keys (prefix ``waypoint:handoff:``), each with an expiry:

- ``case:<id>``         a hash: the case's record (ids, channel, language,
                        country, topic, the redacted summary the user agreed to
                        share, state, the post's message id, emergency flag,
                        deadline). No message text.
- ``case:<id>:relayed`` a list: ids of our messages of the case in the operators' chat
- ``sender:<sender>``   the sender's open case id
- ``message:<id>``      the case id of a message in the operators' chat (for replies)
- ``queue:<sender>``    what waits for a web chat / REST user (counsellor
                        messages, notices): the only key holding text; it lives
                        ``QUEUE_TTL`` at most and is deleted when taken
- ``interrupted:<sender>`` a user to tell, on their next message, that their case was lost

A state change is a compare-and-set in one Redis transaction (``WATCH``), so
two servers never both expire, accept or close a case. Every call is
synchronous with short socket timeouts (a loopback round trip); a failure
raises, and the relay then falls back to its own memory (one warning).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

PREFIX = "waypoint:handoff"
OPEN_TTL = 7 * 24 * 3600  # a case record while open (renewed on each change)
FINISHED_TTL = 2 * 24 * 3600  # ... once finished: late replies get a clear answer
MESSAGE_TTL = 7 * 24 * 3600
INTERRUPTED_TTL = 30 * 24 * 3600
FIELDS = ("case_id", "sender_id", "channel", "language", "country", "topic", "summary", "state", "reason",
          "post_id", "emergency", "deadline")


def client_from_env(env: Optional[Dict[str, str]] = None) -> Any:
    """A Redis client for the scale-out settings, or None without WAYPOINT_REDIS_HOST
    (also for channels/telegram_channel.py's shared update ids)."""
    env = dict(os.environ if env is None else env)
    host = env.get("WAYPOINT_REDIS_HOST", "").strip()
    if not host:
        return None
    import redis

    return redis.Redis(host=host, port=int(env.get("WAYPOINT_REDIS_PORT") or 6379),
                       password=env.get("WAYPOINT_REDIS_PASSWORD") or None,
                       db=int(env.get("WAYPOINT_REDIS_DB") or 0), socket_timeout=0.5, socket_connect_timeout=0.5)


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class SharedRelayState:
    def __init__(self, client: Any, prefix: str = PREFIX):
        self.client, self.prefix = client, prefix

    @classmethod
    def from_env(cls, env: Optional[Dict[str, str]] = None) -> Optional["SharedRelayState"]:
        client = client_from_env(env)
        return cls(client) if client is not None else None

    def key(self, *parts: Any) -> str:
        return ":".join([self.prefix, *[str(p) for p in parts]])

    def ping(self) -> None:
        self.client.ping()

    # -- case records ------------------------------------------------------------------------------
    def create(self, record: Dict[str, Any]) -> bool:
        """A new waiting case; False when one with that id exists already (another server made it)."""
        import redis

        key = self.key("case", record["case_id"])
        mapping = {k: str(v) for k, v in record.items() if k in FIELDS and v is not None}
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, OPEN_TTL)
                pipe.set(self.key("sender", record["sender_id"]), record["case_id"], ex=OPEN_TTL)
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def get(self, case_id: str) -> Optional[Dict[str, Any]]:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key("case", case_id))
            pipe.lrange(self.key("case", case_id, "relayed"), 0, -1)
            fields, relayed = pipe.execute()
        if not fields:
            return None
        record: Dict[str, Any] = {_text(k): _text(v) for k, v in fields.items()}
        record["relayed"] = [int(_text(i)) for i in relayed]
        return record

    def update(self, case_id: str, **fields: Any) -> None:
        key = self.key("case", case_id)
        values = {k: str(v) for k, v in fields.items() if v is not None}
        gone = [k for k, v in fields.items() if v is None]
        with self.client.pipeline() as pipe:
            if values:
                pipe.hset(key, mapping=values)
            if gone:
                pipe.hdel(key, *gone)
            pipe.execute()

    def flag_emergency(self, case_id: str) -> bool:
        """True the first time only."""
        return bool(self.client.hsetnx(self.key("case", case_id), "emergency", "1"))

    def move(self, case_id: str, new: str, transitions: Dict[str, Any], open_states: Tuple[str, ...],
             attempts: int = 20) -> Tuple[bool, Optional[str], Optional[Dict[str, Any]]]:
        """Compare-and-set of the state along ``transitions``: (moved, the state
        before, the record after). A finished case leaves its sender's link."""
        import redis

        key = self.key("case", case_id)
        for _ in range(attempts):
            with self.client.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    state, sender = (_text(v) for v in pipe.hmget(key, "state", "sender_id"))
                    if state is None or new not in transitions.get(state, ()):
                        pipe.unwatch()
                        return False, state, self.get(case_id)
                    sender_key = self.key("sender", sender)
                    pipe.watch(sender_key)
                    linked = _text(pipe.get(sender_key))
                    pipe.multi()
                    pipe.hset(key, "state", new)
                    if new in open_states:
                        pipe.expire(key, OPEN_TTL)
                        pipe.expire(sender_key, OPEN_TTL)
                    else:
                        pipe.expire(key, FINISHED_TTL)
                        pipe.expire(self.key("case", case_id, "relayed"), FINISHED_TTL)
                        if linked == case_id:
                            pipe.delete(sender_key)
                    pipe.execute()
                    return True, state, self.get(case_id)
                except redis.WatchError:
                    continue
        return False, None, self.get(case_id)

    def add_relayed(self, case_id: str, ids: List[int]) -> None:
        if ids:
            key = self.key("case", case_id, "relayed")
            with self.client.pipeline() as pipe:
                pipe.rpush(key, *ids)
                pipe.expire(key, OPEN_TTL)
                pipe.execute()

    def clear_relayed(self, case_id: str) -> None:
        self.client.delete(self.key("case", case_id, "relayed"))

    def sender_case(self, sender_id: str) -> Optional[str]:
        return _text(self.client.get(self.key("sender", sender_id)))

    def all_open(self) -> List[str]:
        return [_text(k).rsplit(":", 1)[-1] for k in self.client.scan_iter(match=self.key("sender", "*"))]

    # -- operators' messages -----------------------------------------------------------------------
    def remember(self, message_id: int, case_id: str) -> None:
        self.client.set(self.key("message", message_id), case_id, ex=MESSAGE_TTL)

    def message_case(self, message_id: int) -> Optional[str]:
        return _text(self.client.get(self.key("message", message_id)))

    # -- delivery queues ---------------------------------------------------------------------------
    def push(self, sender_id: str, items: List[Dict[str, Any]], limit: int, ttl: float) -> None:
        if not items:
            return
        key = self.key("queue", sender_id)
        with self.client.pipeline() as pipe:
            pipe.rpush(key, *[json.dumps(item, ensure_ascii=False) for item in items])
            pipe.ltrim(key, -limit, -1)
            pipe.expire(key, int(ttl))
            pipe.execute()

    def take(self, sender_id: str) -> List[Dict[str, Any]]:
        key = self.key("queue", sender_id)
        with self.client.pipeline() as pipe:  # MULTI: read and delete at once, handed over once
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
            items, _ = pipe.execute()
        return [json.loads(_text(item)) for item in items]

    # -- users whose case was lost ------------------------------------------------------------------
    def interrupt(self, sender_id: str) -> None:
        self.client.set(self.key("interrupted", sender_id), "1", ex=INTERRUPTED_TTL)

    def pop_interrupted(self, sender_id: str) -> bool:
        """True once: the caller tells the user."""
        return bool(self.client.delete(self.key("interrupted", sender_id)))
