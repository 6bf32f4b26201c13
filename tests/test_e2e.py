"""End to end: the servers started as `make run` starts them, the REST channel,
the token-guarded HTTP API, deletion, and logs without user text."""
import urllib.error

import pytest

from content.loader import load_content
from tests.servers import ROOT, Waypoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def waypoint(tmp_path_factory):
    server = Waypoint(tmp_path_factory.mktemp("waypoint")).start()
    yield server
    assert server.stop() in (0, 130, -2, 143)


@pytest.fixture(scope="module")
def content():
    return load_content(ROOT / "data")


def texts(replies):
    return "\n".join(r.get("text", "") for r in replies)


@pytest.mark.parametrize("lang,message,topic", [
    ("en", "my boss took my passport and wont give it back", "protect.documents"),
    ("id", "paspor saya ditahan sama majikan, gimana cara ambilnya", "protect.documents"),
    ("ms", "majikan simpan pasport saya, macam mana nak ambil balik", "protect.documents"),
    ("vi", "chủ giữ hộ chiếu của tôi không trả, tôi phải làm sao", "protect.documents"),
    ("th", "นายจ้างยึดพาสปอร์ตไม่ยอมคืน ทำยังไงดี", "protect.documents"),
])
def test_a_question_in_each_language(waypoint, content, lang, message, topic):
    sender = f"e2e-{lang}"
    replies = waypoint.say(sender, message)
    assert replies[0]["text"] == content.messages["intro"][lang]  # what I am, delete, help now
    assert content.guides[topic].languages[lang]["survivor"].strip()[:30] in texts(replies)
    slots = waypoint.tracker(sender)["slots"]
    assert slots["language"] == lang
    assert slots["topic"] == topic
    assert slots["audience"] == "survivor"


def test_language_is_sticky_and_can_be_chosen(waypoint, content):
    sender = "e2e-sticky"
    waypoint.say(sender, "gaji saya belum dibayar tiga bulan, bisa minta tolong?")
    assert waypoint.tracker(sender)["slots"]["language"] == "id"
    waypoint.say(sender, "ok")
    assert waypoint.tracker(sender)["slots"]["language"] == "id"
    replies = waypoint.say(sender, "can you speak thai?")
    assert waypoint.tracker(sender)["slots"]["language"] == "th"
    assert content.messages["language_set"]["th"] in texts(replies)


def test_channel_hint_decides_an_ambiguous_first_word(waypoint):
    waypoint.say("e2e-hint", "tolong", metadata={"language_hint": "ms-MY"})
    assert waypoint.tracker("e2e-hint")["slots"]["language"] == "ms"


def test_practitioner_audience(waypoint):
    sender = "e2e-practitioner"
    waypoint.say(sender, "I am a social worker at a shelter")
    assert waypoint.tracker(sender)["slots"]["audience"] == "practitioner"


def test_emergency_comes_first(waypoint, content):
    replies = waypoint.say("e2e-emergency", "they locked me in the room and he is beating me, help")
    assert replies[0]["text"] == content.messages["emergency"]["en"]


@pytest.mark.parametrize("lang", ["en", "id", "ms", "vi", "th"])
def test_the_words_the_introduction_teaches_work_in_every_language(waypoint, content, lang):
    """The introduction says what to type to delete the conversation and in an
    emergency (the two quoted phrases); both must do that, alone, as a first message."""
    import re

    delete_phrase, emergency_word = re.findall(r'"([^"]+)"', content.messages["intro"][lang])
    replies = waypoint.say(f"e2e-intro-{lang}", emergency_word, metadata={"language_hint": lang})
    assert replies[0]["text"] == content.messages["emergency"][lang], emergency_word
    assert waypoint.tracker(f"e2e-intro-{lang}")["slots"]["topic"] == "help.emergency"
    waypoint.say(f"e2e-intro-{lang}", delete_phrase)
    assert not [e for e in waypoint.tracker(f"e2e-intro-{lang}")["events"] if e.get("event") == "user"], delete_phrase


def test_api_needs_the_token(waypoint):
    with pytest.raises(urllib.error.HTTPError) as error:
        waypoint.request("GET", "/conversations/e2e-en/tracker")
    assert error.value.code in (401, 403)


def test_delete_my_data_leaves_nothing(waypoint):
    sender = "e2e-delete"
    marker = "ZEBRA-7781-MARKER"
    waypoint.say(sender, f"my boss took my passport {marker} call me on +60 12 555 0199")
    assert waypoint.tracker(sender)["events"]
    waypoint.say(sender, "delete my data")
    tracker = waypoint.tracker(sender)
    assert marker not in str(tracker)
    files = [p for p in waypoint.var.rglob("*") if p.is_file()]
    for path in files:
        assert marker.encode() not in path.read_bytes(), f"{path.name} still holds the user's text"


def test_logs_hold_no_user_text(waypoint):
    secret = "QUOKKA-5521"
    waypoint.say("e2e-logs", f"my name is {secret} and I need help with my salary")
    for path in waypoint.var.rglob("*.log"):
        assert secret not in path.read_text(errors="replace"), f"{path.name} logged the user's text"


@pytest.mark.parametrize("lang", ["en", "id", "ms", "vi", "th"])
def test_every_topic_is_reachable_in_every_language(waypoint, content, lang):
    """Each topic's button (its intent payload) leads to its answer in the
    conversation's language; the country question comes first where the answer
    depends on it, and the answer follows the country."""
    from content.loader import intent_for_topic

    sender = f"e2e-reach-{lang}"
    waypoint.say(sender, f'/choose_language{{"language_choice":"{lang}"}}')
    special = {"help.emergency": "emergency", "help.talk_to_human": "handoff_consent", "help.delete_my_data": "deleted"}
    for topic, guide in content.guides.items():
        replies = waypoint.say(sender, "/" + intent_for_topic(topic))
        text = texts(replies)
        if topic in special:
            assert content.messages[special[topic]][lang] in text, topic
            if topic == "help.delete_my_data":
                waypoint.say(sender, f'/choose_language{{"language_choice":"{lang}"}}')
            continue
        if topic == "help.helplines":
            assert "☎" in text or content.messages["ask_country"][lang] in text, topic
            continue
        assert waypoint.tracker(sender)["slots"]["topic"] == topic
        if content.messages["ask_country"][lang] in text:
            text = texts(waypoint.say(sender, '/inform_country{"country":"TH"}'))
        assert guide.languages[lang]["survivor"].strip()[:25] in text, topic
        assert guide.languages[lang]["source"].strip() in text, topic
