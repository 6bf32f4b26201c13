"""Whole-conversation behaviour of the action server, turn by turn, with inline
trackers (rasa-sdk's own style): crises, children, people writing for others,
consent, typed-back numbers, answers to the assistant's own questions,
follow-ups, repeats, not understood, questions versus requests, the audience,
places. Each asserts what the user reads and the events that change the
conversation."""

from __future__ import annotations

import asyncio

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.answers import ActionAnswerTopic, ActionFollowUp, ActionSearchTopics, ActionSetCountry
from actions.conversation import ActionReply
from actions.crisis import ActionAcknowledgeMinor, ActionHandleCrisis
from actions.handoff import ActionHandoffConsent, ActionRequestHandoff
from actions.helplines import ActionShowHelplines
from actions.language import ValidateSlotMappings
from actions.privacy import ActionDeleteData, ActionExplain
from content.loader import get_content
from tests.conftest import make_tracker
from tests.conftest import run_action as run

# -- crises ---------------------------------------------------------------------------------


def test_danger_now_with_the_country_gets_its_police_number_first():
    messages, changes, out = run(
        ActionHandleCrisis(),
        "im in Malaysia and my boss is beating us right now, help",
        "report_emergency",
        slots={"country": "MY", "intro_shown": False},
        crisis=["danger"],
    )
    assert "999" in messages[0]["text"].split("\n", 3)[1] + messages[0]["text"].split("\n", 3)[2]
    assert "Waypoint" not in messages[0]["text"], "no introduction before the numbers"
    assert "15999" not in out, "a women and family line is not the emergency number"
    assert changes["topic"] == "help.emergency" and changes["crisis_count"] == 1.0


def test_the_same_crisis_again_gets_a_short_reply():
    messages, _, out = run(
        ActionHandleCrisis(),
        "help me",
        "report_emergency",
        slots={"country": "MY", "crisis_count": 1.0},
        crisis=["danger"],
        events=[{"event": "slot", "name": "topic", "value": "help.emergency"}],
    )
    assert len(messages) == 1 and "999" in out and len(out) < 200


def test_self_harm_after_a_danger_crisis_gets_its_crisis_lines_in_full():
    """The short 'I'm still here' is for the same crisis again: after the police numbers, a first message
    about ending one's life gets the crisis lines, not 'the lines above'."""
    messages, changes, out = run(
        ActionHandleCrisis(),
        "i cant anymore, i want to die",
        "report_self_harm",
        slots={"country": "MY", "crisis_count": 1.0, "topic": "help.emergency"},
        crisis=["self_harm"],
        events=[{"event": "slot", "name": "topic", "value": "help.emergency"}],
    )
    assert changes["topic"] == "help.self_harm" and "15555" in out and len(messages) > 1


def test_no_more_numbers_is_respected():
    _, changes, _ = run(ActionReply(), "stop sending so many numbers, i just want to talk", "request_fewer_numbers")
    assert changes["numbers_muted"] is True
    messages, _, out = run(
        ActionHandleCrisis(),
        "help",
        "report_emergency",
        slots={"country": "TH", "numbers_muted": True},
        crisis=["danger"],
    )
    assert len(messages) == 1 and out.count("\n") < 3


def test_self_harm_gets_crisis_lines_never_police():
    _, changes, out = run(
        ActionHandleCrisis(),
        "i have the pills from the clinic here, im going to take all of them tonight",
        "report_self_harm",
        slots={"country": "TH"},
        crisis=["self_harm"],
    )
    assert "1323" in out and "191" not in out.replace("1191", "")
    assert "lock yourself" not in out.lower()
    assert changes["topic"] == "help.self_harm"


def test_self_harm_and_danger_from_others_get_both():
    _, _, out = run(
        ActionHandleCrisis(),
        "they beat me again and i want to die",
        "report_self_harm",
        slots={"country": "TH"},
        crisis=["danger", "self_harm"],
    )
    assert "1323" in out and "191" in out


def test_self_harm_with_no_country_gets_every_crisis_line_then_the_question():
    messages, changes, out = run(ActionHandleCrisis(), "i want to end it all", "report_self_harm", crisis=["self_harm"])
    assert "1323" in out and "15555" in out and "13 11 14" in out
    assert "999" not in out and "191" not in out.replace("1191", "")
    assert changes["pending_question"] == "country" and changes["pending_topic"] == "help.self_harm"


def test_a_country_without_numbers_gets_the_home_question():
    _, changes, out = run(
        ActionHandleCrisis(),
        "aku mau bunuh diri",
        "report_self_harm",
        slots={"country": "HK", "language": "id"},
        crisis=["self_harm"],
    )
    assert changes["pending_question"] == "home"
    _, _, out = run(
        ActionHandleCrisis(),
        '/inform_country{"nationality":"ID"}',
        "inform_country",
        slots={
            "country": "HK",
            "nationality": "ID",
            "language": "id",
            "pending_question": "home",
            "pending_topic": "help.self_harm",
            "crisis_count": 1.0,
        },
        entities=[{"entity": "nationality", "value": "ID"}],
    )
    assert "+62 812 9007 0027" in out


def test_a_question_on_the_last_topic_that_mentions_danger_is_answered():
    messages, changes, out = run(
        ActionHandleCrisis(),
        "ออกไปข้างนอกเองได้ไหม หรือเขาขังไว้",
        "report_emergency",
        slots={"language": "th", "topic": "protect.shelter"},
        crisis=["danger"],
        emergency_override={"classifier_intent": "ask_protect_shelter"},
    )
    assert changes["topic"] == "protect.shelter"
    assert any(b["payload"] == "/report_emergency" for m in messages for b in m.get("buttons") or [])


# -- children and people writing for others ---------------------------------------------------------


def test_a_child_gets_the_child_line_of_their_country():
    _, changes, out = run(
        ActionAnswerTopic(),
        "I am 15 years old and I am in Thailand. They make me work and I cannot go home.",
        "ask_ident_am_i_a_victim",
        slots={"country": "TH"},
    )
    assert changes["is_minor"] is True and "1387" in out


def test_a_sister_reporting_a_child_is_spoken_to_as_the_reporter():
    _, changes, out = run(
        ActionHandleCrisis(),
        "my little sister is 15 and a man is taking her to work in a karaoke in malaysia tomorrow",
        "report_emergency",
        slots={"country": "MY"},
        crisis=["danger"],
    )
    assert changes.get("reporting_for") == "child" and "is_minor" not in changes
    assert "15999" in out and "999" in out
    assert "your fault" not in out.lower()
    _, _, out = run(
        ActionFollowUp(),
        "what do i do now",
        "ask_next_steps",
        slots={"country": "MY", "reporting_for": "child", "topic": "child.child_victims"},
    )
    assert "confront" in out.lower()


def test_a_friend_reporting_an_adult_gets_that_countrys_numbers():
    _, changes, out = run(
        ActionShowHelplines(),
        "my friend is stuck in a karaoke bar in cebu. who can i call for her?",
        "ask_help_helplines",
        confidence=0.6,
    )
    assert changes.get("reporting_for") == "adult" and "1343" in out and "is_minor" not in changes


def test_a_friend_abroad_gets_the_numbers_of_where_the_friend_is_not_of_the_writer():
    _, changes, out = run(
        ActionAnswerTopic(),
        "kawan saya umur 28 pergi kerja kat kemboja, rupanya kena paksa buat "
        "scam. pasport dia kena ambil. saya kat ipoh. dia boleh call siapa?",
        "ask_ident_forced_criminality",
        confidence=0.66,
        slots={"language": "ms", "country": "MY"},
    )
    assert changes.get("reporting_for") == "adult"
    assert "117" in out and "999" not in out.replace("15999", ""), "Cambodia's police, not Malaysia's"


def test_a_reporter_describing_a_situation_keeps_a_button_to_the_topic_asked():
    messages, _, _ = run(
        ActionAnswerTopic(),
        "my friend went to cambodia for a call centre job and now they force her "
        "to scam people and took her passport, who can she call",
        "ask_ident_forced_criminality",
        confidence=0.8,
    )
    payloads = [b["payload"] for m in messages for b in m.get("buttons") or []]
    assert "/ask_ident_forced_criminality" in payloads and "/request_human" in payloads


def test_a_child_who_gives_an_age_without_years_is_a_child():
    _, changes, out = run(
        ActionAnswerTopic(),
        "aku umur 14 kak, skrg di jakarta. disuruh kerja terus sama om yg bawa aku dari kampung",
        "ask_ident_am_i_a_victim",
        confidence=0.4,
        slots={"language": "id"},
    )
    assert changes.get("is_minor") is True and "129" in out


def test_home_numbers_asked_from_abroad_start_with_the_line_for_citizens_abroad():
    _, _, out = run(
        ActionShowHelplines(),
        "im filipino working in malaysia. whats the number back home in the philippines for OFWs in trouble?",
        "ask_help_helplines",
        slots={"country": "MY", "nationality": "PH"},
    )
    assert "+63 2 1348" in out and out.index("1348") < out.index("1343"), "reachable from abroad comes first"
    assert "999" not in out.replace("15999", "")


def test_numbers_asked_again_are_shown_again():
    _, _, out = run(
        ActionShowHelplines(),
        "and the trafficking hotline in the philippines?",
        "ask_help_helplines",
        slots={"country": "PH", "topic": "help.helplines", "answered": "help.helplines:short"},
    )
    assert "1343" in out


def test_a_child_who_mentions_family_is_still_the_child():
    _, changes, out = run(
        ActionAnswerTopic(),
        "my mum doesnt know where i am. the lady said i would be a waitress in bangkok but its not waitress. im 15",
        "ask_ident_am_i_a_victim",
        confidence=0.4,
        slots={"country": "TH"},
    )
    assert changes.get("is_minor") is True and "reporting_for" not in changes and "1387" in out


def test_a_known_reporters_question_is_answered_as_asked_with_the_danger_button():
    slots = {"country": "TH", "reporting_for": "child", "topic": "child.child_victims"}
    messages, changes, _ = run(
        ActionHandleCrisis(),
        "the agent says she owes 2000 dollars and we have to pay or they wont let her go. should we pay?",
        "report_emergency",
        slots=slots,
        crisis=["danger"],
        emergency_override={"classifier_intent": "ask_help_threats_to_family"},
    )
    assert changes["topic"] == "help.threats_to_family"
    assert "/report_emergency" in [b["payload"] for m in messages for b in m.get("buttons") or []]
    _, changes, _ = run(
        ActionAnswerTopic(),
        "agennya minta uang 10 juta biar anak saya dilepas, harus dibayar gak?",
        "ask_help_threats_to_family",
        confidence=0.44,
        slots={**slots, "language": "id"},
    )
    assert changes["topic"] == "help.threats_to_family" and "reporting_for" not in changes


def test_a_parent_is_not_a_minor():
    _, changes, _ = run(
        ActionAnswerTopic(), "my daughter is 16, can she get her passport back", "ask_protect_documents", confidence=0.9
    )
    assert "is_minor" not in changes


def test_a_practitioner_asking_about_children_is_not_a_minor():
    _, changes, _ = run(
        ActionAnswerTopic(),
        "ถ้าเป็นเด็กล่ะคะ",
        "ask_child_child_victims",
        slots={"language": "th", "audience": "practitioner"},
    )
    assert "is_minor" not in changes


# -- consent ------------------------------------------------------------------------------------------


@pytest.fixture
def operators(monkeypatch):
    monkeypatch.setenv("WAYPOINT_OPERATORS_CHAT_ID", "-1001")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "1:test")


@pytest.mark.parametrize(
    "text,intent,language",
    [
        ("eh gak jadi deh", "not_now", "id"),
        ("tak jadi lah", "not_now", "ms"),
        ("never mind", "not_now", "en"),
        ("thôi khỏi, để sau", "not_now", "vi"),
        ("ไม่เป็นไร ไว้ก่อน", "not_now", "th"),
        ("hmm maybe", "affirm", "en"),
    ],
)
def test_only_a_clear_yes_counts(operators, text, intent, language):
    slots = {"pending_question": "handoff_consent", "consent_asks": 2.0, "language": language}
    messages, changes, _ = run(ActionReply(), text, intent, slots=slots)
    assert changes.get("pending_question", "x") is None and "handoff_case" not in changes
    assert not any(m.get("custom") for m in messages)


def test_an_unclear_answer_is_asked_again_once(operators):
    _, changes, _ = run(
        ActionReply(), "what?", "nlu_fallback", slots={"pending_question": "handoff_consent", "consent_asks": 1.0}
    )
    assert changes["consent_asks"] == 2.0


def test_fear_of_being_seen_gets_a_safety_note(operators):
    _, changes, out = run(
        ActionReply(),
        "no wait not now. they might see my phone",
        "not_now",
        slots={"pending_question": "handoff_consent"},
    )
    assert "delete" in out.lower() and changes["pending_question"] is None


def test_two_clear_yeses_ask_for_a_person(operators):
    _, changes, _ = run(ActionReply(), "yes please", "affirm", slots={"pending_question": "handoff_consent"})
    assert changes["pending_question"] == "handoff_summary"
    messages, changes, _ = run(
        ActionHandoffConsent(), "/affirm", "affirm", slots={"pending_question": "handoff_summary", "country": "TH"}
    )
    marker = next(m["custom"] for m in messages if m.get("custom"))
    assert marker["waypoint"] == "handoff_requested" and marker["country"] == "TH"
    assert changes["handoff_stage"] == "waiting"


def test_a_question_about_a_person_is_answered_not_acted_on(operators):
    messages, changes, _ = run(ActionExplain(), "is a real person online now?", "ask_about_human")
    assert "pending_question" not in changes
    assert any(b["payload"] == "/request_human" for m in messages for b in m.get("buttons") or [])


def test_no_operators_is_said_honestly():
    _, changes, out = run(
        ActionRequestHandoff(), "i want to talk to a person", "request_human", slots={"country": "VN"}
    )
    assert "111" in out and "pending_question" not in changes


# -- numbers, places, the country question -------------------------------------------------------


def test_a_typed_back_number_is_not_an_age():
    _, changes, out = run(ActionSearchTopics(), "1300", "nlu_fallback", confidence=1.0)
    assert "is_minor" not in changes and "1300" in out


@pytest.mark.parametrize("text", ["113", "1800 hay 111", "1300 ok", "15999?"])
def test_numbers_read_back_are_not_an_age_even_when_the_classifier_says_so(text):
    _, changes, _ = run(ActionAcknowledgeMinor(), text, "inform_minor", slots={"language": "en"})
    assert "is_minor" not in changes


@pytest.mark.parametrize("text", ["15", "im 15", "aku 14 thn"])
def test_a_small_number_or_an_age_with_words_is_still_an_age(text):
    _, changes, _ = run(ActionAcknowledgeMinor(), text, "inform_minor", slots={"language": "en"})
    assert changes.get("is_minor") is True


@pytest.mark.parametrize(
    "text,language,country",
    [
        ("aku di surabaya", "id", "ID"),
        ("toi o ha noi", "vi", "VN"),
        ("ประเทศไทยค่ะ", "th", "TH"),
        ("saya kat KL", "ms", "MY"),
        ("im in chiang rai", "en", "TH"),
    ],
)
def test_an_answer_to_the_country_question_resumes_the_answer(text, language, country):
    slots = {"language": language, "pending_question": "country", "pending_topic": "help.helplines"}
    validation = asyncio.run(
        ValidateSlotMappings().extract_country(
            CollectingDispatcher(), make_tracker(text, "inform_country", slots=slots), {}
        )
    )
    assert validation == {"country": country}
    slots["country"] = country
    messages, changes, out = run(ActionAnswerTopic(), text, "ask_reint_going_home", slots=slots, confidence=0.4)
    assert changes.get("topic") == "help.helplines" and any(ch.isdigit() for ch in out)


def test_lao_cai_is_vietnam():
    from content.places import find

    assert find(get_content(), "toi dang o lao cai").located == "VN"
    assert find(get_content(), "เขาเล่าว่า").named == frozenset()


def test_numbers_for_the_country_asked_while_abroad():
    _, _, out = run(
        ActionShowHelplines(),
        "i'm thai, in malaysia, give me thai numbers",
        "ask_help_helplines",
        slots={"country": "MY"},
    )
    assert "1300" in out and "15999" not in out


# -- follow-ups, repeats, not understood -----------------------------------------------------------


def test_tell_me_more_then_nothing_more():
    slots = {"topic": "protect.health", "answered": "protect.health:short", "country": "TH"}
    _, changes, out = run(ActionFollowUp(), "tell me more", "ask_more", slots=slots)
    guide = get_content().guides["protect.health"]
    assert guide.text("en", "survivor_more")[:40] in out and changes["answered"] == "protect.health:more"
    slots["answered"] = "protect.health:more"
    _, _, out = run(ActionFollowUp(), "more", "ask_more", slots=slots)
    assert guide.text("en", "survivor_more")[:40] not in out


def test_the_same_question_twice_points_back():
    slots = {"topic": "protect.shelter", "answered": "protect.shelter:short"}
    messages, _, out = run(ActionAnswerTopic(), "can i leave the shelter", "ask_protect_shelter", slots=slots)
    assert len(out) < 200 and len(messages) == 1


def test_an_unsure_follow_up_is_read_against_the_last_topic():
    slots = {"language": "vi", "topic": "protect.health", "answered": "protect.health:short"}
    _, changes, _ = run(
        ActionAnswerTopic(),
        "có phải trả tiền không?",
        "ask_reint_debt",
        slots=slots,
        confidence=0.35,
        ranking=[("ask_reint_debt", 0.35), ("ask_protect_health", 0.2)],
    )
    assert changes["topic"] == "protect.health"


def test_not_understood_twice_gives_the_menu_and_a_person():
    messages, changes, _ = run(ActionSearchTopics(), "blorp", "nlu_fallback", slots={"fallback_count": 1.0})
    assert changes["fallback_count"] == 2.0
    assert any(b["payload"] == "/request_human" for m in messages for b in m.get("buttons") or [])


# -- deletion, audience, language ------------------------------------------------------------------


def test_a_question_about_deletion_deletes_nothing():
    messages, _, out = run(
        ActionExplain(),
        "kalo aku hapus aplikasinya, chatku ikut kehapus gak dari server kalian?",
        "ask_about_deletion",
        slots={"language": "id"},
    )
    assert not any(m.get("custom") for m in messages)
    assert any(b["payload"] == "/request_data_deletion" for m in messages for b in m.get("buttons") or [])


def test_a_request_deletes_and_keeps_the_language_for_the_next_message():
    messages, _, _ = run(ActionDeleteData(), "padam data saya", "request_data_deletion", slots={"language": "ms"})
    marker = next(m["custom"] for m in messages if m.get("custom"))
    assert marker == {"waypoint": "forget_conversation", "language": "ms"}


@pytest.mark.parametrize(
    "text,language,expected",
    [
        ("I'm a new police officer. How do I interview a possible trafficking victim?", "en", "practitioner"),
        ("saya bukan pekerja sosial, saya mangsa", "ms", "survivor"),
        ("saya kat KL", "ms", None),
        ("boleh tolong", "ms", None),
        ("toi so", "vi", None),
    ],
)
def test_the_audience_changes_only_on_a_statement_of_role(text, language, expected):
    slots = {"language": language, "audience": "practitioner" if expected == "survivor" else "survivor"}
    found = asyncio.run(
        ValidateSlotMappings().extract_audience(
            CollectingDispatcher(), make_tracker(text, "identify_as_practitioner", slots=slots), {}
        )
    )
    assert found == ({"audience": expected} if expected else {})


@pytest.mark.parametrize(
    "text,current", [("ok cam on a", "vi"), ("terima kasih", "ms"), ("i'm in johor now", "ms"), ("ok thanks", "th")]
)
def test_acknowledgements_and_places_never_switch_the_language(text, current):
    found = asyncio.run(
        ValidateSlotMappings().extract_language(
            CollectingDispatcher(),
            make_tracker(
                text,
                "thank",
                slots={"language": current},
                language_id={"language": "en", "confidence": 0.99, "n_words": 4, "unambiguous": False},
            ),
            {},
        )
    )
    assert found == {}


def test_minor_action_without_country_asks_it():
    _, changes, out = run(ActionAcknowledgeMinor(), "im 15", "inform_minor")
    assert changes["is_minor"] is True and changes["pending_question"] == "country" and "1387" in out


def test_a_place_after_an_answer_adds_that_countrys_note():
    _, changes, out = run(
        ActionSetCountry(),
        "what about in Malaysia?",
        "inform_country",
        slots={"topic": "protect.shelter", "answered": "protect.shelter:short"},
    )
    note = get_content().guides["protect.shelter"].country_notes["MY"]["en"]
    assert changes["country"] == "MY" and note[:30] in out


@pytest.mark.parametrize(
    "text", ["i am 23 now, when i was 15 they sold me to a karaoke", "saya umur 25, dulu umur 15 dijual"]
)
def test_an_adult_telling_of_their_childhood_is_not_taken_for_a_minor(text):
    _, changes, out = run(
        ActionAcknowledgeMinor(),
        text,
        "inform_minor",
        slots={"language": "en" if text.startswith("i") else "ms"},
        ranking=[("inform_minor", 0.6), ("ask_ident_am_i_a_victim", 0.3)],
    )
    assert "is_minor" not in changes and changes.get("topic") == "ident.am_i_a_victim"


@pytest.mark.parametrize(
    "text,language,home", [("Myanmar", "en", "MM"), ("မြန်မာ ပါ", "my", "MM"), ("Indonesia", "id", "ID")]
)
def test_the_answer_to_where_are_you_from_is_the_home_country_not_the_location(text, language, home):
    slots = {"language": language, "pending_question": "home", "country": "SG"}
    validate = ValidateSlotMappings()
    tracker = make_tracker(text, "inform_country", slots=slots)
    assert asyncio.run(validate.extract_nationality(CollectingDispatcher(), tracker, {})) == {"nationality": home}
    assert asyncio.run(validate.extract_country(CollectingDispatcher(), tracker, {})) == {}


@pytest.mark.parametrize("text,intent", [("ok", "affirm"), ("thanks", "thank")])
def test_ok_after_crisis_lines_is_met_with_a_person_not_a_menu(text, intent):
    messages, _, out = run(
        ActionReply(), text, intent, slots={"country": "MY", "topic": "help.self_harm", "crisis_count": 1.0}
    )
    assert "15555" in out and len(messages) == 1
    assert any("/request_human" in str(b.get("payload")) for b in messages[0].get("buttons") or [])


def test_not_now_for_fear_of_being_seen_gets_the_phone_safety_note():
    messages, changes, out = run(ActionReply(), "no wait not now, they might see my phone", "not_now")
    assert get_content().messages["phone_safety"]["en"] in out


def test_self_harm_when_every_crisis_line_is_closed_gets_the_emergency_number_open_at_any_hour(monkeypatch):
    from content.loader import Helpline

    monkeypatch.setattr(Helpline, "open_now", lambda self, now=None: True if self.hours.get("always") else False)
    _, _, out = run(
        ActionHandleCrisis(), "i want to die tonight", "report_self_harm", slots={"country": "MY"}, crisis=["self_harm"]
    )
    closed = get_content().messages["self_harm_lines_closed"]["en"].split("{")[0]
    assert "15555" in out and closed in out and "999" in out


def test_self_harm_when_a_crisis_line_is_open_gets_no_emergency_number(monkeypatch):
    from content.loader import Helpline

    monkeypatch.setattr(Helpline, "open_now", lambda self, now=None: True)
    _, _, out = run(
        ActionHandleCrisis(), "i want to die tonight", "report_self_harm", slots={"country": "MY"}, crisis=["self_harm"]
    )
    assert "15555" in out and "999" not in out


def test_a_country_given_inside_another_message_answers_the_pending_country_question():
    _, changes, out = run(
        ActionAcknowledgeMinor(),
        "อายุ 15 ค่ะ อยู่ไทย เขาบังคับให้ทำงาน",
        "inform_minor",
        slots={"language": "th", "country": "TH", "pending_question": "country", "pending_topic": "help.emergency"},
    )
    assert changes.get("is_minor") is True and "1387" in out
    assert "pending_question" in changes and changes["pending_question"] is None
