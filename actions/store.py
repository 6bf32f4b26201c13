"""The assistant's own store for hand-off cases (SQLite by default; the path
comes from WAYPOINT_STATE_DB). Holds no message text: a case has an id, the
sender it belongs to, language, country, topic, an optional redacted summary
the user agreed to share, its state and timestamps."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import pathlib
import secrets
import sqlite3
import threading
from typing import Any, Dict, Iterator, List, Optional

from actions.content import project_root

_lock = threading.Lock()
SCHEMA = """
CREATE TABLE IF NOT EXISTS handoff_cases (
    case_id TEXT PRIMARY KEY,
    sender_id TEXT NOT NULL,
    channel TEXT,
    language TEXT,
    country TEXT,
    topic TEXT,
    summary TEXT,
    state TEXT NOT NULL,
    operator_ref TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS handoff_sender ON handoff_cases(sender_id);
"""


def db_path() -> pathlib.Path:
    return pathlib.Path(os.environ.get("WAYPOINT_STATE_DB", project_root() / "var" / "waypoint.db"))


@contextlib.contextmanager
def connect(path: Optional[pathlib.Path] = None) -> Iterator[sqlite3.Connection]:
    path = pathlib.Path(path or db_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        conn = sqlite3.connect(path, timeout=10)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA secure_delete = ON")
            conn.executescript(SCHEMA)
            yield conn
            conn.commit()
        finally:
            conn.close()


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_case_id() -> str:
    return "WP-" + secrets.token_hex(3).upper()


def create_case(sender_id: str, channel: Optional[str], language: str, country: Optional[str],
                topic: Optional[str], summary: Optional[str]) -> Dict[str, Any]:
    case = {"case_id": new_case_id(), "sender_id": sender_id, "channel": channel, "language": language,
            "country": country, "topic": topic, "summary": summary, "state": "waiting",
            "operator_ref": None, "created_at": now(), "updated_at": now()}
    with connect() as conn:
        conn.execute(f"INSERT INTO handoff_cases ({', '.join(case)}) VALUES ({', '.join('?' * len(case))})",
                     tuple(case.values()))
    return case


def get_case(case_id: str) -> Optional[Dict[str, Any]]:
    with connect() as conn:
        row = conn.execute("SELECT * FROM handoff_cases WHERE case_id = ?", (case_id,)).fetchone()
    return dict(row) if row else None


def open_case_for(sender_id: str) -> Optional[Dict[str, Any]]:
    with connect() as conn:
        row = conn.execute("SELECT * FROM handoff_cases WHERE sender_id = ? AND state IN ('waiting', 'live') "
                           "ORDER BY created_at DESC LIMIT 1", (sender_id,)).fetchone()
    return dict(row) if row else None


def set_state(case_id: str, state: str, operator_ref: Optional[str] = None) -> None:
    with connect() as conn:
        conn.execute("UPDATE handoff_cases SET state = ?, operator_ref = COALESCE(?, operator_ref), updated_at = ? "
                     "WHERE case_id = ?", (state, operator_ref, now(), case_id))


def delete_for_sender(sender_id: str) -> int:
    with connect() as conn:
        return conn.execute("DELETE FROM handoff_cases WHERE sender_id = ?", (sender_id,)).rowcount


def purge_older_than(days: float) -> int:
    cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).isoformat(timespec="seconds")
    with connect() as conn:
        return conn.execute("DELETE FROM handoff_cases WHERE updated_at < ?", (cutoff,)).rowcount


def all_cases() -> List[Dict[str, Any]]:
    with connect() as conn:
        return [dict(r) for r in conn.execute("SELECT * FROM handoff_cases")]
