"""The hand-off relay's state shared through Redis (channels/relay_state.py):
two Relay instances stand for two Rasa servers behind a balancer, sharing one
real Redis (scripts/ensure-services.sh) and the case store; each talks to the
fake Telegram Bot API (tests/fake_telegram.py) through the channel's real
client. The operators' updates are real Telegram updates, parsed as the
channel parses them, handed to whichever "server" the test picks. No Rasa
agent: conversations are not paused here (tests/test_handoff.py covers that
with a real server)."""
from __future__ import annotations

import asyncio
import json
import types
from typing import Any, Dict, List

import pytest

from actions import store
from content.loader import load_content
from channels import relay_state
from channels.operators import CANCELLED, CLOSED, EXPIRED, LIVE, WAITING, Relay
from channels.telegram_channel import TelegramBot
from tests import fake_telegram as tg

pytestmark = pytest.mark.slow

TOKEN = "123456789:AArelay-shared_token"
OPS = -1009876543210
OPERATOR = tg.person(880021, "Olga", "olga_counsel")
SECRET_WORDS = "my passport is with the boss at the karaoke bar"
COUNSELLOR_WORDS = "We can help you get it back, are you safe tonight?"


@pytest.fixture(scope="module")
def fake():
    server = tg.FakeTelegram(TOKEN).start()
    server.set_member(OPS, OPERATOR["id"], "member")
    yield server
    server.stop()


@pytest.fixture
def redis_env(services) -> Dict[str, str]:
    env = {k: v for k, v in services.env.items() if k.startswith("WAYPOINT_REDIS_")}
    client = relay_state.client_from_env(env)
    for key in client.scan_iter(match=relay_state.PREFIX + ":*"):
        client.delete(key)
    return env


@pytest.fixture
def content():
    return load_content()


def redis_client(env: Dict[str, str]) -> Any:
    return relay_state.client_from_env(env)


def everything_in_redis(env: Dict[str, str]) -> str:
    """Every value under the relay's prefix, as one text."""
    client = redis_client(env)
    parts: List[str] = []
    for key in client.scan_iter(match=relay_state.PREFIX + ":*"):
        kind = client.type(key).decode()
        if kind == "string":
            parts.append(client.get(key).decode())
        elif kind == "hash":
            parts += [v.decode() for v in client.hgetall(key).values()]
        elif kind == "list":
            parts += [v.decode() for v in client.lrange(key, 0, -1)]
    return "\n".join(parts)


async def server(fake, env: Dict[str, str], timeout: float = 600) -> Relay:
    """One Rasa server's relay with the Telegram channel's client (no agent)."""
    relay = Relay(chat_id=str(OPS), timeout=timeout, operators_language="en", env=env)
    bot = TelegramBot(TOKEN, fake.url, max_attempts=2)
    await bot.start()
    relay.telegram = types.SimpleNamespace(client=bot)
    return relay


async def operators_update(relay: Relay, update: Dict[str, Any]) -> None:
    from telegram import Update

    await relay.on_operators_update(Update.de_json(update, relay.client.bot))


async def settle(*relays: Relay) -> None:
    for _ in range(50):
        pending = [t for r in relays for t in r.tasks if not t.done() and t is not r_timer(r, t)]
        if not pending:
            return
        await asyncio.sleep(0.05)


def r_timer(relay: Relay, task: asyncio.Task) -> Any:
    """A case's expiry timer is not 'pending work'."""
    return task if any(c.timer is task for c in relay.cases.values()) else None


async def new_case(relay: Relay, sender: str, channel: str = "webchat") -> str:
    record = store.create_case(sender, channel, "en", "MY", None, None)
    await relay.case_requested(sender, record["case_id"], channel)
    await settle(relay)
    return record["case_id"]


def post_of(fake, case_id: str) -> Dict[str, Any]:
    return next(c.result for c in fake.calls_of("sendMessage", OPS) if case_id in c.params.get("text", "")
                and (c.params.get("reply_markup") or {}).get("inline_keyboard"))


async def test_a_case_goes_across_servers_and_the_relayed_text_leaves_redis(fake, redis_env, content):
    a, b = await server(fake, redis_env), await server(fake, redis_env)
    assert a.shared is not None and b.shared is not None
    sender = "web-user-across-servers"
    case_id = await new_case(a, sender)
    # requested on A, found on B
    assert b.state_of(sender) == WAITING and b.case_of(sender).case_id == case_id
    post = post_of(fake, case_id)
    assert b.case_of(sender).post_id == post["message_id"]
    # a second marker of the same case on B does not post it again
    await b.case_requested(sender, case_id, "webchat")
    await settle(b)
    assert len([c for c in fake.calls_of("sendMessage", OPS) if case_id in c.params.get("text", "")
                and (c.params.get("reply_markup") or {}).get("inline_keyboard")]) == 1

    # the operator's Accept reaches B: live for A too, the user hears it through A
    await operators_update(b, tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post))
    assert a.state_of(sender) == LIVE and b.state_of(sender) == LIVE
    assert store.get_case(case_id)["state"] == LIVE
    connected = content.messages["handoff_connected"]["en"]
    assert [m["text"] for m in a.take(sender)] == [connected]
    assert a.take(sender) == [] and b.take(sender) == []

    # the user's message reaches A: relayed to the operators, replying to the post
    before = len(fake.calls_of("sendMessage", OPS))
    assert await a.intercept(sender, SECRET_WORDS, "webchat") is True
    relayed = fake.calls_of("sendMessage", OPS)[before:]
    assert len(relayed) == 1 and SECRET_WORDS in relayed[0].params["text"]
    assert relayed[0].params.get("reply_to_message_id") == post["message_id"] or \
        (relayed[0].params.get("reply_parameters") or {}).get("message_id") == post["message_id"]
    assert SECRET_WORDS not in everything_in_redis(redis_env)

    # the counsellor replies to that message; the update reaches B; the web page polls A
    await operators_update(b, tg.group_message_update(OPS, OPERATOR, COUNSELLOR_WORDS, reply_to=relayed[0].result))
    assert COUNSELLOR_WORDS in everything_in_redis(redis_env)  # waiting in the queue, with its expiry
    queue_key = f"{relay_state.PREFIX}:queue:{sender}"
    ttl = redis_client(redis_env).ttl(queue_key)
    assert 0 < ttl <= 48 * 3600
    taken = a.take(sender)
    assert [m["text"] for m in taken] == [content.messages["handoff_counsellor"]["en"].format(text=COUNSELLOR_WORDS)]
    assert COUNSELLOR_WORDS not in everything_in_redis(redis_env) and not redis_client(redis_env).exists(queue_key)
    assert b.take(sender) == []

    # /reply <case> on A works too; the user's /end reaches B; closed everywhere
    await operators_update(a, tg.group_message_update(OPS, OPERATOR, f"/reply {case_id} one more thing"))
    assert "one more thing" in b.take(sender)[0]["text"]
    assert await b.intercept(sender, "/end", "webchat") is True
    assert a.state_of(sender) is None and b.state_of(sender) is None
    assert store.get_case(case_id)["state"] == CLOSED
    assert a.take(sender)[0]["text"] == content.messages["handoff_ended"]["en"]
    # a late reply of the counsellor, on either server, gets a clear answer and reaches no one
    before = len(fake.calls_of("sendMessage", OPS))
    await operators_update(a, tg.group_message_update(OPS, OPERATOR, "still there?", reply_to=post))
    answer = fake.calls_of("sendMessage", OPS)[before:]
    assert answer and content.messages["operators_not_open"]["en"].format(case=case_id) in answer[0].params["text"]
    assert a.take(sender) == [] and b.take(sender) == []
    assert "still there?" not in everything_in_redis(redis_env)
    for relay in (a, b):
        await relay.client.stop()


async def test_a_waiting_case_expires_once_when_both_servers_timers_fire(fake, redis_env, content):
    a, b = await server(fake, redis_env, timeout=1.0), await server(fake, redis_env, timeout=1.0)
    sender = "web-user-expiry"
    case_id = await new_case(a, sender)
    post = post_of(fake, case_id)
    # B restarts meanwhile: its recovery keeps the case (Redis has it) and arms a timer too
    assert await b.recover() == 0
    assert b.cases[case_id].timer is not None and a.cases[case_id].timer is not None
    await asyncio.sleep(2.0)
    await settle(a, b)
    assert a.state_of(sender) is None and b.state_of(sender) is None
    assert store.get_case(case_id)["state"] == EXPIRED
    told = [m["text"] for m in a.take(sender)]
    assert told.count(content.messages["handoff_unavailable"]["en"]) == 1  # once, not twice
    expired_notes = [c for c in fake.calls_of("sendMessage", OPS)
                     if c.params.get("text", "").startswith(f"{case_id}: ")]
    assert len(expired_notes) == 1
    # an Accept pressed after the expiry, on either server, is too late
    await operators_update(b, tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post))
    assert a.state_of(sender) is None and store.get_case(case_id)["state"] == EXPIRED
    for relay in (a, b):
        await relay.client.stop()


async def test_delete_on_one_server_closes_the_case_for_the_other(fake, redis_env):
    a, b = await server(fake, redis_env), await server(fake, redis_env)
    sender = "web-user-deletes"
    case_id = await new_case(a, sender)
    post = post_of(fake, case_id)
    await operators_update(a, tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post))
    assert await a.intercept(sender, SECRET_WORDS, "webchat") is True
    relayed_ids = list(b.case_of(sender).relayed)
    assert relayed_ids
    await operators_update(a, tg.group_message_update(OPS, OPERATOR, COUNSELLOR_WORDS, reply_to=post))
    await b.forget(sender)  # "delete my data" reaches B
    assert a.case_of(sender) is None and a.state_of(sender) is None
    assert store.get_case(case_id) is None  # the case store forgot it as well
    assert a.take(sender) == []  # nothing stays queued
    deleted = [i for c in fake.calls_of("deleteMessages", OPS) for i in c.params.get("message_ids", [])] + \
        [c.params.get("message_id") for c in fake.calls_of("deleteMessage", OPS)]
    assert set(relayed_ids) <= set(int(i) for i in deleted)
    assert COUNSELLOR_WORDS not in everything_in_redis(redis_env)
    assert SECRET_WORDS not in everything_in_redis(redis_env)
    # the shared record keeps the case id and its state only, under no key of the user
    assert sender not in everything_in_redis(redis_env)
    assert not [k for k in redis_client(redis_env).scan_iter(match="*") if sender.encode() in k]
    assert a._get(case_id).state == CLOSED and b._get(case_id).reason == "operators_deleted"
    # the user's next message on A goes to the assistant (False), not to a counsellor
    assert await a.intercept(sender, "hello", "webchat") is False
    for relay in (a, b):
        await relay.client.stop()


async def test_a_user_cancels_on_the_other_server(fake, redis_env, content):
    a, b = await server(fake, redis_env), await server(fake, redis_env)
    sender = "web-user-cancels"
    case_id = await new_case(a, sender)
    assert await b.intercept(sender, "/cancel", "webchat") is True
    assert a.state_of(sender) is None and store.get_case(case_id)["state"] == CANCELLED
    assert [m["text"] for m in a.take(sender)] == [content.messages["handoff_cancelled"]["en"]]
    for relay in (a, b):
        await relay.client.stop()


async def test_without_redis_settings_nothing_touches_redis(fake, redis_env, monkeypatch):
    import redis

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Redis used without WAYPOINT_REDIS_HOST")

    monkeypatch.setattr(redis, "Redis", refuse)
    for name in list(redis_env):
        monkeypatch.delenv(name, raising=False)
    relay = await server(fake, {})
    assert relay.shared is None and Relay(chat_id=str(OPS)).shared is None
    sender = "web-user-memory"
    case_id = await new_case(relay, sender)
    assert relay.state_of(sender) == WAITING and relay.by_sender[sender] == case_id
    await operators_update(relay, tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id,
                                                           post_of(fake, case_id)))
    assert relay.state_of(sender) == LIVE and relay.queues[sender]
    await relay.client.stop()


async def test_redis_down_means_this_servers_memory(fake, redis_env):
    relay = await server(fake, {**redis_env, "WAYPOINT_REDIS_PORT": "1"})
    assert relay.shared is None
    sender = "web-user-redis-down"
    case_id = await new_case(relay, sender)
    assert relay.state_of(sender) == WAITING and relay.by_sender[sender] == case_id
    await relay.client.stop()


def test_queued_items_are_json_with_no_extra_fields(redis_env):
    shared = relay_state.SharedRelayState.from_env(redis_env)
    shared.push("s1", [{"text": "a"}, {"text": "b", "buttons": [{"title": "t", "payload": "/p"}]}], 1, 60)
    raw = redis_client(redis_env).lrange(f"{relay_state.PREFIX}:queue:s1", 0, -1)
    assert [json.loads(r) for r in raw] == [{"text": "b", "buttons": [{"title": "t", "payload": "/p"}]}]
    assert shared.take("s1")[0]["text"] == "b" and shared.take("s1") == []
