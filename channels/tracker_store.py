"""Tracker stores that can forget a conversation and purge old ones.

``action_delete_data`` sends a marker message (``actions/privacy.py``); when
the Rasa server saves a tracker whose latest turn carries it, these stores
delete every stored event of that conversation instead of saving, whatever the
channel (REST, shell, Telegram, web chat). Channels call :func:`forget` directly
for ``/delete`` and the web page's delete control.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Iterable, Optional

from rasa.core.tracker_store import InMemoryTrackerStore, SQLTrackerStore, TrackerStore
from rasa.shared.core.events import BotUttered, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

logger = logging.getLogger(__name__)
FORGET_MARKER = {"waypoint": "forget_conversation"}


def is_marker(custom: Any) -> bool:
    return isinstance(custom, dict) and custom.get("waypoint") in ("forget_conversation", "handoff_requested")


def wants_forget(tracker: DialogueStateTracker) -> bool:
    for event in reversed(tracker.events):
        if isinstance(event, UserUttered):
            return False
        if isinstance(event, BotUttered) and (event.data or {}).get("custom") == FORGET_MARKER:
            return True
    return False


class ForgetMixin:
    async def save(self, tracker: DialogueStateTracker) -> None:
        if wants_forget(tracker):
            await self.forget(tracker.sender_id)
            logger.info("conversation deleted on the user's request")
            return
        await super().save(tracker)  # type: ignore[misc]

    async def forget(self, sender_id: str) -> None:  # pragma: no cover - per store
        raise NotImplementedError

    async def purge(self, older_than_days: float) -> int:  # pragma: no cover - per store
        raise NotImplementedError


class WaypointInMemoryTrackerStore(ForgetMixin, InMemoryTrackerStore):
    async def forget(self, sender_id: str) -> None:
        self.store.pop(sender_id, None)

    async def purge(self, older_than_days: float) -> int:
        cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=older_than_days)).timestamp()
        stale = []
        for sender_id in list(self.store):
            tracker = await self.retrieve(sender_id)
            if tracker is None or not tracker.events or tracker.events[-1].timestamp < cutoff:
                stale.append(sender_id)
        for sender_id in stale:
            self.store.pop(sender_id, None)
        return len(stale)


class WaypointSQLTrackerStore(ForgetMixin, SQLTrackerStore):
    """SQLite by default (endpoints.yml); PostgreSQL with ``dialect: postgresql``.

    SQLite runs with ``secure_delete`` on, so deleted conversations are
    overwritten in the database file, not just unlinked from its index."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine.dialect.name == "sqlite":
            import sqlalchemy as sa

            @sa.event.listens_for(self.engine, "connect")
            def _secure_delete(connection, _record):  # pragma: no cover - called by SQLAlchemy
                cursor = connection.cursor()
                cursor.execute("PRAGMA secure_delete = ON")
                cursor.close()

            self.engine.dispose()  # connections opened before the listener get the pragma too

    async def forget(self, sender_id: str) -> None:
        with self.session_scope() as session:
            session.query(self.SQLEvent).filter(self.SQLEvent.sender_id == sender_id).delete()
            session.commit()

    async def purge(self, older_than_days: float) -> int:
        """Deletes conversations whose latest event is older than the limit."""
        import sqlalchemy as sa

        cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=older_than_days)).timestamp()
        with self.session_scope() as session:
            latest = (session.query(self.SQLEvent.sender_id, sa.func.max(self.SQLEvent.timestamp).label("last"))
                      .group_by(self.SQLEvent.sender_id).subquery())
            stale = [row[0] for row in session.query(latest.c.sender_id).filter(latest.c.last < cutoff)]
            for chunk in range(0, len(stale), 500):
                session.query(self.SQLEvent).filter(self.SQLEvent.sender_id.in_(stale[chunk:chunk + 500])).delete(
                    synchronize_session=False)
            session.commit()
        return len(stale)


def unwrap(store: Any) -> Any:
    """The store behind Rasa's AwaitableTrackerStore / FailSafeTrackerStore wrappers."""
    for _ in range(4):
        inner = getattr(store, "_tracker_store", None) or getattr(store, "tracker_store", None)
        if inner is None or inner is store:
            break
        store = inner
    return store


async def forget(store: TrackerStore, sender_id: str) -> None:
    inner = unwrap(store)
    if isinstance(inner, ForgetMixin):
        await inner.forget(sender_id)
    elif isinstance(inner, InMemoryTrackerStore):
        inner.store.pop(sender_id, None)
    else:
        raise TypeError(f"tracker store {type(inner).__name__} cannot forget conversations")
