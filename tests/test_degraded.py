"""Never silence when the action server fails (plugins/action_guard.py).

The action server and the Rasa server are started on their own (tests/servers.py)
with a 2 s deadline per action call (WAYPOINT_ACTION_TIMEOUT_SECONDS) and a
circuit breaker that tries the action server again after 3 s
(WAYPOINT_BREAKER_RESET_SECONDS). Mid-conversation the action server is frozen
(SIGSTOP), then resumed, then killed (SIGKILL) and started again:

- a message about danger now gets the emergency numbers (999 for Malaysia) from
  the Rasa server itself within 10 s, in English and in Malay;
- an ordinary question gets the short kind message in the user's language
  within 10 s, on the REST channel and on the web chat channel alike;
- never an empty reply, never a 500;
- after the breaker's reset the next message is answered normally again.

The time of every degraded answer is measured; the module's last test prints
them (``pytest -s``) and writes them to degraded-timings.json in its folder.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import pytest

from content.loader import data_dir, load_content
from tests.servers import ROOT, ActionServer, RasaServer

MODEL = pytest.mark.model

DEADLINE, RESET = 2, 3
LIMIT = 10.0  # seconds a degraded answer may take
CRISIS = {
    "en": "im in Malaysia, my boss is beating us right now, help",
    "ms": "saya di malaysia, majikan pukul kami sekarang, tolong",
}
OPENING = {"en": "my boss took my passport and wont give it back", "ms": "majikan tak bayar gaji saya dah 3 bulan"}
QUESTION = {
    "en": ("what are my rights?", "protect.rights_overview"),
    "ms": ("apa hak saya sebagai mangsa?", "protect.rights_overview"),
}
TIMINGS: Dict[str, float] = {}


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    var = tmp_path_factory.mktemp("degraded")
    env = {
        "WAYPOINT_ACTION_TIMEOUT_SECONDS": str(DEADLINE),
        "WAYPOINT_BREAKER_RESET_SECONDS": str(RESET),
        "WAYPOINT_BREAKER_FAILURES": "2",
    }
    actions = ActionServer(var / "actions", env).start()
    rasa = RasaServer(var / "rasa", ROOT / "endpoints.yml", actions, env=env)
    try:
        rasa.start()
        yield rasa, actions
    finally:
        if actions.alive():
            os.killpg(actions.pid, signal.SIGCONT)
        rasa.stop()
        actions.stop()
        (var / "degraded-timings.json").write_text(json.dumps(TIMINGS, indent=1))


def post(server: RasaServer, path: str, body: Dict[str, Any], timeout: float = 60) -> Tuple[int, Any, float]:
    """(status, JSON body, seconds) of one request; never raises for an HTTP status."""
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, (json.loads(raw) if raw else None), time.monotonic() - started


def say(server: RasaServer, sender: str, text: str, label: Optional[str] = None) -> Tuple[List[Dict], float]:
    """The REST channel's replies (must be a 200 with at least one text) and the time taken."""
    status, replies, seconds = post(server, "/webhooks/rest/webhook", {"sender": sender, "message": text})
    assert status == 200, (status, replies)
    assert replies and all((r.get("text") or "").strip() for r in replies if "buttons" not in r), replies
    assert texts(replies).strip(), "an empty reply"
    if label:
        TIMINGS[label] = round(seconds, 2)
    return replies, seconds


def texts(replies: List[Dict]) -> str:
    return "\n".join(r.get("text") or "" for r in replies or [])


def answered_normally(content, replies: List[Dict], topic: str, lang: str) -> bool:
    return content.guides[topic].text(lang, "survivor")[:40] in texts(replies)


def freeze(actions: ActionServer) -> None:
    os.killpg(actions.pid, signal.SIGSTOP)


def resume(actions: ActionServer) -> None:
    os.killpg(actions.pid, signal.SIGCONT)


def wait_health(actions: ActionServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(actions.health_url(), timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError("the action server did not answer /health")


@MODEL
def test_the_conversations_start_normally(stack, content):
    rasa, _ = stack
    for lang in ("en", "ms"):
        replies, _ = say(rasa, f"degraded-{lang}", OPENING[lang])
        assert replies[0]["text"] == content.messages["intro"][lang]
        topic = "protect.documents" if lang == "en" else "remedy.unpaid_wages"
        assert answered_normally(content, replies, topic, lang)
        assert rasa.tracker(f"degraded-{lang}")["slots"]["language"] == lang


def check_crisis_answer(content, replies: List[Dict], lang: str) -> None:
    """The Rasa server's own crisis answer: lead, every country's emergency
    numbers (the country was never stored: the slot validation did not run),
    and the note that the rest of the assistant is not answering."""
    all_text = texts(replies)
    assert "999" in all_text, all_text
    assert replies[0]["text"] == content.messages["emergency"][lang]
    assert content.messages["numbers_intro_emergency_all"][lang] in all_text
    assert replies[-1]["text"] == content.messages["degraded_after_crisis"][lang]
    assert content.messages["intro"][lang] not in all_text


@MODEL
@pytest.mark.parametrize("lang", ["en", "ms"])
def test_frozen_action_server_a_crisis_gets_the_numbers_within_10_s(stack, content, lang):
    rasa, actions = stack
    freeze(actions)
    try:
        replies, seconds = say(rasa, f"degraded-{lang}", CRISIS[lang], f"frozen crisis {lang}")
        assert seconds < LIMIT, f"{seconds:.1f} s"
        check_crisis_answer(content, replies, lang)
        question, _ = QUESTION[lang]
        replies, seconds = say(rasa, f"degraded-{lang}", question, f"frozen question {lang}")
        assert seconds < LIMIT, f"{seconds:.1f} s"
        assert texts(replies) == content.messages["degraded"][lang]
    finally:
        resume(actions)
    time.sleep(RESET + 1)  # the next test starts with the breaker ready to try again


@MODEL
def test_frozen_action_server_a_new_conversation_is_answered_too(stack, content):
    """The first message of a conversation also starts a session (one more
    action call): still within the limit, in the language the message is in."""
    rasa, actions = stack
    freeze(actions)
    try:
        replies, seconds = say(rasa, "degraded-new-ms", CRISIS["ms"], "frozen crisis, first message, ms")
        assert seconds < LIMIT, f"{seconds:.1f} s"
        check_crisis_answer(content, replies, "ms")
    finally:
        resume(actions)
    time.sleep(RESET + 1)


@MODEL
def test_frozen_action_server_web_chat_and_rest_answer_with_the_degraded_text(stack, content):
    rasa, actions = stack
    freeze(actions)
    try:
        say(rasa, "degraded-channels-warmup", "hello", "frozen, breaker opening")  # opens the breaker
        body = {"sender": "degradedwebchat00001", "message": "what are my rights?", "metadata": {"language_hint": "en"}}
        status, replies, seconds = post(rasa, "/webhooks/webchat/webhook", body)
        TIMINGS["frozen web chat question"] = round(seconds, 2)
        assert status == 200 and seconds < LIMIT, (status, replies, seconds)
        assert replies == [{"text": content.messages["degraded"]["en"]}]
        body = {"sender": "degradedwebchat00002", "message": CRISIS["en"]}
        status, replies, seconds = post(rasa, "/webhooks/webchat/webhook", body)
        TIMINGS["frozen web chat crisis"] = round(seconds, 2)
        assert status == 200 and seconds < LIMIT
        assert "999" in texts(replies)
        status, replies, seconds = post(
            rasa, "/webhooks/rest/webhook", {"sender": "degraded-rest-2", "message": "what are my rights?"}
        )
        TIMINGS["frozen REST question, new conversation"] = round(seconds, 2)
        assert status == 200 and seconds < LIMIT
        assert [r["text"] for r in replies] == [content.messages["degraded"]["en"]]
    finally:
        resume(actions)
    time.sleep(RESET + 1)


@MODEL
def test_after_resume_and_the_breaker_reset_the_next_message_is_answered_normally(stack, content):
    """The same conversation that met the frozen server, after SIGCONT and the
    breaker's reset (3 s): a normal answer from the action server."""
    rasa, actions = stack
    freeze(actions)
    try:
        say(rasa, "degraded-en", QUESTION["en"][0], "frozen question en (again)")
    finally:
        resume(actions)
    time.sleep(RESET + 0.5)
    question, topic = QUESTION["en"]
    replies, seconds = say(rasa, "degraded-en", "what are my rights?", "after resume, same conversation")
    assert answered_normally(content, replies, topic, "en"), texts(replies)
    assert content.messages["degraded"]["en"] not in texts(replies)


@MODEL
def test_after_resume_a_new_conversation_is_answered_normally(stack, content):
    rasa, actions = stack
    time.sleep(RESET + 0.5)
    replies, _ = say(rasa, "degraded-after-resume-new", "what are my rights?", "after resume, new conversation")
    assert replies[0]["text"] == content.messages["intro"]["en"]
    assert answered_normally(content, replies, "protect.rights_overview", "en"), texts(replies)


@MODEL
@pytest.mark.parametrize("lang", ["en", "ms"])
def test_killed_action_server_crisis_and_question_are_answered(stack, content, lang):
    rasa, actions = stack
    actions.stop(signal.SIGKILL)
    assert not actions.alive()
    sender = f"degraded-killed-{lang}"
    replies, seconds = say(rasa, sender, CRISIS[lang], f"killed crisis {lang}")
    assert seconds < LIMIT
    check_crisis_answer(content, replies, lang)
    replies, seconds = say(rasa, sender, QUESTION[lang][0], f"killed question {lang}")
    assert seconds < LIMIT
    assert texts(replies) == content.messages["degraded"][lang]
    status, replies, seconds = post(
        rasa, "/webhooks/webchat/webhook", {"sender": f"degradedkilled{lang}web01", "message": QUESTION[lang][0]}
    )
    TIMINGS[f"killed web chat question {lang}"] = round(seconds, 2)
    assert status == 200 and seconds < LIMIT
    assert replies == [{"text": content.messages["degraded"][lang]}]


@MODEL
def test_killed_action_server_started_again_the_conversation_goes_on(stack, content):
    rasa, actions = stack
    if not actions.alive():
        actions.start()  # the same port: the Rasa server's endpoint does not change
    wait_health(actions)
    time.sleep(RESET + 0.5)
    replies, _ = say(
        rasa, "degraded-killed-en", "my boss took my passport and wont give it back", "restarted, same conversation"
    )
    assert answered_normally(content, replies, "protect.documents", "en"), texts(replies)
    assert rasa.tracker("degraded-killed-en")["slots"]["topic"] == "protect.documents"


@MODEL
def test_no_degraded_answer_was_slow_and_the_logs_name_the_failures(stack):
    rasa, _ = stack
    print("\ndegraded answers (seconds):")
    for label, seconds in TIMINGS.items():
        print(f"  {label:45s} {seconds:6.2f}")
    slow = {label: s for label, s in TIMINGS.items() if s >= LIMIT}
    assert not slow
    log = pathlib.Path(rasa.log).read_text(errors="replace") + "".join(
        p.read_text(errors="replace") for p in rasa.var.glob("*.rasa.log")
    )
    assert "circuit breaker open" in log
    for text in list(CRISIS.values()) + [q for q, _ in QUESTION.values()]:
        assert text not in log, "a message's text was logged"


# -- the breaker itself (no servers) ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    from plugins import action_guard

    fake = Clock()
    monkeypatch.setattr(action_guard.time, "monotonic", fake)
    return fake


def test_breaker_opens_after_failures_in_a_row_and_answers_at_once(clock):
    from plugins.action_guard import Breaker

    breaker = Breaker(failures=2, reset_after=RESET)
    assert breaker.allow("a") and breaker.state == "closed"
    breaker.failed("a")
    assert breaker.state == "closed" and breaker.allow("b")
    breaker.failed("b")
    assert breaker.state == "open"
    assert not breaker.allow("c")  # answered by the Rasa server at once


def test_breaker_after_the_reset_one_call_tries_and_success_closes_it(clock):
    from plugins.action_guard import Breaker

    breaker = Breaker(failures=2, reset_after=RESET)
    breaker.failed("a")
    breaker.failed("b")
    clock.now += RESET + 0.5
    assert breaker.state == "half-open"
    assert breaker.allow("c") and not breaker.allow("d")  # one try at a time
    breaker.succeeded("c")
    assert breaker.state == "closed" and breaker.allow("d")


def test_breaker_after_the_reset_the_user_who_met_the_failure_is_tried_too(clock):
    """The user whose messages met the failing action server writes again after
    the reset: that message must be the half-open try (the action server may be
    back), not refused for the user's failure of a few seconds ago. Refusing it
    also counts as a new failure that opens the breaker again for everyone, so
    a user who keeps writing keeps the breaker open for ever
    (SAME_TURN_SECONDS = 30 > WAYPOINT_BREAKER_RESET_SECONDS)."""
    from plugins.action_guard import Breaker

    breaker = Breaker(failures=2, reset_after=RESET)
    breaker.failed("user")  # action_validate_slot_mappings ran out of time
    breaker.failed("user")  # so did the action after it: open
    clock.now += RESET + 0.5
    assert breaker.state == "half-open"
    assert breaker.allow("user"), "the user's next message is refused after the reset"


def test_breaker_a_call_in_the_same_turn_as_a_failure_is_answered_at_once(clock):
    """What SAME_TURN_SECONDS is for: the action after a slot validation that
    ran out of time is not called (it would run out of time too)."""
    from plugins.action_guard import Breaker

    breaker = Breaker(failures=2, reset_after=RESET)
    breaker.failed("user")
    breaker.failed("user")
    clock.now += 0.1
    assert not breaker.allow("user")


# -- content broken on disk while the action server is down ------------------------------------------


@pytest.fixture(scope="module")
def broken_stack(tmp_path_factory):
    """A Rasa server and an action server on their own copy of the content
    (WAYPOINT_DATA_DIR), so that the test can break it."""
    import shutil

    var = tmp_path_factory.mktemp("degraded-content")
    data = var / "data"
    shutil.copytree(data_dir(), data)
    env = {
        "WAYPOINT_ACTION_TIMEOUT_SECONDS": str(DEADLINE),
        "WAYPOINT_BREAKER_RESET_SECONDS": str(RESET),
        "WAYPOINT_DATA_DIR": str(data),
    }
    actions = ActionServer(var / "actions", env).start()
    rasa = RasaServer(var / "rasa", ROOT / "endpoints.yml", actions, env=env)
    try:
        rasa.start()
        yield rasa, actions, data
    finally:
        if actions.alive():
            os.killpg(actions.pid, signal.SIGCONT)
        rasa.stop()
        actions.stop()


@MODEL
def test_a_content_edit_in_progress_does_not_cost_the_crisis_numbers(broken_stack, content):
    """data/messages.yml is being edited (a new message, not yet in every
    language: the content check fails) while the action server is frozen. The
    Rasa server's own crisis answer must still hold the numbers, in Malay: the
    last good content, as the action server keeps it (content.loader.get_content).
    The Rasa server loads the content only at its first degraded answer, so
    with a broken file at that moment it has no good version to keep."""
    import yaml

    rasa, actions, data = broken_stack
    say(rasa, "degraded-content-ms", OPENING["ms"])  # a normal start, in Malay
    messages = data / "messages.yml"
    raw = yaml.safe_load(messages.read_text(encoding="utf-8"))
    raw["messages"]["a_new_message_being_written"] = {"en": "Only in English so far."}
    messages.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    freeze(actions)
    try:
        replies, seconds = say(rasa, "degraded-content-ms", CRISIS["ms"], "frozen crisis ms, content being edited")
    finally:
        resume(actions)
    assert seconds < LIMIT
    check_crisis_answer(content, replies, "ms")
