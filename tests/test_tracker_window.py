"""The SQL tracker store loads only the recent turns (channels/tracker_store.py)
and Rasa's per-message costs patched in plugins/speedups.py: a windowed
tracker has the same state as the whole session, saving stores every event
exactly once, and the patched Rasa functions answer as the originals do."""

from __future__ import annotations

import pathlib

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import (
    ActionExecuted,
    AllSlotsReset,
    BotUttered,
    Event,
    Restarted,
    SessionStarted,
    SlotSet,
    UserUttered,
)
from rasa.shared.core.trackers import DialogueStateTracker

from plugins import speedups as rasa_speedups
from plugins.tracker_store import FORGET_MARKER, WaypointSQLTrackerStore

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain.load(str(ROOT / "domain.yml"))


def store(path: pathlib.Path, domain: Domain, turns: int = 3) -> WaypointSQLTrackerStore:
    return WaypointSQLTrackerStore(domain, dialect="sqlite", db=str(path), history_turns=turns)


def session_start() -> list:
    return [
        ActionExecuted("action_session_start"),
        SessionStarted(),
        SlotSet("audience", "survivor"),
        ActionExecuted("action_listen"),
    ]


def turn(n: int, slots: dict = None) -> list:
    events = [
        UserUttered(f"message {n}", {"name": "greet", "confidence": 1.0}),
        ActionExecuted("action_reply"),
        BotUttered(f"reply {n}"),
    ]
    events += [SlotSet(name, value) for name, value in (slots or {}).items()]
    return events + [ActionExecuted("action_listen")]


async def converse(tracker_store, sender: str, domain: Domain, steps: list) -> DialogueStateTracker:
    """Each step is a list of events: the turn the Rasa server adds before it saves."""
    tracker = await tracker_store.get_or_create_tracker(sender, append_action_listen=False)
    for events in steps:
        tracker = await tracker_store.retrieve(sender) or tracker
        for event in events:
            tracker.update(event, domain)
        await tracker_store.save(tracker)
    return tracker


def user_texts(tracker: DialogueStateTracker) -> list:
    return [e.text for e in tracker.events if isinstance(e, UserUttered)]


async def test_a_long_session_loads_its_recent_turns_with_every_slot(tmp_path, domain):
    ts = store(tmp_path / "t.db", domain, turns=3)
    steps = [session_start(), turn(1, {"language": "ms", "country": "MY"}), turn(2, {"topic": "protect.documents"})]
    steps += [turn(n) for n in range(3, 9)] + [turn(9, {"language": "id"})]
    await converse(ts, "long", domain, steps)

    recent = await ts.retrieve("long")
    assert user_texts(recent) == ["message 7", "message 8", "message 9"]
    assert isinstance(recent.events[0], SessionStarted)
    assert recent.current_slot_values()["language"] == "id"  # set inside the window
    assert recent.current_slot_values()["country"] == "MY"  # carried from before it
    assert recent.current_slot_values()["topic"] == "protect.documents"
    assert recent.latest_action_name == "action_listen"

    ts.history_turns = 0  # Rasa's behaviour: the whole session
    whole = await ts.retrieve("long")
    assert user_texts(whole) == [f"message {n}" for n in range(1, 10)]
    assert whole.current_slot_values() == recent.current_slot_values()
    assert len(recent.events) < len(whole.events)


async def test_saving_a_windowed_tracker_stores_each_new_event_once(tmp_path, domain):
    ts = store(tmp_path / "t.db", domain, turns=2)
    await converse(ts, "s", domain, [session_start()] + [turn(n) for n in range(1, 8)])
    full = await ts.retrieve_full_tracker("s")
    assert user_texts(full) == [f"message {n}" for n in range(1, 8)]
    assert len(full.events) == 4 + 7 * 4
    # the same tracker saved twice: nothing new, nothing stored twice
    tracker = await ts.retrieve("s")
    await ts.save(tracker)
    await ts.save(tracker)
    assert len((await ts.retrieve_full_tracker("s")).events) == len(full.events)


async def test_a_new_session_starts_a_new_window(tmp_path, domain):
    ts = store(tmp_path / "t.db", domain, turns=2)
    steps = [session_start(), turn(1, {"country": "TH"})] + [turn(n) for n in range(2, 6)]
    steps += [session_start(), turn(6)]
    await converse(ts, "s", domain, steps)
    recent = await ts.retrieve("s")
    assert user_texts(recent) == ["message 6"]
    assert recent.current_slot_values()["country"] is None  # not carried over: a new session


async def test_a_reset_before_the_window_still_resets(tmp_path, domain):
    ts = store(tmp_path / "t.db", domain, turns=2)
    steps = [
        session_start(),
        turn(1, {"country": "TH", "topic": "protect.documents"}),
        [AllSlotsReset()],
        turn(2, {"topic": "remedy.compensation"}),
    ] + [turn(n) for n in range(3, 7)]
    await converse(ts, "s", domain, steps)
    recent = await ts.retrieve("s")
    ts.history_turns = 0
    whole = await ts.retrieve("s")
    assert recent.current_slot_values() == whole.current_slot_values()
    assert recent.current_slot_values()["country"] is None
    assert recent.current_slot_values()["topic"] == "remedy.compensation"


async def test_forgetting_still_deletes_everything(tmp_path, domain):
    ts = store(tmp_path / "t.db", domain, turns=2)
    await converse(ts, "s", domain, [session_start()] + [turn(n) for n in range(1, 6)])
    tracker = await ts.retrieve("s")
    tracker.update(UserUttered("delete my data"), domain)
    tracker.update(ActionExecuted("action_delete_data"), domain)
    tracker.update(BotUttered(data={"custom": FORGET_MARKER}), domain)
    tracker.update(Restarted(), domain)
    await ts.save(tracker)
    assert await ts.retrieve("s") is None
    assert await ts.retrieve_full_tracker("s") is None


async def test_a_tracker_the_store_did_not_load_is_saved_as_rasa_does(tmp_path, domain):
    ts = store(tmp_path / "t.db", domain, turns=2)
    events = session_start() + turn(1) + turn(2) + turn(3)
    await ts.save(DialogueStateTracker.from_events("s", events, domain.slots))
    assert user_texts(await ts.retrieve_full_tracker("s")) == ["message 1", "message 2", "message 3"]


slot_values = st.sampled_from([None, "en", "id", "ms", "vi", "th"])
turn_slots = st.dictionaries(st.sampled_from(["language", "country", "topic"]), slot_values, max_size=2)
step = st.one_of(turn_slots.map(lambda slots: ("turn", slots)), st.just(("reset", None)), st.just(("session", None)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(step, min_size=1, max_size=25), turns=st.integers(min_value=1, max_value=6))
async def test_windowed_and_whole_session_agree_on_state(tmp_path_factory, domain, plan, turns):
    ts = store(tmp_path_factory.mktemp("prop") / "t.db", domain, turns=turns)
    steps, n = [session_start()], 0
    for kind, slots in plan:
        n += 1
        if kind == "turn":
            steps.append(turn(n, slots))
        elif kind == "reset":
            steps.append([AllSlotsReset()])
        else:
            steps.append(session_start())
    await converse(ts, "p", domain, steps)
    recent = await ts.retrieve("p")
    ts.history_turns = 0
    whole = await ts.retrieve("p")
    assert recent.current_slot_values() == whole.current_slot_values()
    assert user_texts(recent) == user_texts(whole)[-turns:]
    assert recent.latest_action_name == whole.latest_action_name
    assert [e.text for e in recent.events if isinstance(e, BotUttered)][-1:] == [
        e.text for e in whole.events if isinstance(e, BotUttered)
    ][-1:]


# -- plugins/speedups.py ---------------------------------------------------


def test_action_responses_are_validated_as_rasa_validates_them():
    from rasa.core.actions.action import RemoteAction

    assert all(rasa_speedups.install().values())
    action = RemoteAction("action_x", None)
    patched = RemoteAction._validate_action_result
    original = patched.__wrapped__
    good = [
        {"events": [], "responses": []},
        {"events": [{"event": "slot", "name": "topic", "value": "x"}]},
        {"responses": [{"text": "hi", "buttons": [{"title": "a", "payload": "/a"}]}]},
    ]
    bad = [{"events": "not a list"}, {"events": [{"no": "event key"}]}, {"responses": "text"}]
    for response in good:
        assert patched(action, response) is True
        assert original(action, response) is True
    for response in bad:
        with pytest.raises(jsonschema.ValidationError) as ours:
            patched(action, response)
        with pytest.raises(jsonschema.ValidationError) as theirs:
            original(action, response)
        assert ours.value.message == theirs.value.message
        assert "Failed to validate Action server response" in ours.value.message


def test_event_types_resolve_to_the_same_classes():
    assert all(rasa_speedups.install().values())
    original = Event.resolve_by_type.__wrapped__
    for name in [
        "user",
        "bot",
        "action",
        "slot",
        "session_started",
        "restart",
        "reset_slots",
        "active_loop",
        "user_featurization",
        "followup",
        "pause",
        "resume",
        "rewind",
        "undo",
        "export",
    ]:
        assert Event.resolve_by_type(name) is original(name)
        assert Event.resolve_by_type(name) is Event.resolve_by_type(name)
    assert Event.resolve_by_type("no-such-event", SlotSet) is SlotSet
    with pytest.raises(ValueError):
        Event.resolve_by_type("no-such-event")


class CountingServer:
    """A real HTTP server on loopback that counts TCP connections; with
    ``drop_first`` it closes the first connection without answering, as a
    server does with a kept-alive connection it has just timed out."""

    def __init__(self, drop_first: str = "") -> None:
        self.connections, self.requests, self.drop_first = 0, 0, drop_first

    async def handle(self, reader, writer):
        self.connections += 1
        if self.drop_first and self.connections == 1:
            await reader.readuntil(b"\r\n\r\n")
            if self.drop_first == "reset":  # RST instead of FIN
                import socket
                import struct

                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
            return
        while True:
            head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
            if not head:
                break
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            self.requests += 1
            body = b'{"events": [], "responses": []}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
        writer.close()

    async def __aenter__(self):
        import asyncio

        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/webhook"
        return self

    async def __aexit__(self, *exc):
        self.server.close()


async def test_action_calls_reuse_one_kept_alive_connection():
    from rasa.utils.endpoints import EndpointConfig

    assert all(rasa_speedups.install().values())
    async with CountingServer() as server:
        endpoint = EndpointConfig(url=server.url, token="t")
        for _ in range(5):
            assert await endpoint.request(json={"next_action": "x"}, method="post") == {"events": [], "responses": []}
        await rasa_speedups.close_sessions()
    assert (server.requests, server.connections) == (5, 1)


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_connection_the_server_just_closed_is_retried_once_on_a_new_one(how):
    from rasa.utils.endpoints import EndpointConfig

    assert all(rasa_speedups.install().values())
    async with CountingServer(drop_first=how) as server:
        endpoint = EndpointConfig(url=server.url)
        assert await endpoint.request(json={"next_action": "x"}, method="post") == {"events": [], "responses": []}
        await rasa_speedups.close_sessions()
    assert (server.requests, server.connections) == (1, 2)


async def test_a_forgotten_conversation_leaves_no_text_in_the_sqlite_files(tmp_path, domain):
    """Write-ahead log and secure_delete together: after forget() neither the
    database file nor its log holds the conversation's words."""
    ts = store(tmp_path / "t.db", domain, turns=2)
    secret = "zebra-umbrella-4711"
    await converse(
        ts, "s", domain, [session_start(), [UserUttered(f"my code is {secret}"), ActionExecuted("action_listen")]]
    )
    await converse(ts, "other", domain, [session_start(), turn(1)])
    files = lambda: b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("t.db"))  # noqa: E731
    assert secret.encode() in files()
    await ts.forget("s")
    assert secret.encode() not in files()
    assert user_texts(await ts.retrieve("other")) == ["message 1"]


def test_the_rasa_fixes_can_be_turned_off():
    import os
    import subprocess
    import sys

    code = (
        "from plugins import speedups as rasa_speedups; from rasa.core.actions.action import RemoteAction; "
        "from rasa.shared.core.events import Event; "
        "print(any(rasa_speedups.install().values()), hasattr(RemoteAction._validate_action_result, '__wrapped__'), "
        "hasattr(Event.resolve_by_type, '__wrapped__'))"
    )
    env = {**os.environ, "WAYPOINT_RASA_SPEEDUPS": "0", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr[-2000:]


def test_each_patch_stays_off_on_its_own_when_rasas_code_changed(monkeypatch):
    """A patch guarded by the hash of the source it replaces: another Rasa's
    function keeps Rasa's own code, and only that patch is off."""
    import subprocess
    import sys

    code = (
        "import plugins, plugins.speedups as s; real = plugins.source_hash; "
        "plugins.source_hash = lambda f: 'changed' if 'resolve_by_type' in getattr(f, '__qualname__', '') "
        "else real(f); s.source_matches = lambda f, e, p: plugins.source_hash(getattr(f, '__func__', f)) == e; "
        "print(s.install())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert "'event_types': False" in out.stdout and "'validate_once': True" in out.stdout, out.stderr[-2000:]


def test_store_errors_never_carry_the_users_text(tmp_path, domain):
    """A failed write's message (which Rasa logs) names the statement, never its
    parameters: the events' JSON, the user's text among it."""
    import sqlalchemy as sa

    from handoff.repository import open_engine

    for engine in (store(tmp_path / "t.db", domain).engine, open_engine(f"sqlite:///{tmp_path / 'w.db'}")):
        with pytest.raises(sa.exc.OperationalError) as error:
            with engine.connect() as connection:
                connection.execute(sa.text("INSERT INTO missing VALUES (:data)"), {"data": "my name is KOALA-1"})
        assert "KOALA-1" not in str(error.value)


async def test_a_write_that_fails_is_held_and_written_later(tmp_path, domain):
    """SQLite cannot write (a full disk, simulated here by refusing every INSERT
    and DELETE): the conversation is held in memory, read back from there, and
    its turns are written once writing works again; a deletion meanwhile hides
    the conversation at once and is done then (tests/test_disk_full.py does it
    with a real full disk)."""
    import sqlalchemy as sa

    ts = store(tmp_path / "t.db", domain)
    tracker = DialogueStateTracker.from_events("s", session_start() + turn(1), domain.slots)
    await ts.save(tracker)
    loaded = await ts.retrieve("s")

    @sa.event.listens_for(ts.engine, "before_cursor_execute")
    def refuse(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("INSERT", "DELETE")):
            raise sa.exc.OperationalError(statement, {}, Exception("database or disk is full"))

    for event in turn(2):
        loaded.update(event)
    await ts.save(loaded)
    assert "s" in ts.held
    again = await ts.retrieve("s")
    assert user_texts(again)[-1] == "message 2"
    await ts.forget("gone")  # a deletion that cannot be written waits, hidden at once
    assert "gone" in ts.forgets_pending and await ts.retrieve("gone") is None
    sa.event.remove(ts.engine, "before_cursor_execute", refuse)
    for event in turn(3):
        again.update(event)
    await ts.save(again)
    assert not ts.held and not ts.forgets_pending
    assert user_texts(await ts.retrieve_full_tracker("s")) == ["message 1", "message 2", "message 3"]
