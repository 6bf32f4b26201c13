"""The Telegram channel (channels/telegram/) and the channel store it shares
with other servers (channels/state.py).

Unit tests: text splitting, settings, the shared store on SQLite (seen update
ids, encrypted chat addresses, message ids, long button payloads), and
python-telegram-bot's real HTTP stack against the fake Bot API
(tests/fake_telegram.py): retries, 429, deleting in batches, media, output
shaping, the channel driven without Rasa (tests/fake_telegram.FakeAssistant).

``services``: two channels standing for two Rasa servers share one channel
store on real PostgreSQL (and the hand-off through it, with Redis queues).

``model``: the assistant started as `make run` starts it, with the channel
pointed at the fake, receiving real update JSON on its webhook (and, in
polling mode, over getUpdates)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from channels import base
from channels.state import ADDRESS_FOR, MESSAGES_FOR, PAYLOADS_FOR, SEEN_FOR, ChannelState
from channels.telegram import TelegramInput, TelegramOutput, sender_id_for
from channels.telegram.__main__ import webhook_url
from channels.telegram.bot import ALLOWED_UPDATES, TelegramBot
from channels.telegram.channel import CALLBACK_DATA_LIMIT, DELETE_PAYLOAD, PAYLOAD_PREFIX, PLATFORM
from channels.telegram.settings import Settings
from content import languages
from content.loader import data_dir, load_content
from content.text import cut_text, split_text, utf16_len
from tests import fake_telegram as tg
from tests.servers import ROOT, Waypoint

TOKEN = "123456789:AAtest-Waypoint_token"
SECRET = "test-webhook-secret_0123"
ID_SECRET = "test-id-secret"
OPS = -100999  # the operators' group of the unit tests
OPERATOR = tg.person(880031, "Olga", "olga_counsel")
QUESTIONS = {
    "en": "my boss took my passport and wont give it back",
    "id": "paspor saya ditahan sama majikan, gimana cara ambilnya",
    "ms": "majikan simpan pasport saya, macam mana nak ambil balik",
    "vi": "chủ giữ hộ chiếu của tôi không trả, tôi phải làm sao",
    "th": "นายจ้างยึดพาสปอร์ตไม่ยอมคืน ทำยังไงดี",
}
LANGS = tuple(QUESTIONS)


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())  # what the servers load (WAYPOINT_DATA_DIR or data/)


@pytest.fixture(scope="module")
def fake():
    server = tg.FakeTelegram(TOKEN).start()
    server.set_member(OPS, OPERATOR["id"], "member")
    yield server
    server.stop()


@pytest.fixture
def state(tmp_path):
    store = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", b"unit secret")
    yield store
    store.close()


def age(store: ChannelState, table: Any, seconds: float, **where: Any) -> None:
    """Moves rows of a channel store table ``seconds`` into the past."""
    condition = [getattr(table.c, k) == v for k, v in where.items()]
    with store.engine.begin() as connection:
        connection.execute(table.update().where(*condition).values(at=table.c.at - seconds))


# -- pieces ----------------------------------------------------------------------------------------


def test_long_replies_split_on_paragraphs_within_the_limit():
    paragraphs = [f"Paragraph {i}: " + "word " * 150 for i in range(40)]  # ~30 000 characters
    text = "\n\n".join(p.strip() for p in paragraphs)
    parts = split_text(text)
    assert len(parts) > 1
    assert all(utf16_len(p) <= 4096 for p in parts)
    # every split is on a paragraph boundary: joining them back gives the text
    assert "\n\n".join(parts) == text
    assert all(p.startswith("Paragraph") for p in parts)


def test_a_paragraph_longer_than_the_limit_splits_on_sentences_then_characters():
    sentence = "Bạn có quyền được giúp đỡ. "
    text = (sentence * 400).strip()
    parts = split_text(text)
    assert all(utf16_len(p) <= 4096 for p in parts) and len(parts) > 1
    assert all(p.endswith(".") for p in parts)
    thai = "ก" * 9000  # no spaces at all
    assert [len(p) for p in split_text(thai)] == [4096, 4096, 808]
    emoji = "😀" * 3000  # 2 UTF-16 units each, as Telegram counts
    assert all(utf16_len(p) <= 4096 for p in split_text(emoji))


@hsettings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab ก\n.😀")), max_size=600), st.integers(min_value=8, max_value=120))
def test_splitting_keeps_every_character_and_respects_the_limit(text, limit):
    parts = split_text(text, limit)
    assert all(0 < utf16_len(p) <= limit for p in parts)
    squash = lambda s: "".join(s.split())  # noqa: E731
    assert squash("".join(parts)) == squash(text)


def test_too_long_input_is_cut_on_a_word_boundary():
    text = "help " * 1000
    cut = cut_text(text, 4000)
    assert len(cut) <= 4000 and text.startswith(cut) and not cut.endswith("hel")
    assert cut_text("short", 4000) == "short"


def test_long_payloads_travel_as_short_callback_data(state, tmp_path):
    channel = TelegramInput(Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN}), state=state)
    short = '/choose_language{"language_choice":"th"}'
    assert channel._callback_data(short) == short
    long_payload = '/inform_country{"country":"MY","note":"' + "x" * 80 + '"}'
    data = channel._callback_data(long_payload)
    assert data.startswith(PAYLOAD_PREFIX) and len(data.encode()) <= CALLBACK_DATA_LIMIT
    key = data[len(PAYLOAD_PREFIX) :]
    assert state.payload(key) == long_payload
    assert channel._callback_data(long_payload) == data  # stable for the same payload
    spoof = PAYLOAD_PREFIX + key  # a payload that looks like a key is never taken for one
    assert channel._callback_data(spoof) != spoof
    assert state.payload(channel._callback_data(spoof)[len(PAYLOAD_PREFIX) :]) == spoof
    # another process on the same store (no memory of it) resolves it ...
    other = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", b"unit secret")
    try:
        assert other.payload(key) == long_payload
        assert other.payload_key(long_payload) == key  # ... and gives the same key for it
        # ... for 30 days (PAYLOADS_FOR); then it is gone, and the purge removes it
        age(state, state.payloads_t, PAYLOADS_FOR + 60, key=key)
        later = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", b"unit secret")
        assert later.payload(key) is None
        assert later.purge() == 1 and later.payload_key(long_payload) != key
        later.close()
    finally:
        other.close()
    assert state.payload("unknown") is None


def test_sender_id_is_a_keyed_hash_of_the_chat():
    a = sender_id_for(123456789, b"one secret")
    assert a == sender_id_for(123456789, b"one secret")
    assert a != sender_id_for(123456789, b"another secret")
    assert a != sender_id_for(123456780, b"one secret")
    assert "123456789" not in a and a.startswith("tg-")
    assert a != base.sender_id_for("messenger", 123456789, b"one secret")  # per platform


def test_settings_come_from_the_environment_only():
    off = Settings.from_env({})
    assert not off.enabled and base.id_secret({}) == b""
    on = Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/"})
    assert on.enabled and on.api_base_url == "http://127.0.0.1:9"
    # without explicit secrets both are derived from the token, and differ from it and from each other
    id_secret = base.id_secret({"TELEGRAM_BOT_TOKEN": TOKEN}).decode()
    assert on.webhook_secret and on.webhook_secret not in TOKEN and id_secret != on.webhook_secret
    assert id_secret not in TOKEN
    explicit = Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET})
    assert explicit.webhook_secret == SECRET
    assert base.id_secret({"TELEGRAM_BOT_TOKEN": TOKEN, "WAYPOINT_ID_SECRET": ID_SECRET}) == ID_SECRET.encode()
    limits = Settings.from_env(
        {
            "TELEGRAM_MAX_TEXT_CHARS": "100",
            "TELEGRAM_MAX_MESSAGES_PER_MINUTE": "5",
            "TELEGRAM_DELETE_NOTICE_SECONDS": "2",
            "WAYPOINT_OPERATORS_CHAT_ID": str(OPS),
        }
    )
    assert (limits.max_text_chars, limits.max_messages_per_minute, limits.delete_notice_seconds) == (100, 5, 2.0)
    assert limits.operators_chat_id == str(OPS) and not limits.polling
    assert webhook_url("https://example.org/") == "https://example.org/webhooks/telegram/webhook"
    assert (
        webhook_url("https://example.org/webhooks/telegram/webhook") == "https://example.org/webhooks/telegram/webhook"
    )


def test_without_a_token_the_channel_is_off_and_says_so(caplog, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    with caplog.at_level(logging.INFO, logger="channels.telegram.channel"):
        channel = TelegramInput.from_credentials(None)
    assert not channel.settings.enabled
    assert channel.get_output_channel() is None
    assert [r.getMessage() for r in caplog.records] == ["Telegram channel off: TELEGRAM_BOT_TOKEN is not set"]


def test_update_ids_are_remembered_in_bounded_memory_and_in_the_store(state, tmp_path):
    state.memory.size = 100
    assert not state.seen(PLATFORM, 1) and state.seen(PLATFORM, 1)
    for i in range(2, 300):
        state.seen(PLATFORM, i)
    assert len(state.memory.seen) == 100
    assert state.seen(PLATFORM, 299)
    assert (PLATFORM, "1") not in state.memory.seen and state.seen(PLATFORM, 1)  # fell out of memory, not the store
    assert not state.seen("messenger", 1)  # per platform
    other = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", b"unit secret")  # another server
    try:
        assert other.seen(PLATFORM, 150) and not other.seen(PLATFORM, 300)
        # kept two days (SEEN_FOR), then purged
        age(state, state.seen_t, SEEN_FOR + 60)
        assert state.purge() == 301
        fresh = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", b"unit secret")
        assert not fresh.seen(PLATFORM, 150)
        fresh.close()
    finally:
        other.close()


def test_a_flooding_chat_is_told_once_to_slow_down(state):
    channel = TelegramInput(
        Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_MAX_MESSAGES_PER_MINUTE": "3"}), state=state
    )
    assert [channel.limiter.check(1) for _ in range(3)] == [(True, False)] * 3
    assert channel.limiter.check(1) == (False, True)  # told once
    assert channel.limiter.check(1) == (False, False)
    assert channel.limiter.check(2) == (True, False)  # other chats are not affected
    window = base.SlidingWindow(2, window=60)
    assert window.allow("a", now=0) and window.allow("a", now=1) and not window.allow("a", now=2)
    assert window.allow("a", now=60.5)  # the first one left the window


def test_message_ids_are_kept_without_text_for_48_hours(state, tmp_path):
    import sqlalchemy as sa

    state.add_messages(PLATFORM, "tg-a", [5, 6])
    state.add_messages(PLATFORM, "tg-a", [4])
    state.memory.messages[(PLATFORM, "tg-a")][4] -= MESSAGES_FOR + 60  # no longer deletable
    age(state, state.messages_t, MESSAGES_FOR + 60, message_id=4)
    state.add_messages(PLATFORM, "tg-b", [7])
    state.add_messages(PLATFORM, "tg-b", [7, 0, None])  # known ids and no ids: nothing new
    assert state.message_ids(PLATFORM, "tg-a") == [5, 6]
    other = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", b"unit secret")  # another server's view
    assert other.message_ids(PLATFORM, "tg-a") == [5, 6] and other.message_ids(PLATFORM, "tg-b") == [7]
    other.close()
    assert state.purge() == 1
    state.remove_messages(PLATFORM, "tg-a", [5])
    assert state.message_ids(PLATFORM, "tg-a") == [6]
    state.remove_messages(PLATFORM, "tg-a")
    assert state.message_ids(PLATFORM, "tg-a") == [] and state.message_ids(PLATFORM, "tg-b") == [7]
    columns = [c["name"] for c in sa.inspect(state.engine).get_columns("waypoint_channel_messages")]
    assert columns == ["platform", "sender_id", "message_id", "at"]


def test_chat_addresses_are_kept_encrypted_for_48_hours(state, tmp_path):
    import sqlalchemy as sa

    chat = "7311452209"
    state.put_address(PLATFORM, "tg-a", chat)
    assert state.address(PLATFORM, "tg-a") == chat
    raw = (tmp_path / "channel.db").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("channel.db-*"))
    assert chat.encode() not in raw  # never in clear, not even in the write-ahead log
    with state.engine.connect() as connection:
        rows = connection.execute(sa.select(state.addresses_t)).all()
    assert len(rows) == 1 and chat not in " ".join(str(v) for v in rows[0])
    other = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", b"unit secret")
    wrong_key = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", b"another secret")
    try:
        assert other.address(PLATFORM, "tg-a") == chat  # another server with the same key reads it
        assert wrong_key.address(PLATFORM, "tg-a") is None  # a changed WAYPOINT_ID_SECRET cannot
        assert other.address(PLATFORM, "tg-b") is None and other.address("messenger", "tg-a") is None
        age(state, state.addresses_t, ADDRESS_FOR + 60)
        assert other.address(PLATFORM, "tg-a") is None  # after 48 hours it is not used any more
        state.put_address(PLATFORM, "tg-c", "42")
        other.forget(PLATFORM, "tg-c")  # "delete my data" on the other server
        fresh = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", b"unit secret")
        assert fresh.address(PLATFORM, "tg-c") is None
        fresh.close()
    finally:
        other.close()
        wrong_key.close()


def test_an_unreachable_store_falls_back_to_memory_and_says_so_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="channels.state"):
        store = ChannelState("postgresql://nobody:x@127.0.0.1:1/none", b"k")
        assert not store.seen(PLATFORM, 1) and store.seen(PLATFORM, 1)  # memory still de-duplicates
        store.put_address(PLATFORM, "tg-a", "99")
        assert store.address(PLATFORM, "tg-a") == "99"
        store.add_messages(PLATFORM, "tg-a", [3])
        assert store.message_ids(PLATFORM, "tg-a") == [3]
        key = store.payload_key("/x" * 50)
        assert store.payload(key) == "/x" * 50
    warnings = [r.getMessage() for r in caplog.records if "store unreachable" in r.getMessage()]
    assert len(warnings) == 1
    store.close()


# -- the Bot API client against the fake --------------------------------------------------------------


@pytest.fixture
async def client(fake):
    fake.reset()
    bot = TelegramBot(TOKEN, fake.url, backoff=0.2)
    assert await bot.start()  # getMe through PTB's HTTP stack
    yield bot
    await bot.stop()


async def test_429_waits_retry_after_then_delivers(fake, client):
    fake.fail("sendMessage", status=429, retry_after=1)
    message_id = await client.send_text(555, "hello")
    assert message_id is not None
    calls = [c for c in fake.calls if c.method == "sendMessage"]
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.95  # waited what Telegram asked for


async def test_network_errors_are_retried_with_backoff(fake, client):
    fake.fail("sendMessage", status=502, retry_after=None, times=2)
    assert await client.send_text(555, "hello") is not None
    calls = [c for c in fake.calls if c.method == "sendMessage"]
    assert [c.status for c in calls] == [502, 502, 200]
    assert calls[2].at - calls[1].at > calls[1].at - calls[0].at  # backing off


async def test_a_failed_send_is_logged_without_text_or_chat_and_does_not_raise(fake, client, caplog):
    fake.fail("sendMessage", status=502, retry_after=None, times=50)
    with caplog.at_level(logging.DEBUG, logger="channels.telegram.bot"):
        assert await client.send_text(987654321, "SECRET-TEXT-8812") is None
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert "sendMessage failed for good (NetworkError)" in logged
    assert "SECRET-TEXT" not in logged and "987654321" not in logged
    assert client.failures["sendMessage"] == 1


async def test_deleting_goes_in_batches_of_100(fake, client):
    ids = list(range(1000, 1250))
    assert await client.delete_messages(555, ids) == 250
    batches = [c.params["message_ids"] for c in fake.calls_of("deleteMessages", 555)]
    assert [len(b) for b in batches] == [100, 100, 50]
    assert sorted(sum(batches, [])) == ids


async def test_a_refused_batch_is_deleted_one_by_one(fake, client):
    fake.fail("deleteMessages", status=400, retry_after=None)
    assert await client.delete_messages(555, [7, 8, 9]) == 3
    assert sorted(c.params["message_id"] for c in fake.calls_of("deleteMessage", 555)) == [7, 8, 9]


async def test_a_users_file_is_fetched_into_memory_and_sent_on_as_media(fake, client):
    voice = b"OggS\x00voice-bytes\x01" * 20
    fake.add_file("VOICE-FILE-1", voice, "voice/file_1.oga")
    data, name = await client.download("VOICE-FILE-1")
    assert (data, name) == (voice, "file_1.oga")
    assert [c.params["path"] for c in fake.calls_of("download")] == ["voice/file_1.oga"]
    message_id = await client.send_media(OPS, "voice", data, name, "WP-ABC123 · user:\n[voice message]", reply_to=77)
    [sent] = fake.calls_of("sendVoice", OPS)
    assert sent.result["message_id"] == message_id and sent.files["voice"] == voice
    assert sent.params["caption"] == "WP-ABC123 · user:\n[voice message]"
    assert sent.params["reply_parameters"]["message_id"] == 77
    photo = b"\xff\xd8\xff photo"
    fake.add_file("PHOTO-FILE-1", photo, "photos/file_2.jpg")
    data, name = await client.download("PHOTO-FILE-1")
    assert await client.send_media(OPS, "photo", data, name, "caption") is not None
    assert fake.calls_of("sendPhoto", OPS)[0].files["photo"] == photo
    with pytest.raises(ValueError):
        await client.download("NO-SUCH-FILE")  # getFile refused
    with pytest.raises(ValueError):
        await client.download("PHOTO-FILE-1", limit=3)  # larger than allowed: not fetched
    assert len(fake.calls_of("download")) == 2


# -- the channel without Rasa -------------------------------------------------------------------------------


def channel_env(fake, monkeypatch, **extra: str) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_BASE_URL": fake.url,
        "WAYPOINT_ID_SECRET": ID_SECRET,
        "WAYPOINT_OPERATORS_CHAT_ID": str(OPS),
        "TELEGRAM_DELETE_NOTICE_SECONDS": "3600",
        "WAYPOINT_OPERATORS_LANGUAGE": "en",
        **extra,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("WAYPOINT_REDIS_HOST", "WAYPOINT_PG_HOST", "TELEGRAM_POLLING", "WAYPOINT_STATE_URL"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
async def channel(fake, tmp_path, monkeypatch):
    """A started channel on its own SQLite store, with this process's hand-off relay
    (handoff.get_relay, on the test's WAYPOINT_STATE_DB) and a fake assistant."""
    import handoff

    fake.reset()
    channel_env(fake, monkeypatch)
    handoff.reset()
    store = ChannelState(f"sqlite:///{tmp_path / 'channel.db'}", base.id_secret())
    channel = TelegramInput(Settings.from_env(), state=store)
    channel.on_new_message = tg.FakeAssistant()
    await channel.start()
    yield channel
    await channel.stop()
    handoff.reset()
    store.close()


async def test_replies_become_split_messages_with_an_inline_keyboard(fake, channel):
    sender = sender_id_for(4321, channel.secret)
    output = TelegramOutput(channel, 4321)
    long_payload = '/inform_country{"country":"MY","why":"' + "y" * 70 + '"}'
    text = "\n\n".join(["First paragraph. " * 150, "Second paragraph. " * 150, "See https://example.org/help"])
    await output.send_response(
        sender,
        {
            "text": text,
            "buttons": [
                {"title": "Malaysia", "payload": long_payload},
                {"title": "Talk to a person", "payload": "/request_human"},
                {"title": "Website", "payload": "https://example.org", "type": "web_url"},
            ],
        },
    )
    await output.send_response(sender, {"custom": {"waypoint": "forget_conversation"}})
    sent = fake.calls_of("sendMessage", 4321)
    assert len(sent) >= 2 and all(utf16_len(c.params["text"]) <= 4096 for c in sent)
    assert "reply_markup" not in sent[0].params
    assert sent[-1].params["text"].endswith("https://example.org/help")
    assert sent[0].params["link_preview_options"] == {"is_disabled": True}
    rows = sent[-1].params["reply_markup"]["inline_keyboard"]
    assert [r[0]["text"] for r in rows] == ["Malaysia", "Talk to a person", "Website"]
    assert rows[1][0]["callback_data"] == "/request_human"
    assert rows[2][0]["url"] == "https://example.org"
    assert len(rows[0][0]["callback_data"].encode()) <= 64
    assert channel.state.payload(rows[0][0]["callback_data"][len(PAYLOAD_PREFIX) :]) == long_payload
    # the marker is never shown, it asks for deletion
    assert output.forget_requested and len(fake.calls_of("sendMessage", 4321)) == len(sent)
    assert channel.state.message_ids(PLATFORM, sender) == sorted(output.sent)  # ids kept for /delete


async def test_the_operators_chat_goes_to_the_desk_and_other_groups_are_left(fake, channel, content, monkeypatch):
    seen: List[int] = []
    desk = channel.relay.desk
    original = desk.on_update

    async def spy(update):
        seen.append(update.effective_chat.id)
        await original(update)

    monkeypatch.setattr(desk, "on_update", spy)
    assert channel.dispatch_json(tg.group_update(OPS, "case 12 taken"))
    assert channel.dispatch_json(tg.group_update(-100555, "hi", language_code="th"))
    assert channel.dispatch_json(tg.group_update(-100555, "hello again", language_code="th"))
    await tg.settle(channel, channel.relay)
    assert seen == [OPS]
    assert [c.params["user_id"] for c in fake.calls_of("getChatMember", OPS)] == [4242]  # not a member: ignored
    assert [c.params["chat_id"] for c in fake.calls_of("leaveChat")] == [-100555]  # once
    assert fake.texts_to(-100555) == [content.messages["private_only"]["th"]]
    assert fake.texts_to(OPS) == []
    assert channel.on_new_message.texts == []  # no group message reaches the assistant


async def test_a_repeated_update_is_handled_once_and_a_flood_is_told_once(fake, channel, content):
    update = tg.text_update(2222, "hello")
    assert channel.dispatch_json(update) and not channel.dispatch_json(update)
    await tg.settle(channel, channel.relay)
    assert channel.on_new_message.texts == ["hello"]
    channel.limiter.limit = 3
    for _ in range(6):
        channel.dispatch_json(tg.sticker_update(2223))
    await tg.settle(channel, channel.relay)
    assert fake.texts_to(2223) == [content.messages["non_text"]["en"]] * 3 + [content.messages["rate_limited"]["en"]]


async def test_a_long_button_payload_reaches_the_assistant_and_an_unknown_key_is_expired(fake, channel, content):
    chat = 2300
    sender = sender_id_for(chat, channel.secret)
    long_payload = '/inform_country{"country":"MY","why":"' + "z" * 70 + '"}'
    [message_id] = await channel.send_and_log(
        chat, sender, "Where are you?", [{"title": "Malaysia", "payload": long_payload}]
    )
    data = fake.calls_of("sendMessage", chat)[0].params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    press = tg.callback_update(chat, data, message_id=message_id)
    channel.dispatch_json(press)
    await tg.settle(channel, channel.relay)
    assert channel.on_new_message.texts == [long_payload]
    assert [c.params["callback_query_id"] for c in fake.calls_of("answerCallbackQuery")] == [
        press["callback_query"]["id"]
    ]
    assert [c.params["message_id"] for c in fake.calls_of("editMessageReplyMarkup", chat)] == [message_id]
    expired = tg.callback_update(chat, PAYLOAD_PREFIX + "0123456789abcdef", message_id=message_id)
    channel.dispatch_json(expired)
    await tg.settle(channel, channel.relay)
    assert channel.on_new_message.texts == [long_payload]  # nothing reached the assistant
    answer = fake.calls_of("answerCallbackQuery")[-1].params
    assert answer["callback_query_id"] == expired["callback_query"]["id"]
    assert answer["text"] == content.messages["button_expired"]["en"]


async def test_stopping_the_server_does_not_leave_the_deletion_notice_behind(fake, channel):
    sender = sender_id_for(3131, channel.secret)
    channel.state.add_messages(PLATFORM, sender, [11, 12])
    await channel._delete_everything(3131, sender, keep=[50])  # the notice would stay an hour
    assert [c.params["message_ids"] for c in fake.calls_of("deleteMessages", 3131)] == [[11, 12]]
    assert channel.state.message_ids(PLATFORM, sender) == [50]  # until it is gone, /delete still finds it
    await channel.stop()
    assert [c.params["message_ids"] for c in fake.calls_of("deleteMessages", 3131)] == [[11, 12], [50]]
    assert channel.state.message_ids(PLATFORM, sender) == []


async def live_case(fake, channel, chat: int) -> Tuple[str, Dict[str, Any]]:
    """The user of ``chat`` asks for a person and an operator accepts: (case id, the case's post)."""
    channel.dispatch_json(tg.text_update(chat, "/human"))
    await tg.settle(channel, channel.relay)
    case_id = channel.on_new_message.cases[-1]
    post = next(c for c in fake.calls_of("sendMessage", OPS) if case_id in c.params["text"])
    channel.dispatch_json(tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post.result))
    await tg.settle(channel, channel.relay)
    assert channel.relay.state_of(sender_id_for(chat, channel.secret)) == "live"
    return case_id, post.result


def media_update(chat: int, kind: str, file_id: str, caption: Optional[str] = None) -> Dict[str, Any]:
    media = {"file_id": file_id, "file_unique_id": file_id[-8:], "duration": 2}
    if kind == "video_note":
        media["length"] = 240
    update = tg.text_update(chat, "x")
    del update["message"]["text"]
    update["message"][kind] = media
    if caption:
        update["message"]["caption"] = caption
    return update


async def test_voice_notes_and_photos_during_a_live_case_reach_the_operators(fake, channel, content):
    chat = 2400
    sender = sender_id_for(chat, channel.secret)
    for file_id, path in (
        ("VOICE-1", "voice/a.oga"),
        ("AUDIO-1", "music/b.mp3"),
        ("ROUND-1", "video_notes/c.mp4"),
        ("PHOTO-1", "photos/d.jpg"),
    ):
        fake.add_file(file_id, f"bytes of {file_id}".encode(), path)
    channel.dispatch_json(tg.text_update(chat, "/human"))
    await tg.settle(channel, channel.relay)
    channel.dispatch_json(tg.voice_update(chat, "VOICE-1"))  # waiting: the assistant still answers, nothing is fetched
    await tg.settle(channel, channel.relay)
    assert fake.texts_to(chat)[-1] == content.messages["non_text"]["en"] and not fake.calls_of("getFile")
    case_id = channel.on_new_message.cases[-1]
    post = next(c for c in fake.calls_of("sendMessage", OPS) if case_id in c.params["text"])
    channel.dispatch_json(tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post.result))
    await tg.settle(channel, channel.relay)
    mine = len(fake.calls_of("sendMessage", chat))

    channel.dispatch_json(tg.voice_update(chat, "VOICE-1"))
    channel.dispatch_json(media_update(chat, "audio", "AUDIO-1"))
    channel.dispatch_json(media_update(chat, "video_note", "ROUND-1"))
    channel.dispatch_json(tg.photo_update(chat, file_id="PHOTO-1"))
    await tg.settle(channel, channel.relay)
    voices = fake.calls_of("sendVoice", OPS)
    assert [c.files["voice"] for c in voices] == [b"bytes of VOICE-1", b"bytes of AUDIO-1", b"bytes of ROUND-1"]
    [photo] = fake.calls_of("sendPhoto", OPS)
    assert photo.files["photo"] == b"bytes of PHOTO-1"  # the largest size, not the thumbnail
    assert [c.params["file_id"] for c in fake.calls_of("getFile")] == ["VOICE-1", "AUDIO-1", "ROUND-1", "PHOTO-1"]
    label = {
        "voice": content.messages["operators_media_voice"]["en"],
        "photo": content.messages["operators_media_photo"]["en"],
    }
    assert [c.params["caption"] for c in voices + [photo]] == [f"{case_id} · user:\n{label['voice']}"] * 3 + [
        f"{case_id} · user:\n{label['photo']}"
    ]
    assert all(c.params["reply_parameters"]["message_id"] == post.result["message_id"] for c in voices + [photo])
    assert fake.texts_to(chat)[mine:] == []  # nothing said to the user: it reached the counsellor
    assert channel.on_new_message.texts == ["/request_human"]  # and never the assistant
    relayed = channel.relay.repo.get(case_id).relayed
    assert {c.result["message_id"] for c in voices + [photo]} <= set(relayed)  # removed if the user deletes
    # a reply to the photo reaches the user
    channel.dispatch_json(tg.group_message_update(OPS, OPERATOR, "Thank you, I see it.", reply_to=photo.result))
    await tg.settle(channel, channel.relay)
    assert fake.texts_to(chat)[-1] == content.messages["handoff_counsellor"]["en"].format(text="Thank you, I see it.")
    # a sticker is not passed on; a file Telegram cannot give is said to be undelivered
    channel.dispatch_json(tg.sticker_update(chat))
    channel.dispatch_json(tg.voice_update(chat, "VOICE-GONE"))
    await tg.settle(channel, channel.relay)
    assert fake.texts_to(chat)[-2:] == [
        content.messages["non_text"]["en"],
        content.messages["handoff_not_delivered"]["en"],
    ]
    assert len(fake.calls_of("sendVoice", OPS)) == 3
    assert channel.relay.state_of(sender) == "live"


async def test_a_photos_caption_during_a_live_case_reaches_the_operators(fake, channel, content):
    """A user sends a photo of their contract with a few words under it: the
    words are the user's message to the counsellor and must not be lost."""
    chat = 2401
    fake.add_file("PHOTO-CAPTION-1", b"a contract", "photos/e.jpg")
    case_id, _post = await live_case(fake, channel, chat)
    words = "this is my contract, they took the original PEAR-31"
    channel.dispatch_json(tg.photo_update(chat, caption=words, file_id="PHOTO-CAPTION-1"))
    await tg.settle(channel, channel.relay)
    assert fake.calls_of("sendPhoto", OPS), "the photo did not reach the operators"
    seen = [c.params.get("caption", "") for c in fake.calls_of("sendPhoto", OPS)] + fake.texts_to(OPS)
    assert any("PEAR-31" in text for text in seen), "the photo's caption was dropped: the counsellor never sees it"
    assert "PEAR-31" not in " ".join(channel.on_new_message.texts)  # and it never went to the assistant


async def test_delete_without_the_assistant_still_deletes_and_confirms(fake, channel, content):
    chat = 3232
    sender = sender_id_for(chat, channel.secret)
    question = tg.text_update(chat, "my boss took my passport")
    channel.dispatch_json(question)
    await tg.settle(channel, channel.relay)

    async def broken(message):
        raise RuntimeError("the assistant is down")

    channel.on_new_message = broken
    request = tg.text_update(chat, "/delete")
    channel.dispatch_json(request)
    await tg.settle(channel, channel.relay)
    notice = [c for c in fake.calls_of("sendMessage", chat) if c.params["text"] == content.messages["deleted"]["en"]]
    assert len(notice) == 1
    [deleted] = fake.calls_of("deleteMessages", chat)
    bot_ids = [c.result["message_id"] for c in fake.calls_of("sendMessage", chat) if c is not notice[0]]
    assert sorted(deleted.params["message_ids"]) == sorted(
        [question["message"]["message_id"], request["message"]["message_id"]] + bot_ids
    )
    assert channel.state.message_ids(PLATFORM, sender) == [notice[0].result["message_id"]]
    assert channel.state.address(PLATFORM, sender) is None  # the chat address is forgotten too


def test_set_webhook_command_sets_secret_updates_and_command_menus(fake, content):
    fake.reset()
    env = {
        **os.environ,
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_API_BASE_URL": fake.url,
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "channels.telegram", "set-webhook", "https://bot.example.org"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert SECRET not in result.stdout + result.stderr and TOKEN not in result.stdout + result.stderr
    [call] = fake.calls_of("setWebhook")
    assert call.params["url"] == "https://bot.example.org/webhooks/telegram/webhook"
    assert call.params["secret_token"] == SECRET
    assert (
        set(call.params["allowed_updates"])
        == set(ALLOWED_UPDATES)
        == {"message", "edited_message", "callback_query", "my_chat_member"}
    )
    menus = {c.params.get("language_code"): c.params["commands"] for c in fake.calls_of("setMyCommands")}
    assert set(menus) == {None, *languages.CODES}
    assert [c["command"] for c in menus["th"]] == ["start", "language", "help", "human", "delete"]
    assert menus["vi"][4]["description"] == content.messages["command_delete"]["vi"]
    result = subprocess.run(
        [sys.executable, "-m", "channels.telegram", "delete-webhook"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and fake.calls_of("deleteWebhook") and fake.webhook is None
    no_token = {**env, "TELEGRAM_BOT_TOKEN": ""}
    result = subprocess.run(
        [sys.executable, "-m", "channels.telegram", "delete-webhook"],
        cwd=ROOT,
        env=no_token,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "TELEGRAM_BOT_TOKEN is not set" in result.stderr


# -- two servers sharing one channel store on PostgreSQL ---------------------------------------------------


class ServerChannel(TelegramInput):
    """One Rasa server's Telegram channel with a relay of its own (in a Rasa
    server, handoff.get_relay() gives each process one)."""

    def __init__(self, settings: Settings, state: ChannelState, relay: Any) -> None:
        super().__init__(settings, state)
        self._relay = relay

    @property
    def relay(self) -> Any:
        return self._relay


CHANNEL_TABLES = (
    "waypoint_channel_seen",
    "waypoint_channel_addresses",
    "waypoint_channel_messages",
    "waypoint_channel_payloads",
)
HANDOFF_TABLES = (
    "waypoint_handoff_cases",
    "waypoint_handoff_relayed",
    "waypoint_handoff_messages",
    "waypoint_handoff_interrupted",
)


def table_dump(url: str, tables) -> str:
    """Every value of the given tables, as one text."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            names = set(sa.inspect(connection).get_table_names())
            return "\n".join(
                " ".join(str(v) for v in row)
                for table in tables
                if table in names
                for row in connection.exec_driver_sql(f"SELECT * FROM {table}")
            )
    finally:
        engine.dispose()


@pytest.fixture
def shared(services, fake, monkeypatch):
    """The PostgreSQL URL and Redis settings of the two servers, emptied."""
    import sqlalchemy as sa

    from handoff.queues import PREFIX, redis_client

    url = services.pg_url()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        names = set(sa.inspect(connection).get_table_names())
        for table in CHANNEL_TABLES + HANDOFF_TABLES:
            if table in names:
                connection.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()
    redis_env = {k: v for k, v in services.env.items() if k.startswith("WAYPOINT_REDIS_")}
    client = redis_client(redis_env)
    for key in client.scan_iter(match=PREFIX + "*"):
        client.delete(key)
    fake.reset()
    channel_env(fake, monkeypatch)
    return {"url": url, "redis": redis_env}


@pytest.fixture
async def two_servers(shared):
    """Channels A and B: each its own channel store object and relay on the shared PostgreSQL and Redis."""
    from handoff import queues
    from handoff.relay import Relay
    from handoff.repository import SQLRepository

    channels = []
    for _ in range(2):
        relay = Relay(SQLRepository(shared["url"]), queues.from_settings(shared["redis"]), timeout=600)
        channel = ServerChannel(Settings.from_env(), ChannelState(shared["url"], base.id_secret()), relay)
        channel.on_new_message = tg.FakeAssistant()
        await channel.start()
        channels.append(channel)
    yield channels
    for channel in channels:
        await channel.stop()
        channel.relay.repo.close()
        channel.state.close()


async def settle_all(*channels: ServerChannel) -> None:
    await tg.settle(*channels, *[c.relay for c in channels])


@pytest.mark.services
async def test_an_update_delivered_to_two_servers_is_answered_once(fake, content, two_servers, shared):
    a, b = two_servers
    chat = 5100
    update = tg.sticker_update(chat)
    assert a.dispatch_json(update) is True
    assert b.dispatch_json(update) is False  # Telegram's retry reached the other server
    await settle_all(a, b)
    assert fake.texts_to(chat) == [content.messages["non_text"]["en"]]

    # at the same moment on both (two threads, two connections): each update is taken exactly once
    def mark(store: ChannelState, keys: List[str], out: Dict[str, bool], start: threading.Barrier) -> None:
        start.wait()
        for key in keys:
            out[key] = store.seen(PLATFORM, key)

    keys = [f"race:{i}" for i in range(60)]
    results: List[Dict[str, bool]] = [{}, {}]
    start = threading.Barrier(2)
    threads = [
        threading.Thread(target=mark, args=(s, keys, r, start))
        for s, r in zip((a.state, b.state), results, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(sorted([results[0][k], results[1][k]]) == [False, True] for k in keys)


@pytest.mark.services
async def test_a_long_button_payload_made_on_one_server_works_on_the_other(fake, two_servers):
    a, b = two_servers
    chat = 5200
    sender = sender_id_for(chat, a.secret)
    long_payload = '/inform_country{"country":"TH","why":"' + "q" * 80 + '"}'
    [message_id] = await a.send_and_log(
        chat, sender, "Where are you?", [{"title": "Thailand", "payload": long_payload}]
    )
    data = fake.calls_of("sendMessage", chat)[0].params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    assert data.startswith(PAYLOAD_PREFIX) and not b.state.memory.payloads
    b.dispatch_json(tg.callback_update(chat, data, message_id=message_id))
    await settle_all(a, b)
    assert b.on_new_message.texts == [long_payload] and a.on_new_message.texts == []
    assert b.keyboard([{"title": "Thailand", "payload": long_payload}])[0][0].callback_data == data  # one key


@pytest.mark.services
async def test_a_chat_address_stored_by_one_server_lets_the_other_push_a_counsellors_message(
    fake, content, two_servers, shared
):
    a, b = two_servers
    chat = 7311452301
    sender = sender_id_for(chat, a.secret)
    a.dispatch_json(tg.text_update(chat, "/human"))  # the user's request reaches A
    await settle_all(a, b)
    [case_id] = a.on_new_message.cases
    post = next(c for c in fake.calls_of("sendMessage", OPS) if case_id in c.params["text"])
    assert str(chat) not in post.params["text"] and sender not in post.params["text"]
    # the chat id is in the store, encrypted: nowhere in clear in any of the channel's or hand-off tables
    dump = table_dump(shared["url"], CHANNEL_TABLES + HANDOFF_TABLES)
    assert sender in dump and str(chat) not in dump
    assert not b.state.memory.addresses  # B never saw this user

    # the operator's Accept and answer reach B: B finds the chat in the store and tells the user
    mine = len(fake.calls_of("sendMessage", chat))
    b.dispatch_json(tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post.result))
    await settle_all(a, b)
    assert fake.texts_to(chat)[mine:] == [content.messages["handoff_connected"]["en"]]
    assert a.relay.state_of(sender) == "live"
    answer = "We can help you. Are you safe now? KIWI-88"
    b.dispatch_json(tg.group_message_update(OPS, OPERATOR, answer, reply_to=post.result))
    await settle_all(a, b)
    assert fake.texts_to(chat)[-1] == content.messages["handoff_counsellor"]["en"].format(text=answer)
    assert not b.state.memory.addresses  # read from the store, not remembered in clear

    # the user's message reaches A: relayed to the operators, never to the assistant
    said = "I am in the dormitory MANGO-77"
    a.dispatch_json(tg.text_update(chat, said))
    await settle_all(a, b)
    assert fake.texts_to(OPS)[-1] == f"{case_id} · user:\n{said}"
    assert said not in a.on_new_message.texts + b.on_new_message.texts
    dump = table_dump(shared["url"], CHANNEL_TABLES + HANDOFF_TABLES)
    assert "MANGO-77" not in dump and "KIWI-88" not in dump and str(chat) not in dump
    # /end on B closes it for A too
    b.dispatch_json(tg.text_update(chat, "/end"))
    await settle_all(a, b)
    assert a.relay.state_of(sender) is None
    assert content.messages["handoff_ended"]["en"] in fake.texts_to(chat)


@pytest.mark.services
async def test_delete_on_one_server_removes_the_messages_the_other_logged(fake, content, two_servers, shared):
    a, b = two_servers
    chat = 5400
    sender = sender_id_for(chat, a.secret)
    first = tg.text_update(chat, "my boss keeps my passport PANGOLIN-1")
    a.dispatch_json(first)
    second = tg.sticker_update(chat)
    a.dispatch_json(second)
    await settle_all(a, b)
    logged_by_a = [first["message"]["message_id"], second["message"]["message_id"]] + [
        c.result["message_id"] for c in fake.calls_of("sendMessage", chat)
    ]
    assert sorted(logged_by_a) == a.state.message_ids(PLATFORM, sender)

    request = tg.text_update(chat, "/delete")
    b.dispatch_json(request)  # "delete my data" reaches B
    await settle_all(a, b)
    assert b.on_new_message.texts == [DELETE_PAYLOAD]
    [notice] = [c for c in fake.calls_of("sendMessage", chat) if c.params["text"] == content.messages["deleted"]["en"]]
    [deleted] = fake.calls_of("deleteMessages", chat)
    assert sorted(deleted.params["message_ids"]) == sorted(logged_by_a + [request["message"]["message_id"]])
    fresh = ChannelState(shared["url"], base.id_secret())  # the store as any server sees it now
    try:
        assert fresh.message_ids(PLATFORM, sender) == [notice.result["message_id"]]  # only the notice, for a while
        assert fresh.address(PLATFORM, sender) is None
    finally:
        fresh.close()
    assert "PANGOLIN" not in table_dump(shared["url"], CHANNEL_TABLES + HANDOFF_TABLES)


@pytest.mark.services
async def test_a_user_who_deleted_on_one_server_is_reachable_again_through_the_other(
    fake, content, two_servers, shared
):
    """The user deletes everything through B, then writes again through A within
    ten minutes and asks for a person; the counsellor's Accept reaches B: B must
    find the user's chat in the shared store to tell them."""
    a, b = two_servers
    chat = 5500
    sender = sender_id_for(chat, a.secret)
    a.dispatch_json(tg.text_update(chat, "hello"))
    await settle_all(a, b)
    b.dispatch_json(tg.text_update(chat, "/delete"))
    await settle_all(a, b)
    assert b.state.address(PLATFORM, sender) is None
    a.dispatch_json(tg.text_update(chat, "/human"))  # the user is back, on A
    await settle_all(a, b)
    [case_id] = a.on_new_message.cases
    post = next(c for c in fake.calls_of("sendMessage", OPS) if case_id in c.params["text"])
    mine = len(fake.calls_of("sendMessage", chat))
    b.dispatch_json(tg.group_callback_update(OPS, OPERATOR, "wp-accept:" + case_id, post.result))
    await settle_all(a, b)
    assert fake.texts_to(chat)[mine:] == [content.messages["handoff_connected"]["en"]], (
        "B could not reach the user: A did not store the chat address again after B deleted it"
    )


# -- the assistant, started as `make run` starts it -------------------------------------------------------


def post(server: Waypoint, update: Dict[str, Any], secret: Optional[str] = SECRET) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(
        server.url + "/webhooks/telegram/webhook", data=json.dumps(update).encode(), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def sender(chat_id: int) -> str:
    return sender_id_for(chat_id, ID_SECRET.encode())


@pytest.fixture(scope="module")
def waypoint(fake, tmp_path_factory):
    server = Waypoint(
        tmp_path_factory.mktemp("telegram"),
        extra_env={
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_API_BASE_URL": fake.url,
            "WAYPOINT_ID_SECRET": ID_SECRET,
            "TELEGRAM_DELETE_NOTICE_SECONDS": "2",
            "WAYPOINT_OPERATORS_CHAT_ID": str(OPS),
            "WAYPOINT_OPERATOR_HOURS": "always",
        },
    ).start()
    yield server
    assert server.stop() in (0, 130, -2, 143)


@pytest.mark.model
@pytest.mark.parametrize("lang", LANGS)
def test_a_question_in_each_language(waypoint, fake, content, lang):
    chat = 5823614090 + LANGS.index(lang)  # a realistic id: short ones can occur inside timestamps
    assert post(waypoint, tg.text_update(chat, QUESTIONS[lang], language_code=lang)) == 200
    texts = fake.wait_for_texts(chat, 2)
    assert texts[0] == content.messages["intro"][lang]
    answer = content.guides["protect.documents"].languages[lang]["survivor"].strip()[:30]
    fake.wait_for(lambda: any(answer in t for t in fake.texts_to(chat)), what="the answer")
    tracker = waypoint.tracker(sender(chat))
    assert tracker["slots"]["language"] == lang
    user_events = [e for e in tracker["events"] if e["event"] == "user"]
    assert user_events[0]["metadata"]["language_hint"] == lang
    assert user_events[0]["input_channel"] == "telegram"
    assert str(chat) not in json.dumps(tracker)  # no Telegram identity in the tracker store


@pytest.mark.model
def test_start_shows_the_safety_notice_and_language_buttons_once(waypoint, fake, content):
    chat = 1100
    post(waypoint, tg.text_update(chat, "/start", language_code="vi"))
    [first] = fake.wait_for_texts(chat, 1)
    assert first == content.messages["intro"]["vi"]
    keyboard = fake.calls_of("sendMessage", chat)[0].params["reply_markup"]["inline_keyboard"]
    assert [row[0]["text"] for row in keyboard] == [languages.get(code).native_name for code in languages.CODES]
    assert {"Tiếng Việt", "ภาษาไทย", "Bahasa Melayu"} <= {row[0]["text"] for row in keyboard}
    assert [row[0]["callback_data"] for row in keyboard] == [
        f'/choose_language{{"language_choice":"{code}"}}' for code in languages.CODES
    ]
    post(waypoint, tg.text_update(chat, QUESTIONS["vi"], language_code="vi"))
    texts = fake.wait_for_texts(chat, 2)
    assert content.messages["intro"]["vi"] not in texts[1:]  # the notice is not repeated


@pytest.mark.model
def test_language_command_offers_the_buttons(waypoint, fake, content):
    chat = 1101
    post(waypoint, tg.text_update(chat, "/language", language_code="ms"))
    [text] = fake.wait_for_texts(chat, 1)
    assert text == content.messages["ask_language"]["ms"]
    keyboard = fake.calls_of("sendMessage", chat)[0].params["reply_markup"]["inline_keyboard"]
    assert [row[0]["text"] for row in keyboard] == [b["title"] for b in languages.language_buttons()]


@pytest.mark.model
def test_a_button_press_is_acknowledged_and_answered(waypoint, fake, content):
    chat = 1200
    update = tg.callback_update(chat, '/choose_language{"language_choice":"th"}', message_id=49999)
    assert post(waypoint, update) == 200
    fake.wait_for(
        lambda: any(
            c.params["callback_query_id"] == update["callback_query"]["id"]
            for c in fake.calls_of("answerCallbackQuery")
        ),
        what="answerCallbackQuery for the press",
    )
    texts = fake.wait_for_texts(chat, 1)
    assert content.messages["language_set"]["th"] in texts
    assert [c.params["message_id"] for c in fake.calls_of("editMessageReplyMarkup", chat)] == [49999]
    # the tracker is saved after the turn's messages went out
    fake.wait_for(lambda: waypoint.tracker(sender(chat))["slots"]["language"] == "th", what="the language saved")


@pytest.mark.model
def test_help_and_human_commands_go_to_the_assistant(waypoint, fake, content):
    chat = 1300
    post(waypoint, tg.text_update(chat, QUESTIONS["id"], language_code="id"))
    fake.wait_for_texts(chat, 2)
    post(waypoint, tg.text_update(chat, "/help", language_code="id"))
    fake.wait_for(
        lambda: any(content.messages["ask_country"]["id"] in t for t in fake.texts_to(chat)),
        what="the country question of the helplines",
    )
    post(waypoint, tg.text_update(chat, "/human", language_code="id"))
    fake.wait_for(
        lambda: any(content.messages["handoff_consent"]["id"] in t for t in fake.texts_to(chat)),
        what="the hand-off consent question",
    )


@pytest.mark.model
@pytest.mark.parametrize(
    "chat,make_update,key,lang",
    [
        (1400, lambda chat: tg.sticker_update(chat, language_code="id"), "non_text", "id"),
        (1401, lambda chat: tg.photo_update(chat, language_code="th"), "non_text", "th"),
        (1402, lambda chat: tg.voice_update(chat, language_code="vi"), "non_text", "vi"),
        (1403, lambda chat: tg.location_update(chat, language_code="ms"), "personal_data_not_needed", "ms"),
        (
            1404,
            lambda chat: tg.edited_update(chat, "my passport", message_id=77, language_code="vi"),
            "edited_message",
            "vi",
        ),
    ],
    ids=["sticker", "photo", "voice", "location", "edited"],
)
def test_other_kinds_of_message_get_a_kind_answer(waypoint, fake, content, chat, make_update, key, lang):
    fetched = len(fake.calls_of("getFile"))
    assert post(waypoint, make_update(chat)) == 200
    assert fake.wait_for_texts(chat, 1) == [content.messages[key][lang]]
    assert len(fake.calls_of("getFile")) == fetched  # no live hand-off: nothing is fetched


@pytest.mark.model
def test_a_group_is_told_and_left(waypoint, fake, content):
    group = -100777
    assert post(waypoint, tg.group_update(group, "hello bot", language_code="en")) == 200
    fake.wait_for(lambda: fake.calls_of("leaveChat", group), what="leaveChat")
    assert fake.texts_to(group) == [content.messages["private_only"]["en"]]


@pytest.mark.model
def test_a_repeated_update_is_answered_once(waypoint, fake, content):
    control, chat = 1500, 1501
    post(waypoint, tg.text_update(control, "hello", language_code="en"))
    post(waypoint, tg.sticker_update(control))  # handled after the text: its answer marks the end
    replies = fake.wait_for(
        lambda: (lambda t: t if content.messages["non_text"]["en"] in t else None)(fake.texts_to(control)),
        what="the control conversation",
    )
    update = tg.text_update(chat, "hello", language_code="en")
    assert post(waypoint, update) == 200
    assert post(waypoint, update) == 200  # Telegram's retry: accepted, not handled again
    post(waypoint, tg.sticker_update(chat))
    texts = fake.wait_for(
        lambda: (lambda t: t if content.messages["non_text"]["en"] in t else None)(fake.texts_to(chat)),
        what="the conversation",
    )
    assert len(texts) == len(replies)
    assert texts.count(content.messages["intro"]["en"]) == 1


@pytest.mark.model
def test_a_wrong_or_missing_secret_is_refused(waypoint, fake, content):
    chat = 1600
    assert post(waypoint, tg.text_update(chat, "hello"), secret="wrong") == 403
    assert post(waypoint, tg.text_update(chat, "hello"), secret=None) == 403
    post(waypoint, tg.sticker_update(chat))
    assert fake.wait_for_texts(chat, 1) == [content.messages["non_text"]["en"]]  # nothing from the refused ones


@pytest.mark.model
def test_429_from_telegram_is_respected_and_the_message_still_arrives(waypoint, fake, content):
    chat = 1700
    fake.fail("sendMessage", status=429, retry_after=2, match=lambda p: p.get("chat_id") == chat)
    post(waypoint, tg.sticker_update(chat, language_code="en"))
    assert fake.wait_for_texts(chat, 1) == [content.messages["non_text"]["en"]]
    attempts = fake.calls_of("sendMessage", chat, ok_only=False)
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 1.9


@pytest.mark.model
def test_too_long_text_is_cut_and_the_user_told(waypoint, fake, content):
    chat = 1800
    post(waypoint, tg.text_update(chat, ("my boss took my passport. " * 160)[:4096], language_code="en"))
    texts = fake.wait_for_texts(chat, 2)
    assert texts[0] == content.messages["too_long"]["en"]


@pytest.mark.model
@pytest.mark.parametrize("how", ["/delete", "delete my data"])
def test_delete_removes_both_sides_of_the_chat_and_the_conversation(waypoint, fake, content, how):
    chat = 1900 if how == "/delete" else 1901
    marker = "PANGOLIN-4410"
    question = tg.text_update(chat, f"my boss took my passport {marker}")
    post(waypoint, question)
    fake.wait_for_texts(chat, 2)
    sticker = tg.sticker_update(chat)
    post(waypoint, sticker)
    fake.wait_for(lambda: content.messages["non_text"]["en"] in fake.texts_to(chat), what="the sticker answer")
    assert waypoint.tracker(sender(chat))["events"]
    bot_ids = [c.result["message_id"] for c in fake.calls_of("sendMessage", chat)]

    request = tg.text_update(chat, how)
    post(waypoint, request)
    notice = content.messages["deleted"]["en"]
    fake.wait_for(lambda: notice in fake.texts_to(chat), what="the deletion notice")
    [first] = fake.wait_for(lambda: fake.calls_of("deleteMessages", chat), what="deleteMessages")
    user_ids = [question["message"]["message_id"], sticker["message"]["message_id"], request["message"]["message_id"]]
    assert sorted(first.params["message_ids"]) == sorted(user_ids + bot_ids)  # both sides, the request included
    # The conversation is deleted when the turn that confirmed it is saved, just
    # after the confirmation went out: wait for it rather than race it.
    fake.wait_for(
        lambda: not [e for e in waypoint.tracker(sender(chat))["events"] if e["event"] in ("user", "bot")],
        what="the conversation deleted from the tracker store",
    )
    tracker = waypoint.tracker(sender(chat))  # the API starts a fresh session for an unknown conversation
    assert marker not in json.dumps(tracker)
    # the notice stays a moment (TELEGRAM_DELETE_NOTICE_SECONDS), then goes too
    [notice_id] = [c.result["message_id"] for c in fake.calls_of("sendMessage", chat) if c.params["text"] == notice]
    assert notice_id not in first.params["message_ids"]
    second = fake.wait_for(lambda: fake.calls_of("deleteMessages", chat)[1:], timeout=30, what="the notice's deletion")
    assert second[0].params["message_ids"] == [notice_id]
    assert second[0].at - fake.calls_of("sendMessage", chat)[-1].at >= 1.5
    for path in waypoint.var.rglob("*"):
        if path.is_file() and not path.name.endswith(".log"):
            assert marker.encode() not in path.read_bytes(), f"{path.name} still holds the user's text"


@pytest.mark.model
def test_logs_hold_no_text_and_no_telegram_ids(waypoint, fake):
    chat = 6127733945
    secret_text = "WOMBAT-3391"
    post(waypoint, tg.text_update(chat, f"my name is {secret_text} and I need help with my salary"))
    fake.wait_for_texts(chat, 1)
    time.sleep(1)
    for path in waypoint.var.rglob("*.log"):
        log = path.read_text(errors="replace")
        assert secret_text not in log, f"{path.name} logged the user's text"
        assert str(chat) not in log, f"{path.name} logged a Telegram id"
        assert TOKEN.split(":")[1] not in log, f"{path.name} logged the bot token"
    for path in waypoint.var.rglob("*.db*"):  # the chat id is kept only encrypted
        assert str(chat).encode() not in path.read_bytes(), f"{path.name} holds a Telegram id in clear"


# -- other ways to start --------------------------------------------------------------------------------


@pytest.mark.model
def test_polling_mode_handles_updates_from_get_updates(fake, content, tmp_path):
    fake.reset()
    server = Waypoint(
        tmp_path,
        extra_env={
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": fake.url,
            "TELEGRAM_POLLING": "1",
            "WAYPOINT_ID_SECRET": ID_SECRET,
        },
    ).start()
    try:
        fake.wait_for(lambda: fake.calls_of("deleteWebhook"), what="deleteWebhook")
        chat = 2000
        update = tg.text_update(chat, QUESTIONS["ms"], language_code="ms")
        fake.queue_update(update)
        texts = fake.wait_for_texts(chat, 2)
        assert texts[0] == content.messages["intro"]["ms"]
        # the next getUpdates confirms it, so it is not delivered twice
        fake.wait_for(
            lambda: any(
                int(c.params.get("offset") or 0) == update["update_id"] + 1 for c in fake.calls_of("getUpdates")
            ),
            what="the confirming offset",
        )
    finally:
        assert server.stop() in (0, 130, -2, 143)


@pytest.mark.model
def test_without_a_token_rasa_starts_and_the_webhook_is_off(tmp_path):
    env = {k: "" for k in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "TELEGRAM_API_BASE_URL")}
    server = Waypoint(tmp_path, extra_env=env).start()
    try:
        assert post(server, tg.text_update(2100, "hello")) == 503
        assert server.say("no-telegram", "hello")  # the rest of the assistant works
        logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
        assert logs.count("Telegram channel off: TELEGRAM_BOT_TOKEN is not set") == 1
    finally:
        assert server.stop() in (0, 130, -2, 143)
