"""The Telegram channel (channels/telegram_channel.py).

Fast tests: python-telegram-bot's real HTTP stack against the fake Bot API
server (tests/fake_telegram.py): retries, 429, deleting in batches, output
shaping. Slow tests: the assistant started as `make run` starts it, with the
channel pointed at the fake, receiving real update JSON on its webhook (and,
in polling mode, over getUpdates)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from actions.content import data_dir, load_content
from channels.telegram_channel import (
    CALLBACK_DATA_LIMIT, DELETABLE_FOR, LANGUAGE_LABELS, MessageLog, PayloadTable, RateLimiter, RecentIds, Settings,
    TelegramBot,
    TelegramInput, TelegramOutput, cut_text, sender_id_for, split_text, utf16_len, webhook_url,
)
from tests import fake_telegram as tg
from tests.servers import ROOT, Waypoint

TOKEN = "123456789:AAtest-Waypoint_token"
SECRET = "test-webhook-secret_0123"
ID_SECRET = "test-id-secret"
LANGS = ("en", "id", "ms", "vi", "th")


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())  # what the servers load (WAYPOINT_DATA_DIR or data/)


@pytest.fixture(scope="module")
def fake():
    server = tg.FakeTelegram(TOKEN).start()
    yield server
    server.stop()


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


def test_long_payloads_travel_as_short_callback_data():
    table = PayloadTable(size=3)
    short = '/choose_language{"language_choice":"th"}'
    assert table.data_for(short) == short
    long_payload = '/inform_country{"country":"MY","note":"' + "x" * 80 + '"}'
    data = table.data_for(long_payload)
    assert len(data.encode()) <= CALLBACK_DATA_LIMIT
    assert table.payload_for(data) == long_payload
    assert table.data_for(long_payload) == data  # stable for the same payload
    for i in range(5):  # bounded: the oldest ids are forgotten
        table.data_for(long_payload + str(i))
    assert table.payload_for(data) is None
    assert table.payload_for("~p:unknown") is None


def test_sender_id_is_a_keyed_hash_of_the_chat():
    a = sender_id_for(123456789, b"one secret")
    assert a == sender_id_for(123456789, b"one secret")
    assert a != sender_id_for(123456789, b"another secret")
    assert a != sender_id_for(123456780, b"one secret")
    assert "123456789" not in a and a.startswith("tg-")


def test_settings_come_from_the_environment_only():
    off = Settings.from_env({})
    assert not off.enabled
    on = Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/"})
    assert on.enabled and on.api_base_url == "http://127.0.0.1:9"
    # without explicit secrets both are derived from the token, and differ from it
    assert on.webhook_secret and on.webhook_secret not in TOKEN and on.id_secret.decode() != on.webhook_secret
    explicit = Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET})
    assert explicit.webhook_secret == SECRET
    assert webhook_url("https://example.org/") == "https://example.org/webhooks/telegram/webhook"


def test_without_a_token_the_channel_is_off_and_says_so(caplog, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    with caplog.at_level(logging.INFO, logger="channels.telegram_channel"):
        channel = TelegramInput.from_credentials(None)
    assert not channel.settings.enabled
    assert channel.get_output_channel() is None
    assert [r.getMessage() for r in caplog.records] == ["Telegram channel off: TELEGRAM_BOT_TOKEN is not set"]


def test_update_ids_are_remembered_in_bounded_memory():
    recent = RecentIds(size=100)
    assert not recent.seen(1) and recent.seen(1)
    for i in range(2, 300):
        recent.seen(i)
    assert len(recent) == 100
    assert recent.seen(299) and not recent.seen(1)  # 1 fell out long ago


def test_a_flooding_chat_is_told_once_to_slow_down():
    limiter = RateLimiter(per_minute=3)
    assert [limiter.allow(1) for _ in range(3)] == [(True, False)] * 3
    assert limiter.allow(1) == (False, True)  # told once
    assert limiter.allow(1) == (False, False)
    assert limiter.allow(2) == (True, False)  # other chats are not affected


def test_message_ids_are_kept_without_text_for_48_hours(tmp_path):
    log = MessageLog(tmp_path / "telegram.db")
    log.add("tg-a", [5, 6])
    log.add("tg-a", [4], at=time.time() - DELETABLE_FOR - 60)  # no longer deletable
    log.add("tg-b", [7])
    assert log.ids("tg-a") == [5, 6]
    assert log.purge() == 1
    log.remove("tg-a", [5])
    assert log.ids("tg-a") == [6]
    log.remove("tg-a")
    assert log.ids("tg-a") == [] and log.ids("tg-b") == [7]
    columns = [row[1] for row in log._db.execute("PRAGMA table_info(chat_messages)")]
    assert columns == ["sender", "message_id", "at"]
    log.close()


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
    with caplog.at_level(logging.DEBUG, logger="channels.telegram_channel"):
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


async def test_replies_become_split_messages_with_an_inline_keyboard(fake, tmp_path, monkeypatch):
    fake.reset()
    monkeypatch.setenv("WAYPOINT_VAR", str(tmp_path))
    channel = TelegramInput(Settings.from_env({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": fake.url,
                                               "WAYPOINT_VAR": str(tmp_path)}))
    await channel.start()
    try:
        sender = sender_id_for(4321, channel.settings.id_secret)
        output = TelegramOutput(channel, 4321)
        long_payload = '/inform_country{"country":"MY","why":"' + "y" * 70 + '"}'
        text = "\n\n".join(["First paragraph. " * 150, "Second paragraph. " * 150, "See https://example.org/help"])
        await output.send_response(sender, {"text": text, "buttons": [
            {"title": "Malaysia", "payload": long_payload}, {"title": "Talk to a person", "payload": "/request_human"},
            {"title": "Website", "payload": "https://example.org", "type": "web_url"}]})
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
        assert channel.payloads.payload_for(rows[0][0]["callback_data"]) == long_payload
        # the marker is never shown, it asks for deletion
        assert output.forget_requested and len(fake.calls_of("sendMessage", 4321)) == len(sent)
        assert channel.log.ids(sender) == sorted(output.sent)  # ids kept for /delete
    finally:
        await channel.stop()


@pytest.fixture
async def channel(fake, tmp_path):
    fake.reset()
    channel = TelegramInput(Settings.from_env({
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": fake.url, "WAYPOINT_VAR": str(tmp_path),
        "WAYPOINT_OPERATORS_CHAT_ID": "-100999", "TELEGRAM_DELETE_NOTICE_SECONDS": "3600"}))
    await channel.start()
    yield channel
    await channel.stop()


async def _settle(channel: TelegramInput) -> None:
    while [t for t in channel.tasks if not t.done() and t not in channel.pending_deletions]:
        await asyncio.sleep(0.02)


async def test_the_operators_chat_goes_to_the_relay_hook_and_other_groups_are_left(fake, channel, content):
    seen = []

    async def relay(update, ch):
        seen.append(update.effective_chat.id)

    channel.operators_handler = relay
    assert channel.dispatch_json(tg.group_update(-100999, "case 12 taken"))
    assert channel.dispatch_json(tg.group_update(-100555, "hi", language_code="th"))
    await _settle(channel)
    assert seen == [-100999]
    assert [c.params["chat_id"] for c in fake.calls_of("leaveChat")] == [-100555]
    assert fake.texts_to(-100555) == [content.messages["private_only"]["th"]]
    assert fake.texts_to(-100999) == []


async def test_stopping_the_server_does_not_leave_the_deletion_notice_behind(fake, channel):
    sender = sender_id_for(3131, channel.settings.id_secret)
    channel.log.add(sender, [11, 12])
    await channel._delete_everything(3131, sender, keep=[50])  # the notice would stay an hour
    assert [c.params["message_ids"] for c in fake.calls_of("deleteMessages", 3131)] == [[11, 12]]
    await channel.stop()
    assert [c.params["message_ids"] for c in fake.calls_of("deleteMessages", 3131)] == [[11, 12], [50]]


def test_set_webhook_command_sets_secret_updates_and_command_menus(fake, content):
    fake.reset()
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET,
           "TELEGRAM_API_BASE_URL": fake.url, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "channels.telegram_channel", "set-webhook", "https://bot.example.org"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert SECRET not in result.stdout + result.stderr and TOKEN not in result.stdout + result.stderr
    [call] = fake.calls_of("setWebhook")
    assert call.params["url"] == "https://bot.example.org/webhooks/telegram/webhook"
    assert call.params["secret_token"] == SECRET
    assert set(call.params["allowed_updates"]) == {"message", "edited_message", "callback_query", "my_chat_member"}
    menus = {c.params.get("language_code"): c.params["commands"] for c in fake.calls_of("setMyCommands")}
    assert set(menus) == {None, *LANGS}
    assert [c["command"] for c in menus["th"]] == ["start", "language", "help", "human", "delete"]
    assert menus["vi"][4]["description"] == content.messages["command_delete"]["vi"]


# -- the assistant, started as `make run` starts it -------------------------------------------------------

def post(server: Waypoint, update: Dict[str, Any], secret: str = SECRET) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    request = urllib.request.Request(server.url + "/webhooks/telegram/webhook", data=json.dumps(update).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def sender(chat_id: int) -> str:
    return sender_id_for(chat_id, ID_SECRET.encode())


@pytest.fixture(scope="module")
def waypoint(fake, tmp_path_factory):
    server = Waypoint(tmp_path_factory.mktemp("telegram"), extra_env={
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET, "TELEGRAM_API_BASE_URL": fake.url,
        "WAYPOINT_ID_SECRET": ID_SECRET, "TELEGRAM_DELETE_NOTICE_SECONDS": "2"}).start()
    yield server
    assert server.stop() in (0, 130, -2, 143)


QUESTIONS = {
    "en": "my boss took my passport and wont give it back",
    "id": "paspor saya ditahan sama majikan, gimana cara ambilnya",
    "ms": "majikan simpan pasport saya, macam mana nak ambil balik",
    "vi": "chủ giữ hộ chiếu của tôi không trả, tôi phải làm sao",
    "th": "นายจ้างยึดพาสปอร์ตไม่ยอมคืน ทำยังไงดี",
}


@pytest.mark.slow
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


@pytest.mark.slow
def test_start_shows_the_safety_notice_and_language_buttons_once(waypoint, fake, content):
    chat = 1100
    post(waypoint, tg.text_update(chat, "/start", language_code="vi"))
    [first] = fake.wait_for_texts(chat, 1)
    assert first == content.messages["intro"]["vi"]
    keyboard = fake.calls_of("sendMessage", chat)[0].params["reply_markup"]["inline_keyboard"]
    assert [row[0]["text"] for row in keyboard] == ["English", "Bahasa Indonesia", "Bahasa Melayu", "Tiếng Việt", "ภาษาไทย"]
    assert [row[0]["callback_data"] for row in keyboard] == [
        f'/choose_language{{"language_choice":"{code}"}}' for code in LANGS]
    post(waypoint, tg.text_update(chat, QUESTIONS["vi"], language_code="vi"))
    texts = fake.wait_for_texts(chat, 2)
    assert content.messages["intro"]["vi"] not in texts[1:]  # the notice is not repeated


@pytest.mark.slow
def test_language_command_offers_the_buttons(waypoint, fake, content):
    chat = 1101
    post(waypoint, tg.text_update(chat, "/language", language_code="ms"))
    [text] = fake.wait_for_texts(chat, 1)
    assert text == content.messages["ask_language"]["ms"]
    keyboard = fake.calls_of("sendMessage", chat)[0].params["reply_markup"]["inline_keyboard"]
    assert [row[0]["text"] for row in keyboard] == list(LANGUAGE_LABELS.values())


@pytest.mark.slow
def test_a_button_press_is_acknowledged_and_answered(waypoint, fake, content):
    chat = 1200
    update = tg.callback_update(chat, '/choose_language{"language_choice":"th"}', message_id=49999)
    assert post(waypoint, update) == 200
    fake.wait_for(lambda: fake.calls_of("answerCallbackQuery"), what="answerCallbackQuery")
    assert any(c.params["callback_query_id"] == update["callback_query"]["id"] for c in fake.calls_of("answerCallbackQuery"))
    texts = fake.wait_for_texts(chat, 1)
    assert content.messages["language_set"]["th"] in texts
    assert [c.params["message_id"] for c in fake.calls_of("editMessageReplyMarkup", chat)] == [49999]
    assert waypoint.tracker(sender(chat))["slots"]["language"] == "th"


@pytest.mark.slow
def test_help_and_human_commands_go_to_the_assistant(waypoint, fake, content):
    chat = 1300
    post(waypoint, tg.text_update(chat, QUESTIONS["id"], language_code="id"))
    fake.wait_for_texts(chat, 2)
    post(waypoint, tg.text_update(chat, "/help", language_code="id"))
    fake.wait_for(lambda: any(content.messages["ask_country"]["id"] in t for t in fake.texts_to(chat)),
                  what="the country question of the helplines")
    post(waypoint, tg.text_update(chat, "/human", language_code="id"))
    fake.wait_for(lambda: any(content.messages["handoff_consent"]["id"] in t for t in fake.texts_to(chat)),
                  what="the hand-off consent question")


@pytest.mark.slow
@pytest.mark.parametrize("make_update,key,lang", [
    (lambda chat: tg.sticker_update(chat, language_code="id"), "non_text", "id"),
    (lambda chat: tg.photo_update(chat, language_code="th"), "non_text", "th"),
    (lambda chat: tg.location_update(chat, language_code="ms"), "personal_data_not_needed", "ms"),
    (lambda chat: tg.edited_update(chat, "my passport", message_id=77, language_code="vi"), "edited_message", "vi"),
], ids=["sticker", "photo", "location", "edited"])
def test_other_kinds_of_message_get_a_kind_answer(waypoint, fake, content, make_update, key, lang):
    chat = 1400 + ["non_text/id", "non_text/th", "personal_data_not_needed/ms", "edited_message/vi"].index(f"{key}/{lang}")
    assert post(waypoint, make_update(chat)) == 200
    assert fake.wait_for_texts(chat, 1) == [content.messages[key][lang]]


@pytest.mark.slow
def test_a_group_is_told_and_left(waypoint, fake, content):
    group = -100777
    assert post(waypoint, tg.group_update(group, "hello bot", language_code="en")) == 200
    fake.wait_for(lambda: fake.calls_of("leaveChat", group), what="leaveChat")
    assert fake.texts_to(group) == [content.messages["private_only"]["en"]]


@pytest.mark.slow
def test_a_repeated_update_is_answered_once(waypoint, fake, content):
    control, chat = 1500, 1501
    post(waypoint, tg.text_update(control, "hello", language_code="en"))
    post(waypoint, tg.sticker_update(control))  # handled after the text: its answer marks the end
    replies = fake.wait_for(lambda: (lambda t: t if content.messages["non_text"]["en"] in t else None)(fake.texts_to(control)),
                            what="the control conversation")
    update = tg.text_update(chat, "hello", language_code="en")
    assert post(waypoint, update) == 200
    assert post(waypoint, update) == 200  # Telegram's retry: accepted, not handled again
    post(waypoint, tg.sticker_update(chat))
    texts = fake.wait_for(lambda: (lambda t: t if content.messages["non_text"]["en"] in t else None)(fake.texts_to(chat)),
                          what="the conversation")
    assert len(texts) == len(replies)
    assert texts.count(content.messages["intro"]["en"]) == 1


@pytest.mark.slow
def test_a_wrong_or_missing_secret_is_refused(waypoint, fake, content):
    chat = 1600
    assert post(waypoint, tg.text_update(chat, "hello"), secret="wrong") == 403
    assert post(waypoint, tg.text_update(chat, "hello"), secret=None) == 403
    post(waypoint, tg.sticker_update(chat))
    assert fake.wait_for_texts(chat, 1) == [content.messages["non_text"]["en"]]  # nothing from the refused ones


@pytest.mark.slow
def test_429_from_telegram_is_respected_and_the_message_still_arrives(waypoint, fake, content):
    chat = 1700
    fake.fail("sendMessage", status=429, retry_after=2, match=lambda p: p.get("chat_id") == chat)
    post(waypoint, tg.sticker_update(chat, language_code="en"))
    assert fake.wait_for_texts(chat, 1) == [content.messages["non_text"]["en"]]
    attempts = fake.calls_of("sendMessage", chat, ok_only=False)
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 1.9


@pytest.mark.slow
def test_too_long_text_is_cut_and_the_user_told(waypoint, fake, content):
    chat = 1800
    post(waypoint, tg.text_update(chat, ("my boss took my passport. " * 160)[:4096], language_code="en"))
    texts = fake.wait_for_texts(chat, 2)
    assert texts[0] == content.messages["too_long"]["en"]


def _deleted_ids(fake, chat: int) -> List[int]:
    return sorted(sum((c.params["message_ids"] for c in fake.calls_of("deleteMessages", chat)), []))


@pytest.mark.slow
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
    tracker = waypoint.tracker(sender(chat))  # the API starts a fresh session for an unknown conversation
    assert not [e for e in tracker["events"] if e["event"] in ("user", "bot")]  # the conversation is gone
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


@pytest.mark.slow
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


# -- other ways to start --------------------------------------------------------------------------------

@pytest.mark.slow
def test_polling_mode_handles_updates_from_get_updates(fake, content, tmp_path):
    fake.reset()
    server = Waypoint(tmp_path, extra_env={
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": fake.url, "TELEGRAM_POLLING": "1",
        "WAYPOINT_ID_SECRET": ID_SECRET}).start()
    try:
        fake.wait_for(lambda: fake.calls_of("deleteWebhook"), what="deleteWebhook")
        chat = 2000
        update = tg.text_update(chat, QUESTIONS["ms"], language_code="ms")
        fake.queue_update(update)
        texts = fake.wait_for_texts(chat, 2)
        assert texts[0] == content.messages["intro"]["ms"]
        # the next getUpdates confirms it, so it is not delivered twice
        fake.wait_for(lambda: any(int(c.params.get("offset") or 0) == update["update_id"] + 1
                                  for c in fake.calls_of("getUpdates")), what="the confirming offset")
    finally:
        assert server.stop() in (0, 130, -2, 143)


@pytest.mark.slow
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
