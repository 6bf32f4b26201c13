"""End to end: the servers started as `make run` starts them, the REST channel,
the token-guarded HTTP API, deletion, and logs without user text."""

import re
import urllib.error

import pytest

from content.languages import CODES as LANGUAGES
from content.loader import data_dir, intent_for_topic, load_content
from content.nlu_files import sample
from tests.servers import Waypoint

pytestmark = pytest.mark.model
QUOTED = re.compile(r'["«“]([^"»”]+)["»”]')  # the words the introduction teaches, in each language's quotes


@pytest.fixture(scope="module")
def waypoint(tmp_path_factory):
    server = Waypoint(tmp_path_factory.mktemp("waypoint")).start()
    yield server
    assert server.stop() in (0, 130, -2, 143)


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())


def texts(replies):
    return "\n".join(r.get("text", "") for r in replies)


def user_events(tracker):
    return [e for e in tracker["events"] if e.get("event") == "user"]


@pytest.mark.parametrize(
    "lang,message,topic",
    [
        ("en", "my boss took my passport and wont give it back", "protect.documents"),
        ("id", "paspor saya ditahan sama majikan, gimana cara ambilnya", "protect.documents"),
        ("ms", "majikan simpan pasport saya, macam mana nak ambil balik", "protect.documents"),
        ("vi", "chủ giữ hộ chiếu của tôi không trả, tôi phải làm sao", "protect.documents"),
        ("th", "นายจ้างยึดพาสปอร์ตไม่ยอมคืน ทำยังไงดี", "protect.documents"),
    ],
)
def test_a_question_in_each_language(waypoint, content, lang, message, topic):
    sender = f"e2e-{lang}"
    replies = waypoint.say(sender, message)
    assert replies[0]["text"] == content.messages["intro"][lang]  # what I am, delete, help now
    assert content.guides[topic].text(lang, "survivor")[:30] in texts(replies)
    slots = waypoint.tracker(sender)["slots"]
    assert slots["language"] == lang
    assert slots["topic"] == topic
    assert slots["audience"] == "survivor"
    # the introduction once per session
    replies = waypoint.say(sender, message)
    assert content.messages["intro"][lang] not in texts(replies)


def test_language_is_sticky_and_can_be_chosen(waypoint, content):
    sender = "e2e-sticky"
    waypoint.say(sender, "gaji saya belum dibayar tiga bulan, bisa minta tolong?")
    assert waypoint.tracker(sender)["slots"]["language"] == "id"
    waypoint.say(sender, "ok")
    assert waypoint.tracker(sender)["slots"]["language"] == "id"
    replies = waypoint.say(sender, "can you speak thai?")
    assert waypoint.tracker(sender)["slots"]["language"] == "th"
    assert content.messages["language_set"]["th"] in texts(replies)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_introduction_follows_a_language_choice(waypoint, content, lang):
    """Choosing a language first (the web page's picker, a language button) is
    confirmed, and the session's introduction (what I am, how to delete, the
    emergency word) follows at once in the language chosen; the first answer
    then comes without it."""
    sender = f"e2e-choice-{lang}"
    replies = waypoint.say(sender, f'/choose_language{{"language_choice":"{lang}"}}')
    assert [r["text"] for r in replies] == [content.messages["language_set"][lang], content.messages["intro"][lang]]
    replies = waypoint.say(sender, "/ask_protect_documents")
    assert content.messages["intro"][lang] not in texts(replies)
    assert content.guides["protect.documents"].text(lang, "survivor")[:30] in texts(replies)


def test_channel_hint_decides_an_ambiguous_first_word(waypoint):
    waypoint.say("e2e-hint", "tolong", metadata={"language_hint": "ms-MY"})
    assert waypoint.tracker("e2e-hint")["slots"]["language"] == "ms"


def test_practitioner_audience(waypoint, content):
    sender = "e2e-practitioner"
    replies = waypoint.say(sender, "I am a social worker at a shelter")
    assert waypoint.tracker(sender)["slots"]["audience"] == "practitioner"
    assert content.messages["audience_practitioner"]["en"] in texts(replies)
    replies = waypoint.say(sender, "/ask_ident_indicators")  # practitioners get the procedure and its source at once
    guide = content.guides["ident.indicators"]
    assert guide.text("en", "practitioner")[:30] in texts(replies)
    assert guide.text("en", "source")[:30] in texts(replies)


def test_emergency_comes_first(waypoint, content):
    """Numbers first: no introduction and no question before them."""
    replies = waypoint.say("e2e-emergency", "they locked me in the room and he is beating me, help")
    assert replies[0]["text"] == content.messages["numbers_intro_emergency_all"]["en"]
    assert "999" in replies[1]["text"] and "191" in replies[1]["text"]
    assert content.messages["intro"]["en"] not in texts(replies)
    slots = waypoint.tracker("e2e-emergency")["slots"]
    assert slots["topic"] == "help.emergency" and slots["pending_question"] == "country"
    # the country given: its numbers in full
    replies = waypoint.say("e2e-emergency", "malaysia")
    assert "999" in texts(replies) and "191" not in texts(replies)
    assert waypoint.tracker("e2e-emergency")["slots"]["country"] == "MY"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_words_the_introduction_teaches_work_in_every_language(waypoint, content, lang):
    """The introduction says what to type to delete the conversation and in an
    emergency (the two quoted phrases); both must do that, alone, as a first message."""
    delete_phrase, emergency_word = QUOTED.findall(content.messages["intro"][lang])
    sender = f"e2e-intro-{lang}"
    replies = waypoint.say(sender, emergency_word, metadata={"language_hint": lang})
    assert replies[0]["text"] == content.messages["numbers_intro_emergency_all"][lang], emergency_word
    assert waypoint.tracker(sender)["slots"]["topic"] == "help.emergency"
    assert waypoint.tracker(sender)["slots"]["language"] == lang
    replies = waypoint.say(sender, delete_phrase)
    assert texts(replies) == content.messages["deleted"][lang], delete_phrase
    assert not user_events(waypoint.tracker(sender)), delete_phrase


def test_api_needs_the_token(waypoint):
    with pytest.raises(urllib.error.HTTPError) as error:
        waypoint.request("GET", "/conversations/e2e-en/tracker")
    assert error.value.code in (401, 403)


def test_delete_my_data_leaves_nothing(waypoint, content):
    sender = "e2e-delete"
    marker = "ZEBRA-7781-MARKER"
    waypoint.say(sender, f"my boss took my passport {marker} call me on +60 12 555 0199")
    assert waypoint.tracker(sender)["events"]
    replies = waypoint.say(sender, "delete my data")
    assert texts(replies) == content.messages["deleted"]["en"]
    assert "waypoint" not in str(replies)  # the deletion marker never reaches the user
    tracker = waypoint.tracker(sender)
    assert marker not in str(tracker) and not user_events(tracker)
    files = [p for p in waypoint.var.rglob("*") if p.is_file()]
    for path in files:
        assert marker.encode() not in path.read_bytes(), f"{path.name} still holds the user's text"
    # the next message is still answered in the deleted conversation's language
    waypoint.say("e2e-delete-vi", "chủ giữ hộ chiếu của tôi không trả, tôi phải làm sao")
    waypoint.say("e2e-delete-vi", "xóa dữ liệu")
    waypoint.say("e2e-delete-vi", "ok")
    assert waypoint.tracker("e2e-delete-vi")["slots"]["language"] == "vi"


def test_logs_hold_no_user_text(waypoint):
    secret = "QUOKKA-5521"
    waypoint.say("e2e-logs", f"my name is {secret} and I need help with my salary")
    for path in waypoint.var.rglob("*.log"):
        assert secret not in path.read_text(errors="replace"), f"{path.name} logged the user's text"


def test_a_person_without_counsellors_configured_gets_helplines(waypoint, content):
    """No operators' chat configured (make run's default): the user is told
    plainly and offered helplines, never a consent question for a chat that
    cannot happen."""
    sender = "e2e-person"
    replies = waypoint.say(sender, "can i talk to a real person please")
    assert content.messages["handoff_not_configured"]["en"] in texts(replies)
    assert content.messages["handoff_consent"]["en"] not in texts(replies)
    assert any(b["payload"] == "/ask_help_helplines" for r in replies for b in r.get("buttons", []))
    assert waypoint.tracker(sender)["slots"]["pending_question"] is None


def test_a_child_gets_the_child_answer(waypoint, content):
    sender = "e2e-child"
    replies = waypoint.say(sender, "i am only 15 years old")
    slots = waypoint.tracker(sender)["slots"]
    assert slots["is_minor"] is True
    assert content.messages["minor"]["en"] in texts(replies)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_topic_is_reachable_in_every_language(waypoint, content, lang):
    """Each topic's button (its intent payload) leads to its answer in the
    conversation's language: the short answer with a "Tell me more" button,
    whose detail ends with the source. Crises, a person, helplines and deletion
    have their own replies."""
    sender = f"e2e-reach-{lang}"
    choose = f'/choose_language{{"language_choice":"{lang}"}}'
    waypoint.say(sender, choose)
    for topic, guide in content.guides.items():
        if topic in ("help.emergency", "help.self_harm"):
            crisis_sender = f"e2e-reach-{lang}-{topic}"
            waypoint.say(crisis_sender, choose)
            text = texts(waypoint.say(crisis_sender, "/" + intent_for_topic(topic)))
            intro = "numbers_intro_emergency_all" if topic == "help.emergency" else "numbers_intro_crisis_all"
            assert content.messages[intro][lang] in text, topic
            assert guide.text(lang, "survivor")[:25] in text, topic
            assert waypoint.tracker(crisis_sender)["slots"]["topic"] == topic
            continue
        replies = waypoint.say(sender, "/" + intent_for_topic(topic))
        text = texts(replies)
        if topic == "help.talk_to_human":
            assert content.messages["handoff_not_configured"][lang] in text, topic
            continue
        if topic == "help.delete_my_data":
            assert text == content.messages["deleted"][lang], topic
            waypoint.say(sender, choose)
            continue
        if topic == "help.helplines":
            assert "☎" in text or content.messages["ask_country"][lang] in text, topic
            if content.messages["ask_country"][lang] in text:
                text = texts(waypoint.say(sender, '/inform_country{"country":"TH"}'))
                assert "1300" in text, topic
            continue
        assert waypoint.tracker(sender)["slots"]["topic"] == topic
        assert guide.text(lang, "survivor")[:25] in text, topic
        assert content.messages["intro"][lang] not in text
        more = [b["payload"] for r in replies for b in r.get("buttons", []) if b["payload"].startswith("/ask_more")]
        assert more == [f'/ask_more{{"topic_ref":"{topic}"}}'], topic
        text = texts(waypoint.say(sender, more[0]))
        assert guide.text(lang, "survivor_more")[:25] in text, topic
        assert guide.text(lang, "source")[:25] in text, topic


def test_the_conversation_tests_words_are_read_as_their_intents(waypoint):
    """tests/stories: `rasa test core` checks the actions the rules predict from
    each step's intent label; this checks that the trained model reads each
    step's text as that intent, in its language."""
    import pathlib

    import yaml

    wrong = []
    for path in sorted((pathlib.Path(__file__).parent / "stories").glob("*.yml")):
        for story in yaml.safe_load(path.read_text(encoding="utf-8"))["stories"]:
            lang = story["story"].split(" - ")[0]
            for step in story["steps"]:
                if "user" not in step:
                    continue
                parsed = waypoint.request("POST", f"/model/parse?token={waypoint.token}", {"text": step["user"]})
                language = (parsed.get("language_id") or {}).get("language")
                if parsed["intent"]["name"] != step["intent"]:
                    wrong.append(f"{path.name}: {step['user']!r} -> {parsed['intent']['name']}, not {step['intent']}")
                elif (
                    lang in LANGUAGES
                    and step["intent"] != "nlu_fallback"
                    and language != lang
                    and len(step["user"].split()) >= (4 if lang in ("id", "ms") else 3)
                ):  # shared short words
                    wrong.append(f"{path.name}: {step['user']!r} read as {language}, not {lang}")
    assert not wrong, wrong


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_answers_in_its_own_script(waypoint, content, lang):
    """A question as the language's training data writes it: the introduction
    and the answer in that language (Burmese, Khmer and Lao included)."""
    sender = f"e2e-own-{lang}"
    replies = waypoint.say(sender, sample(lang, "ask_protect_documents"))
    assert replies[0]["text"] == content.messages["intro"][lang]
    slots = waypoint.tracker(sender)["slots"]
    assert slots["language"] == lang and slots["topic"] == "protect.documents"
    assert content.guides["protect.documents"].text(lang, "survivor")[:30] in texts(replies)


def test_burmese_typed_in_zawgyi_is_answered_in_burmese_unicode(waypoint, content):
    """Zawgyi, the legacy encoding many Burmese phones still use, converted
    before anything reads it; the answer is Unicode Burmese."""
    import icu

    to_zawgyi = icu.Transliterator.createInstance("my-Zawgyi")
    emergency = to_zawgyi.transliterate(sample("my", "report_emergency"))
    assert emergency != sample("my", "report_emergency"), "the sample has no Zawgyi form"
    replies = waypoint.say("e2e-zawgyi", emergency)
    slots = waypoint.tracker("e2e-zawgyi")["slots"]
    assert slots["language"] == "my" and slots["topic"] == "help.emergency"
    assert replies[0]["text"] == content.messages["numbers_intro_emergency_all"]["my"]
    assert "191" in texts(replies) and "999" in texts(replies)


def test_shan_in_the_myanmar_script_is_told_in_burmese_which_languages_we_speak(waypoint, content):
    replies = waypoint.say("e2e-shan", "ၵဝ်ႈ ၶႂ်ႈ ႁႂ်ႈ ၸွႆႈထႅမ် ၶႃႈ")
    assert waypoint.tracker("e2e-shan")["slots"]["language"] == "my"
    assert "English" in texts(replies) and "ភាសាខ្មែរ" in texts(replies)
