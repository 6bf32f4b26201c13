"""Property-based tests of every channel's input (hypothesis): random unicode,
control characters, right-to-left marks, 100 KB messages, malformed and wrongly
typed JSON, missing fields, forged button payloads (any intent, any entity
values); on the REST channel, the web chat (its webhook, delete and poll) and
Telegram's webhook. Never a 500, never a crash, no action fails, and the next
normal message is still answered."""

import json
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.servers import ROOT, Waypoint

pytestmark = pytest.mark.model

CHANNELS = ["/webhooks/rest/webhook", "/webhooks/webchat/webhook"]
OTHER_ENDPOINTS = ["/webhooks/webchat/delete", "/webhooks/webchat/poll"]
RTL_AND_CONTROL = st.sampled_from(["\u200f", "\u202e", "\u0000", "\u0007", "\ufeff", "\u2066", "\r\n", "\t", "\ud7ff"])
texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.text(max_size=20), RTL_AND_CONTROL), max_size=30).map("".join),
    st.just("a" * 100_000),
    st.just("ยาวมาก" * 20_000),
    st.just(""),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.fixed_dictionaries({"sender": st.just("hypothesis-user-0001"), "message": texts}),
    st.fixed_dictionaries({"sender": json_values, "message": json_values, "metadata": json_values}),
    st.dictionaries(st.sampled_from(["sender", "message", "metadata", "session"]), json_values, max_size=4),
    json_values,
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.just(b"{"),
    st.just(b'{"sender": "x", "message": '),
    st.just(b"\xff\xfe\x00"),
    st.just(b"[" * 5000 + b"]" * 5000),
)


@pytest.fixture(scope="module")
def waypoint(tmp_path_factory):
    server = Waypoint(
        tmp_path_factory.mktemp("hostile"),
        extra_env={"WAYPOINT_WEBCHAT_RATE_SESSION": "100000", "WAYPOINT_WEBCHAT_RATE_ADDRESS": "100000"},
    ).start()
    yield server
    server.stop()


def post(server, path, raw: bytes):
    request = urllib.request.Request(
        server.url + path, data=raw, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def still_answers(server, path):
    body = {"sender": "hypothesis-normal-0001", "message": "my boss took my passport"}
    status, raw = post(server, path, json.dumps(body).encode())
    assert status == 200, raw[:200]
    replies = json.loads(raw)
    assert any(r.get("text") for r in replies)


@pytest.mark.parametrize("path", CHANNELS + OTHER_ENDPOINTS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(body=bodies)
def test_json_bodies_never_500(waypoint, path, body):
    status, raw = post(waypoint, path, json.dumps(body).encode())
    # 503 is the channels' kind "try again" answer when a turn fails; 500 never.
    assert status != 500 and status < 504, raw[:200]


@pytest.mark.parametrize("path", CHANNELS + OTHER_ENDPOINTS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=raw_bodies)
def test_raw_bodies_never_500(waypoint, path, raw):
    status, _ = post(waypoint, path, raw)
    assert status != 500 and status < 504


def domain_intents():
    import yaml

    domain = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))
    return sorted(domain["intents"]) + ["restart", "session_start", "back", "nlu_fallback", "no_such_intent"]


ENTITY_NAMES = [
    "country",
    "nationality",
    "language_choice",
    "topic_ref",
    "language",
    "audience",
    "is_minor",
    "handoff_case",
    "handoff_stage",
    "pending_question",
    "crisis_count",
]
forged_payloads = st.builds(
    lambda intent, entities, tail: "/" + intent + (json.dumps(entities) if entities else "") + tail,
    st.sampled_from(domain_intents()),
    st.one_of(st.none(), st.dictionaries(st.sampled_from(ENTITY_NAMES), json_values, max_size=3)),
    st.sampled_from(["", "", "{", "}", " extra words", '{"country": ']),
).filter(lambda p: len(p) < 2000)


def rasa_log(server) -> str:
    return "".join(p.read_text(errors="replace") for p in server.var.glob("rasa*.log"))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(payload=forged_payloads)
def test_forged_button_payloads_are_answered_and_never_break_an_action(waypoint, payload):
    """Anyone can type what a button sends ("/inform_country{...}") with any
    intent and any entity values. Every one is answered (never a 500, never an
    empty reply), and no action fails on it: an action that fails counts
    towards the circuit breaker, which would then answer every user with the
    degraded text (plugins/action_guard.py)."""
    body = {"sender": "hypothesis-forged-0001", "message": payload}
    status, raw = post(waypoint, "/webhooks/rest/webhook", json.dumps(body).encode())
    assert status == 200, raw[:300]
    replies = json.loads(raw)
    assert replies and all((r.get("text") or "").strip() or r.get("buttons") for r in replies), replies


def test_no_action_failed_during_the_storm(waypoint):
    log = rasa_log(waypoint)
    assert "action server:" not in log and "circuit breaker open" not in log, [
        line for line in log.splitlines() if "action server" in line
    ][:5]
    actions_log = (waypoint.var / "actions.log").read_text(errors="replace")
    assert "Traceback" not in actions_log and "Exception" not in actions_log, [
        line for line in actions_log.splitlines() if "Error" in line or "Exception" in line
    ][:5]


@pytest.mark.parametrize("path", CHANNELS)
def test_normal_message_still_answered_after_the_storm(waypoint, path):
    still_answers(waypoint, path)


# -- Telegram's webhook, with python-telegram-bot talking to a local fake Bot API ----------------

TG_TOKEN = "123456:hostile-input-token"
TG_SECRET = "hostile-secret-value"


@pytest.fixture(scope="module")
def telegram(tmp_path_factory):
    from tests.fake_telegram import FakeTelegram

    fake = FakeTelegram(TG_TOKEN).start()
    server = Waypoint(
        tmp_path_factory.mktemp("hostile-tg"),
        extra_env={
            "TELEGRAM_BOT_TOKEN": TG_TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": TG_SECRET,
            "TELEGRAM_API_BASE_URL": fake.url,
            "TELEGRAM_MAX_MESSAGES_PER_MINUTE": "100000",
        },
    ).start()
    yield server, fake
    server.stop()
    fake.stop()


def post_update(server, raw: bytes):
    request = urllib.request.Request(
        server.url + "/webhooks/telegram/webhook",
        data=raw,
        method="POST",
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


update_ids = st.integers(min_value=1, max_value=2**31)
messages = st.fixed_dictionaries(
    {
        "message_id": st.one_of(st.integers(min_value=1, max_value=10**6), json_values),
        "date": st.one_of(st.integers(min_value=0), json_values),
        "chat": st.one_of(
            st.fixed_dictionaries({"id": st.integers(min_value=1, max_value=10**10), "type": st.just("private")}),
            json_values,
        ),
        "from": st.one_of(
            st.fixed_dictionaries(
                {
                    "id": st.integers(min_value=1, max_value=10**10),
                    "is_bot": st.booleans(),
                    "first_name": st.text(max_size=10),
                }
            ),
            json_values,
        ),
        "text": st.one_of(texts, json_values),
    }
)
updates = st.one_of(
    st.fixed_dictionaries({"update_id": update_ids, "message": messages}),
    st.fixed_dictionaries({"update_id": update_ids, "edited_message": messages}),
    st.fixed_dictionaries({"update_id": update_ids, "callback_query": json_values}),
    st.dictionaries(
        st.sampled_from(["update_id", "message", "callback_query", "my_chat_member"]), json_values, max_size=3
    ),
    json_values,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(update=updates)
def test_telegram_updates_never_500(telegram, update):
    server, _ = telegram
    assert post_update(server, json.dumps(update).encode()) in (200, 400, 403)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=raw_bodies)
def test_telegram_raw_bodies_never_500(telegram, raw):
    server, _ = telegram
    assert post_update(server, raw) in (200, 400, 403)


def test_telegram_still_answers_after_the_storm(telegram):
    from tests.fake_telegram import text_update

    server, fake = telegram
    chat_id = 7_000_000_001
    assert (
        post_update(server, json.dumps(text_update(chat_id, "my boss took my passport", update_id=2**31 + 5)).encode())
        == 200
    )
    assert fake.wait_for_texts(chat_id, count=2)
