"""The hand-off across several Rasa servers (handoff/repository.py,
handoff/queues.py): two or more Relay objects stand for Rasa servers behind a
balancer, sharing the cases on one real PostgreSQL (SQLRepository) and the
delivery queues on one real Redis (scripts/ensure-services.sh), each talking to
the fake Telegram Bot API (tests/fake_telegram.py) through the channel's real
client. The operators' updates are real Telegram updates, parsed as the
channel parses them, handed to whichever "server" the test picks. Every state
change is a compare-and-set, so when several servers try the same change at
the same moment (threads, each with its own connection), exactly one does it.
No Rasa agent: conversations are not paused here (tests/test_handoff.py
covers that with a real server)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any, Callable, Dict, List

import pytest

from channels.telegram.bot import TelegramBot
from content.loader import data_dir, load_content
from handoff import queues
from handoff.case import CANCELLED, CLOSED, EXPIRED, LIVE, WAITING, Case
from handoff.operators import OperatorsDesk
from handoff.relay import Relay
from handoff.repository import MemoryRepository, SQLRepository
from tests import fake_telegram as tg

TOKEN = "123456789:AArelay-shared_token"
OPS = -1009876543210
OPERATOR = tg.person(880021, "Olga", "olga_counsel")
SECRET_WORDS = "my passport is with the boss at the karaoke bar"
COUNSELLOR_WORDS = "We can help you get it back, are you safe tonight?"
HANDOFF_TABLES = (
    "waypoint_handoff_cases",
    "waypoint_handoff_relayed",
    "waypoint_handoff_messages",
    "waypoint_handoff_interrupted",
)


@pytest.fixture(scope="module")
def fake():
    server = tg.FakeTelegram(TOKEN).start()
    server.set_member(OPS, OPERATOR["id"], "member")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())


@pytest.fixture
def redis_env(services) -> Dict[str, str]:
    env = {k: v for k, v in services.env.items() if k.startswith("WAYPOINT_REDIS_")}
    client = queues.redis_client(env)
    for key in client.scan_iter(match=queues.PREFIX + "*"):
        client.delete(key)
    return env


@pytest.fixture
def pg_url(services) -> str:
    """The shared PostgreSQL, its hand-off tables emptied."""
    import sqlalchemy as sa

    url = services.pg_url()
    SQLRepository(url).close()  # the tables exist
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for table in HANDOFF_TABLES:
            connection.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()
    return url


def redis_client(env: Dict[str, str]) -> Any:
    return queues.redis_client(env)


def everything_in_redis(env: Dict[str, str]) -> str:
    """Every key and value in Redis, as one text."""
    client = redis_client(env)
    parts: List[str] = []
    for key in client.scan_iter(match="*"):
        parts.append(key.decode())
        kind = client.type(key).decode()
        if kind == "string":
            parts.append(client.get(key).decode(errors="replace"))
        elif kind == "hash":
            parts += [v.decode(errors="replace") for v in client.hgetall(key).values()]
        elif kind == "list":
            parts += [v.decode(errors="replace") for v in client.lrange(key, 0, -1)]
    return "\n".join(parts)


def everything_in_postgres(url: str) -> str:
    """Every value of the hand-off tables, as one text."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return "\n".join(
                " ".join(str(v) for v in row)
                for table in HANDOFF_TABLES
                for row in connection.exec_driver_sql(f"SELECT * FROM {table}")
            )
    finally:
        engine.dispose()


@pytest.fixture
async def servers(fake, redis_env, pg_url):
    """make(timeout) -> one Rasa server's relay (its own repository object on the
    shared PostgreSQL, its own queues object on the shared Redis) with its desk
    on the fake Bot API; all closed at the end."""
    made: List[Relay] = []

    async def make(timeout: float = 600) -> Relay:
        relay = Relay(SQLRepository(pg_url), queues.from_settings(redis_env), timeout=timeout)
        bot = TelegramBot(TOKEN, fake.url, max_attempts=2)
        await bot.start()
        relay.desk = OperatorsDesk(relay, bot, chat_id=OPS, language="en")
        made.append(relay)
        return relay

    yield make
    for relay in made:
        for task in list(relay.tasks):
            task.cancel()
        await relay.desk.client.stop()
        relay.repo.close()


async def operators_update(relay: Relay, update: Dict[str, Any]) -> None:
    from telegram import Update

    await relay.desk.on_update(Update.de_json(update, relay.desk.client.bot))
    await tg.settle(relay)


def marker(case_id: str) -> Dict[str, Any]:
    return {
        "waypoint": "handoff_requested",
        "case_id": case_id,
        "language": "en",
        "country": "MY",
        "topic": None,
        "summary": None,
    }


_numbers = iter(range(0x100000, 0xFFFFFF))


def new_id() -> str:
    return f"WP-{next(_numbers):06X}"


async def new_case(relay: Relay, sender: str, channel: str = "webchat") -> str:
    case_id = new_id()
    await relay.case_requested(sender, marker(case_id), channel)
    await tg.settle(relay)
    return case_id


def post_of(fake, case_id: str) -> Dict[str, Any]:
    return next(
        c.result
        for c in fake.calls_of("sendMessage", OPS)
        if case_id in c.params.get("text", "") and (c.params.get("reply_markup") or {}).get("inline_keyboard")
    )


def texts(relay: Relay, sender: str) -> List[str]:
    return [m["text"] for m in relay.take(sender)]


@pytest.mark.services
async def test_a_case_goes_across_servers_and_the_relayed_text_leaves_redis(fake, servers, redis_env, pg_url, content):
    a, b = await servers(), await servers()
    assert a.queues.primary is not None and b.queues.primary is not None  # Redis, not this process's memory
    sender = "web-user-across-servers"
    case_id = await new_case(a, sender)
    # requested on A, found on B
    assert b.state_of(sender) == WAITING and b.case_of(sender).case_id == case_id
    post = post_of(fake, case_id)
    assert b.case_of(sender).post_id == post["message_id"]
    # a second marker of the same case on B does not post it again
    await b.case_requested(sender, marker(case_id), "webchat")
    await tg.settle(b)
    assert (
        len(
            [
                c
                for c in fake.calls_of("sendMessage", OPS)
                if case_id in c.params.get("text", "") and (c.params.get("reply_markup") or {}).get("inline_keyboard")
            ]
        )
        == 1
    )

    # the operator's Accept reaches B: live for A too, the user hears it through A
    await operators_update(b, tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post))
    assert a.state_of(sender) == LIVE and b.state_of(sender) == LIVE
    assert a.repo.get(case_id).state == LIVE
    connected = content.messages["handoff_connected"]["en"]
    assert texts(a, sender) == [connected]
    assert a.take(sender) == [] and b.take(sender) == []

    # the user's message reaches A: relayed to the operators, replying to the post
    before = len(fake.calls_of("sendMessage", OPS))
    assert await a.intercept(sender, SECRET_WORDS, "webchat") is True
    relayed = fake.calls_of("sendMessage", OPS)[before:]
    assert len(relayed) == 1 and SECRET_WORDS in relayed[0].params["text"]
    assert (relayed[0].params.get("reply_parameters") or {}).get("message_id") == post["message_id"]
    assert SECRET_WORDS not in everything_in_redis(redis_env)
    assert SECRET_WORDS not in everything_in_postgres(pg_url)  # the case store holds ids and states only

    # the counsellor replies to that message; the update reaches B; the web page polls A
    await operators_update(b, tg.group_message_update(OPS, OPERATOR, COUNSELLOR_WORDS, reply_to=relayed[0].result))
    assert COUNSELLOR_WORDS in everything_in_redis(redis_env)  # waiting in the queue, with its expiry
    queue_key = queues.PREFIX + sender
    ttl = redis_client(redis_env).ttl(queue_key)
    assert 0 < ttl <= 48 * 3600
    assert texts(a, sender) == [content.messages["handoff_counsellor"]["en"].format(text=COUNSELLOR_WORDS)]
    assert COUNSELLOR_WORDS not in everything_in_redis(redis_env) and not redis_client(redis_env).exists(queue_key)
    assert b.take(sender) == []
    assert COUNSELLOR_WORDS not in everything_in_postgres(pg_url)

    # /reply <case> on A works too; the user's /end reaches B; closed everywhere
    await operators_update(a, tg.group_message_update(OPS, OPERATOR, f"/reply {case_id} one more thing"))
    assert "one more thing" in b.take(sender)[0]["text"]
    assert await b.intercept(sender, "/end", "webchat") is True
    assert a.state_of(sender) is None and b.state_of(sender) is None
    assert a.repo.get(case_id).state == CLOSED
    told = texts(a, sender)
    assert told[0] == content.messages["handoff_ended"]["en"] and "☎" in told[1]
    # a late reply of the counsellor, on either server, gets a clear answer and reaches no one
    before = len(fake.calls_of("sendMessage", OPS))
    await operators_update(a, tg.group_message_update(OPS, OPERATOR, "still there?", reply_to=post))
    answer = fake.calls_of("sendMessage", OPS)[before:]
    assert answer and content.messages["operators_not_open"]["en"].format(case=case_id) in answer[0].params["text"]
    assert a.take(sender) == [] and b.take(sender) == []
    assert "still there?" not in everything_in_redis(redis_env)


@pytest.mark.services
async def test_a_waiting_case_expires_once_when_both_servers_timers_fire(fake, servers, content):
    a, b = await servers(timeout=1.0), await servers(timeout=1.0)
    sender = "web-user-expiry"
    case_id = await new_case(a, sender)
    post = post_of(fake, case_id)
    # B restarts meanwhile: its recovery finds the case in the shared store and arms a timer too
    assert await b.recover() == 1
    assert case_id in b.timers and case_id in a.timers
    await asyncio.sleep(1.5)
    for _ in range(300):  # both timers fired (a loaded machine may be late)
        if not a.timers and not b.timers:
            break
        await asyncio.sleep(0.1)
    await tg.settle(a, b)
    assert a.state_of(sender) is None and b.state_of(sender) is None
    assert a.repo.get(case_id).state == EXPIRED
    told = texts(a, sender)
    assert told.count(content.messages["handoff_unavailable"]["en"]) == 1  # once, not twice
    expired_notes = [
        c for c in fake.calls_of("sendMessage", OPS) if c.params.get("text", "").startswith(f"{case_id}: ")
    ]
    assert len(expired_notes) == 1
    # an Accept pressed after the expiry, on either server, is too late
    late = tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post)
    await operators_update(b, late)
    assert a.state_of(sender) is None and a.repo.get(case_id).state == EXPIRED
    answer = fake.calls_of("answerCallbackQuery")[-1].params
    assert answer["callback_query_id"] == late["callback_query"]["id"]
    assert answer["text"] == content.messages["operators_taken"]["en"]


@pytest.mark.services
async def test_delete_on_one_server_closes_the_case_for_the_other(fake, servers, redis_env, pg_url, content):
    a, b = await servers(), await servers()
    sender = "web-user-deletes"
    case_id = await new_case(a, sender)
    post = post_of(fake, case_id)
    await operators_update(a, tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post))
    assert await a.intercept(sender, SECRET_WORDS, "webchat") is True
    relayed_ids = list(b.case_of(sender).relayed)
    assert relayed_ids
    await operators_update(a, tg.group_message_update(OPS, OPERATOR, COUNSELLOR_WORDS, reply_to=post))
    await b.forget(sender)  # "delete my data" reaches B
    await tg.settle(a, b)
    assert a.case_of(sender) is None and a.state_of(sender) is None
    assert a.repo.get(case_id) is None and b.repo.get(case_id) is None  # the case itself is deleted
    assert a.take(sender) == []  # nothing stays queued
    deleted = [i for c in fake.calls_of("deleteMessages", OPS) for i in c.params.get("message_ids", [])] + [
        c.params.get("message_id") for c in fake.calls_of("deleteMessage", OPS)
    ]
    assert set(relayed_ids) <= set(int(i) for i in deleted) and post["message_id"] not in deleted
    edits = [
        c.params["text"] for c in fake.calls_of("editMessageText", OPS) if c.params["message_id"] == post["message_id"]
    ]
    assert edits[-1] == f"{case_id}\n\n{content.messages['operators_deleted']['en']}"  # only the id and the state
    assert COUNSELLOR_WORDS not in everything_in_redis(redis_env)
    assert SECRET_WORDS not in everything_in_redis(redis_env)
    # nothing of the user stays, under any key or in any table
    assert sender not in everything_in_redis(redis_env)
    assert sender not in everything_in_postgres(pg_url) and case_id not in everything_in_postgres(pg_url)
    # the user's next message on A goes to the assistant (False), not to a counsellor
    assert await a.intercept(sender, "hello", "webchat") is False
    # a counsellor's late reply to the post finds no case and reaches no one
    await operators_update(b, tg.group_message_update(OPS, OPERATOR, "hello? LATE-1", reply_to=post))
    assert a.take(sender) == [] and "LATE-1" not in everything_in_redis(redis_env)


@pytest.mark.services
async def test_a_user_cancels_on_the_other_server(fake, servers, content):
    a, b = await servers(), await servers()
    sender = "web-user-cancels"
    case_id = await new_case(a, sender)
    assert await b.intercept(sender, "/cancel", "webchat") is True
    assert a.state_of(sender) is None and a.repo.get(case_id).state == CANCELLED
    assert texts(a, sender) == [content.messages["handoff_cancelled"]["en"]]
    edits = [
        c.params["text"]
        for c in fake.calls_of("editMessageText", OPS)
        if c.params["message_id"] == post_of(fake, case_id)["message_id"]
    ]
    assert content.messages["operators_cancelled"]["en"] in edits[-1]


# -- compare-and-set: several servers, the same change at the same moment ---------------------------------


def race(workers: List[Callable[[], Any]]) -> List[Any]:
    """Runs the callables in threads released together; their results, in order."""
    start = threading.Barrier(len(workers))
    results: List[Any] = [None] * len(workers)
    errors: List[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = workers[i]()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return results


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def store_url(request, tmp_path):
    if request.param == "sqlite":  # several worker processes on one machine
        return f"sqlite:///{tmp_path / 'waypoint.db'}"
    return request.getfixturevalue("pg_url")


SERVERS = 6


def test_each_state_change_happens_once_when_every_server_tries_it(store_url):
    repos = [SQLRepository(store_url) for _ in range(SERVERS)]
    try:
        for round_ in range(8):
            case_id = f"WP-{round_:03d}AB0"
            assert repos[0].create(Case(case_id, f"web-cas-{round_}", "webchat", "en"))
            assert not repos[1].create(Case(case_id, "web-other", "webchat", "en"))  # one case per id
            # accept (waiting -> live) or expire (waiting -> expired), everyone at once
            target = LIVE if round_ % 2 == 0 else EXPIRED
            moved = race([lambda r=r, c=case_id, t=target: r.move(c, t) for r in repos])
            assert [m[0] for m in moved].count(True) == 1, moved
            assert all(m[2].state == target for m in moved)
            assert all(was == WAITING for ok, was, _ in moved if ok)
            if target == LIVE:  # close (live -> closed), everyone at once
                closed = race([lambda r=r, c=case_id: r.move(c, CLOSED) for r in repos])
                assert [m[0] for m in closed].count(True) == 1, closed
            flagged = race([lambda r=r, c=case_id: r.flag_emergency(c) for r in repos])
            assert flagged.count(True) == 1
            assert repos[0].get(case_id).state == (CLOSED if target == LIVE else EXPIRED)
    finally:
        for repo in repos:
            repo.close()


@pytest.mark.services
def test_accept_expire_and_close_by_many_relays_at_once_tell_the_user_once(store_url, redis_env, content):
    """Whole relays (each its own event loop in its own thread, as separate
    servers): one Accept wins, the user is told once through the shared
    queue; then an expiry racing the user's /end and an operator's /end."""
    import rasa.shared.core.events  # noqa: F401 - imported once here, not by six threads at once

    relays = [Relay(SQLRepository(store_url), queues.from_settings(redis_env), timeout=600) for _ in range(SERVERS)]
    try:
        sender = "web-user-race"
        case_id = "WP-0C0A00"
        relays[0].repo.create(Case(case_id, sender, "webchat", "en", "MY"))
        accepted = race([lambda r=r: asyncio.run(r.accept(case_id)) for r in relays])
        assert sum(1 for c in accepted if c is not None) == 1
        assert texts(relays[-1], sender) == [content.messages["handoff_connected"]["en"]]
        case = relays[0].repo.get(case_id)
        ended = race(
            [
                lambda r=r, s=s: asyncio.run(r.finish(case, s, [("say", "handoff_ended")]))
                for r in relays
                for s in (CLOSED, EXPIRED)
            ]
        )
        assert ended.count(True) == 1
        assert relays[0].repo.get(case_id).state == CLOSED  # live -> expired is not a change there is
        assert texts(relays[1], sender) == [content.messages["handoff_ended"]["en"]]
        # a waiting case: the timers of every server fire at once
        waiting = Case("WP-0C0A01", sender, "webchat", "en", "MY")
        relays[0].repo.create(waiting)
        expired = race(
            [lambda r=r: asyncio.run(r.finish(waiting, EXPIRED, [("say", "handoff_unavailable")])) for r in relays]
        )
        assert expired.count(True) == 1
        assert texts(relays[2], sender) == [content.messages["handoff_unavailable"]["en"]]
    finally:
        for relay in relays:
            relay.repo.close()


# -- the queues ------------------------------------------------------------------------------------------------


async def test_without_redis_settings_nothing_touches_redis(fake, monkeypatch, tmp_path, content):
    import redis

    import handoff

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Redis used without WAYPOINT_REDIS_HOST")

    monkeypatch.setattr(redis, "Redis", refuse)
    for name in ("WAYPOINT_REDIS_HOST", "WAYPOINT_PG_HOST", "WAYPOINT_STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert queues.from_settings({}).primary is None and queues.redis_client({}) is None
    handoff.reset()
    try:
        relay = handoff.get_relay()  # the embedded defaults: SQLite beside the tracker store, memory queues
        assert relay.queues.primary is None and relay.repo.engine.dialect.name == "sqlite"
        bot = TelegramBot(TOKEN, fake.url, max_attempts=2)
        await bot.start()
        relay.desk = OperatorsDesk(relay, bot, chat_id=OPS, language="en")
        sender = "web-user-memory"
        case_id = await new_case(relay, sender)
        assert relay.state_of(sender) == WAITING
        await operators_update(
            relay, tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post_of(fake, case_id))
        )
        assert relay.state_of(sender) == LIVE and relay.queues.fallback._queues[sender]
        assert texts(relay, sender) == [content.messages["handoff_connected"]["en"]]
        await bot.stop()
    finally:
        handoff.reset()


async def test_redis_down_means_this_servers_memory(caplog, content):
    down = queues.from_settings({"WAYPOINT_REDIS_HOST": "127.0.0.1", "WAYPOINT_REDIS_PORT": "1"})
    assert down.primary is not None
    relay = Relay(MemoryRepository(), down, timeout=600)
    sender = "web-user-redis-down"
    with caplog.at_level(logging.WARNING, logger="handoff.queues"):
        await relay.case_requested(sender, marker("WP-0D0A00"), "webchat")  # no desk: told honestly at once
        assert texts(relay, sender)[0] == content.messages["handoff_unavailable"]["en"]
        down.push(sender, [{"text": "a"}])
        down.push(sender, [{"text": "b"}])
        assert [m["text"] for m in down.take(sender)] == ["a", "b"] and down.take(sender) == []
    warnings = [r.getMessage() for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(warnings) == 1  # said once, not for every message


@pytest.mark.services
async def test_queued_items_are_json_with_no_extra_fields(redis_env):
    shared = queues.RedisQueues(redis_client(redis_env), limit=1, ttl=60)
    shared.push("s1", [{"text": "a"}, {"text": "b", "buttons": [{"title": "t", "payload": "/p"}]}])
    raw = redis_client(redis_env).lrange(queues.PREFIX + "s1", 0, -1)
    assert [json.loads(r) for r in raw] == [{"text": "b", "buttons": [{"title": "t", "payload": "/p"}]}]
    assert 0 < redis_client(redis_env).ttl(queues.PREFIX + "s1") <= 60
    assert shared.take("s1")[0]["text"] == "b" and shared.take("s1") == []
    # what the relay queues for a user: text and buttons only, never a marker, an address or an id
    relay = Relay(MemoryRepository(), queues.from_settings(redis_env), timeout=600)
    await relay.to_user(
        "s2",
        "rest",
        [
            {
                "text": "x",
                "recipient_id": "s2",
                "custom": {"waypoint": "forget"},
                "buttons": [{"title": "Yes", "payload": "/affirm"}],
            }
        ],
    )
    raw = redis_client(redis_env).lrange(queues.PREFIX + "s2", 0, -1)
    assert [json.loads(r) for r in raw] == [{"text": "x", "buttons": [{"title": "Yes", "payload": "/affirm"}]}]
    # another server takes it
    other = Relay(MemoryRepository(), queues.from_settings(redis_env), timeout=600)
    assert texts(other, "s2") == ["x"] and relay.take("s2") == []
