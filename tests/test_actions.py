"""The actions one by one, with inline trackers: answers in the user's language
with their source and buttons, short first for survivors and whole for
practitioners, the country asked once, the introduction once, session start,
search when nothing was understood, languages, helplines, deletion, redaction,
operators' hours. (Whole conversations: tests/test_dialogue.py.)"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import ActionAnswerTopic, ActionFollowUp, ActionSearchTopics
from actions.conversation import ActionReply, ActionSessionStart
from actions.handoff import ActionRequestHandoff, operators_on_duty
from actions.helplines import ActionShowHelplines
from actions.language import ActionSetLanguage
from actions.privacy import ActionDeleteData, redact
from content.loader import get_content
from tests.conftest import make_tracker
from tests.conftest import run_action as run


def test_survivors_get_the_short_answer_with_tell_me_more_in_their_language():
    messages, changes, out = run(
        ActionAnswerTopic(), "boss keep my passport", "ask_protect_documents", slots={"language": "id"}
    )
    guide = get_content().guides["protect.documents"]
    assert guide.text("id", "survivor") in out and guide.text("id", "survivor_more") not in out
    payloads = [b["payload"] for m in messages for b in m.get("buttons") or []]
    assert any(p.startswith("/ask_more") for p in payloads) and "/request_human" in payloads
    assert changes["topic"] == "protect.documents" and changes["answered"] == "protect.documents:short"


def test_tell_me_more_gives_the_detail_the_country_note_and_the_source():
    _, _, out = run(
        ActionFollowUp(),
        '/ask_more{"topic_ref":"protect.non_punishment"}',
        "ask_more",
        slots={"language": "th", "country": "TH", "topic": "protect.non_punishment"},
        entities=[{"entity": "topic_ref", "value": "protect.non_punishment"}],
    )
    guide = get_content().guides["protect.non_punishment"]
    assert guide.text("th", "survivor_more") in out and guide.text("th", "source") in out
    assert guide.country_notes["TH"]["th"].strip() in out


def test_practitioners_get_the_procedure_after_the_country():
    _, changes, out = run(
        ActionAnswerTopic(),
        "what is the referral procedure",
        "ask_ident_referral_procedure",
        slots={"audience": "practitioner"},
    )
    assert changes["pending_question"] == "country"
    _, _, out = run(
        ActionAnswerTopic(),
        "what is the referral procedure",
        "ask_ident_referral_procedure",
        slots={"audience": "practitioner", "country": "MY"},
    )
    guide = get_content().guides["ident.referral_procedure"]
    assert guide.text("en", "practitioner") in out and guide.text("en", "source") in out


def test_the_introduction_comes_once_before_the_first_reply():
    messages, changes, _ = run(ActionReply(), "hello", "greet", slots={"intro_shown": False})
    assert "Waypoint" in messages[0]["text"] and changes["intro_shown"] is True
    messages, changes, _ = run(ActionReply(), "hello", "greet", slots={"intro_shown": True})
    assert "Waypoint" not in messages[0]["text"] and "intro_shown" not in changes


def test_session_start_keeps_only_what_the_user_told_about_themselves():
    tracker = make_tracker(
        slots={
            "language": "ms",
            "audience": "practitioner",
            "country": "MY",
            "nationality": "ID",
            "is_minor": True,
            "topic": "protect.shelter",
            "pending_question": "country",
        }
    )
    events = asyncio.run(ActionSessionStart().run(CollectingDispatcher(), tracker, {}))
    kept = {e["name"] for e in events if e.get("event") == "slot"}
    assert kept == {"language", "audience", "country", "nationality", "is_minor", "numbers_muted"}


def test_low_confidence_offers_three_topics_and_answers_none():
    messages, changes, _ = run(ActionSearchTopics(), "the agent took my papers and my salary", "nlu_fallback")
    payloads = [b["payload"] for m in messages for b in m.get("buttons") or []]
    assert len([p for p in payloads if p.startswith("/ask_")]) == 3 and "topic" not in changes


def test_search_works_for_thai_text():
    messages, _, _ = run(ActionSearchTopics(), "นายจ้างยึดหนังสือเดินทาง", "nlu_fallback", slots={"language": "th"})
    assert "/ask_protect_documents" in [b["payload"] for m in messages for b in m.get("buttons") or []]


@pytest.mark.parametrize("reason", ["unsupported script", "unsupported language"])
def test_an_unsupported_language_gets_a_language_choice(reason):
    messages, _, out = run(
        ActionAnswerTopic(),
        "ang mga karapatan ko",
        "ask_protect_rights_overview",
        language_id={"language": "en", "reason": reason},
    )
    from content.languages import CODES

    assert len(messages[-1]["buttons"]) == len(CODES) and "Tiếng Việt" in out


def test_out_of_scope_offers_topics_and_a_person():
    messages, _, _ = run(ActionReply(), "what is the weather", "out_of_scope")
    assert "/request_human" in [b["payload"] for m in messages for b in m.get("buttons") or []]


def test_an_explicit_language_choice_answers_in_the_new_language():
    messages, changes, _ = run(
        ActionSetLanguage(),
        '/choose_language{"language_choice":"vi"}',
        "choose_language",
        entities=[{"entity": "language_choice", "value": "vi"}],
    )
    assert changes["language"] == "vi" and "tiếng Việt" in messages[-1]["text"]


def test_helplines_for_the_users_country_with_open_status():
    _, _, out = run(ActionShowHelplines(), "helpline numbers", "ask_help_helplines", slots={"country": "MY"})
    assert "15999" in out and "999" in out and ("open" in out or "closed" in out)


def test_helplines_never_guess_the_country_from_the_language():
    _, changes, _ = run(ActionShowHelplines(), "nomor bantuan", "ask_help_helplines", slots={"language": "id"})
    assert changes["pending_question"] == "country" and "country" not in changes


def test_no_operators_is_said_honestly_with_helplines():
    _, changes, out = run(ActionRequestHandoff(), "talk to a person", "request_human", slots={"country": "TH"})
    assert "1300" in out and "pending_question" not in changes


def test_operators_outside_their_hours_say_so(monkeypatch):
    monkeypatch.setenv("WAYPOINT_OPERATORS_CHAT_ID", "-1001")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "1:test")
    monkeypatch.setenv("WAYPOINT_OPERATOR_HOURS", "mon-mon 00:00-00:01 Asia/Bangkok")
    _, changes, out = run(ActionRequestHandoff(), "talk to a person", "request_human", slots={"country": "TH"})
    assert "1300" in out and "pending_question" not in changes


def test_delete_restarts_and_marks_the_conversation():
    messages, _, _ = run(ActionDeleteData(), "delete my data", "request_data_deletion")
    tracker = make_tracker("delete my data", "request_data_deletion")
    events = asyncio.run(ActionDeleteData().run(CollectingDispatcher(), tracker, {}))
    assert any(e.get("event") == "restart" for e in events)
    assert any(m.get("custom", {}).get("waypoint") == "forget_conversation" for m in messages)


def test_redaction_removes_numbers_and_addresses():
    assert (
        redact("call +66 81 234 5678 or mail me@x.org, passport AB1234567")
        == "call [phone] or mail [email], passport [passport-like number]"
    )


def test_operator_hours():
    bangkok_monday_10 = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.timezone.utc)
    bangkok_sunday_10 = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.timezone.utc)
    assert operators_on_duty(bangkok_monday_10, "mon-fri 09:00-17:00 Asia/Bangkok")
    assert not operators_on_duty(bangkok_sunday_10, "mon-fri 09:00-17:00 Asia/Bangkok")
    assert operators_on_duty(bangkok_sunday_10, "always") and operators_on_duty(bangkok_sunday_10, "nonsense")
