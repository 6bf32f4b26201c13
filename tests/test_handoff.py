"""The live hand-off to a counsellor (handoff/: case, repository, queues, relay,
operators' desk).

Unit tests: the case state machine in both repositories, the user's end /
cancel words, the operators' post, the crisis texts, markers; one relay and
its desk on SQLite against the fake Bot API (tests/fake_telegram.py).

``model``: the assistant started as `make run` starts it, its Telegram channel
pointed at the fake Bot API with an operators' group; a survivor on Telegram
(and on the web chat, in Chromium, and on REST) asks for a person, consents, an
operator accepts in the group, messages go both ways, /end gives the
conversation back to the assistant. And the two servers started separately
with different WAYPOINT_VAR folders: the case lives in the Rasa server's store
only (the regression test of the compose file that gave only the action server
the case file)."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import sqlite3
import subprocess
import time
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import pytest

from channels import base
from channels.telegram import sender_id_for
from content import languages
from content.loader import data_dir, load_content
from handoff.case import CANCELLED, CLOSED, EXPIRED, LIVE, WAITING, Case, allowed
from handoff.operators import OperatorsDesk
from handoff.relay import Relay, compose, marker_of
from handoff.repository import MemoryRepository, SQLRepository
from tests import fake_telegram as tg
from tests.conftest import make_tracker
from tests.servers import ROOT, ActionServer, RasaServer, Waypoint

TOKEN = "123456789:AAhandoff-Waypoint_token"
SECRET = "handoff-webhook-secret_42"
ID_SECRET = "handoff-id-secret"
OPS = -1001234567890  # the operators' group
TIMEOUT = 20  # WAYPOINT_HANDOFF_TIMEOUT_SECONDS for the test server
OPERATOR = tg.person(880011, "Olga", "olga_counsel")
ADMIN = tg.person(880012, "Bao", "bao_lead")
STRANGER = tg.person(880099, "Mallory", "mallory_x")
CASE_RE = re.compile(r"WP-[0-9A-F]{6}")


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())


def marker(
    case_id: str,
    language: str = "en",
    country: Optional[str] = "MY",
    topic: Optional[str] = None,
    summary: Optional[str] = None,
) -> Dict[str, Any]:
    """The action server's ``handoff_requested`` marker (actions/handoff.py)."""
    return {
        "waypoint": "handoff_requested",
        "case_id": case_id,
        "language": language,
        "country": country,
        "topic": topic,
        "summary": summary,
    }


# -- pieces ----------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def repository(request, tmp_path):
    repo = MemoryRepository() if request.param == "memory" else SQLRepository(f"sqlite:///{tmp_path / 'cases.db'}")
    yield repo
    repo.close()


def test_a_case_moves_only_along_its_state_machine(repository):
    for i, (start, target, ok) in enumerate(
        [
            ("waiting", "live", True),
            ("waiting", "expired", True),
            ("waiting", "cancelled", True),
            ("waiting", "closed", True),  # an operator declines
            ("live", "closed", True),
            ("live", "expired", False),
            ("live", "cancelled", False),
            ("closed", "live", False),
            ("expired", "live", False),
            ("cancelled", "waiting", False),
            ("waiting", "waiting", False),
        ]
    ):
        assert allowed(start, target) is ok, (start, target)
        case_id = f"WP-ABC{i:03d}"
        assert repository.create(Case(case_id, "tg-x", "telegram", "en", state=start))
        moved, was, now = repository.move(case_id, target)
        assert (moved, was) == (ok, start), (start, target)
        assert now.state == (target if ok else start) == repository.get(case_id).state
        assert repository.move(case_id, target)[0] is False  # never the same change twice
    assert Case("WP-ABC123", "s", "webchat", "en").open
    assert not repository.create(Case("WP-ABC000", "other", "webchat", "en"))  # an id is never reused
    assert repository.move("WP-FFFFFF", LIVE) == (False, None, None)


def test_a_repository_keeps_ids_and_states_and_forgets_a_user(repository):
    old = Case("WP-000001", "tg-a", "telegram", "vi", "VN", "protect.documents", "topics: protect.documents")
    new = Case("WP-000002", "tg-a", "telegram", "vi")
    other = Case("WP-000003", "tg-b", "webchat", "en")
    for case in (old, new, other):
        assert repository.create(case)
    repository.move(old.case_id, CANCELLED)
    assert repository.open_case_for("tg-a").case_id == "WP-000002"
    assert {c.case_id for c in repository.open_cases()} == {"WP-000002", "WP-000003"}
    repository.update("WP-000002", post_id=9001)
    repository.remember_message(9001, "WP-000002")
    repository.add_relayed("WP-000002", [9002])
    repository.add_relayed("WP-000002", [9003])
    assert repository.get("WP-000002").relayed == [9002, 9003] and repository.get("WP-000002").post_id == 9001
    assert repository.message_case(9001) == "WP-000002" and repository.message_case(1) is None
    assert repository.flag_emergency("WP-000002") and not repository.flag_emergency("WP-000002")
    assert repository.get("WP-000002").emergency
    repository.clear_relayed("WP-000002")
    assert repository.get("WP-000002").relayed == []
    repository.interrupt("tg-a")
    assert repository.delete_for_sender("tg-a") == 2
    assert repository.get("WP-000001") is None and repository.get("WP-000002") is None
    assert repository.message_case(9001) is None and not repository.pop_interrupted("tg-a")
    assert repository.get("WP-000003") is not None
    if isinstance(repository, MemoryRepository):  # stale: purged by retention
        repository.cases["WP-000003"].updated_at -= 3 * 86400
    else:
        with repository.engine.begin() as connection:
            connection.execute(repository.cases.update().values(updated_at=repository.cases.c.updated_at - 3 * 86400))
    assert repository.purge_older_than(4) == 0
    assert repository.purge_older_than(2) == 1 and repository.get("WP-000003") is None


def test_end_and_cancel_words_in_the_users_language(content):
    assert Relay.user_command("/end", "en") == "end"
    assert Relay.user_command(" End ", "th") == "end"
    assert Relay.user_command("/cancel@waypoint_test_bot", "ms") == "cancel"
    for lang in languages.CODES:
        assert Relay.user_command(content.messages["webchat_end_chat"][lang], lang) == "end"
        assert Relay.user_command(content.messages["webchat_cancel_request"][lang], lang) == "cancel"
    for text in ("the end of my contract", "cancel my debt?", "/endless", "hello"):
        assert Relay.user_command(text, "en") is None


def test_the_post_holds_the_case_but_no_identity(content):
    desk = OperatorsDesk(None, None, chat_id=OPS, language="en")
    sender = sender_id_for(7311452209, b"k")
    case = Case(
        "WP-0A1B2C",
        sender,
        "telegram",
        "vi",
        "VN",
        "protect.documents",
        "topics: protect.documents, remedy.unpaid_wages",
    )
    text = desk.post_text(case)
    titles = [content.guides[t].text("en", "title") for t in ("protect.documents", "remedy.unpaid_wages")]
    assert "WP-0A1B2C" in text and "Tiếng Việt (vi)" in text and content.country_name("VN", "en") in text
    assert titles[0] in text and titles[1] in text and "user's agreement" in text
    assert sender not in text and "7311452209" not in text
    assert text.endswith(content.messages["operators_waiting"]["en"])
    no_summary = desk.post_text(Case("WP-0A1B2C", sender, "telegram", "vi", None, None, None))
    assert "user's agreement" not in no_summary and "Country: —" in no_summary
    case.emergency = True
    assert content.messages["operators_emergency"]["en"] in desk.post_text(case)
    case.emergency = False
    case.reason = "operators_deleted"  # the user deleted everything: only the id and the state stay
    assert desk.post_text(case) == "WP-0A1B2C\n\n" + content.messages["operators_deleted"]["en"]
    thai = OperatorsDesk(None, None, chat_id=OPS, language="th").post_text(case)
    assert thai.endswith(content.messages["operators_deleted"]["th"])


@pytest.mark.parametrize("lang,country", [("en", None), ("ms", "MY"), ("vi", "VN"), ("th", "TH")])
async def test_the_relays_crisis_numbers_are_those_of_the_crisis_action(domain, content, lang, country):
    """During a hand-off the relay answers danger itself (handoff/relay.py
    _crisis): the numbers it shows must be those the crisis action shows
    (actions/crisis.py): the country's, or every country's on one short screen."""
    from rasa_sdk.executor import CollectingDispatcher

    from actions.crisis import ActionHandleCrisis

    dispatcher = CollectingDispatcher()
    tracker = make_tracker(
        text="he is beating me right now", intent="report_emergency", slots={"language": lang, "country": country}
    )
    await ActionHandleCrisis().run(dispatcher, tracker, domain)
    numbers = dispatcher.messages[0]["text"]  # numbers first, no introduction before them
    composed = compose(
        lang, country, [("say", "emergency"), ("numbers", "emergency"), ("say", "emergency_steps_short")]
    )
    assert [m["text"] for m in composed][0] == content.messages["emergency"][lang]
    assert composed[2]["text"] == content.messages["emergency_steps_short"][lang]
    assert composed[1]["text"] == numbers


def test_markers_of_a_turn():
    turn = [{"text": "hi"}, {"custom": marker("WP-111111")}]
    assert marker_of(turn, "handoff_requested")["case_id"] == "WP-111111"
    assert base.marker(turn, base.HANDOFF)["case_id"] == "WP-111111"
    assert marker_of([{"custom": {"waypoint": "forget_conversation"}}], "forget_conversation") is not None
    assert marker_of([{"text": "x"}, {"custom": "text"}], "handoff_requested") is None
    assert base.visible(turn) == [{"text": "hi"}]  # a marker never reaches a user
    assert base.is_marker(marker("WP-111111")) and not base.is_marker({"waypoint": "other"})


def test_a_case_comes_only_from_a_valid_marker():
    case = Case.from_marker("web-1", "webchat", marker("WP-0A1B2C", "th", "TH", "protect.documents", "x" * 500), 60)
    assert (case.case_id, case.language, case.country, case.topic, case.state) == (
        "WP-0A1B2C",
        "th",
        "TH",
        "protect.documents",
        WAITING,
    )
    assert len(case.summary) == 200 and 55 < case.deadline - time.time() <= 60
    assert Case.from_marker("web-1", "webchat", marker("WP-0a1b2c"), 60) is None
    assert Case.from_marker("web-1", "webchat", marker("1; DROP TABLE"), 60) is None
    assert Case.from_marker("web-1", "carrier-pigeon", marker("WP-0A1B2C"), 60) is None
    assert Case.from_marker("web-1", "rest", {**marker("WP-0A1B2C"), "language": None}, 60).language == "en"


# -- one relay and its desk, without Rasa ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake():
    server = tg.FakeTelegram(TOKEN).start()
    server.set_member(OPS, OPERATOR["id"], "member")
    server.set_member(OPS, ADMIN["id"], "administrator")
    yield server
    server.stop()


@pytest.fixture
async def desk(fake, tmp_path):
    """One Rasa server's relay (SQLite, memory queues) and its desk on the fake Bot API, no assistant."""
    from channels.telegram.bot import TelegramBot
    from handoff.queues import FallbackQueues

    relay = Relay(SQLRepository(f"sqlite:///{tmp_path / 'waypoint.db'}"), FallbackQueues(None), timeout=600)
    bot = TelegramBot(TOKEN, fake.url, max_attempts=2)
    await bot.start()
    relay.desk = OperatorsDesk(relay, bot, chat_id=OPS, language="en")
    yield relay.desk
    for task in list(relay.tasks):
        task.cancel()
    await bot.stop()
    relay.repo.close()


async def to_desk(desk: OperatorsDesk, update: Dict[str, Any]) -> None:
    from telegram import Update

    await desk.on_update(Update.de_json(update, desk.client.bot))
    await tg.settle(desk.relay)


async def open_case(desk: OperatorsDesk, fake, sender: str, case_id: str, channel: str = "webchat") -> Dict[str, Any]:
    """A consented request on ``channel``; returns the case's post (as the fake returned it)."""
    await desk.relay.case_requested(sender, marker(case_id), channel)
    await tg.settle(desk.relay)
    return next(
        c.result
        for c in fake.calls_of("sendMessage", OPS)
        if case_id in c.params.get("text", "") and (c.params.get("reply_markup") or {}).get("inline_keyboard")
    )


def taken(relay: Relay, sender: str) -> List[str]:
    return [m["text"] for m in relay.take(sender)]


async def test_an_operator_declining_a_waiting_case_tells_the_user_honestly(fake, desk, content):
    relay, sender = desk.relay, "web-declined"
    post = await open_case(desk, fake, sender, "WP-D00001")
    await to_desk(desk, tg.group_message_update(OPS, OPERATOR, "/end WP-D00001"))
    assert relay.repo.get("WP-D00001").state == CLOSED and relay.state_of(sender) is None
    told = taken(relay, sender)
    assert told[0] == content.messages["handoff_unavailable"]["en"] and "☎" in told[1]
    edits = [c.params for c in fake.calls_of("editMessageText", OPS) if c.params["message_id"] == post["message_id"]]
    assert content.messages["operators_closed"]["en"] in edits[-1]["text"]
    assert not (edits[-1].get("reply_markup") or {}).get("inline_keyboard")  # no Accept on a closed case


async def test_the_desk_answers_operators_plainly(fake, desk, content):
    relay, sender = desk.relay, "web-desk"
    post = await open_case(desk, fake, sender, "WP-D00002")

    def last_reply() -> str:
        return fake.texts_to(OPS)[-1]

    await to_desk(desk, tg.group_message_update(OPS, OPERATOR, "hello?", reply_to=post))
    assert last_reply() == content.messages["operators_accept_first"]["en"].format(case="WP-D00002")
    await to_desk(desk, tg.group_callback_update(OPS, OPERATOR, "wp-accept:WP-D00002", post))
    assert relay.state_of(sender) == LIVE
    assert taken(relay, sender) == [content.messages["handoff_connected"]["en"]]
    second = tg.group_callback_update(OPS, ADMIN, "wp-accept:WP-D00002", post)  # a second operator is too late
    await to_desk(desk, second)
    answer = fake.calls_of("answerCallbackQuery")[-1].params
    assert answer["callback_query_id"] == second["callback_query"]["id"]
    assert answer["text"] == content.messages["operators_taken"]["en"]
    await to_desk(
        desk,
        tg.group_message_update(
            OPS, OPERATOR, None, reply_to=post, photo=[{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]
        ),
    )
    assert last_reply() == content.messages["operators_text_only"]["en"]
    await to_desk(desk, tg.group_message_update(OPS, OPERATOR, "/reply WP-000000 hi"))
    assert last_reply() == content.messages["operators_not_open"]["en"].format(case="WP-000000")
    await to_desk(desk, tg.group_message_update(OPS, OPERATOR, "/reply nonsense hi"))
    assert last_reply() == content.messages["operators_not_open"]["en"].format(case="?")
    for usage in ("/end", "/help", "/reply WP-D00002"):
        await to_desk(desk, tg.group_message_update(OPS, OPERATOR, usage))
        assert last_reply() == content.messages["operators_usage"]["en"], usage
    before = len(fake.calls_of("sendMessage", OPS))
    await to_desk(desk, tg.group_message_update(OPS, OPERATOR, "/end@another_bot WP-D00002"))  # not for us
    await to_desk(desk, tg.group_message_update(OPS, OPERATOR, "shall I take this one?"))  # operators talking
    assert len(fake.calls_of("sendMessage", OPS)) == before and relay.state_of(sender) == LIVE
    await to_desk(desk, tg.group_message_update(OPS, OPERATOR, f"/reply@{tg.BOT_USERNAME} wp-d00002 Hello there"))
    assert taken(relay, sender) == [content.messages["handoff_counsellor"]["en"].format(text="Hello there")]
    await to_desk(
        desk,
        tg.group_message_update(
            OPS, None, "anonymous admin: hello again", reply_to=post, sender_chat=tg.group_chat(OPS)
        ),
    )
    assert taken(relay, sender) == [
        content.messages["handoff_counsellor"]["en"].format(text="anonymous admin: hello again")
    ]


async def test_a_crisis_while_waiting_is_answered_at_once_and_flagged_once(fake, desk, content):
    relay, sender = desk.relay, "web-crisis"
    post = await open_case(desk, fake, sender, "WP-D00003")
    flag = content.messages["operators_emergency"]["en"]
    assert await relay.intercept(sender, "he is beating me right now, please help", "webchat") is True
    told = taken(relay, sender)
    assert told[0] == content.messages["emergency"]["en"] and told[2] == content.messages["emergency_steps_short"]["en"]
    assert await relay.intercept(sender, "he is beating me right now", "webchat") is True
    assert await relay.intercept(sender, "what are my rights?", "webchat") is False  # the assistant answers that
    edits = [c for c in fake.calls_of("editMessageText", OPS) if c.params["message_id"] == post["message_id"]]
    assert len([e for e in edits if flag in e.params["text"]]) == 1  # the post is flagged once
    assert fake.texts_to(OPS).count(f"WP-D00003: {flag}") == 2  # each crisis while waiting is told
    assert relay.repo.get("WP-D00003").emergency


async def test_a_restarted_server_expires_its_waiting_cases_in_time(fake, desk, content, tmp_path):
    from handoff.queues import FallbackQueues

    relay, sender = desk.relay, "web-restart"
    await open_case(desk, fake, sender, "WP-D00004")
    relay.repo.update("WP-D00004", deadline=time.time() + 0.5)  # what was left of its time
    for task in list(relay.timers.values()):
        task.cancel()  # the old process is gone
    restarted = Relay(SQLRepository(f"sqlite:///{tmp_path / 'waypoint.db'}"), FallbackQueues(None), timeout=600)
    restarted.desk = OperatorsDesk(restarted, desk.client, chat_id=OPS, language="en")
    try:
        assert await restarted.recover() == 1 and "WP-D00004" in restarted.timers
        assert restarted.repo.get("WP-D00004").state == WAITING
        for _ in range(300):  # its timer fired (a loaded machine may be late)
            if not restarted.timers:
                break
            await asyncio.sleep(0.1)
        await tg.settle(restarted)
        assert restarted.repo.get("WP-D00004").state == EXPIRED
        assert taken(restarted, sender)[0] == content.messages["handoff_unavailable"]["en"]
    finally:
        restarted.repo.close()


async def test_without_the_operators_chat_a_request_is_told_honestly(content, tmp_path):
    from handoff.queues import FallbackQueues

    relay = Relay(SQLRepository(f"sqlite:///{tmp_path / 'waypoint.db'}"), FallbackQueues(None), timeout=600)
    try:
        await relay.case_requested("rest-alone", marker("WP-D00005"), "rest")
        assert relay.repo.get("WP-D00005").state == EXPIRED and relay.state_of("rest-alone") is None
        told = taken(relay, "rest-alone")
        assert told[0] == content.messages["handoff_unavailable"]["en"] and "☎" in told[1]
        await relay.case_requested("rest-alone", {**marker("WP-D00006"), "case_id": "not-a-case"}, "rest")
        assert relay.repo.open_cases() == [] and relay.take("rest-alone") == []
    finally:
        relay.repo.close()


async def test_media_during_a_live_case_reaches_the_operators_and_replies_to_it_reach_the_user(fake, desk, content):
    relay, sender = desk.relay, "web-media"
    post = await open_case(desk, fake, sender, "WP-D00007")

    async def voice() -> Tuple[bytes, str]:
        return b"OggS-voice", "voice.oga"

    assert await relay.intercept_media(sender, "webchat", "voice", voice) is False  # waiting: not relayed
    await to_desk(desk, tg.group_callback_update(OPS, OPERATOR, "wp-accept:WP-D00007", post))
    relay.take(sender)
    assert await relay.intercept_media(sender, "webchat", "voice", voice) is True
    [sent] = fake.calls_of("sendVoice", OPS)[-1:]
    assert sent.files["voice"] == b"OggS-voice"
    assert sent.params["caption"] == "WP-D00007 · user:\n" + content.messages["operators_media_voice"]["en"]
    assert sent.params["reply_parameters"]["message_id"] == post["message_id"]
    assert sent.result["message_id"] in relay.repo.get("WP-D00007").relayed  # deleted with the case's messages
    await to_desk(desk, tg.group_message_update(OPS, OPERATOR, "I heard you.", reply_to=sent.result))
    assert taken(relay, sender) == [content.messages["handoff_counsellor"]["en"].format(text="I heard you.")]

    async def broken() -> Tuple[bytes, str]:
        raise ValueError("file not available")

    assert await relay.intercept_media(sender, "webchat", "photo", broken) is True
    assert taken(relay, sender) == [content.messages["handoff_not_delivered"]["en"]]


# -- the assistant with Telegram and an operators' group ---------------------------------------------


@pytest.fixture(scope="module")
def waypoint(fake, tmp_path_factory):
    server = Waypoint(
        tmp_path_factory.mktemp("handoff"),
        extra_env={
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_API_BASE_URL": fake.url,
            "WAYPOINT_ID_SECRET": ID_SECRET,
            "WAYPOINT_OPERATORS_CHAT_ID": str(OPS),
            "WAYPOINT_HANDOFF_TIMEOUT_SECONDS": str(TIMEOUT),
            "WAYPOINT_OPERATOR_HOURS": "always",
            "WAYPOINT_OPERATORS_LANGUAGE": "en",
        },
    ).start()
    yield server
    assert server.stop() in (0, 130, -2, 143)


def webhook(server: Any, update: Dict[str, Any]) -> None:
    request = urllib.request.Request(
        server.url + "/webhooks/telegram/webhook",
        data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def sender(chat: int) -> str:
    return sender_id_for(chat, ID_SECRET.encode())


def press(chat: int, who: Dict[str, Any], data: str, message_id: int) -> Dict[str, Any]:
    """A press on a button of the bot's message in the user's private chat."""
    message = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": tg.private_chat(chat),
        "from": {"id": tg.BOT_ID, "is_bot": True, "first_name": "Waypoint"},
        "text": "…",
    }
    return {
        "update_id": tg.next_update_id(),
        "callback_query": {
            "id": f"cq{tg.next_update_id()}",
            "from": who,
            "chat_instance": "-1",
            "message": message,
            "data": data,
        },
    }


def sent_to(fake: tg.FakeTelegram, chat: int, text: str, after: int = 0, timeout: float = 90) -> tg.Call:
    """The first message to `chat` (from its `after`-th on) containing `text`."""
    return fake.wait_for(
        lambda: next((c for c in fake.calls_of("sendMessage", chat)[after:] if text in c.params.get("text", "")), None),
        timeout,
        f"{text[:50]!r} to a chat",
    )


def ops_texts(fake: tg.FakeTelegram) -> List[str]:
    """Everything the operators' group was sent or shown by an edit."""
    return (
        [c.params.get("text", "") for c in fake.calls_of("sendMessage", OPS)]
        + [c.params.get("caption", "") for m in ("sendVoice", "sendPhoto") for c in fake.calls_of(m, OPS)]
        + [c.params.get("text", "") for c in fake.calls_of("editMessageText", OPS)]
    )


def accept_button(call: tg.Call) -> Optional[str]:
    rows = (call.params.get("reply_markup") or {}).get("inline_keyboard") or []
    data = [b.get("callback_data", "") for row in rows for b in row]
    return next((d for d in data if d.startswith("wp-accept:")), None)


def new_post(fake: tg.FakeTelegram, before: int, what: str = "the case's post in the operators' group") -> tg.Call:
    return fake.wait_for(
        lambda: next((c for c in fake.calls_of("sendMessage", OPS)[before:] if accept_button(c)), None), what=what
    )


def request_person(waypoint, fake, content, chat: int, who: Dict[str, Any], lang: str, share: bool) -> tg.Call:
    """/human, yes to the hand-off, yes or no to the summary; returns the case's post in the group."""
    before = len(fake.calls_of("sendMessage", OPS))
    mine = len(fake.calls_of("sendMessage", chat))
    webhook(waypoint, tg.named_text_update(chat, "/human", who))
    consent = sent_to(fake, chat, content.messages["handoff_consent"][lang], mine)
    webhook(waypoint, press(chat, who, "/affirm", consent.result["message_id"]))
    summary = sent_to(fake, chat, content.messages["handoff_share_summary"][lang], mine)
    webhook(waypoint, press(chat, who, "/affirm" if share else "/deny", summary.result["message_id"]))
    sent_to(fake, chat, content.messages["handoff_waiting"][lang], mine)
    return new_post(fake, before)


def english_user_asks_then_requests_a_person(
    waypoint, fake, content, chat: int, name: str, question: str, topic: str, share: bool
) -> Tuple[Dict[str, Any], tg.Call]:
    """An English-speaking Telegram user asks `question`, gets the answer to
    `topic`, then asks for a person (request_person); returns (the user, the post)."""
    who = tg.person(chat, name, None, language_code="en")
    webhook(waypoint, tg.named_text_update(chat, question, who))
    sent_to(fake, chat, content.guides[topic].languages["en"]["survivor"].strip()[:30])
    return who, request_person(waypoint, fake, content, chat, who, "en", share=share)


def case_of(post: tg.Call) -> str:
    return CASE_RE.search(post.params["text"]).group(0)


def edits_of(fake: tg.FakeTelegram, post: tg.Call) -> List[Dict[str, Any]]:
    return [
        c.params for c in fake.calls_of("editMessageText", OPS) if c.params["message_id"] == post.result["message_id"]
    ]


def wait_edit(fake: tg.FakeTelegram, post: tg.Call, text: str, timeout: float = 60) -> Dict[str, Any]:
    return fake.wait_for(
        lambda: next((e for e in edits_of(fake, post) if text in e["text"]), None),
        timeout,
        f"the post edited to say {text[:40]!r}",
    )


def store_state(var: pathlib.Path, case_id: str) -> Optional[str]:
    """A case's state in the Rasa server's own store ($WAYPOINT_VAR/waypoint.db)."""
    with sqlite3.connect(var / "waypoint.db") as conn:
        row = conn.execute("SELECT state FROM waypoint_handoff_cases WHERE case_id = ?", (case_id,)).fetchone()
    return row[0] if row else None


def cases_of(var: pathlib.Path, sender_id: str) -> int:
    with sqlite3.connect(var / "waypoint.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM waypoint_handoff_cases WHERE sender_id = ?", (sender_id,)).fetchone()[
            0
        ]


def events_of(server: Any, chat_or_sender: Any) -> List[str]:
    who = sender(chat_or_sender) if isinstance(chat_or_sender, int) else chat_or_sender
    return [e["event"] for e in server.tracker(who)["events"]]


QUESTION_VI = "chủ giữ hộ chiếu của tôi không trả, tôi phải làm sao"


@pytest.mark.model
def test_a_survivor_and_a_counsellor_talk_without_seeing_each_other(waypoint, fake, content):
    chat, lang = 7311452209, "vi"
    who = tg.person(chat, "Nadira", "nadira_k", language_code="vi")
    webhook(waypoint, tg.named_text_update(chat, QUESTION_VI, who))
    answer = content.guides["protect.documents"].languages["vi"]["survivor"].strip()[:30]
    sent_to(fake, chat, answer)

    post = request_person(waypoint, fake, content, chat, who, lang, share=True)
    case_id = case_of(post)
    assert post.params["text"].startswith(f"Counselling request {case_id}\nLanguage: Tiếng Việt (vi)")
    assert "user's agreement" in post.params["text"]  # the summary the user agreed to
    assert store_state(waypoint.var, case_id) == "waiting"

    # an operator accepts: the assistant pauses, the user is told
    mine = len(fake.calls_of("sendMessage", chat))
    accept = tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result)
    webhook(waypoint, accept)
    sent_to(fake, chat, content.messages["handoff_connected"][lang], mine)
    fake.wait_for(
        lambda: (
            accept["callback_query"]["id"]
            in [c.params["callback_query_id"] for c in fake.calls_of("answerCallbackQuery")]
        ),
        what="the Accept press acknowledged",
    )
    live = wait_edit(fake, post, f"/reply {case_id}")
    assert not (live.get("reply_markup") or {}).get("inline_keyboard")  # the Accept button is gone
    assert store_state(waypoint.var, case_id) == "live"
    assert events_of(waypoint, chat)[-1] != "resume" and "pause" in events_of(waypoint, chat)

    # the user writes: it reaches the group under the case id, not the assistant
    said = "Tôi sợ ông chủ, ông ấy hay la mắng tôi. MANGO-5521"
    webhook(waypoint, tg.named_text_update(chat, said, who))
    relayed = sent_to(fake, OPS, said)
    assert relayed.params["text"] == f"{case_id} · user:\n{said}"
    assert relayed.params["reply_parameters"]["message_id"] == post.result["message_id"]

    # the operator answers by replying to it, then with /reply
    first = "Chúng tôi có thể giúp bạn. Bạn có an toàn không? KIWI-7730"
    webhook(waypoint, tg.group_message_update(OPS, OPERATOR, first, reply_to=relayed.result))
    sent_to(fake, chat, f"Tư vấn viên: {first}")
    second = "Bạn đang ở thành phố nào? KIWI-7731"
    webhook(waypoint, tg.group_message_update(OPS, ADMIN, f"/reply {case_id.lower()} {second}"))
    sent_to(fake, chat, f"Tư vấn viên: {second}")
    assert not any(said in text or "MANGO" in text for text in fake.texts_to(chat))  # no echo, no bot answer
    assert "MANGO-5521" not in json.dumps(waypoint.tracker(sender(chat)))  # relayed text never reaches Rasa

    # the user ends it: the assistant is back, with helplines
    mine = len(fake.calls_of("sendMessage", chat))
    webhook(waypoint, tg.named_text_update(chat, "/end", who))
    sent_to(fake, chat, content.messages["handoff_ended"][lang], mine)
    sent_to(fake, chat, "☎", mine)  # the helplines follow
    wait_edit(fake, post, content.messages["operators_closed"]["en"])
    sent_to(fake, OPS, f"{case_id}: {content.messages['operators_closed']['en']}")
    assert store_state(waypoint.var, case_id) == "closed"
    assert events_of(waypoint, chat).count("resume") == 1
    mine = len(fake.calls_of("sendMessage", chat))
    webhook(waypoint, tg.named_text_update(chat, QUESTION_VI, who))
    sent_to(fake, chat, answer, mine)  # a normal answer again

    # an answer after the end is not delivered, and says so
    late = "Still there? KIWI-7732"
    webhook(waypoint, tg.group_message_update(OPS, OPERATOR, late, reply_to=relayed.result))
    sent_to(fake, OPS, content.messages["operators_not_open"]["en"].format(case=case_id))
    assert not any("KIWI-7732" in text for text in fake.texts_to(chat))

    # neither side saw the other's identity
    for text in ops_texts(fake):
        for secret in (str(chat), "Nadira", "nadira_k", sender(chat)):
            assert secret not in text
    for text in fake.texts_to(chat):
        for secret in ("Olga", "olga_counsel", str(OPERATOR["id"]), "Bao", "bao_lead", str(OPS)):
            assert secret not in text
    # no relayed text on disk, no text or identity in the logs
    time.sleep(1)
    for path in waypoint.var.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in ("MANGO-5521", "KIWI-7730", "KIWI-7731"):
                assert secret.encode() not in data, f"{path.name} holds relayed text"
            if path.suffix == ".log":
                for secret in (str(chat), "Nadira", "olga_counsel", str(OPERATOR["id"])):
                    assert secret.encode() not in data, f"{path.name} logged an identity"
    logs = "\n".join(p.read_text(errors="replace") for p in waypoint.var.rglob("*.log"))
    assert f"hand-off case {case_id}: waiting -> live" in logs and f"hand-off case {case_id}: live -> closed" in logs


@pytest.mark.model
def test_nobody_accepts_in_time(waypoint, fake, content):
    chat, lang = 7311452210, "en"
    who, post = english_user_asks_then_requests_a_person(
        waypoint,
        fake,
        content,
        chat,
        "Ana",
        "my boss took my passport and wont give it back",
        "protect.documents",
        share=False,
    )
    case_id = case_of(post)
    assert "user's agreement" not in post.params["text"]  # the user said no to the summary
    started = time.monotonic()
    unavailable = sent_to(fake, chat, content.messages["handoff_unavailable"][lang], timeout=TIMEOUT + 60)
    assert time.monotonic() - started >= TIMEOUT - 5  # not before the configured time
    # then the helplines, in a message of their own (wait: it follows the apology, it is not in it)
    fake.wait_for(
        lambda: "☎" in fake.texts_to(chat)[-1] and unavailable.params["text"] != fake.texts_to(chat)[-1],
        what="the helplines after the apology",
    )
    edit = wait_edit(fake, post, content.messages["operators_expired"]["en"])
    assert not (edit.get("reply_markup") or {}).get("inline_keyboard")
    assert store_state(waypoint.var, case_id) == "expired"
    # a late Accept is refused with a word to that operator only; the user hears nothing more
    mine = len(fake.calls_of("sendMessage", chat))
    late = tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result)
    webhook(waypoint, late)
    answer = fake.wait_for(
        lambda: next(
            (
                c
                for c in fake.calls_of("answerCallbackQuery")
                if c.params["callback_query_id"] == late["callback_query"]["id"]
            ),
            None,
        )
    )
    assert answer.params["text"] == content.messages["operators_taken"]["en"]
    assert "pause" not in events_of(waypoint, chat)
    webhook(waypoint, tg.named_text_update(chat, "what is human trafficking", who))  # the assistant answers
    sent_to(fake, chat, content.guides["ident.what_is_trafficking"].languages["en"]["survivor"].strip()[:30], mine)


@pytest.mark.model
def test_declining_consent_posts_nothing(waypoint, fake, content):
    chat = 7311452211
    who = tg.person(chat, "Dewi", "dewi_s", language_code="id")
    webhook(waypoint, tg.named_text_update(chat, "paspor saya ditahan sama majikan, gimana cara ambilnya", who))
    sent_to(fake, chat, content.guides["protect.documents"].languages["id"]["survivor"].strip()[:30])
    before = len(fake.calls_of("sendMessage", OPS))
    webhook(waypoint, tg.named_text_update(chat, "/human", who))
    consent = sent_to(fake, chat, content.messages["handoff_consent"]["id"])
    webhook(waypoint, press(chat, who, "/deny", consent.result["message_id"]))
    sent_to(fake, chat, content.messages["handoff_declined"]["id"])
    time.sleep(2)
    assert fake.calls_of("sendMessage", OPS)[before:] == []
    assert cases_of(waypoint.var, sender(chat)) == 0


@pytest.mark.model
def test_the_user_can_cancel_while_waiting(waypoint, fake, content):
    chat = 7311452212
    who = tg.person(chat, "Siti", None, language_code="ms")
    webhook(waypoint, tg.named_text_update(chat, "majikan simpan pasport saya, macam mana nak ambil balik", who))
    sent_to(fake, chat, content.guides["protect.documents"].languages["ms"]["survivor"].strip()[:30])
    post = request_person(waypoint, fake, content, chat, who, "ms", share=False)
    webhook(waypoint, tg.named_text_update(chat, "/cancel", who))
    sent_to(fake, chat, content.messages["handoff_cancelled"]["ms"])
    edit = wait_edit(fake, post, content.messages["operators_cancelled"]["en"])
    assert not (edit.get("reply_markup") or {}).get("inline_keyboard")
    assert store_state(waypoint.var, case_of(post)) == "cancelled"


@pytest.mark.model
def test_an_emergency_during_a_hand_off_comes_first(waypoint, fake, content):
    chat, lang = 7311452213, "en"
    who, post = english_user_asks_then_requests_a_person(
        waypoint, fake, content, chat, "Lina", "what is human trafficking", "ident.what_is_trafficking", share=True
    )
    case_id = case_of(post)
    emergency, steps = content.messages["emergency"][lang], content.messages["emergency_steps_short"][lang]
    flag = content.messages["operators_emergency"]["en"]

    # while waiting: numbers and steps at once, the post flagged, the group told
    mine = len(fake.calls_of("sendMessage", chat))
    webhook(waypoint, tg.named_text_update(chat, "he is beating me right now, please help", who))
    first = sent_to(fake, chat, emergency, mine)
    sent_to(fake, chat, steps, mine)
    texts = fake.texts_to(chat)[mine:]
    assert texts[0] == emergency and texts[2] == steps
    # country unknown: every country's numbers
    assert content.messages["numbers_intro_emergency_all"][lang] in texts[1]
    assert all(content.country_name(code, lang) in texts[1] for code in ("TH", "MY", "ID", "VN"))
    wait_edit(fake, post, flag)
    sent_to(fake, OPS, f"{case_id}: {flag}")
    assert first.params["text"] == emergency

    # live: numbers again, and the message is relayed, flagged
    webhook(waypoint, tg.group_callback_update(OPS, ADMIN, accept_button(post), post.result))
    sent_to(fake, chat, content.messages["handoff_connected"][lang])
    mine = len(fake.calls_of("sendMessage", chat))
    danger = "they locked me in the room and I cannot get out PAPAYA-1180"
    webhook(waypoint, tg.named_text_update(chat, danger, who))
    relayed = sent_to(fake, OPS, "PAPAYA-1180")
    assert relayed.params["text"] == f"{flag}\n{case_id} · user:\n{danger}"
    fake.wait_for(lambda: steps in fake.texts_to(chat)[mine:], what="the safety steps")
    assert fake.texts_to(chat)[mine] == emergency
    assert not any("PAPAYA" in t for t in fake.texts_to(chat))
    # the relay goes on
    webhook(
        waypoint,
        tg.group_message_update(OPS, ADMIN, "Stay on the line. Can you call 191? GUAVA-3", reply_to=relayed.result),
    )
    sent_to(fake, chat, "Counsellor: Stay on the line. Can you call 191? GUAVA-3")
    # an operator ends it with /end as a reply
    webhook(waypoint, tg.group_message_update(OPS, ADMIN, "/end", reply_to=relayed.result))
    sent_to(fake, chat, content.messages["handoff_ended"][lang])
    assert store_state(waypoint.var, case_id) == "closed" and events_of(waypoint, chat).count("resume") == 1


@pytest.mark.model
def test_strangers_in_the_operators_group_are_ignored(waypoint, fake, content):
    chat, lang = 7311452214, "en"
    who, post = english_user_asks_then_requests_a_person(
        waypoint, fake, content, chat, "Mai", "what is human trafficking", "ident.what_is_trafficking", share=False
    )
    case_id = case_of(post)
    group_before = len(fake.calls_of("sendMessage", OPS))

    # a non-member presses Accept: nothing at all happens (no answer, no edit, the user is not told)
    stranger_press = tg.group_callback_update(OPS, STRANGER, accept_button(post), post.result)
    webhook(waypoint, stranger_press)
    # then a member does (updates of the group are handled in order: when this one is done, so is the other)
    member_press = tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result)
    webhook(waypoint, member_press)
    sent_to(fake, chat, content.messages["handoff_connected"][lang])
    fake.wait_for(
        lambda: (
            member_press["callback_query"]["id"]
            in [c.params["callback_query_id"] for c in fake.calls_of("answerCallbackQuery")]
        ),
        what="the member's press answered",
    )
    answered = [c.params["callback_query_id"] for c in fake.calls_of("answerCallbackQuery")]
    assert stranger_press["callback_query"]["id"] not in answered
    checked = [c.params["user_id"] for c in fake.calls_of("getChatMember", OPS)]
    assert STRANGER["id"] in checked and OPERATOR["id"] in checked

    # a non-member's reply and /reply reach nobody
    webhook(waypoint, tg.group_message_update(OPS, STRANGER, "hi, give me your address LEMON-1", reply_to=post.result))
    webhook(waypoint, tg.group_message_update(OPS, STRANGER, f"/reply {case_id} where are you LEMON-2"))
    webhook(waypoint, tg.group_message_update(OPS, STRANGER, f"/end {case_id}"))
    webhook(waypoint, tg.group_message_update(OPS, OPERATOR, "Hello, I am here. LIME-1", reply_to=post.result))
    sent_to(fake, chat, "Counsellor: Hello, I am here. LIME-1")
    assert not any("LEMON" in t for t in fake.texts_to(chat))
    assert [c.params["text"] for c in fake.calls_of("sendMessage", OPS)[group_before:]] == []  # no answer in the group
    assert store_state(waypoint.var, case_id) == "live"
    logs = "\n".join(p.read_text(errors="replace") for p in waypoint.var.rglob("*.log"))
    assert "operators' chat: a button press from a non-member was ignored" in logs
    assert "operators' chat: a message from a non-member was ignored" in logs
    assert "LEMON" not in logs and str(STRANGER["id"]) not in logs and "Mallory" not in logs
    # an old button pressed while live: the assistant is paused, the user is told how to go back
    mine = len(fake.calls_of("sendMessage", chat))
    webhook(waypoint, press(chat, who, "/request_human", 51234))
    sent_to(fake, chat, content.messages["handoff_live_note"][lang], mine)
    assert fake.calls_of("sendMessage", OPS)[group_before:] == []
    webhook(waypoint, tg.named_text_update(chat, "/end", who))
    sent_to(fake, chat, content.messages["handoff_ended"][lang])


@pytest.mark.model
def test_a_voice_note_and_a_photo_reach_the_counsellor_during_a_live_case(waypoint, fake, content):
    chat, lang = 7311452216, "en"
    who, post = english_user_asks_then_requests_a_person(
        waypoint, fake, content, chat, "Hana", "what is human trafficking", "ident.what_is_trafficking", share=False
    )
    case_id = case_of(post)
    voice, photo = b"OggS\x00\x02 a voice note " * 40, b"\xff\xd8\xff\xe0 a photo " * 40
    fake.add_file("VOICE-HANA-1", voice, "voice/file_41.oga")
    fake.add_file("PHOTO-HANA-1", photo, "photos/file_42.jpg")

    # while waiting, the assistant answers a voice note as any non-text message (nothing is fetched)
    mine, fetched = len(fake.calls_of("sendMessage", chat)), len(fake.calls_of("getFile"))
    voices, photos = len(fake.calls_of("sendVoice", OPS)), len(fake.calls_of("sendPhoto", OPS))
    webhook(waypoint, tg.voice_update(chat, "VOICE-HANA-1"))
    sent_to(fake, chat, content.messages["non_text"][lang], mine)
    assert len(fake.calls_of("getFile")) == fetched

    webhook(waypoint, tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result))
    sent_to(fake, chat, content.messages["handoff_connected"][lang])
    mine = len(fake.calls_of("sendMessage", chat))
    webhook(waypoint, tg.voice_update(chat, "VOICE-HANA-1"))
    sent = fake.wait_for(lambda: fake.calls_of("sendVoice", OPS)[voices:], what="the voice note in the group")[0]
    assert sent.files["voice"] == voice  # the user's own recording, fetched from Telegram and sent on
    assert sent.params["caption"] == f"{case_id} · user:\n" + content.messages["operators_media_voice"]["en"]
    assert sent.params["reply_parameters"]["message_id"] == post.result["message_id"]
    webhook(waypoint, tg.photo_update(chat, file_id="PHOTO-HANA-1"))
    shown = fake.wait_for(lambda: fake.calls_of("sendPhoto", OPS)[photos:], what="the photo in the group")[0]
    assert shown.files["photo"] == photo  # the largest size
    assert shown.params["caption"] == f"{case_id} · user:\n" + content.messages["operators_media_photo"]["en"]
    assert [c.params["file_id"] for c in fake.calls_of("getFile")][fetched:] == ["VOICE-HANA-1", "PHOTO-HANA-1"]
    assert fake.texts_to(chat)[mine:] == []  # no "text only" answer: it went to the counsellor
    # the counsellor replies to the voice note: it reaches the user
    webhook(waypoint, tg.group_message_update(OPS, OPERATOR, "I listened to it. QUINCE-4", reply_to=sent.result))
    sent_to(fake, chat, "Counsellor: I listened to it. QUINCE-4")
    # a file Telegram no longer has: the user is told it did not reach the counsellor
    webhook(waypoint, tg.voice_update(chat, "VOICE-GONE"))
    sent_to(fake, chat, content.messages["handoff_not_delivered"][lang], mine)
    webhook(waypoint, tg.named_text_update(chat, "/end", who))
    sent_to(fake, chat, content.messages["handoff_ended"][lang])
    # nothing of the media on disk
    time.sleep(1)
    for path in waypoint.var.rglob("*"):
        if path.is_file():
            assert b"a voice note" not in path.read_bytes() and b"a photo" not in path.read_bytes(), path.name


@pytest.mark.model
def test_delete_during_a_hand_off_closes_it_and_removes_the_relayed_messages(waypoint, fake, content):
    chat, lang = 7311452215, "en"
    who, post = english_user_asks_then_requests_a_person(
        waypoint, fake, content, chat, "Rosa", "what is human trafficking", "ident.what_is_trafficking", share=True
    )
    webhook(waypoint, tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result))
    sent_to(fake, chat, content.messages["handoff_connected"][lang])
    webhook(waypoint, tg.named_text_update(chat, "my employer is called CHERRY-9", who))
    relayed = sent_to(fake, OPS, "CHERRY-9")
    webhook(waypoint, tg.named_text_update(chat, "/delete", who))
    sent_to(fake, chat, content.messages["deleted"][lang])
    edit = wait_edit(fake, post, content.messages["operators_deleted"]["en"])
    assert edit["text"] == f"{case_of(post)}\n\n{content.messages['operators_deleted']['en']}"  # no summary left
    deleted = fake.wait_for(
        lambda: [i for c in fake.calls_of("deleteMessages", OPS) for i in c.params["message_ids"]],
        what="the relayed messages deleted from the group",
    )
    assert relayed.result["message_id"] in deleted and post.result["message_id"] not in deleted
    assert store_state(waypoint.var, case_of(post)) is None  # the case is gone from the store
    # The conversation is deleted when the turn that confirmed it is saved, just
    # after the confirmation went out: wait for it rather than race it.
    fake.wait_for(
        lambda: not [e for e in waypoint.tracker(sender(chat))["events"] if e["event"] == "user"],
        what="the conversation deleted from the tracker store",
    )


# -- the web chat and REST ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    chromium = pathlib.Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail("Chromium is missing: run scripts/ensure-chromium.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        yield launched
        launched.close()


@pytest.mark.model
@pytest.mark.browser
def test_a_web_chat_user_talks_to_a_counsellor(waypoint, fake, content, browser):
    context = browser.new_context(viewport={"width": 360, "height": 740}, locale="en-GB")
    page = context.new_page()
    errors: List[str] = []
    polls: List[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: polls.append(request.url) if request.url.endswith("/poll") else None)
    try:
        page.goto(waypoint.url + "/chat")
        page.locator("html[lang]").wait_for()

        def send(text: str) -> None:
            page.fill("#message", text)
            page.press("#message", "Enter")
            page.locator("#writing").wait_for(state="hidden", timeout=60_000)

        def wait_text(text: str, timeout: float = 60) -> None:
            page.wait_for_function(
                "(t) => Array.from(document.querySelectorAll('.from-bot .text'))"
                ".some((e) => e.textContent.includes(t))",
                arg=text,
                timeout=timeout * 1000,
            )

        send("my boss took my passport and wont give it back")
        page.locator(".choice", has_text=content.messages["label_talk_to_person"]["en"]).last.click()
        wait_text(content.messages["handoff_consent"]["en"])
        time.sleep(1.5)  # nothing polls before there is a case
        assert polls == [] and page.locator("#handoff").is_hidden()
        before = len(fake.calls_of("sendMessage", OPS))
        page.locator(".choice", has_text=content.messages["label_yes"]["en"]).last.click()
        wait_text(content.messages["handoff_share_summary"]["en"])
        page.locator(".choice", has_text=content.messages["label_no"]["en"]).last.click()
        wait_text(content.messages["handoff_waiting"]["en"])
        assert page.locator("#handoff-status").text_content() == content.messages["webchat_handoff_waiting"]["en"]
        assert page.locator("#handoff-action").text_content() == content.messages["webchat_cancel_request"]["en"]
        post = new_post(fake, before, "the web user's case in the group")
        session = json.loads(page.evaluate("() => window.sessionStorage.getItem('waypoint-chat')"))["session"]
        assert session not in post.params["text"]

        webhook(waypoint, tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result))
        wait_text(content.messages["handoff_connected"]["en"])  # brought by a poll
        page.wait_for_function(
            "(t) => document.getElementById('handoff-status').textContent === t",
            arg=content.messages["webchat_handoff_live"]["en"],
        )
        assert page.locator("#handoff-action").text_content() == content.messages["webchat_end_chat"]["en"]
        assert "pause" in events_of(waypoint, "web-" + session)

        send("I am scared, he shouts at me PEACH-4")
        relayed = sent_to(fake, OPS, "PEACH-4")
        assert relayed.params["text"] == f"{case_of(post)} · user:\nI am scared, he shouts at me PEACH-4"
        webhook(waypoint, tg.group_message_update(OPS, OPERATOR, "You are not alone. PLUM-8", reply_to=relayed.result))
        wait_text("Counsellor: You are not alone. PLUM-8")
        assert "PEACH-4" not in json.dumps(waypoint.tracker("web-" + session))

        page.click("#handoff-action")  # "End chat with counsellor"
        wait_text(content.messages["handoff_ended"]["en"])
        page.locator("#handoff").wait_for(state="hidden")
        polled = len(polls)
        time.sleep(4)
        assert len(polls) == polled  # no more polling once it ended
        assert "resume" in events_of(waypoint, "web-" + session)
        send("what is human trafficking")
        wait_text(content.guides["ident.what_is_trafficking"].languages["en"]["survivor"].strip()[:30])
        wait_edit(fake, post, content.messages["operators_closed"]["en"])
        assert errors == []
    finally:
        context.close()


def rest(server: Any, sender_id: str, text: str) -> List[str]:
    return [m.get("text", "") for m in server.say(sender_id, text)]


@pytest.mark.model
def test_a_rest_user_gets_the_counsellor_with_their_next_message(waypoint, fake, content):
    user = "rest-handoff-user-1"
    rest(waypoint, user, "can I get my unpaid wages")
    before = len(fake.calls_of("sendMessage", OPS))
    assert content.messages["handoff_consent"]["en"] in rest(waypoint, user, "/request_human")
    rest(waypoint, user, "/affirm")
    assert content.messages["handoff_waiting"]["en"] in rest(waypoint, user, "/deny")
    post = new_post(fake, before, "the REST user's case")
    assert user not in post.params["text"]
    webhook(waypoint, tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result))
    wait_edit(fake, post, "/reply")
    replies = rest(waypoint, user, "hello? FIG-2")
    assert replies == [content.messages["handoff_connected"]["en"]]  # the notice came with the next answer
    relayed = sent_to(fake, OPS, "FIG-2")
    webhook(waypoint, tg.group_message_update(OPS, OPERATOR, "Hi, I'm here. DATE-5", reply_to=relayed.result))
    # the group's updates are handled in order: once this one is answered, the reply above was queued
    webhook(waypoint, tg.group_message_update(OPS, OPERATOR, "/end WP-000000"))
    sent_to(fake, OPS, content.messages["operators_not_open"]["en"].format(case="WP-000000"))
    replies = rest(waypoint, user, "ok")
    assert replies == ["Counsellor: Hi, I'm here. DATE-5"]
    replies = rest(waypoint, user, "/end")
    assert replies[0] == content.messages["handoff_ended"]["en"] and "☎" in replies[1]
    assert content.guides["ident.what_is_trafficking"].languages["en"]["survivor"].strip()[:30] in "\n".join(
        rest(waypoint, user, "what is human trafficking")
    )


# -- the two servers started separately, sharing no file ----------------------------------------------------


@pytest.mark.model
def test_the_two_servers_share_no_file_and_the_hand_off_lives_on_the_rasa_server(fake, content, tmp_path, monkeypatch):
    """The action server and the Rasa server each with a WAYPOINT_VAR of its own
    (as in deploy/): a REST user's live hand-off from consent to /end, then
    "delete my data", then a retention run on the Rasa server's folder."""
    actions_var, rasa_var = tmp_path / "actions-var", tmp_path / "rasa-var"
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_API_BASE_URL": fake.url,
        "WAYPOINT_ID_SECRET": ID_SECRET,
        "WAYPOINT_OPERATORS_CHAT_ID": str(OPS),
        "WAYPOINT_OPERATOR_HOURS": "always",
        "WAYPOINT_OPERATORS_LANGUAGE": "en",
        "WAYPOINT_HANDOFF_TIMEOUT_SECONDS": "600",
    }
    for name in (
        "WAYPOINT_STATE_DB",
        "WAYPOINT_TRACKER_DB",
        "WAYPOINT_STATE_URL",
        "WAYPOINT_PG_HOST",
        "WAYPOINT_REDIS_HOST",
    ):
        monkeypatch.delenv(name, raising=False)  # the conftest's per-test store: these servers find their own
    actions = ActionServer(actions_var, env=env)
    actions.env.pop("WAYPOINT_STATE_DB", None)  # the action server has no store of its own to be told of
    rasa = RasaServer(rasa_var, ROOT / "endpoints.yml", actions=actions, env=env)
    rasa.env.pop("WAYPOINT_STATE_DB", None)  # found from WAYPOINT_VAR, as `make run` finds it
    actions.start()
    try:
        rasa.start()
        try:
            user = "rest-two-folders-1"
            rest(rasa, user, "my boss took my passport and wont give it back")
            before = len(fake.calls_of("sendMessage", OPS))
            assert content.messages["handoff_consent"]["en"] in rest(rasa, user, "/request_human")
            assert content.messages["handoff_share_summary"]["en"] in rest(rasa, user, "yes")  # a clear yes, typed
            assert content.messages["handoff_waiting"]["en"] in rest(rasa, user, "yes please")
            post = new_post(fake, before, "the case in the operators' group")
            case_id = case_of(post)
            assert "user's agreement" in post.params["text"]
            assert store_state(rasa_var, case_id) == "waiting"  # the Rasa server's own store has it
            actions_log = (actions_var / f"actions-{actions.port}.log").read_text(errors="replace")
            assert f"hand-off case {case_id} requested" in actions_log

            webhook(rasa, tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result))
            wait_edit(fake, post, f"/reply {case_id}")
            assert store_state(rasa_var, case_id) == "live"
            assert rest(rasa, user, "are you there? FIG-9") == [content.messages["handoff_connected"]["en"]]
            relayed = sent_to(fake, OPS, "FIG-9")
            assert relayed.params["text"] == f"{case_id} · user:\nare you there? FIG-9"
            webhook(rasa, tg.group_message_update(OPS, OPERATOR, "Yes, I am here. DATE-9", reply_to=relayed.result))
            webhook(rasa, tg.group_message_update(OPS, OPERATOR, "/help"))  # handled after the reply above
            sent_to(fake, OPS, content.messages["operators_usage"]["en"])
            assert rest(rasa, user, "ok") == ["Counsellor: Yes, I am here. DATE-9"]
            ended = rest(rasa, user, "/end")
            assert ended[0] == content.messages["handoff_ended"]["en"] and "☎" in ended[1]
            assert store_state(rasa_var, case_id) == "closed"
            wait_edit(fake, post, content.messages["operators_closed"]["en"])

            # "delete my data": the conversation and the case leave the Rasa server's stores
            assert content.messages["deleted"]["en"] in rest(rasa, user, "delete my data")
            fake.wait_for(lambda: cases_of(rasa_var, user) == 0, what="the case deleted from the Rasa server's store")
            fake.wait_for(
                lambda: not [e for e in rasa.tracker(user)["events"] if e["event"] == "user"],
                what="the conversation deleted",
            )

            # retention: another user's conversation and waiting case, purged by the job on the Rasa server's folder
            other = "rest-two-folders-2"
            rest(rasa, other, "what is human trafficking")
            rest(rasa, other, "/request_human")
            rest(rasa, other, "yes")
            assert content.messages["handoff_waiting"]["en"] in rest(rasa, other, "no")
            assert cases_of(rasa_var, other) == 1
            job_env = {
                k: v
                for k, v in os.environ.items()
                if k not in ("WAYPOINT_TRACKER_DB", "WAYPOINT_STATE_DB", "WAYPOINT_STATE_URL")
            }
            job_env.update({"WAYPOINT_VAR": str(rasa_var), "WAYPOINT_RETENTION_DAYS": "0"})
            time.sleep(0.1)
            job = subprocess.run(
                ["bash", "-c", "source scripts/env.sh && exec .venv/bin/python -m jobs.retention"],
                cwd=ROOT,
                env=job_env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert job.returncode == 0, job.stderr[-3000:]
            purged = re.search(r"retention: (\d+) conversation\(s\) and (\d+) hand-off case\(s\)", job.stderr)
            assert purged and int(purged.group(1)) >= 1 and int(purged.group(2)) >= 1, job.stderr[-2000:]
            assert cases_of(rasa_var, other) == 0
            assert not [e for e in rasa.tracker(other)["events"] if e["event"] == "user"]
        finally:
            rasa.stop()
    finally:
        actions.stop()
    # the action server's folder holds its log and nothing else: no case file, no database
    assert sorted(p.name for p in actions_var.iterdir()) == [f"actions-{actions.port}.log"]
    assert (rasa_var / "waypoint.db").exists() and (rasa_var / "tracker.db").exists()
