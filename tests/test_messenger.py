"""The Messenger channel (channels/messenger.py, channels/meta.py).

Fast tests run the channel's real Sanic blueprint on a loopback port with a
stub assistant in place of Rasa, against the fake Graph API
(tests/fake_graph.py): the handshake, signatures, retries answered once, order,
quick replies, long text, non-text, the locale hint, deletion, back-off, the
page's profile, and a live hand-off with a voice note through the operators'
Telegram chat (tests/fake_telegram.py). Hypothesis posts random signed bodies.
The end-to-end tests (marked ``model``) start the real servers."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import types
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from channels import base
from channels import state as channel_state
from channels.messenger import LISTED_LOCALES, LOCALES, MessengerInput, profile_body
from channels.messenger import setup as messenger_setup
from channels.meta import MORE_PREFIX, PAYLOAD_PREFIX, handshake, shorten, sign, signature_valid
from content import languages
from content.loader import data_dir, load_content
from content.text import utf16_len
from tests import fake_graph as fg
from tests import fake_telegram as tg

TOKEN = "EAAGfake-page-access-token"
APP_SECRET = "messenger-app-secret-0123"
VERIFY = "verify-me-4567"
ID_SECRET = "messenger-id-secret"
PSID = "6012345678901234"
OTHER = "6012345678905678"
TG_TOKEN = "123456789:AAmessenger-handoff_token"
OPS = -1001112223334
OPERATOR = tg.person(880031, "Olga", "olga_counsel")
CASE = "WP-0A1B2C"


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())


@pytest.fixture(scope="module")
def graph():
    server = fg.FakeGraph([TOKEN]).start()
    yield server
    server.stop()


@pytest.fixture
def env(graph, monkeypatch):
    graph.reset()
    for key, value in {
        "META_GRAPH_API_URL": graph.graph_url,
        "MESSENGER_PAGE_ACCESS_TOKEN": TOKEN,
        "MESSENGER_APP_SECRET": APP_SECRET,
        "MESSENGER_VERIFY_TOKEN": VERIFY,
        "WAYPOINT_ID_SECRET": ID_SECRET,
    }.items():
        monkeypatch.setenv(key, value)
    channel_state.reset()
    yield graph
    channel_state.reset()


@pytest.fixture
async def h(env):
    """The channel's blueprint served, with a stub assistant, a small agent and a relay."""
    agent = fg.small_agent()
    assistant = fg.StubAssistant(agent)
    relay = fg.make_relay()
    channel = MessengerInput(relay=relay, backoff=0.01, max_wait=5)
    async with fg.ChannelServer(channel, assistant, agent) as server:
        relay.app = server.app
        yield types.SimpleNamespace(
            server=server, channel=channel, assistant=assistant, agent=agent, relay=relay, graph=env
        )


def sender(psid: str = PSID) -> str:
    return base.sender_id_for("messenger", psid, ID_SECRET.encode(), prefix="fb")


async def send(h: Any, *events: Dict[str, Any], settle: bool = True) -> Any:
    for event in events:
        h.graph.user_wrote(event["sender"]["id"])
    response = await h.server.post(fg.messenger_body(*events), APP_SECRET)
    if settle:
        await h.channel.settle()
    return response


def texts(h: Any, psid: str = PSID) -> List[str]:
    return h.graph.messenger_texts(psid)


def say(content: Any, key: str, lang: str = "en") -> str:
    return content.messages[key][lang]


# -- the gate -------------------------------------------------------------------------------------------------


def test_signature_check_is_hmac_sha256_of_the_raw_body():
    body = b'{"object":"page","entry":[]}'
    good = sign(body, APP_SECRET)
    assert good.startswith("sha256=") and signature_valid(body, good, APP_SECRET)
    assert signature_valid(body, good.upper().replace("SHA256=", "sha256="), APP_SECRET)
    for header in (
        None,
        "",
        "sha256=",
        "sha1=" + good[7:],
        good[7:],
        sign(body + b" ", APP_SECRET),
        sign(body, "another-secret"),
        "sha256=ünïcödé",
        good + "00",
    ):
        assert not signature_valid(body, header, APP_SECRET), header
    assert not signature_valid(body, good, "")  # no app secret: nothing is valid


def test_handshake_answers_the_challenge_only_to_our_verify_token():
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    assert handshake(ok, VERIFY) == (200, "1158201444")
    assert handshake({**ok, "hub.challenge": ["77"]}, VERIFY) == (200, "77")
    for bad in (
        {**ok, "hub.verify_token": "guess"},
        {**ok, "hub.mode": "unsubscribe"},
        {k: v for k, v in ok.items() if k != "hub.challenge"},
        {},
        {**ok, "hub.challenge": "x" * 600},
    ):
        assert handshake(bad, VERIFY)[0] == 403
    assert handshake(ok, "")[0] == 403


async def test_the_handshake_through_the_webhook(h):
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "987654"}
    response = await h.server.get(ok)
    assert response.status_code == 200 and response.text == "987654"
    assert response.headers["content-type"].startswith("text/plain")
    assert (await h.server.get({**ok, "hub.verify_token": "wrong"})).status_code == 403
    assert (await h.server.get({"hub.challenge": "1"})).status_code == 403


async def test_posts_without_a_valid_signature_are_refused_and_nothing_is_processed(h, caplog):
    body = fg.messenger_body(fg.messenger_text(PSID, "SECRET-WORDS-7731"))
    raw = json.dumps(body).encode()
    with caplog.at_level(logging.DEBUG):
        for signature in (
            None,
            "sha256=" + "0" * 64,
            sign(raw, "not-the-app-secret"),
            "sha1=abc",
            sign(raw + b"\n", APP_SECRET),
        ):
            response = await h.server.post(body, None, raw=raw, signature=signature)
            assert response.status_code == 403
        await h.channel.settle()
    assert h.assistant.messages == [] and h.graph.calls == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "SECRET-WORDS" not in logged and PSID not in logged
    assert "signature" in logged  # the fact, once


# -- a message and its answer -----------------------------------------------------------------------------------


async def test_a_message_is_answered_and_rasa_sees_only_a_keyed_hash(h):
    response = await send(h, fg.messenger_text(PSID, "hello"))
    assert response.status_code == 200
    assert texts(h) == ["echo: hello"]
    message = h.assistant.messages[0]
    assert message.sender_id == sender() and PSID not in message.sender_id
    assert message.sender_id != sender(OTHER)
    assert message.input_channel == "messenger"
    assert not message.metadata or set(message.metadata) == {"language_hint"}
    tracker = await h.agent.tracker_store.retrieve(sender())
    assert PSID not in json.dumps(tracker.current_state(), default=str)
    sent = h.graph.calls_of("messenger_send")[0].body
    assert sent["messaging_type"] == "RESPONSE" and sent["recipient"]["id"] == PSID


async def test_the_address_is_stored_encrypted_only(h, tmp_path):
    await send(h, fg.messenger_text(PSID, "hello"))
    assert h.channel.target(sender())[0] == PSID
    database = channel_state.get_state().engine.url.database
    with sqlite3.connect(database) as connection:
        dump = "\n".join(
            str(row)
            for table in ("waypoint_channel_addresses", "waypoint_channel_seen")
            for row in connection.execute(f"SELECT * FROM {table}")
        )
    assert sender() in dump and PSID not in dump


async def test_the_webhook_answers_at_once_and_works_in_the_background(h):
    h.assistant.delay = 0.6
    started = time.monotonic()
    response = await send(h, fg.messenger_text(PSID, "slow question"), settle=False)
    assert response.status_code == 200 and time.monotonic() - started < 0.5
    assert texts(h) == []
    await h.channel.settle()
    assert texts(h) == ["echo: slow question"]


async def test_a_message_delivered_again_is_answered_once_even_on_another_server(h):
    event = fg.messenger_text(PSID, "only once", mid="m_same_mid_1")
    await send(h, event)
    await send(h, event)
    assert texts(h) == ["echo: only once"]
    # a second Rasa server sharing the store (a new process: empty memory)
    other_state = channel_state.ChannelState(
        channel_state.get_state().engine.url.render_as_string(False), base.id_secret()
    )
    other = MessengerInput(state=other_state, relay=h.relay)
    assert other.dispatch(other.parse(fg.messenger_body(event))) == 0
    fresh = fg.messenger_text(PSID, "new")
    assert other.dispatch(other.parse(fg.messenger_body(fresh))) == 1
    await other.settle()
    other_state.close()


async def test_a_users_messages_are_answered_in_order_and_others_are_not_held_up(h):
    h.assistant.delay = 0.15
    for i in range(5):
        await send(h, fg.messenger_text(PSID, f"message {i}"), settle=False)
    await send(h, fg.messenger_text(OTHER, "meanwhile"), settle=False)
    await h.graph.until(lambda: texts(h, OTHER), what="the other user's answer")
    assert len(texts(h)) < 5  # the other user did not wait for all five
    await h.channel.settle()
    assert texts(h) == [f"echo: message {i}" for i in range(5)]


async def test_a_batch_is_handled_in_time_order(h):
    late = fg.messenger_text(PSID, "second")
    early = fg.messenger_text(PSID, "first")
    early["timestamp"] = late["timestamp"] - 5000
    await send(h, late, early)
    assert texts(h) == ["echo: first", "echo: second"]


async def test_a_failed_or_empty_turn_is_answered_kindly(h, content):
    await send(h, fg.messenger_text(PSID, "boom"))
    await send(h, fg.messenger_text(PSID, "silence"))
    assert texts(h) == [say(content, "error_try_again")] * 2


async def test_too_fast_a_user_is_asked_once_to_slow_down(h, content):
    h.channel.limiter.limit = 3
    for i in range(6):
        await send(h, fg.messenger_text(PSID, f"m{i}"))
    assert texts(h) == ["echo: m0", "echo: m1", "echo: m2", say(content, "rate_limited")]


async def test_too_long_a_message_is_cut_and_the_user_told(h, content):
    await send(h, fg.messenger_text(PSID, "word " * 1500))
    assert texts(h)[0] == say(content, "too_long")
    assert len(h.assistant.messages[0].text) <= 4000


# -- replies -------------------------------------------------------------------------------------------------------


def topic(title: str, payload: str, short: str = "") -> Dict[str, str]:
    button = {"title": title, "payload": payload}
    if short:
        button["short_title"] = short
    return button


async def test_buttons_become_quick_replies_with_short_titles(h):
    h.assistant.script["menu"] = [
        {
            "text": "Pick one",
            "buttons": [
                topic("What to do when the employer keeps your passport", "/ask_documents", "Passport kept"),
                topic("Claiming wages that were never paid to you", "/ask_wages"),
                topic("Talk to a person", "/request_human"),
            ],
        }
    ]
    await send(h, fg.messenger_text(PSID, "menu"))
    message = h.graph.messenger_sent(PSID)[0]
    titles = [q["title"] for q in message["quick_replies"]]
    assert titles[0] == "Passport kept" and titles[2] == "Talk to a person"
    assert titles[1].endswith("…") and utf16_len(titles[1]) <= 20 and titles[1].startswith("Claiming")
    assert [q["payload"] for q in message["quick_replies"]] == ["/ask_documents", "/ask_wages", "/request_human"]
    await send(h, fg.messenger_quick_reply(PSID, titles[1], "/ask_wages"))
    assert h.assistant.texts[-1] == "/ask_wages"


async def test_more_than_13_buttons_go_on_pages(h, content):
    buttons = [topic(f"Topic number {i}", f"/topic_{i}") for i in range(20)]
    h.assistant.script["all topics"] = [{"text": "All topics", "buttons": buttons}]
    await send(h, fg.messenger_text(PSID, "all topics"))
    quick = h.graph.messenger_sent(PSID)[0]["quick_replies"]
    assert len(quick) == 13 and [q["payload"] for q in quick[:12]] == [f"/topic_{i}" for i in range(12)]
    assert quick[12]["title"] == say(content, "label_more_options") and quick[12]["payload"].startswith(MORE_PREFIX)
    await send(h, fg.messenger_quick_reply(PSID, quick[12]["title"], quick[12]["payload"]))
    page = h.graph.messenger_sent(PSID)[1]
    assert page["text"] == say(content, "more_options")
    assert [q["payload"] for q in page["quick_replies"]] == [f"/topic_{i}" for i in range(12, 20)]
    assert h.assistant.texts == ["all topics"]  # paging never reaches the assistant
    await send(
        h, fg.messenger_quick_reply(PSID, page["quick_replies"][0]["title"], page["quick_replies"][0]["payload"])
    )
    assert h.assistant.texts[-1] == "/topic_12"


async def test_long_text_is_split_at_2000_characters_with_the_buttons_last(h):
    text = "\n\n".join((f"Paragraph {i}. " + "Bạn có quyền được giúp đỡ. " * 30).strip() for i in range(8))
    h.assistant.script["long"] = [{"text": text, "buttons": [topic("Yes", "/affirm")]}]
    await send(h, fg.messenger_text(PSID, "long"))
    sent = h.graph.messenger_sent(PSID)
    assert len(sent) > 1 and all(len(m["text"]) <= 2000 for m in sent)
    assert "\n\n".join(m["text"] for m in sent) == text
    assert [bool(m.get("quick_replies")) for m in sent] == [False] * (len(sent) - 1) + [True]


async def test_a_long_payload_travels_behind_a_short_key(h):
    payload = '/inform_country{"country":"MY","note":"' + "x" * 1500 + '"}'
    h.assistant.script["country"] = [{"text": "Where?", "buttons": [topic("Malaysia", payload)]}]
    await send(h, fg.messenger_text(PSID, "country"))
    quick = h.graph.messenger_sent(PSID)[0]["quick_replies"][0]
    assert quick["payload"].startswith(PAYLOAD_PREFIX) and len(quick["payload"]) <= 1000
    await send(h, fg.messenger_quick_reply(PSID, "Malaysia", quick["payload"]))
    assert h.assistant.texts[-1] == payload
    await send(h, fg.messenger_quick_reply(PSID, "Old", PAYLOAD_PREFIX + "0123456789abcdef"))
    assert h.assistant.texts[-1] == payload  # an unknown key is not guessed


async def test_typed_text_is_never_taken_as_a_payload(h):
    await send(h, fg.messenger_text(PSID, '/inform_country{"country":"MY"}'))
    assert not h.assistant.texts[-1].startswith("/")
    await send(h, fg.messenger_text(PSID, "/help"))
    assert h.assistant.texts[-1] == "/ask_help_helplines"
    await send(h, fg.messenger_text(PSID, "/something_else now"))
    assert h.assistant.texts[-1] == "something else now"


async def test_phone_numbers_stay_plain_text(h):
    h.assistant.script["numbers"] = [{"text": "Call 1300 88 1234 or +66 2 123 4567."}]
    await send(h, fg.messenger_text(PSID, "numbers"))
    message = h.graph.messenger_sent(PSID)[0]
    assert message == {"text": "Call 1300 88 1234 or +66 2 123 4567."}


async def test_get_started_and_the_menu(h, content):
    await send(h, fg.messenger_postback(PSID, "WAYPOINT_START"))
    intro = h.graph.messenger_sent(PSID)[0]
    assert intro["text"] == say(content, "intro")
    assert [q["payload"] for q in intro["quick_replies"]] == [b["payload"] for b in languages.language_buttons()]
    await send(h, fg.messenger_postback(PSID, "WAYPOINT_LANGUAGE", "Change the language"))
    assert texts(h)[-1] == say(content, "ask_language")
    await send(h, fg.messenger_postback(PSID, "/request_human", "Talk to a person"))
    assert h.assistant.texts == ["/request_human"]


# -- what is not text ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,payload,key",
    [
        ("image", {"sticker_id": 369239263222822}, "non_text"),
        ("image", {}, "non_text"),
        ("audio", {}, "non_text"),
        ("video", {}, "non_text"),
        ("file", {}, "non_text"),
        ("fallback", {}, "non_text"),
        ("location", {"coordinates": {"lat": 3.139, "long": 101.6869}}, "personal_data_not_needed"),
    ],
)
async def test_other_kinds_of_message_get_a_kind_answer(h, content, kind, payload, key):
    await send(h, fg.messenger_attachment(PSID, kind, **payload))
    assert texts(h) == [say(content, key)]
    assert h.assistant.messages == []


async def test_echoes_reads_and_deliveries_are_not_answered(h):
    echo = fg.messenger_event(PSID, message={"mid": "m_echo", "text": "ours", "is_echo": True})
    read = fg.messenger_event(PSID, read={"watermark": 1})
    delivery = fg.messenger_event(PSID, delivery={"mids": ["m_1"], "watermark": 1})
    assert (await send(h, echo, read, delivery)).status_code == 200
    assert h.graph.calls_of("messenger_send") == [] and h.assistant.messages == []


async def test_an_edited_message_is_explained(h, content):
    await send(h, fg.messenger_event(PSID, message_edit={"mid": "m_1", "text": "changed", "num_edit": 1}))
    assert texts(h) == [say(content, "edited_message")]


# -- language ------------------------------------------------------------------------------------------------------


async def test_the_messenger_locale_is_a_hint_asked_once(h, content):
    h.graph.locales[PSID] = "th_TH"
    await send(h, fg.messenger_text(PSID, "hello"))
    await send(h, fg.messenger_attachment(PSID, "image", sticker_id=1))
    assert h.assistant.messages[0].metadata == {"language_hint": "th"}
    assert texts(h)[-1] == say(content, "non_text", "th")  # the channel's own words follow the hint
    assert len(h.graph.calls_of("profile", ok_only=False)) == 1
    call = h.graph.calls_of("profile")[0]
    assert call.params == {"fields": "locale"}  # nothing else of the profile is asked
    await send(h, fg.messenger_text(OTHER, "hello"))  # no permission, or an unknown locale: no hint
    assert h.assistant.messages[-1].metadata is None


# -- deleting ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["words", "menu"])
async def test_delete_my_data_deletes_everything_on_the_server_and_says_the_app_keeps_the_chat(h, content, how):
    await send(h, fg.messenger_text(PSID, "hello"))
    assert await h.agent.tracker_store.retrieve(sender()) is not None
    if how == "words":
        await send(h, fg.messenger_text(PSID, "delete my data"))
    else:
        await send(h, fg.messenger_postback(PSID, "WAYPOINT_DELETE", "Delete this conversation"))
        assert h.assistant.texts[-1] == "/request_data_deletion"
    assert texts(h)[-1] == say(content, "deleted_app_copy")
    assert h.assistant.messages[-1].input_channel == "messenger"  # the action server picks deleted_app_copy by it
    assert await h.agent.tracker_store.retrieve(sender()) is None
    assert h.channel.state.address("messenger", sender()) is None


async def test_when_the_assistant_cannot_delete_the_channel_does(h, content):
    await send(h, fg.messenger_text(PSID, "hello"))
    original = h.assistant.__call__

    async def failing(message):
        if message.text == "/request_data_deletion":
            raise RuntimeError("action server down")
        await original(message)

    h.channel.on_new_message = failing
    await send(h, fg.messenger_postback(PSID, "WAYPOINT_DELETE"))
    assert texts(h)[-1] == say(content, "deleted_app_copy")
    assert await h.agent.tracker_store.retrieve(sender()) is None
    assert h.channel.state.address("messenger", sender()) is None


# -- the Graph API's refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,code", [(429, None), (400, 4), (400, 17), (400, 32), (400, 613), (500, None), (503, 2)]
)
async def test_rate_limits_and_server_errors_back_off_and_retry(h, status, code):
    h.graph.fail("messenger_send", status=status, code=code, times=2)
    await send(h, fg.messenger_text(PSID, "hello"))
    calls = h.graph.calls_of("messenger_send", ok_only=False)
    assert [c.status for c in calls] == [status, status, 200]
    assert texts(h) == ["echo: hello"]


async def test_retry_after_is_respected(h):
    h.graph.fail("messenger_send", status=429, retry_after=1)
    await send(h, fg.messenger_text(PSID, "hello"))
    calls = h.graph.calls_of("messenger_send", ok_only=False)
    assert calls[1].at - calls[0].at >= 0.95


async def test_a_refusal_for_one_user_never_stops_the_others(h):
    h.graph.fail("messenger_send", status=400, code=100, times=2, match=lambda body: body["recipient"]["id"] == PSID)
    await send(h, fg.messenger_text(PSID, "one"), fg.messenger_text(OTHER, "two"))
    # the refused reply and the refused apology: neither retried
    assert [
        c.status for c in h.graph.calls_of("messenger_send", ok_only=False) if c.body["recipient"]["id"] == PSID
    ] == [400]
    assert texts(h, OTHER) == ["echo: two"] and texts(h) == []
    await send(h, fg.messenger_text(PSID, "three"))
    await send(h, fg.messenger_text(PSID, "four"))
    assert texts(h)[-1] == "echo: four"


# -- bodies that are not what we expect ------------------------------------------------------------------------


async def test_malformed_bodies_get_400_or_200_never_500_and_the_next_message_is_answered(h):
    cases = [
        (b"not json", 400),
        (b"[1, 2, 3]", 400),
        (b'"a string"', 400),
        (b"{" * 5000, 400),
        (b"[" * 100000 + b"]" * 100000, 400),
        (b'{"object": "page"', 400),
        ('{"a": "\udcff"}'.encode("utf-8", "surrogatepass"), 400),
        (b"\xff\xfe\x00", 400),
        (json.dumps({"object": "instagram", "entry": []}).encode(), 200),
        (json.dumps({"object": "page"}).encode(), 200),
        (json.dumps({"object": "page", "entry": "x"}).encode(), 200),
        (json.dumps({"object": "page", "entry": [{"messaging": [{"sender": {}}, {}, 5]}]}).encode(), 200),
        (json.dumps({"object": "page", "entry": [], "pad": "x" * 100_000}).encode(), 200),
        (
            json.dumps(fg.messenger_body(fg.messenger_text(OTHER, "lone \ud800 surrogate", mid="m_\udfff"))).encode(),
            200,
        ),
        (
            json.dumps(
                {
                    "object": "page",
                    "entry": [{"messaging": [{"sender": {"id": "1" * 10000}, "message": {"text": "x"}}]}],
                }
            ).encode(),
            200,
        ),
    ]
    for raw, expected in cases:
        response = await h.server.post(None, APP_SECRET, raw=raw)
        assert response.status_code == expected, raw[:40]
    await h.channel.settle()
    assert texts(h, OTHER) == ["echo: lone \ufffd surrogate"] or texts(h, OTHER) == ["echo: lone ? surrogate"]
    await send(h, fg.messenger_text(PSID, "still there?"))
    assert texts(h) == ["echo: still there?"]


def json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )


def messenger_shaped():
    any_value = json_values()
    ids = st.one_of(st.sampled_from([PSID, OTHER, "", "0", "../me", "1/2"]), st.integers(), any_value)
    attachment = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["image", "audio", "video", "file", "location", "fallback", "template"])
            | any_value,
            "payload": st.fixed_dictionaries(
                {}, optional={"url": st.text(max_size=40) | any_value, "sticker_id": any_value}
            )
            | any_value,
        },
    )
    message = st.fixed_dictionaries(
        {},
        optional={
            "mid": st.text(max_size=20) | any_value,
            "text": st.text(max_size=200) | any_value,
            "is_echo": any_value,
            "quick_reply": st.fixed_dictionaries({}, optional={"payload": st.text(max_size=30)}) | any_value,
            "attachments": st.lists(attachment, max_size=2) | any_value,
        },
    )
    item = st.fixed_dictionaries(
        {},
        optional={
            "sender": st.fixed_dictionaries({}, optional={"id": ids}) | any_value,
            "timestamp": st.integers() | any_value,
            "message": message | any_value,
            "postback": st.fixed_dictionaries(
                {}, optional={"payload": st.text(max_size=30) | any_value, "title": any_value, "mid": any_value}
            )
            | any_value,
            "message_edit": any_value,
            "read": any_value,
        },
    )
    entry = st.fixed_dictionaries(
        {}, optional={"id": any_value, "time": any_value, "messaging": st.lists(item, max_size=3) | any_value}
    )
    return st.fixed_dictionaries(
        {"object": st.sampled_from(["page", "instagram", "whatsapp_business_account"]) | any_value},
        optional={"entry": st.lists(entry, max_size=3) | any_value},
    )


def bodies():
    padded = st.builds(
        lambda body, size: json.dumps({**body, "padding": "x" * size}).encode(),
        messenger_shaped(),
        st.integers(0, 100_000),
    )
    return st.one_of(
        st.builds(lambda v: json.dumps(v).encode(), json_values()),
        st.builds(lambda v: json.dumps(v).encode(), messenger_shaped()),
        padded,
        st.binary(max_size=2000),
        st.binary(min_size=100_000, max_size=102_400),
    )


_fresh_users = iter(range(7000000000000000, 8000000000000000))


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(raw=bodies())
async def test_random_signed_bodies_never_get_a_500_and_the_next_message_is_answered(h, raw):
    response = await h.server.post(None, APP_SECRET, raw=raw)
    assert response.status_code in (200, 400)
    await h.channel.settle()
    user = str(next(_fresh_users))
    await send(h, fg.messenger_text(user, "are you there"))
    assert texts(h, user)[-1] == "echo: are you there"


# -- the page's profile --------------------------------------------------------------------------------------


def test_the_profile_has_get_started_a_greeting_and_a_menu_per_locale(content):
    body = profile_body()
    assert body["get_started"] == {"payload": "WAYPOINT_START"}
    assert body["greeting"][0]["locale"] == "default" and body["persistent_menu"][0]["locale"] == "default"
    for greeting in body["greeting"]:
        assert 0 < len(greeting["text"]) <= 160
    for menu in body["persistent_menu"]:
        assert [i["payload"] for i in menu["call_to_actions"]] == [
            "/ask_help_helplines",
            "/request_human",
            "WAYPOINT_LANGUAGE",
            "WAYPOINT_DELETE",
        ]
        assert all(0 < len(i["title"]) <= 30 for i in menu["call_to_actions"])
    locales = {m["locale"] for m in body["persistent_menu"]} - {"default"}
    assert locales <= set(LOCALES.values())
    assert {"th_TH", "vi_VN"} <= locales  # written in those languages
    thai = next(m for m in body["persistent_menu"] if m["locale"] == "th_TH")
    assert thai["call_to_actions"][3]["title"] == shorten(content.messages["command_delete"]["th"], 30)
    listed = profile_body(LISTED_LOCALES)
    assert all(g["locale"] in LISTED_LOCALES + ("default",) for g in listed["greeting"] + listed["persistent_menu"])


async def test_setup_sets_the_profile_and_falls_back_to_listed_locales(env, monkeypatch):
    from channels import messenger

    config = MessengerInput.config_from_env()
    assert await messenger_setup(config, backoff=0.01) == 0
    assert env.profile == profile_body()
    env.profile = None
    monkeypatch.setitem(messenger.LOCALES, "vi", "vi_ZZ")  # a locale Meta does not take
    env.rejected_locales.add("vi_ZZ")
    assert await messenger_setup(config, backoff=0.01) == 0
    locales = {m["locale"] for m in env.profile["persistent_menu"]}
    assert "vi_ZZ" not in locales and "th_TH" in locales
    env.rejected_locales.add("th_TH")
    assert await messenger_setup(config, backoff=0.01) == 1


def test_setup_command_needs_the_token(monkeypatch, capsys):
    from channels.messenger import main

    monkeypatch.delenv("MESSENGER_PAGE_ACCESS_TOKEN", raising=False)
    assert main(["setup"]) == 2
    assert main(["setup", "--print"]) == 0
    assert json.loads(capsys.readouterr().out)["get_started"]["payload"] == "WAYPOINT_START"


# -- on and off ----------------------------------------------------------------------------------------------


async def test_without_a_token_the_channel_is_off(monkeypatch, caplog):
    monkeypatch.delenv("MESSENGER_PAGE_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("WAYPOINT_ID_SECRET", ID_SECRET)
    with caplog.at_level(logging.INFO, logger="channels.meta"):
        channel = MessengerInput.from_credentials({"page-access-token": "ignored"})
    assert not channel.enabled and channel.get_output_channel() is None
    assert any("Messenger channel off" in r.getMessage() for r in caplog.records)
    agent = fg.small_agent()
    async with fg.ChannelServer(channel, fg.StubAssistant(agent), agent) as server:
        assert (await server.post(fg.messenger_body(fg.messenger_text(PSID, "hi")), APP_SECRET)).status_code == 503
        assert (
            await server.get({"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1"})
        ).status_code == 403


def test_rasa_builds_both_channels_from_credentials_yml_and_mounts_their_webhooks(env, monkeypatch, tmp_path):
    from rasa.core.channels.channel import register
    from rasa.core.run import create_http_input_channels
    from sanic import Sanic

    for key, value in {"WHATSAPP_ACCESS_TOKEN": "t", "WHATSAPP_PHONE_NUMBER_ID": "1"}.items():
        monkeypatch.setenv(key, value)
    credentials = tmp_path / "credentials.yml"
    credentials.write_text("channels.messenger.MessengerInput:\nchannels.whatsapp.WhatsAppInput:\n")
    channels = create_http_input_channels(None, str(credentials))
    assert [c.name() for c in channels] == ["messenger", "whatsapp"] and all(c.enabled for c in channels)
    Sanic.test_mode = True
    app = Sanic("test_register_meta_channels")
    register(channels, app, route="/webhooks/")
    paths = {"/" + route.path for route in app.router.routes}
    assert {"/webhooks/messenger/webhook", "/webhooks/whatsapp/webhook"} <= paths


def test_credentials_are_ignored_and_settings_read(env, monkeypatch):
    channel = MessengerInput.from_credentials({"page-access-token": "from-credentials", "secret": "x"})
    assert channel.enabled and channel.config.token == TOKEN and channel.config.app_secret == APP_SECRET
    assert channel.name() == "messenger" and channel.get_output_channel().name() == "messenger"
    monkeypatch.delenv("WAYPOINT_ID_SECRET")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert not MessengerInput().enabled  # ids could not be hidden: off


# -- the live hand-off ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def operators():
    server = tg.FakeTelegram(TG_TOKEN).start()
    server.set_member(OPS, OPERATOR["id"], "member")
    yield server
    server.stop()


async def live_case(h: Any, operators: Any, content: Any) -> Any:
    """A user asks for a person, an operator accepts: the case is live."""
    operators.reset()
    client = await fg.attach_operators(h.relay, operators, TG_TOKEN, OPS)
    h.assistant.script["a person please"] = [
        {"text": say(content, "handoff_waiting")},
        {"custom": {"waypoint": "handoff_requested", "case_id": CASE, "language": "en", "topic": None}},
    ]
    await send(h, fg.messenger_text(PSID, "a person please"))
    await h.graph.until(lambda: operators.calls_of("sendMessage", OPS), what="the case in the operators' chat")
    assert await h.relay.accept(CASE) is not None
    assert texts(h)[-1] == say(content, "handoff_connected")
    return client


async def test_a_live_hand_off_relays_text_and_a_voice_note_both_ways(h, operators, content):
    client = await live_case(h, operators, content)
    try:
        asked = len(h.assistant.messages)
        await send(h, fg.messenger_text(PSID, "my boss took my passport"))
        relayed = [c for c in operators.calls_of("sendMessage", OPS) if "my boss took my passport" in c.params["text"]]
        assert relayed and CASE in relayed[0].params["text"] and PSID not in relayed[0].params["text"]
        voice = bytes(range(256)) * 40
        url = h.graph.add_file("voice-1.mp4", voice, "audio/mp4")
        await send(h, fg.messenger_attachment(PSID, "audio", url=url))
        await h.graph.until(lambda: operators.calls_of("sendVoice", OPS), what="the voice note relayed")
        upload = operators.calls_of("sendVoice", OPS)[0]
        assert upload.files["voice"] == voice and CASE in upload.params["caption"]
        assert h.graph.calls_of("cdn")[0].authorized  # our token never went to the CDN
        photo = h.graph.add_file("photo-1.jpg", b"\xff\xd8\xff" + b"0" * 500, "image/jpeg")
        await send(h, fg.messenger_attachment(PSID, "image", url=photo))
        await h.graph.until(lambda: operators.calls_of("sendPhoto", OPS), what="the photo relayed")
        assert len(h.assistant.messages) == asked  # nothing of the live case reached the assistant

        from telegram import Update

        answer = tg.group_message_update(OPS, OPERATOR, "We can help. Are you safe?", reply_to=relayed[0].result)
        await h.relay.desk.on_update(Update.de_json(answer, client.bot))
        assert texts(h)[-1] == content.messages["handoff_counsellor"]["en"].format(text="We can help. Are you safe?")
    finally:
        await client.stop()


def set_last_message(h: Any, hours: float, psid: str = PSID) -> None:
    at = time.time() - hours * 3600
    h.channel.state.put_address("messenger", sender(psid), json.dumps({"id": psid, "at": int(at)}))
    h.graph.user_wrote(psid, at)


async def test_after_24_hours_a_counsellor_answers_with_the_human_agent_tag_and_after_7_days_not_at_all(
    h, operators, content
):
    client = await live_case(h, operators, content)
    try:
        set_last_message(h, 30)
        assert await h.channel.push(sender(), [{"text": "Counsellor: still here"}])
        last = h.graph.calls_of("messenger_send")[-1].body
        assert last["messaging_type"] == "MESSAGE_TAG" and last["tag"] == "HUMAN_AGENT"
        set_last_message(h, 8 * 24)
        before = len(h.graph.calls_of("messenger_send", ok_only=False))
        assert not await h.channel.push(sender(), [{"text": "Counsellor: hello?"}])
        assert len(h.graph.calls_of("messenger_send", ok_only=False)) == before  # not even tried
        assert not await h.channel.push(sender(OTHER), [{"text": "to nobody"}])  # no address known
    finally:
        await client.stop()


# -- logs ----------------------------------------------------------------------------------------------------------


async def test_logs_hold_no_text_and_no_messenger_ids(h, caplog):
    h.graph.locales[PSID] = "ms_MY"
    with caplog.at_level(logging.DEBUG):
        await send(h, fg.messenger_text(PSID, "PRIVATE-TEXT-4455 where is my passport"))
        h.graph.fail("messenger_send", status=400, code=100)
        await send(h, fg.messenger_text(PSID, "PRIVATE-TEXT-9911"))
        await send(h, fg.messenger_text(PSID, "delete my data"))
    logged = "\n".join(r.getMessage() + str(r.args or "") for r in caplog.records)
    for secret in (PSID, "PRIVATE-TEXT", TOKEN, APP_SECRET):
        assert secret not in logged, secret


# -- end to end: the real servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(graph, tmp_path_factory):
    env = {
        "META_GRAPH_API_URL": graph.graph_url,
        "MESSENGER_PAGE_ACCESS_TOKEN": TOKEN,
        "MESSENGER_APP_SECRET": APP_SECRET,
        "MESSENGER_VERIFY_TOKEN": VERIFY,
        "WAYPOINT_ID_SECRET": ID_SECRET,
    }
    with fg.meta_servers(tmp_path_factory.mktemp("messenger"), "channels.messenger.MessengerInput", env) as rasa:
        yield rasa


def post_to(server: Any, body: Dict[str, Any]) -> int:
    return fg.post_signed(server, "messenger", body, APP_SECRET)


def wait_for_texts(graph: Any, user: str, count: int, timeout: float = 90) -> List[str]:
    """The user's texts once there are ``count`` and no more come for a moment."""
    return fg.settled_texts(lambda: graph.messenger_texts(user), count, timeout=timeout)


@pytest.mark.model
def test_end_to_end_a_question_is_answered_in_the_locale_language_and_deleted(servers, graph, content):
    psid = "6099990000001111"
    graph.locales[psid] = "vi_VN"
    graph.user_wrote(psid)
    assert post_to(servers, fg.messenger_body(fg.messenger_text(psid, "xin chào"))) == 200
    first = wait_for_texts(graph, psid, 1)
    assert first
    tracker = servers.tracker(sender(psid))
    assert tracker["sender_id"] == sender(psid) and psid not in json.dumps(tracker)
    assert tracker["slots"].get("language") == "vi"
    count = len(graph.messenger_texts(psid))
    assert post_to(servers, fg.messenger_body(fg.messenger_postback(psid, "WAYPOINT_DELETE"))) == 200
    deleted = wait_for_texts(graph, psid, count + 1)
    messages = content.messages["deleted_app_copy"]
    assert (messages.get("vi") or messages["en"]) in deleted[count:]
    events = servers.tracker(sender(psid)).get("events") or []
    assert not [e for e in events if e.get("event") == "user"]  # a new, empty conversation


@pytest.mark.model
def test_end_to_end_a_retry_and_a_bad_signature(servers, graph):
    psid = "6099990000002222"
    graph.user_wrote(psid)
    event = fg.messenger_text(psid, "hello", mid="m_e2e_retry_1")
    assert post_to(servers, fg.messenger_body(event)) == 200
    assert post_to(servers, fg.messenger_body(event)) == 200
    answered = wait_for_texts(graph, psid, 2)  # the introduction and the answer to "hello"
    time.sleep(3)
    assert graph.messenger_texts(psid) == answered  # the retried delivery answered nothing more
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        servers.url + "/webhooks/messenger/webhook",
        data=b"{}",
        method="POST",
        headers={"X-Hub-Signature-256": "sha256=" + "0" * 64},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
