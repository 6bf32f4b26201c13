"""Actions, run as the action server runs them: trackers built inline, fresh per
test; both the returned events and what the dispatcher says are checked."""
import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions import store
from actions.answers import ActionAnswerTopic, ActionSearchTopics, ActionSetCountry
from actions.content import get_content
from actions.conversation import ActionIntro, ActionReply, ActionSessionStart
from actions.handoff import ActionHandoffConsent, ActionRequestHandoff
from actions.helplines import ActionAcknowledgeMinor, ActionHandleEmergency, ActionShowHelplines
from actions.language import ActionSetLanguage, ValidateSlotMappings
from actions.privacy import FORGET_MARKER, ActionDeleteData, redact
from tests.conftest import make_tracker


async def run(action, domain, **tracker_args):
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, make_tracker(**tracker_args), domain)
    return events, dispatcher.messages


def slot_events(events):
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


async def test_topic_answer_in_the_users_language_with_source_and_buttons(domain):
    events, messages = await run(ActionAnswerTopic(), domain, text="bos saya tahan paspor", intent="ask_protect_documents",
                                 slots={"language": "id"})
    assert slot_events(events)["topic"] == "protect.documents"
    guide = get_content().guides["protect.documents"]
    answer = messages[-1]
    assert answer["text"].startswith(guide.languages["id"]["survivor"].strip()[:40])
    assert answer["text"].rstrip().endswith(guide.languages["id"]["source"].strip())
    payloads = [b["payload"] for b in answer["buttons"]]
    assert payloads[-1] == "/request_human"
    assert 2 <= len(payloads) - 1 <= 3


async def test_a_question_that_mentions_danger_is_answered_with_a_button_to_the_emergency_numbers(domain):
    events, messages = await run(ActionAnswerTopic(), domain, intent="ask_protect_health", slots={"language": "vi", "country": "VN"},
                                 text="Em bị đánh nhiều, giờ người vẫn đau, có chỗ nào khám miễn phí không?",
                                 parse_extra={"possible_emergency": True})
    assert slot_events(events)["topic"] == "protect.health"
    guide = get_content().guides["protect.health"]
    assert messages[0]["text"].startswith(guide.languages["vi"]["survivor"].strip()[:40])
    assert messages[-1]["text"] == get_content().messages["danger_check"]["vi"]
    assert [b["payload"] for b in messages[-1]["buttons"]] == ["/report_emergency"]
    # without the mark, no such button
    _, plain = await run(ActionAnswerTopic(), domain, intent="ask_protect_health", slots={"language": "vi", "country": "VN"},
                         text="có chỗ nào khám miễn phí không?")
    assert all(m["text"] != get_content().messages["danger_check"]["vi"] for m in plain)


@pytest.mark.parametrize("text,country", [
    ("what number can i call in thailand for help", "TH"),
    ("majikan tak bayar gaji 3 bulan, sy kat johor", "MY"),
    ("aku kerja di Malaysia, paspor ditahan", "MY"),
    ("em đang ở Campuchia, bị giữ hộ chiếu", "KH"),
    ("em dang o campuchia bi giu ho chieu", "KH"),
    ("ผมอยู่มาเลเซีย โดนยึดพาสปอร์ต", "MY"),
    ("i want to go back to vietnam", None),  # where they want to go, not where they are
    ("อยากกลับไทย", None),
])
async def test_a_question_that_says_where_the_user_is_sets_the_country(domain, text, country):
    from rasa_sdk.executor import CollectingDispatcher

    tracker = make_tracker(text=text, intent="ask_help_helplines", slots={"language": "en"})
    found = await ValidateSlotMappings().extract_country(CollectingDispatcher(), tracker, domain)
    assert found.get("country") == country


def test_thai_country_names_are_matched_as_written():
    from actions.answers import country_in_text

    content = get_content()
    assert country_in_text(content, "ลาว") == "LA" and country_in_text(content, "อยู่มาเลเซีย") == "MY"
    # folding accents would delete the vowels and tone marks and find "ลาว" (Laos) in "เล่าว่า" ("told that")
    assert country_in_text(content, "เขาเล่าว่าจะพาไปทำงาน") is None


async def test_practitioners_get_the_procedure(domain):
    _, messages = await run(ActionAnswerTopic(), domain, intent="ask_ident_referral_procedure",
                            slots={"language": "vi", "audience": "practitioner", "country": "VN"})
    guide = get_content().guides["ident.referral_procedure"]
    assert guide.languages["vi"]["practitioner"].strip()[:40] in messages[-1]["text"]


async def test_country_is_asked_once_when_the_answer_depends_on_it(domain):
    events, messages = await run(ActionAnswerTopic(), domain, intent="ask_remedy_compensation", slots={"language": "ms"})
    slots = slot_events(events)
    assert slots["topic"] == "remedy.compensation"  # set even though a question follows
    assert slots["pending_topic"] == "remedy.compensation"
    payloads = [b["payload"] for b in messages[-1]["buttons"]]
    assert '/inform_country{"country":"MY"}' in payloads
    # Asked already (the user chose "another country"): answer without asking again.
    events, messages = await run(ActionAnswerTopic(), domain, intent="ask_remedy_compensation",
                                 slots={"language": "ms", "country_asked": True})
    assert "pending_topic" in slot_events(events) and slot_events(events)["pending_topic"] is None


async def test_country_answer_then_pending_topic_with_country_note(domain):
    events, messages = await run(ActionSetCountry(), domain, text="/inform_country", intent="inform_country",
                                 entities=[{"entity": "country", "value": "MY"}],
                                 slots={"language": "en", "country": "MY", "pending_topic": "remedy.compensation"})
    guide = get_content().guides["remedy.compensation"]
    assert guide.country_notes["MY"]["en"].strip()[:30] in messages[-1]["text"]
    assert slot_events(events)["pending_topic"] is None


async def test_a_country_given_after_an_answer_adds_what_changes_for_it(domain):
    guide = get_content().guides["remedy.compensation"]
    _, messages = await run(ActionSetCountry(), domain, text="what about in thailand", intent="inform_country",
                            slots={"language": "en", "country": "TH", "topic": "remedy.compensation"})
    assert messages[0]["text"].startswith("Thank you")
    assert guide.country_notes["TH"]["en"].strip()[:30] in messages[-1]["text"]
    assert guide.languages["en"]["survivor"].strip()[:40] not in messages[-1]["text"]  # not the whole answer again
    # after an emergency: that country's emergency numbers
    _, messages = await run(ActionSetCountry(), domain, text="Thailand", intent="inform_country",
                            slots={"language": "en", "country": "TH", "topic": "help.emergency"})
    assert "1300" in messages[-1]["text"] and "15999" not in messages[-1]["text"]


async def test_session_intro_comes_once_before_the_first_reply(domain):
    events, messages = await run(ActionIntro(), domain, intent="greet", slots={"language": "th", "intro_shown": False})
    assert messages[0]["text"] == get_content().messages["intro"]["th"]
    assert slot_events(events)["intro_shown"] is True
    _, messages = await run(ActionIntro(), domain, intent="greet", slots={"language": "th", "intro_shown": True})
    assert messages == []


async def test_session_start_keeps_only_language_audience_country_and_age(domain):
    events, _ = await run(ActionSessionStart(), domain, slots={"language": "vi", "country": "VN", "topic": "reint.debt"})
    assert events[0]["event"] == "session_started"
    assert slot_events(events) == {"language": "vi", "audience": "survivor", "country": "VN", "is_minor": False}
    assert events[-1]["name"] == "action_listen"


async def test_low_confidence_offers_three_topics_and_answers_none(domain):
    events, messages = await run(ActionSearchTopics(), domain, text="paspor saya ditahan agen gimana ambilnya",
                                 intent="nlu_fallback", slots={"language": "id"})
    assert events == []
    buttons = messages[-1]["buttons"]
    assert len(buttons) == 4 and buttons[-1]["payload"] == "/request_human"
    assert "/ask_protect_documents" in [b["payload"] for b in buttons]
    assert messages[-1]["text"] == get_content().messages["fallback_suggest"]["id"]


async def test_search_works_for_thai_text(domain):
    _, messages = await run(ActionSearchTopics(), domain, text="นายจ้างไม่จ่ายค่าแรงสามเดือนแล้ว",
                            intent="nlu_fallback", slots={"language": "th"})
    assert "/ask_remedy_unpaid_wages" in [b["payload"] for b in messages[-1]["buttons"]]


@pytest.mark.parametrize("text,reason", [("我的护照被拿走了", "unsupported script"),
                                         ("kinuha ng amo ko ang passport ko", "unsupported language")])
async def test_unsupported_language_gets_a_language_choice(domain, text, reason):
    _, messages = await run(ActionAnswerTopic(), domain, text=text, intent="ask_protect_documents",
                            language_id={"language": "en", "reason": reason})
    assert len(messages[-1]["buttons"]) == 5
    assert "ภาษาไทย" in messages[-1]["text"]


async def test_out_of_scope_offers_topics_and_a_person(domain):
    _, messages = await run(ActionReply(), domain, text="who won the football", intent="out_of_scope", slots={"language": "en"})
    assert messages[-1]["text"] == get_content().messages["out_of_scope"]["en"]
    assert messages[-1]["buttons"][-1]["payload"] == "/request_human"


async def test_language_changes_only_when_the_slot_validation_says_so(domain):
    action = ValidateSlotMappings()
    dispatcher = CollectingDispatcher()
    tracker = make_tracker(text="saya nak tanya pasal gaji yang majikan tak bayar", intent="ask_remedy_unpaid_wages",
                           slots={"language": "en"},
                           language_id={"language": "ms", "confidence": 0.99, "n_words": 9, "unambiguous": False,
                                        "reason": "statistics"})
    assert await action.extract_language(dispatcher, tracker, domain) == {"language": "ms"}
    short = make_tracker(text="ok tq", intent="thank", slots={"language": "th"},
                         language_id={"language": "ms", "confidence": 0.9, "n_words": 2})
    assert await action.extract_language(dispatcher, short, domain) == {}


async def test_explicit_language_choice_answers_in_the_new_language(domain):
    events, messages = await run(ActionSetLanguage(), domain, text="can you speak thai", intent="choose_language",
                                 slots={"language": "en"})
    assert slot_events(events) == {"language": "th"}
    assert messages[-1]["text"] == get_content().messages["language_set"]["th"]
    events, messages = await run(ActionSetLanguage(), domain, text="other language please", intent="choose_language",
                                 slots={"language": "en"})
    assert events == [] and len(messages[-1]["buttons"]) == 5


async def test_helplines_for_the_users_country_with_open_status(domain):
    _, messages = await run(ActionShowHelplines(), domain, intent="ask_help_helplines",
                            slots={"language": "en", "country": "MY"})
    text = messages[0]["text"]
    assert "15999" in text and "+60192615999" in text
    assert "1300" not in text  # Thailand's line is not Malaysia's
    assert get_content().messages["open_24h"]["en"] in text


async def test_helplines_never_guess_the_country_from_the_language(domain):
    events, messages = await run(ActionShowHelplines(), domain, intent="ask_help_helplines", slots={"language": "th"})
    assert slot_events(events)["pending_topic"] == "help.helplines"
    assert messages[-1]["text"] == get_content().messages["ask_country"]["th"]


async def test_emergency_numbers_come_first_even_without_a_country(domain):
    events, messages = await run(ActionHandleEmergency(), domain, text="they locked me in help", intent="report_emergency",
                                 slots={"language": "en", "intro_shown": False})
    assert messages[0]["text"] == get_content().messages["emergency"]["en"]
    numbers = messages[1]["text"]
    for expected in ("1300", "129", "15999", "111", "1343", "117"):
        assert expected in numbers
    assert messages[-1]["buttons"][0]["payload"] == "/request_human"
    assert slot_events(events)["topic"] == "help.emergency"


async def test_children_get_child_helplines(domain):
    events, messages = await run(ActionAcknowledgeMinor(), domain, text="i am 15", intent="inform_minor",
                                 slots={"language": "en", "country": "VN"})
    assert "111" in messages[-1]["text"]
    assert slot_events(events)["is_minor"] is True


async def test_handoff_asks_consent_and_declining_creates_nothing(domain):
    events, messages = await run(ActionRequestHandoff(), domain, intent="request_human", slots={"language": "en"})
    assert slot_events(events)["handoff_stage"] == "consent"
    assert "will not see your name or phone number" in messages[-1]["text"]
    events, messages = await run(ActionHandoffConsent(), domain, intent="deny", slots={"language": "en", "handoff_stage": "consent"})
    assert slot_events(events)["handoff_stage"] is None
    assert store.all_cases() == []


async def test_handoff_without_operators_says_so_honestly(domain):
    events, messages = await run(ActionHandoffConsent(), domain, intent="affirm",
                                 slots={"language": "en", "handoff_stage": "summary", "country": "PH"})
    texts = [m["text"] for m in messages]
    assert get_content().messages["handoff_not_configured"]["en"] in texts
    assert any("1343" in t for t in texts)
    assert store.all_cases() == []


async def test_handoff_case_with_consent_holds_no_message_text(domain, monkeypatch):
    monkeypatch.setenv("WAYPOINT_OPERATORS_CHAT_ID", "-100123")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    history = [{"event": "slot", "name": "topic", "value": "remedy.unpaid_wages"},
               {"event": "slot", "name": "topic", "value": "help.talk_to_human"}]
    events, _ = await run(ActionHandoffConsent(), domain, intent="affirm", text="yes and my number is +60 12 345 6789",
                          slots={"language": "ms", "handoff_stage": "summary", "country": "MY"}, events=history)
    case = store.all_cases()[0]
    assert slot_events(events)["handoff_case"] == case["case_id"]
    assert case["summary"] == "topics: remedy.unpaid_wages, help.talk_to_human"
    assert case["topic"] == "remedy.unpaid_wages"  # what the user asked about, not "a person"
    assert "6789" not in str(case)


async def test_delete_my_data_removes_cases_and_marks_the_conversation(domain, monkeypatch):
    store.create_case("someone", "rest", "en", None, None, None)
    events, messages = await run(ActionDeleteData(), domain, intent="request_data_deletion", sender="someone",
                                 slots={"language": "en"})
    assert store.all_cases() == []
    assert messages[0]["text"] == get_content().messages["deleted"]["en"]
    assert messages[1]["custom"] == FORGET_MARKER
    assert events[-1]["event"] == "restart"


def test_redaction_removes_numbers_and_addresses():
    text = redact("call me +62 812 3456 7890 or mail a.b@example.org, passport A1234567")
    assert "7890" not in text and "example.org" not in text and "A1234567" not in text


def test_operator_hours():
    import datetime as dt

    from actions.handoff import operators_on_duty

    monday_10_bangkok = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.timezone.utc)
    monday_22_bangkok = dt.datetime(2026, 11, 30, 15, 0, tzinfo=dt.timezone.utc)
    sunday_10_bangkok = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.timezone.utc)
    spec = "mon-fri 09:00-17:00 Asia/Bangkok"
    assert operators_on_duty(monday_10_bangkok, spec)
    assert not operators_on_duty(monday_22_bangkok, spec)
    assert not operators_on_duty(sunday_10_bangkok, spec)
    assert operators_on_duty(monday_22_bangkok, "always")
    assert operators_on_duty(monday_22_bangkok, "")
    assert operators_on_duty(monday_22_bangkok, "nonsense")  # unreadable: the timeout still protects


async def test_handoff_outside_operator_hours_gives_helplines(domain, monkeypatch):
    monkeypatch.setenv("WAYPOINT_OPERATORS_CHAT_ID", "-100123")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("WAYPOINT_OPERATOR_HOURS", "sat-sat 00:00-00:01 UTC")
    _, messages = await run(ActionHandoffConsent(), domain, intent="deny",
                            slots={"language": "vi", "handoff_stage": "summary", "country": "VN"})
    assert messages[0]["text"] == get_content().messages["handoff_closed_hours"]["vi"]
    assert "111" in messages[1]["text"]
    assert store.all_cases() == []
