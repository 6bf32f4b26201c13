"""Tracker stores that can forget a conversation and purge old ones.

``action_delete_data`` sends a marker message (``actions/privacy.py``); when
the Rasa server saves a tracker whose latest turn carries it, these stores
delete every stored event of that conversation instead of saving, whatever the
channel (REST, shell, Telegram, web chat). Channels call :func:`forget` directly
for ``/delete`` and the web page's delete control.

The SQL store also keeps the time of a turn flat however long the conversation
grows (bench/reports/serving.md): stock Rasa reloads, replays, featurises and
sends to the action server every event of the session on every message, so a
turn at message 300 costs several times a turn at message 1. This store loads
only the recent turns (``history_turns``, default 10) plus, from before them,
the session start and the latest event that set each slot; the tracker looks
like a session that began 10 turns ago with the same slots. Every event is
still stored; nothing else changes for the rules (none spans more than two
turns) or the actions (they read slots; the hand-off summary sees the topics of
the last 10 turns). ``history_turns: 0`` restores Rasa's behaviour.
"""

from __future__ import annotations

import collections
import copy
import datetime as dt
import json
import logging
from typing import Any, Optional, Set

from rasa.core.tracker_store import InMemoryTrackerStore, SQLTrackerStore, TrackerStore
from rasa.shared.core.events import BotUttered, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

logger = logging.getLogger(__name__)
FORGET_MARKER = {"waypoint": "forget_conversation"}
DEFAULT_HISTORY_TURNS = 10
# Events whose effect outlives the turn they belong to; the latest of each kind
# (per slot, per loop) before the window is carried into the loaded tracker.
STATE_EVENTS = ("slot", "active_loop", "pause", "resume", "restart", "reset_slots")
# Set on a tracker by the SQL store: how many of its leading events are already
# stored (or were carried in from storage), so save() inserts exactly the rest.
STORED_ATTR = "_waypoint_stored_events"
# SQLite only: conversations whose latest turns could not be written (a full
# disk) are held in memory, at most this many, and written at their next save.
HELD_LIMIT = 10_000


def wants_forget(tracker: DialogueStateTracker) -> bool:
    for event in reversed(tracker.events):
        if isinstance(event, UserUttered):
            return False
        custom = (event.data or {}).get("custom") if isinstance(event, BotUttered) else None
        if isinstance(custom, dict) and custom.get("waypoint") == FORGET_MARKER["waypoint"]:
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
    engine: Any  # SQLAlchemy's Engine, made by Rasa's SQLTrackerStore
    """SQLite by default (endpoints.yml); PostgreSQL with ``dialect: postgresql``.

    SQLite runs with ``secure_delete`` on, so deleted conversations are
    overwritten in the database file, not just unlinked from its index, and
    with a write-ahead log (``synchronous = NORMAL``), checkpointed right after
    a deletion.

    ``history_turns`` (endpoints.yml, default 10): how many recent user turns a
    loaded tracker holds (module docstring); 0 loads the whole session."""

    def __init__(self, *args: Any, history_turns: Any = DEFAULT_HISTORY_TURNS, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history_turns = max(0, int(history_turns if history_turns not in (None, "") else DEFAULT_HISTORY_TURNS))
        # A failed INSERT's message would carry its parameters, the user's text
        # among them, into Rasa's error log line.
        self.engine.hide_parameters = True
        self.held: "collections.OrderedDict[str, DialogueStateTracker]" = collections.OrderedDict()
        self.forgets_pending: Set[str] = set()
        if self.engine.dialect.name == "sqlite":
            self._tune_sqlite()

    def _tune_sqlite(self) -> None:
        """One connection kept open (per thread: Rasa uses the store from its
        event loop) instead of a new connection for every query, a write-ahead
        log synced at checkpoints rather than at every commit, and
        ``secure_delete``. A turn's load and save went from 9 ms (p95 14 ms) to
        2.6 ms (p95 3 ms) here, time during which Rasa's event loop serves
        nobody else. A crash of the server loses nothing; a power cut can lose
        the last turns. See bench/reports/serving.md."""
        import sqlalchemy as sa
        from sqlalchemy.pool import SingletonThreadPool

        url = self.engine.url
        self.engine.dispose()
        self.engine = sa.create_engine(url, poolclass=SingletonThreadPool, hide_parameters=True)

        @sa.event.listens_for(self.engine, "connect")
        def _pragmas(connection, _record):  # pragma: no cover - called by SQLAlchemy
            cursor = connection.cursor()
            cursor.execute("PRAGMA secure_delete = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.close()

        self.sessionmaker = sa.orm.session.sessionmaker(bind=self.engine)

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool) -> Optional[DialogueStateTracker]:
        if sender_id in self.forgets_pending:
            return None  # deleted on the user's request; the deletion waits for the disk
        held = self.held.get(sender_id)
        if held is not None:
            if not fetch_events_from_all_sessions:
                return copy.deepcopy(held)  # a turn that fails half-way leaves the held copy as it was
            stored = await self._retrieve_stored(sender_id, True)
            events = [e.as_dict() for e in (stored.events if stored else [])]
            events += [e.as_dict() for e in list(held.events)[getattr(held, STORED_ATTR, None) or 0 :]]
            return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots if self.domain else None)
        return await self._retrieve_stored(sender_id, fetch_events_from_all_sessions)

    async def _retrieve_stored(
        self, sender_id: str, fetch_events_from_all_sessions: bool
    ) -> Optional[DialogueStateTracker]:
        if fetch_events_from_all_sessions or not self.history_turns or not self.domain:
            tracker = await super()._retrieve(sender_id, fetch_events_from_all_sessions)
        else:
            tracker = self._retrieve_recent(sender_id)
        if tracker is not None:
            setattr(tracker, STORED_ATTR, len(tracker.events))
        return tracker

    def _retrieve_recent(self, sender_id: str) -> Optional[DialogueStateTracker]:
        """The latest session's last ``history_turns`` user turns, after its
        SessionStarted and the latest stored event of each kind in STATE_EVENTS.
        Ordered by id (the insertion order), like Rasa's own query."""
        import sqlalchemy as sa

        E = self.SQLEvent
        mine = E.sender_id == sender_id
        with self.session_scope() as session:
            start = session.query(sa.func.max(E.id)).filter(mine, E.type_name == SessionStarted.type_name).scalar() or 0
            # The event just before the history_turns-th last user message
            # (its action_listen): where the window begins.
            kth_user = (
                session.query(E.id)
                .filter(mine, E.type_name == UserUttered.type_name, E.id > start)
                .order_by(E.id.desc())
                .offset(self.history_turns - 1)
                .limit(1)
                .scalar_subquery()
            )
            window = session.query(sa.func.max(E.id)).filter(mine, E.id > start, E.id < kth_user).scalar()
            if window is None:  # a short session: all of it
                query = session.query(E.data).filter(mine, E.id >= start)
            else:
                carried = (
                    sa.select(sa.func.max(E.id))
                    .where(mine, E.id > start, E.id < window, E.type_name.in_(STATE_EVENTS))
                    .group_by(E.type_name, E.action_name)
                )
                query = session.query(E.data).filter(mine, sa.or_(E.id == start, E.id >= window, E.id.in_(carried)))
            events = [json.loads(row.data) for row in query.order_by(E.id)]
        if not events:
            return None
        return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)

    async def save(self, tracker: DialogueStateTracker) -> None:
        import sqlalchemy as sa

        self._retry_forgets()
        stored = getattr(tracker, STORED_ATTR, None)
        if wants_forget(tracker):
            await super().save(tracker)  # ForgetMixin: the conversation is deleted
            setattr(tracker, STORED_ATTR, None)
            return
        try:
            if stored is None or stored > len(tracker.events):
                await super().save(tracker)  # a tracker this store did not load: Rasa's way (count the stored events)
            else:
                self._insert(tracker, list(tracker.events)[stored:])
        except sa.exc.SQLAlchemyError as error:
            if self.engine.dialect.name != "sqlite":
                raise  # several servers share PostgreSQL: a copy held by one would diverge from the others
            self._hold(tracker, error)
            return
        setattr(tracker, STORED_ATTR, len(tracker.events))
        if self.held.pop(tracker.sender_id, None) is not None:
            logger.warning("tracker store: a held conversation is written again (%d still held)", len(self.held))

    def _hold(self, tracker: DialogueStateTracker, error: Exception) -> None:
        """SQLite could not write (a full disk, a read-only file): the
        conversation goes on from memory, and its unwritten events are written
        at its next save that succeeds (its leading STORED_ATTR events are
        stored already). Lost only if the server also stops before then."""
        first = tracker.sender_id not in self.held
        self.held[tracker.sender_id] = tracker
        self.held.move_to_end(tracker.sender_id)
        while len(self.held) > HELD_LIMIT:
            self.held.popitem(last=False)
            logger.error("tracker store: too many conversations held in memory; the oldest is dropped")
        if first:
            logger.error(
                "tracker store: a conversation could not be written (%s); held in memory until a write succeeds "
                "(%d held)",
                type(error).__name__,
                len(self.held),
            )

    def _retry_forgets(self) -> None:
        import sqlalchemy as sa

        for sender_id in list(self.forgets_pending):
            try:
                self._delete_stored(sender_id)
            except sa.exc.SQLAlchemyError:
                return
            self.forgets_pending.discard(sender_id)
            logger.warning("tracker store: a deletion that had waited is done")

    def _insert(self, tracker: DialogueStateTracker, events: list) -> None:
        """The new events, as SQLTrackerStore.save writes them."""
        if not events:
            return
        if self.event_broker:
            for event in events:
                self.event_broker.publish({"sender_id": tracker.sender_id, **event.as_dict()})
        with self.session_scope() as session:
            for event in events:
                data = event.as_dict()
                intent = ((data.get("parse_data") or {}).get("intent") or {}).get("name")
                session.add(
                    self.SQLEvent(
                        sender_id=tracker.sender_id,
                        type_name=event.type_name,
                        timestamp=data.get("timestamp"),
                        intent_name=intent,
                        action_name=data.get("name"),
                        data=json.dumps(data),
                    )
                )
            session.commit()

    async def forget(self, sender_id: str) -> None:
        import sqlalchemy as sa

        self.held.pop(sender_id, None)
        try:
            self._delete_stored(sender_id)
        except sa.exc.SQLAlchemyError as error:
            if self.engine.dialect.name != "sqlite":
                raise
            # Nothing of it is read from now on (_retrieve); deleted at the next write that succeeds.
            self.forgets_pending.add(sender_id)
            logger.error("tracker store: a deletion could not be written (%s); it is retried", type(error).__name__)
            return
        self.forgets_pending.discard(sender_id)

    def _delete_stored(self, sender_id: str) -> None:
        with self.session_scope() as session:
            session.query(self.SQLEvent).filter(self.SQLEvent.sender_id == sender_id).delete()
            session.commit()
        self._checkpoint()

    def _checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database file now and empty
        it, so that the overwritten (secure_delete) pages replace the deleted
        conversation in the file at once, not at the next automatic checkpoint."""
        if self.engine.dialect.name == "sqlite":
            import sqlalchemy as sa

            with self.engine.connect() as connection:
                connection.execute(sa.text("PRAGMA wal_checkpoint(TRUNCATE)"))

    async def purge(self, older_than_days: float) -> int:
        """Deletes conversations whose latest event is older than the limit."""
        import sqlalchemy as sa

        cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=older_than_days)).timestamp()
        with self.session_scope() as session:
            latest = (
                session.query(self.SQLEvent.sender_id, sa.func.max(self.SQLEvent.timestamp).label("last"))
                .group_by(self.SQLEvent.sender_id)
                .subquery()
            )
            stale = [row[0] for row in session.query(latest.c.sender_id).filter(latest.c.last < cutoff)]
            for chunk in range(0, len(stale), 500):
                session.query(self.SQLEvent).filter(self.SQLEvent.sender_id.in_(stale[chunk : chunk + 500])).delete(
                    synchronize_session=False
                )
            session.commit()
        if stale:
            self._checkpoint()
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
