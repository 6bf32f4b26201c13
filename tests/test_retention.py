"""Retention: a conversation older than the limit is purged, a fresh one is not;
the same for hand-off cases."""
import time

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SessionStarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from actions import store
from channels.tracker_store import WaypointSQLTrackerStore


def tracker(sender, age_days):
    stamp = time.time() - age_days * 86400
    events = [ActionExecuted("action_session_start", timestamp=stamp), SessionStarted(timestamp=stamp),
              ActionExecuted("action_listen", timestamp=stamp), UserUttered("hello", timestamp=stamp)]
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


def test_old_handoff_cases_are_purged():
    old = store.create_case("a", "rest", "en", None, None, None)
    fresh = store.create_case("b", "rest", "en", None, None, None)
    with store.connect() as conn:
        conn.execute("UPDATE handoff_cases SET updated_at = '2000-01-01T00:00:00+00:00' WHERE case_id = ?", (old["case_id"],))
    assert store.purge_older_than(30) == 1
    assert [c["case_id"] for c in store.all_cases()] == [fresh["case_id"]]
