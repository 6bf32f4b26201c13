"""Where hand-off cases live: the Rasa server's own store, never a file the
action server touches.

- :class:`SQLRepository`: SQLite on the embedded defaults (``WAYPOINT_STATE_DB``),
  PostgreSQL in the scale-out configuration (own tables beside the tracker
  store, ``WAYPOINT_PG_*``). Every state change is one conditional UPDATE
  (``... WHERE state = <the state it was read in>``), so two servers never both
  accept, expire or close a case.
- :class:`MemoryRepository`: the same contract in one process's memory (tests,
  tools).

Tables hold ids, states, timestamps and what the user agreed to share (a topic,
a redacted summary of topic ids); never message text.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from handoff.case import OPEN, Case, allowed

MESSAGE_TTL = 7 * 24 * 3600  # an operators' chat message keeps its case for replies this long
CASE_FIELDS = tuple(f.name for f in dataclasses.fields(Case) if f.name != "relayed")
Moved = Tuple[bool, Optional[str], Optional[Case]]  # (moved, the state it was in, the case as it is now)


def open_engine(url: str) -> Any:
    """A SQLAlchemy engine for the Rasa server's own tables (hand-off cases,
    channel state): SQLite with its folder made, deleted rows overwritten
    (secure_delete), a write-ahead log and a busy timeout; PostgreSQL as given."""
    import pathlib

    import sqlalchemy as sa

    if url.startswith("sqlite:///"):
        pathlib.Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, future=True, pool_pre_ping=True, hide_parameters=True)  # no text in errors
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:  # pragma: no cover - called by SQLAlchemy
            cursor = connection.cursor()
            cursor.execute("PRAGMA secure_delete = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA busy_timeout = 5000")
            cursor.close()

    return engine


def create_tables(meta: Any, engine: Any, attempts: int = 5) -> None:
    """``meta.create_all``, safe when several servers start at once on a new
    PostgreSQL database: the loser of a creation race (a duplicate type or
    table) waits a moment and finds the tables there."""
    import random

    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            meta.create_all(engine)
            return
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * 0.5)


class CaseRepository(abc.ABC):
    @abc.abstractmethod
    def create(self, case: Case) -> bool:
        """Stores a new case; False when the id exists already."""

    @abc.abstractmethod
    def get(self, case_id: str) -> Optional[Case]: ...

    @abc.abstractmethod
    def open_case_for(self, sender_id: str) -> Optional[Case]: ...

    @abc.abstractmethod
    def open_cases(self) -> List[Case]: ...

    @abc.abstractmethod
    def update(self, case_id: str, **fields: Any) -> None: ...

    @abc.abstractmethod
    def move(self, case_id: str, new: str) -> Moved:
        """The state change, if allowed from the state the case is in now."""

    @abc.abstractmethod
    def flag_emergency(self, case_id: str) -> bool:
        """Marks the case; True the first time."""

    @abc.abstractmethod
    def add_relayed(self, case_id: str, message_ids: Iterable[int]) -> None: ...

    @abc.abstractmethod
    def clear_relayed(self, case_id: str) -> None: ...

    @abc.abstractmethod
    def remember_message(self, message_id: int, case_id: str) -> None:
        """An operators' chat message of a case (for replies to it)."""

    @abc.abstractmethod
    def message_case(self, message_id: int) -> Optional[str]: ...

    @abc.abstractmethod
    def interrupt(self, sender_id: str) -> None:
        """A user whose case a restart lost: told on their next message."""

    @abc.abstractmethod
    def pop_interrupted(self, sender_id: str) -> bool: ...

    @abc.abstractmethod
    def delete_for_sender(self, sender_id: str) -> int:
        """Everything of a user's cases ("delete my data"); how many cases."""

    @abc.abstractmethod
    def purge_older_than(self, days: float) -> int: ...

    def close(self) -> None:  # noqa: B027 - optional: only the SQL repository holds connections
        """Releases connections."""


class MemoryRepository(CaseRepository):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cases: Dict[str, Case] = {}
        self.messages: Dict[int, Tuple[str, float]] = {}
        self.interrupted: Dict[str, float] = {}

    def _copy(self, case: Optional[Case]) -> Optional[Case]:
        return dataclasses.replace(case, relayed=list(case.relayed)) if case else None

    def create(self, case: Case) -> bool:
        with self._lock:
            if case.case_id in self.cases:
                return False
            self.cases[case.case_id] = self._copy(case)  # type: ignore[assignment]
            return True

    def get(self, case_id: str) -> Optional[Case]:
        with self._lock:
            return self._copy(self.cases.get(case_id))

    def open_case_for(self, sender_id: str) -> Optional[Case]:
        with self._lock:
            found = [c for c in self.cases.values() if c.sender_id == sender_id and c.state in OPEN]
            return self._copy(max(found, key=lambda c: c.created_at)) if found else None

    def open_cases(self) -> List[Case]:
        with self._lock:
            return [self._copy(c) for c in self.cases.values() if c.state in OPEN]  # type: ignore[misc]

    def update(self, case_id: str, **fields: Any) -> None:
        with self._lock:
            case = self.cases.get(case_id)
            if case is not None:
                for name, value in fields.items():
                    setattr(case, name, value)
                case.updated_at = time.time()

    def move(self, case_id: str, new: str) -> Moved:
        with self._lock:
            case = self.cases.get(case_id)
            if case is None:
                return False, None, None
            was = case.state
            if not allowed(was, new):
                return False, was, self._copy(case)
            case.state, case.updated_at = new, time.time()
            return True, was, self._copy(case)

    def flag_emergency(self, case_id: str) -> bool:
        with self._lock:
            case = self.cases.get(case_id)
            if case is None or case.emergency:
                return False
            case.emergency = True
            return True

    def add_relayed(self, case_id: str, message_ids: Iterable[int]) -> None:
        with self._lock:
            case = self.cases.get(case_id)
            if case is not None:
                case.relayed.extend(int(i) for i in message_ids)

    def clear_relayed(self, case_id: str) -> None:
        with self._lock:
            case = self.cases.get(case_id)
            if case is not None:
                case.relayed.clear()

    def remember_message(self, message_id: int, case_id: str) -> None:
        with self._lock:
            self.messages[int(message_id)] = (case_id, time.time())

    def message_case(self, message_id: int) -> Optional[str]:
        with self._lock:
            found = self.messages.get(int(message_id))
            return found[0] if found and found[1] > time.time() - MESSAGE_TTL else None

    def interrupt(self, sender_id: str) -> None:
        with self._lock:
            self.interrupted[sender_id] = time.time()

    def pop_interrupted(self, sender_id: str) -> bool:
        with self._lock:
            return self.interrupted.pop(sender_id, None) is not None

    def delete_for_sender(self, sender_id: str) -> int:
        with self._lock:
            mine = [cid for cid, c in self.cases.items() if c.sender_id == sender_id]
            for cid in mine:
                del self.cases[cid]
            self.messages = {m: v for m, v in self.messages.items() if v[0] not in mine}
            self.interrupted.pop(sender_id, None)
            return len(mine)

    def purge_older_than(self, days: float) -> int:
        cutoff = time.time() - days * 86400
        with self._lock:
            old = [cid for cid, c in self.cases.items() if c.updated_at < cutoff]
            for cid in old:
                del self.cases[cid]
            self.messages = {m: v for m, v in self.messages.items() if v[0] not in old and v[1] >= cutoff}
            self.interrupted = {s: at for s, at in self.interrupted.items() if at >= cutoff}
            return len(old)


class SQLRepository(CaseRepository):
    """Cases in SQL through SQLAlchemy Core: SQLite or PostgreSQL (``url``)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.sa = sa
        self.engine = open_engine(url)
        meta = sa.MetaData()
        self.cases = sa.Table(
            "waypoint_handoff_cases",
            meta,
            sa.Column("case_id", sa.String(16), primary_key=True),
            sa.Column("sender_id", sa.String(128), nullable=False, index=True),
            sa.Column("channel", sa.String(16)),
            sa.Column("language", sa.String(8)),
            sa.Column("country", sa.String(8)),
            sa.Column("topic", sa.String(64)),
            sa.Column("summary", sa.Text),
            sa.Column("state", sa.String(16), nullable=False, index=True),
            sa.Column("reason", sa.String(64)),
            sa.Column("post_id", sa.BigInteger),
            sa.Column("emergency", sa.Boolean, nullable=False, default=False),
            sa.Column("deadline", sa.Float),
            sa.Column("created_at", sa.Float),
            sa.Column("updated_at", sa.Float),
        )
        self.relayed = sa.Table(
            "waypoint_handoff_relayed",
            meta,
            sa.Column("case_id", sa.String(16), primary_key=True),
            sa.Column("message_id", sa.BigInteger, primary_key=True),
        )
        self.messages = sa.Table(
            "waypoint_handoff_messages",
            meta,
            sa.Column("message_id", sa.BigInteger, primary_key=True),
            sa.Column("case_id", sa.String(16), nullable=False, index=True),
            sa.Column("at", sa.Float, nullable=False),
        )
        self.interrupted = sa.Table(
            "waypoint_handoff_interrupted",
            meta,
            sa.Column("sender_id", sa.String(128), primary_key=True),
            sa.Column("at", sa.Float, nullable=False),
        )
        create_tables(meta, self.engine)

    # -- helpers -----------------------------------------------------------------------------------
    def _case(self, connection: Any, row: Any) -> Optional[Case]:
        if row is None:
            return None
        values = dict(row._mapping)
        values["emergency"] = bool(values.get("emergency"))
        values["post_id"] = int(values["post_id"]) if values.get("post_id") is not None else None
        relayed = (
            connection.execute(
                self.sa.select(self.relayed.c.message_id).where(self.relayed.c.case_id == values["case_id"])
            )
            .scalars()
            .all()
        )
        return Case(**values, relayed=[int(i) for i in relayed])

    def _one(self, where: Any) -> Optional[Case]:
        with self.engine.connect() as connection:
            row = connection.execute(self.sa.select(self.cases).where(where)).first()
            return self._case(connection, row)

    # -- the contract ------------------------------------------------------------------------------
    def create(self, case: Case) -> bool:
        values = {name: getattr(case, name) for name in CASE_FIELDS}
        try:
            with self.engine.begin() as connection:
                connection.execute(self.cases.insert().values(**values))
        except self.sa.exc.IntegrityError:
            return False
        return True

    def get(self, case_id: str) -> Optional[Case]:
        return self._one(self.cases.c.case_id == case_id)

    def open_case_for(self, sender_id: str) -> Optional[Case]:
        sa = self.sa
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(self.cases)
                .where(self.cases.c.sender_id == sender_id, self.cases.c.state.in_(OPEN))
                .order_by(self.cases.c.created_at.desc())
                .limit(1)
            ).first()
            return self._case(connection, row)

    def open_cases(self) -> List[Case]:
        with self.engine.connect() as connection:
            rows = connection.execute(self.sa.select(self.cases).where(self.cases.c.state.in_(OPEN))).all()
            return [c for c in (self._case(connection, r) for r in rows) if c is not None]

    def update(self, case_id: str, **fields: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                self.cases.update().where(self.cases.c.case_id == case_id).values(**fields, updated_at=time.time())
            )

    def move(self, case_id: str, new: str) -> Moved:
        current = self.get(case_id)
        if current is None:
            return False, None, None
        was = current.state
        if not allowed(was, new):
            return False, was, current
        with self.engine.begin() as connection:
            done = connection.execute(
                self.cases.update()
                .where(self.cases.c.case_id == case_id, self.cases.c.state == was)
                .values(state=new, updated_at=time.time())
            ).rowcount
        now = self.get(case_id)
        return bool(done), was if done else (now.state if now else None), now

    def flag_emergency(self, case_id: str) -> bool:
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    self.cases.update()
                    .where(self.cases.c.case_id == case_id, self.cases.c.emergency.is_(False))
                    .values(emergency=True)
                ).rowcount
            )

    def add_relayed(self, case_id: str, message_ids: Iterable[int]) -> None:
        rows = [{"case_id": case_id, "message_id": int(i)} for i in message_ids]
        if not rows:
            return
        with self.engine.begin() as connection:
            existing = set(
                connection.execute(self.sa.select(self.relayed.c.message_id).where(self.relayed.c.case_id == case_id))
                .scalars()
                .all()
            )
            rows = [r for r in rows if r["message_id"] not in existing]
            if rows:
                connection.execute(self.relayed.insert(), rows)

    def clear_relayed(self, case_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(self.relayed.delete().where(self.relayed.c.case_id == case_id))

    def remember_message(self, message_id: int, case_id: str) -> None:
        with self.engine.begin() as connection:
            done = connection.execute(
                self.messages.update()
                .where(self.messages.c.message_id == int(message_id))
                .values(case_id=case_id, at=time.time())
            ).rowcount
            if not done:
                connection.execute(
                    self.messages.insert().values(message_id=int(message_id), case_id=case_id, at=time.time())
                )

    def message_case(self, message_id: int) -> Optional[str]:
        with self.engine.connect() as connection:
            return connection.execute(
                self.sa.select(self.messages.c.case_id).where(
                    self.messages.c.message_id == int(message_id), self.messages.c.at > time.time() - MESSAGE_TTL
                )
            ).scalar()

    def interrupt(self, sender_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(self.interrupted.delete().where(self.interrupted.c.sender_id == sender_id))
            connection.execute(self.interrupted.insert().values(sender_id=sender_id, at=time.time()))

    def pop_interrupted(self, sender_id: str) -> bool:
        with self.engine.begin() as connection:
            return bool(
                connection.execute(self.interrupted.delete().where(self.interrupted.c.sender_id == sender_id)).rowcount
            )

    def _delete_cases(self, connection: Any, case_ids: List[str]) -> None:
        for start in range(0, len(case_ids), 500):
            chunk = case_ids[start : start + 500]
            connection.execute(self.relayed.delete().where(self.relayed.c.case_id.in_(chunk)))
            connection.execute(self.messages.delete().where(self.messages.c.case_id.in_(chunk)))
            connection.execute(self.cases.delete().where(self.cases.c.case_id.in_(chunk)))

    def delete_for_sender(self, sender_id: str) -> int:
        with self.engine.begin() as connection:
            mine = list(
                connection.execute(self.sa.select(self.cases.c.case_id).where(self.cases.c.sender_id == sender_id))
                .scalars()
                .all()
            )
            self._delete_cases(connection, mine)
            connection.execute(self.interrupted.delete().where(self.interrupted.c.sender_id == sender_id))
        self._checkpoint()
        return len(mine)

    def purge_older_than(self, days: float) -> int:
        cutoff = time.time() - days * 86400
        with self.engine.begin() as connection:
            old = list(
                connection.execute(self.sa.select(self.cases.c.case_id).where(self.cases.c.updated_at < cutoff))
                .scalars()
                .all()
            )
            self._delete_cases(connection, old)
            connection.execute(self.messages.delete().where(self.messages.c.at < cutoff))
            connection.execute(self.interrupted.delete().where(self.interrupted.c.at < cutoff))
        self._checkpoint()
        return len(old)

    def _checkpoint(self) -> None:
        """SQLite: write the overwritten (secure_delete) pages into the file now."""
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.engine.dispose()


def from_settings(env: Optional[Dict[str, str]] = None) -> CaseRepository:
    """The configured store; this process's memory when it cannot be opened
    (said once in the log: hand-offs then work on this server only), so that
    no user message ever fails for it."""
    import logging

    from content import settings

    try:
        return SQLRepository(settings.state_url(env))
    except Exception as error:  # noqa: BLE001 - any database failure at start
        logging.getLogger(__name__).error(
            "hand-off cases: the store cannot be opened (%s); this server's memory instead", type(error).__name__
        )
        return MemoryRepository()
