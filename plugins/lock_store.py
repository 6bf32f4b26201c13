"""Rasa's Redis lock store, with each change of a lock made atomically.

Several Rasa servers share conversations through one lock store: the messages
of a conversation must be handled one at a time, in the order they arrived,
whichever server receives them. Rasa 3.6's ``RedisLockStore`` keeps each
conversation's ticket queue under one Redis key, but changes it by reading the
key, changing the queue in Python and writing it back. When two servers take a
ticket for the same conversation at the same moment, both read the same queue,
both write, and one ticket is lost: both turns then run at once (measured:
two messages of one conversation sent at the same moment to two servers, both
answered with the introduction that only the first turn says, in 1 of 5
tries; tests/test_scaleout.py). The problem is known upstream (RasaHQ/rasa
issue 9213; a fix, PR 11256, was reverted in PR 11428 and not released in
the open-source Rasa).

``AtomicRedisLockStore`` keeps Rasa's class, keys, lock format and settings
(``url``, ``port``, ``password``, ``db``, ``key_prefix``...) and only wraps
each read-change-write of a lock in a Redis transaction (WATCH / MULTI /
EXEC, retried when another server changed the key in between): taking a
ticket, dropping expired tickets, and giving a ticket back together with
deleting the lock when no one else waits.

    lock_store:
      type: plugins.lock_store.AtomicRedisLockStore
      url: ...   # as for Rasa's `type: redis`

When Redis cannot be reached, a message is not refused: its conversation is
locked in this server's memory instead (as a single server would), the log
says so once, and Redis is used again as soon as it answers. Two servers may
then handle one conversation's messages at the same moment; that is the price
of answering at all while Redis is down.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, AsyncIterator, Callable, Optional, Tuple, TypeVar

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, InMemoryLockStore, LockError, RedisLockStore

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_ATTEMPTS = 200  # concurrent changes of one conversation's lock before giving up


class AtomicRedisLockStore(RedisLockStore):
    def __init__(self, endpoint_config: Any = None, **kwargs: Any) -> None:
        # Rasa builds lock stores named by module path as cls(endpoint_config=...).
        if endpoint_config is not None:
            kwargs = {"host": endpoint_config.url or "localhost", **(endpoint_config.kwargs or {}), **kwargs}
        super().__init__(**kwargs)
        self.fallback = InMemoryLockStore()
        self._down = False

    @staticmethod
    def _unreachable(error: BaseException) -> bool:
        """Redis cannot be reached (not: a lock that is busy or contended)."""
        import redis

        causes = [error, error.__cause__, error.__context__]
        return any(
            isinstance(c, (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError))
            for c in causes
            if c is not None
        )

    @contextlib.asynccontextmanager
    async def lock(
        self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME, wait_time_in_seconds: float = 1
    ) -> AsyncIterator[TicketLock]:
        ticket: Optional[int] = None
        try:
            ticket = self.issue_ticket(conversation_id, lock_lifetime)
            lock = await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
        except Exception as error:  # only an unreachable Redis is handled here
            if not self._unreachable(error):
                raise
            if not self._down:
                logger.warning(
                    "lock store: Redis unreachable (%s); conversations are locked in this server's "
                    "memory until it is back",
                    type(error).__name__,
                )
                self._down = True
            async with self.fallback.lock(conversation_id, lock_lifetime, wait_time_in_seconds) as memory_lock:
                yield memory_lock
            return
        if self._down:
            logger.warning("lock store: Redis answering again")
            self._down = False
        try:
            yield lock
        finally:
            try:
                self.cleanup(conversation_id, ticket)
            except Exception as error:  # noqa: BLE001 - the ticket expires by itself (its lifetime)
                logger.warning("lock store: a ticket could not be given back (%s)", type(error).__name__)

    def _transact(
        self, conversation_id: str, change: Callable[[Optional[TicketLock]], Tuple[Optional[TicketLock], T]]
    ) -> T:
        """Reads the lock, applies `change` (which returns the lock to write,
        or None to delete it, and a result) and writes it, all or nothing."""
        import redis

        key = self.key_prefix + conversation_id
        with self.red.pipeline() as pipe:
            for _ in range(MAX_ATTEMPTS):
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    lock = TicketLock.from_dict(json.loads(raw)) if raw else None
                    new_lock, result = change(lock)
                    pipe.multi()
                    if new_lock is None:
                        pipe.delete(key)
                    else:
                        pipe.set(key, new_lock.dumps())
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue  # another server changed this lock meanwhile: read it again
        raise LockError(f"lock of conversation changed concurrently {MAX_ATTEMPTS} times")

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def take(lock: Optional[TicketLock]) -> Tuple[TicketLock, int]:
            lock = lock or self.create_lock(conversation_id)
            return lock, lock.issue_ticket(lock_lifetime)

        try:
            return self._transact(conversation_id, take)
        except LockError:
            raise
        except Exception as error:  # as Rasa's issue_ticket does
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

    def update_lock(self, conversation_id: str) -> None:
        def drop_expired(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock is not None:
                lock.remove_expired_tickets()
            return lock, None

        self._transact(conversation_id, drop_expired)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        self.cleanup(conversation_id, ticket_number)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        def give_back(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock is not None:
                lock.remove_ticket_for(ticket_number)
                if not lock.is_someone_waiting():
                    lock = None  # nobody waits: the lock goes
            return lock, None

        self._transact(conversation_id, give_back)
