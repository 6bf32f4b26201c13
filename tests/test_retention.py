"""Retention: a conversation older than the limit is purged, a fresh one is not;
the same for hand-off cases, in the Rasa server's own store."""

import time

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from handoff.case import Case
from handoff.repository import SQLRepository
from plugins.tracker_store import WaypointSQLTrackerStore


def tracker(sender, age_days):
    stamp = time.time() - age_days * 86400
    events = [
        ActionExecuted("action_session_start", timestamp=stamp),
        SessionStarted(timestamp=stamp),
        ActionExecuted("action_listen", timestamp=stamp),
        UserUttered("hello", timestamp=stamp),
    ]
    return DialogueStateTracker.from_events(sender, events)


async def test_old_conversations_are_purged_fresh_ones_kept(tmp_path):
    tracker_store = WaypointSQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(tmp_path / "t.db"))
    await tracker_store.save(tracker("old", 45))
    await tracker_store.save(tracker("fresh", 2))
    assert await tracker_store.purge(30) == 1
    assert await tracker_store.retrieve("old") is None
    assert (await tracker_store.retrieve("fresh")).events


async def test_forget_deletes_every_event(tmp_path):
    tracker_store = WaypointSQLTrackerStore(Domain.empty(), dialect="sqlite", db=str(tmp_path / "t.db"))
    await tracker_store.save(tracker("someone", 0))
    await tracker_store.forget("someone")
    assert await tracker_store.retrieve("someone") is None
    assert b"hello" not in (tmp_path / "t.db").read_bytes()  # secure_delete overwrote it


def test_old_handoff_cases_are_purged(tmp_path):
    repo = SQLRepository(f"sqlite:///{tmp_path / 'state.db'}")
    repo.create(Case("WP-00000A", "a", "rest", "en"))
    repo.create(Case("WP-00000B", "b", "rest", "en"))
    repo.update("WP-00000A")  # touched now; then made old:
    with repo.engine.begin() as connection:
        connection.execute(repo.cases.update().where(repo.cases.c.case_id == "WP-00000A").values(updated_at=0))
    assert repo.purge_older_than(30) == 1
    assert repo.get("WP-00000A") is None and repo.get("WP-00000B") is not None
