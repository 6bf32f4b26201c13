"""The live hand-off to a counsellor (channels/operators.py).

Fast tests: the case state machine, the user's end / cancel words, the
operators' post, the emergency texts. Slow tests: the assistant started as
`make run` starts it, its Telegram channel pointed at the fake Bot API
(tests/fake_telegram.py) with an operators' group; a survivor on Telegram (and
on the web chat, in Chromium, and on REST) asks for a person, consents, an
operator accepts in the group, messages go both ways, /end gives the
conversation back to the assistant."""
from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import pytest

from content.loader import load_content
from channels import operators
from channels.operators import Case, Relay
from channels.telegram_channel import sender_id_for
from tests import fake_telegram as tg
from tests.conftest import make_tracker
from tests.servers import Waypoint

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
    return load_content()


# -- pieces ----------------------------------------------------------------------------------------

def test_a_case_moves_only_along_its_state_machine():
    for start, target, allowed in [("waiting", "live", True), ("waiting", "expired", True),
                                   ("waiting", "cancelled", True), ("live", "closed", True),
                                   ("live", "expired", False), ("live", "cancelled", False),
                                   ("closed", "live", False), ("expired", "live", False),
                                   ("cancelled", "waiting", False), ("waiting", "waiting", False)]:
        case = Case("WP-ABC123", "tg-x", "telegram", "en", None, None, None, state=start)
        assert case.move(target) is allowed, (start, target)
        assert case.state == (target if allowed else start)
    assert Case("WP-ABC123", "s", "webchat", "en", None, None, None).open


def test_end_and_cancel_words_in_the_users_language(content):
    relay = Relay(chat_id=str(OPS))
    assert relay._user_command("/end", "en") == "end"
    assert relay._user_command(" End ", "th") == "end"
    assert relay._user_command("/cancel@waypoint_test_bot", "ms") == "cancel"
    for lang in ("en", "id", "ms", "vi", "th"):
        assert relay._user_command(content.messages["webchat_end_chat"][lang], lang) == "end"
        assert relay._user_command(content.messages["webchat_cancel_request"][lang], lang) == "cancel"
    for text in ("the end of my contract", "cancel my debt?", "/endless", "hello"):
        assert relay._user_command(text, "en") is None


def test_the_post_holds_the_case_but_no_identity(content):
    relay = Relay(chat_id=str(OPS), operators_language="en")
    sender = sender_id_for(7311452209, b"k")
    case = Case("WP-0A1B2C", sender, "telegram", "vi", "VN", "protect.documents",
                "topics: protect.documents, remedy.unpaid_wages")
    text = relay.post_text(case)
    titles = [content.guides[t].text("en", "title") for t in ("protect.documents", "remedy.unpaid_wages")]
    assert "WP-0A1B2C" in text and "Tiếng Việt (vi)" in text and content.country_name("VN", "en") in text
    assert titles[0] in text and titles[1] in text and "user's agreement" in text
    assert sender not in text and "7311452209" not in text
    assert text.endswith(content.messages["operators_waiting"]["en"])
    no_summary = relay.post_text(Case("WP-0A1B2C", sender, "telegram", "vi", None, None, None))
    assert "user's agreement" not in no_summary and "Country: —" in no_summary
    case.reason = "operators_deleted"  # the user deleted everything: only the id and the state stay
    assert relay.post_text(case) == "WP-0A1B2C\n\n" + content.messages["operators_deleted"]["en"]
    thai = Relay(chat_id=str(OPS), operators_language="th").post_text(case)
    assert thai.endswith(content.messages["operators_deleted"]["th"])


@pytest.mark.parametrize("lang,country", [("en", None), ("ms", "MY"), ("vi", "VN"), ("th", "TH")])
async def test_emergency_texts_are_those_of_the_emergency_action(domain, lang, country):
    from actions.helplines import ActionHandleEmergency
    from rasa_sdk.executor import CollectingDispatcher

    dispatcher = CollectingDispatcher()
    await ActionHandleEmergency().run(dispatcher, make_tracker(slots={"language": lang, "country": country}), domain)
    expected = [m["text"] for m in dispatcher.messages][:3]  # message, numbers, safety steps (then: offer a person)
    composed = Relay.compose(lang, country, [("say", "emergency"), ("helplines", True), ("say", "emergency_steps")])
    assert [m["text"] for m in composed] == expected
    assert len(expected) == 3 and expected[0] == load_content().messages["emergency"][lang]


def test_markers_of_a_turn():
    turn = [{"text": "hi"}, {"custom": {"waypoint": "handoff_requested", "case_id": "WP-111111"}}]
    assert operators.marker_case(turn) == "WP-111111"
    assert operators.marker_case([{"custom": {"waypoint": "forget_conversation"}}], "forget_conversation") is True
    assert operators.marker_case([{"text": "x"}, {"custom": "text"}]) is None


# -- the assistant with Telegram and an operators' group ---------------------------------------------

@pytest.fixture(scope="module")
def fake():
    server = tg.FakeTelegram(TOKEN).start()
    server.set_member(OPS, OPERATOR["id"], "member")
    server.set_member(OPS, ADMIN["id"], "administrator")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def waypoint(fake, tmp_path_factory):
    server = Waypoint(tmp_path_factory.mktemp("handoff"), extra_env={
        "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_WEBHOOK_SECRET": SECRET, "TELEGRAM_API_BASE_URL": fake.url,
        "WAYPOINT_ID_SECRET": ID_SECRET, "WAYPOINT_OPERATORS_CHAT_ID": str(OPS),
        "WAYPOINT_HANDOFF_TIMEOUT_SECONDS": str(TIMEOUT), "WAYPOINT_OPERATOR_HOURS": "always",
        "WAYPOINT_OPERATORS_LANGUAGE": "en"}).start()
    yield server
    assert server.stop() in (0, 130, -2, 143)


def webhook(server: Waypoint, update: Dict[str, Any]) -> None:
    request = urllib.request.Request(server.url + "/webhooks/telegram/webhook", data=json.dumps(update).encode(),
                                     headers={"Content-Type": "application/json",
                                              "X-Telegram-Bot-Api-Secret-Token": SECRET}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def sender(chat: int) -> str:
    return sender_id_for(chat, ID_SECRET.encode())


def press(chat: int, who: Dict[str, Any], data: str, message_id: int) -> Dict[str, Any]:
    """A press on a button of the bot's message in the user's private chat."""
    message = {"message_id": message_id, "date": int(time.time()), "chat": tg.private_chat(chat),
               "from": {"id": tg.BOT_ID, "is_bot": True, "first_name": "Waypoint"}, "text": "…"}
    return {"update_id": tg.next_update_id(),
            "callback_query": {"id": f"cq{tg.next_update_id()}", "from": who, "chat_instance": "-1",
                               "message": message, "data": data}}


def sent_to(fake: tg.FakeTelegram, chat: int, text: str, after: int = 0, timeout: float = 90) -> tg.Call:
    """The first message to `chat` (from its `after`-th on) containing `text`."""
    return fake.wait_for(lambda: next((c for c in fake.calls_of("sendMessage", chat)[after:]
                                       if text in c.params.get("text", "")), None), timeout, f"{text[:50]!r} to a chat")


def ops_texts(fake: tg.FakeTelegram) -> List[str]:
    """Everything the operators' group was sent or shown by an edit."""
    return ([c.params.get("text", "") for c in fake.calls_of("sendMessage", OPS)]
            + [c.params.get("text", "") for c in fake.calls_of("editMessageText", OPS)])


def accept_button(call: tg.Call) -> Optional[str]:
    rows = (call.params.get("reply_markup") or {}).get("inline_keyboard") or []
    data = [b.get("callback_data", "") for row in rows for b in row]
    return next((d for d in data if d.startswith("wp-accept:")), None)


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
    return fake.wait_for(lambda: next((c for c in fake.calls_of("sendMessage", OPS)[before:] if accept_button(c)),
                                      None), what="the case's post in the operators' group")


def english_user_asks_then_requests_a_person(waypoint, fake, content, chat: int, name: str, question: str,
                                            topic: str, share: bool) -> Tuple[Dict[str, Any], tg.Call]:
    """An English-speaking Telegram user asks `question`, gets the answer to
    `topic`, then asks for a person (request_person); returns (the user, the post)."""
    who = tg.person(chat, name, None, language_code="en")
    webhook(waypoint, tg.named_text_update(chat, question, who))
    sent_to(fake, chat, content.guides[topic].languages["en"]["survivor"].strip()[:30])
    return who, request_person(waypoint, fake, content, chat, who, "en", share=share)


def case_of(post: tg.Call) -> str:
    return CASE_RE.search(post.params["text"]).group(0)


def edits_of(fake: tg.FakeTelegram, post: tg.Call) -> List[Dict[str, Any]]:
    return [c.params for c in fake.calls_of("editMessageText", OPS) if c.params["message_id"] == post.result["message_id"]]


def wait_edit(fake: tg.FakeTelegram, post: tg.Call, text: str, timeout: float = 60) -> Dict[str, Any]:
    return fake.wait_for(lambda: next((e for e in edits_of(fake, post) if text in e["text"]), None), timeout,
                         f"the post edited to say {text[:40]!r}")


def store_state(waypoint: Waypoint, case_id: str) -> Optional[str]:
    with sqlite3.connect(waypoint.var / "waypoint.db") as conn:
        row = conn.execute("SELECT state FROM handoff_cases WHERE case_id = ?", (case_id,)).fetchone()
    return row[0] if row else None


def events_of(waypoint: Waypoint, chat_or_sender: Any) -> List[str]:
    who = sender(chat_or_sender) if isinstance(chat_or_sender, int) else chat_or_sender
    return [e["event"] for e in waypoint.tracker(who)["events"]]


QUESTION_VI = "chủ giữ hộ chiếu của tôi không trả, tôi phải làm sao"


@pytest.mark.slow
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
    assert store_state(waypoint, case_id) == "waiting"

    # an operator accepts: the assistant pauses, the user is told
    mine = len(fake.calls_of("sendMessage", chat))
    accept = tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result)
    webhook(waypoint, accept)
    sent_to(fake, chat, content.messages["handoff_connected"][lang], mine)
    fake.wait_for(lambda: accept["callback_query"]["id"] in [c.params["callback_query_id"]
                                                            for c in fake.calls_of("answerCallbackQuery")],
                  what="the Accept press acknowledged")
    live = wait_edit(fake, post, f"/reply {case_id}")
    assert not (live.get("reply_markup") or {}).get("inline_keyboard")  # the Accept button is gone
    assert store_state(waypoint, case_id) == "live"
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
    assert store_state(waypoint, case_id) == "closed"
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


@pytest.mark.slow
def test_nobody_accepts_in_time(waypoint, fake, content):
    chat, lang = 7311452210, "en"
    who, post = english_user_asks_then_requests_a_person(
        waypoint, fake, content, chat, "Ana", "my boss took my passport and wont give it back", "protect.documents",
        share=False)
    case_id = case_of(post)
    assert "user's agreement" not in post.params["text"]  # the user said no to the summary
    started = time.monotonic()
    unavailable = sent_to(fake, chat, content.messages["handoff_unavailable"][lang], timeout=TIMEOUT + 60)
    assert time.monotonic() - started >= TIMEOUT - 5  # not before the configured time
    # then the helplines, in a message of their own (wait: it follows the apology, it is not in it)
    fake.wait_for(lambda: "☎" in fake.texts_to(chat)[-1] and unavailable.params["text"] != fake.texts_to(chat)[-1],
                  what="the helplines after the apology")
    edit = wait_edit(fake, post, content.messages["operators_expired"]["en"])
    assert not (edit.get("reply_markup") or {}).get("inline_keyboard")
    assert store_state(waypoint, case_id) == "expired"
    # a late Accept is refused with a word to that operator only; the user hears nothing more
    mine = len(fake.calls_of("sendMessage", chat))
    late = tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result)
    webhook(waypoint, late)
    answer = fake.wait_for(lambda: next((c for c in fake.calls_of("answerCallbackQuery")
                                         if c.params["callback_query_id"] == late["callback_query"]["id"]), None))
    assert answer.params["text"] == content.messages["operators_taken"]["en"]
    assert "pause" not in events_of(waypoint, chat)
    webhook(waypoint, tg.named_text_update(chat, "what is human trafficking", who))  # the assistant answers
    sent_to(fake, chat, content.guides["ident.what_is_trafficking"].languages["en"]["survivor"].strip()[:30], mine)


@pytest.mark.slow
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
    with sqlite3.connect(waypoint.var / "waypoint.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM handoff_cases WHERE sender_id = ?", (sender(chat),)).fetchone()[0] == 0


@pytest.mark.slow
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
    assert store_state(waypoint, case_of(post)) == "cancelled"


@pytest.mark.slow
def test_an_emergency_during_a_hand_off_comes_first(waypoint, fake, content):
    chat, lang = 7311452213, "en"
    who, post = english_user_asks_then_requests_a_person(
        waypoint, fake, content, chat, "Lina", "what is human trafficking", "ident.what_is_trafficking", share=True)
    case_id = case_of(post)
    emergency, steps = content.messages["emergency"][lang], content.messages["emergency_steps"][lang]
    flag = content.messages["operators_emergency"]["en"]

    # while waiting: numbers and steps at once, the post flagged, the group told
    mine = len(fake.calls_of("sendMessage", chat))
    webhook(waypoint, tg.named_text_update(chat, "he is beating me right now, please help", who))
    first = sent_to(fake, chat, emergency, mine)
    sent_to(fake, chat, steps, mine)
    texts = fake.texts_to(chat)[mine:]
    assert texts[0] == emergency and texts[2] == steps
    assert content.messages["helplines_all"][lang] in texts[1]  # country unknown: every country's numbers
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
    webhook(waypoint, tg.group_message_update(OPS, ADMIN, "Stay on the line. Can you call 191? GUAVA-3",
                                              reply_to=relayed.result))
    sent_to(fake, chat, "Counsellor: Stay on the line. Can you call 191? GUAVA-3")
    # an operator ends it with /end as a reply
    webhook(waypoint, tg.group_message_update(OPS, ADMIN, "/end", reply_to=relayed.result))
    sent_to(fake, chat, content.messages["handoff_ended"][lang])
    assert store_state(waypoint, case_id) == "closed" and events_of(waypoint, chat).count("resume") == 1


@pytest.mark.slow
def test_strangers_in_the_operators_group_are_ignored(waypoint, fake, content):
    chat, lang = 7311452214, "en"
    who, post = english_user_asks_then_requests_a_person(
        waypoint, fake, content, chat, "Mai", "what is human trafficking", "ident.what_is_trafficking", share=False)
    case_id = case_of(post)
    group_before = len(fake.calls_of("sendMessage", OPS))

    # a non-member presses Accept: nothing at all happens (no answer, no edit, the user is not told)
    stranger_press = tg.group_callback_update(OPS, STRANGER, accept_button(post), post.result)
    webhook(waypoint, stranger_press)
    # then a member does (updates of the group are handled in order: when this one is done, so is the other)
    member_press = tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result)
    webhook(waypoint, member_press)
    sent_to(fake, chat, content.messages["handoff_connected"][lang])
    answered = [c.params["callback_query_id"] for c in fake.calls_of("answerCallbackQuery")]
    assert member_press["callback_query"]["id"] in answered
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
    assert store_state(waypoint, case_id) == "live"
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


@pytest.mark.slow
def test_delete_during_a_hand_off_closes_it_and_removes_the_relayed_messages(waypoint, fake, content):
    chat, lang = 7311452215, "en"
    who, post = english_user_asks_then_requests_a_person(
        waypoint, fake, content, chat, "Rosa", "what is human trafficking", "ident.what_is_trafficking", share=True)
    webhook(waypoint, tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result))
    sent_to(fake, chat, content.messages["handoff_connected"][lang])
    webhook(waypoint, tg.named_text_update(chat, "my employer is called CHERRY-9", who))
    relayed = sent_to(fake, OPS, "CHERRY-9")
    webhook(waypoint, tg.named_text_update(chat, "/delete", who))
    sent_to(fake, chat, content.messages["deleted"][lang])
    edit = wait_edit(fake, post, content.messages["operators_deleted"]["en"])
    assert edit["text"] == f"{case_of(post)}\n\n{content.messages['operators_deleted']['en']}"  # no summary left
    deleted = fake.wait_for(lambda: [i for c in fake.calls_of("deleteMessages", OPS) for i in c.params["message_ids"]],
                            what="the relayed messages deleted from the group")
    assert relayed.result["message_id"] in deleted and post.result["message_id"] not in deleted
    assert store_state(waypoint, case_of(post)) is None  # the case is gone from the store
    # The conversation is deleted when the turn that confirmed it is saved, just
    # after the confirmation went out: wait for it rather than race it.
    fake.wait_for(lambda: not [e for e in waypoint.tracker(sender(chat))["events"] if e["event"] == "user"],
                  what="the conversation deleted from the tracker store")


# -- the web chat and REST ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    import pathlib

    chromium = pathlib.Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.fail("Chromium is missing: run scripts/ensure-chromium.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        yield launched
        launched.close()


@pytest.mark.slow
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

        def bot_texts() -> List[str]:
            return [t.strip() for t in page.locator(".from-bot .text").all_text_contents()]

        def send(text: str) -> None:
            page.fill("#message", text)
            page.press("#message", "Enter")
            page.locator("#writing").wait_for(state="hidden", timeout=60_000)

        def wait_text(text: str, timeout: float = 60) -> None:
            page.wait_for_function("(t) => Array.from(document.querySelectorAll('.from-bot .text'))"
                                   ".some((e) => e.textContent.includes(t))", arg=text, timeout=timeout * 1000)

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
        post = fake.wait_for(lambda: next((c for c in fake.calls_of("sendMessage", OPS)[before:] if accept_button(c)),
                                          None), what="the web user's case in the group")
        session = json.loads(page.evaluate("() => window.sessionStorage.getItem('waypoint-chat')"))["session"]
        assert session not in post.params["text"]

        webhook(waypoint, tg.group_callback_update(OPS, OPERATOR, accept_button(post), post.result))
        wait_text(content.messages["handoff_connected"]["en"])  # brought by a poll
        page.wait_for_function("(t) => document.getElementById('handoff-status').textContent === t",
                               arg=content.messages["webchat_handoff_live"]["en"])
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


def rest(waypoint: Waypoint, sender_id: str, text: str) -> List[str]:
    return [m.get("text", "") for m in waypoint.say(sender_id, text)]


@pytest.mark.slow
def test_a_rest_user_gets_the_counsellor_with_their_next_message(waypoint, fake, content):
    user = "rest-handoff-user-1"
    rest(waypoint, user, "can I get my unpaid wages")
    before = len(fake.calls_of("sendMessage", OPS))
    assert content.messages["handoff_consent"]["en"] in rest(waypoint, user, "/request_human")
    rest(waypoint, user, "/affirm")
    assert content.messages["handoff_waiting"]["en"] in rest(waypoint, user, "/deny")
    post = fake.wait_for(lambda: next((c for c in fake.calls_of("sendMessage", OPS)[before:] if accept_button(c)),
                                      None), what="the REST user's case")
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
    assert content.guides["ident.what_is_trafficking"].languages["en"]["survivor"].strip()[:30] in \
        "\n".join(rest(waypoint, user, "what is human trafficking"))
