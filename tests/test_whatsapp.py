"""The WhatsApp channel (channels/whatsapp.py, channels/meta.py).

Fast tests run the channel's real Sanic blueprint on a loopback port with a
stub assistant in place of Rasa, against the fake Graph API
(tests/fake_graph.py): the handshake, signatures, retries answered once, order,
reply buttons and lists, long text, non-text, no language from phone numbers,
deletion, back-off, the 24-hour window, and a live hand-off with a voice note
through the operators' Telegram chat (tests/fake_telegram.py). Hypothesis posts
random signed bodies. The end-to-end tests (marked ``model``) start the real
servers."""

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
from channels.meta import EMPTY_BODY, MORE_PREFIX, PAYLOAD_PREFIX, sign
from channels.whatsapp import WhatsAppInput
from content.loader import data_dir, load_content
from content.text import utf16_len
from tests import fake_graph as fg
from tests import fake_telegram as tg

TOKEN = "EAAGfake-whatsapp-access-token"
APP_SECRET = "whatsapp-app-secret-0123"
VERIFY = "verify-whatsapp-4567"
ID_SECRET = "whatsapp-id-secret"
PHONE_ID = "1098765432101"
WA = "66812345678"  # a Thai number: says nothing about the user's language
OTHER = "60123456789"
NAME = "Somchai Test"
TG_TOKEN = "123456789:AAwhatsapp-handoff_token"
OPS = -1004445556667
OPERATOR = tg.person(880041, "Olga", "olga_counsel")
CASE = "WP-0D1E2F"


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())


@pytest.fixture(scope="module")
def graph():
    server = fg.FakeGraph([TOKEN], phone_number_id=PHONE_ID).start()
    yield server
    server.stop()


@pytest.fixture
def env(graph, monkeypatch):
    graph.reset()
    for key, value in {
        "META_GRAPH_API_URL": graph.graph_url,
        "WHATSAPP_ACCESS_TOKEN": TOKEN,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY,
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_ID,
        "WAYPOINT_ID_SECRET": ID_SECRET,
    }.items():
        monkeypatch.setenv(key, value)
    channel_state.reset()
    yield graph
    channel_state.reset()


@pytest.fixture
async def h(env):
    agent = fg.small_agent()
    assistant = fg.StubAssistant(agent)
    relay = fg.make_relay()
    channel = WhatsAppInput(relay=relay, backoff=0.01, max_wait=5)
    async with fg.ChannelServer(channel, assistant, agent) as server:
        relay.app = server.app
        yield types.SimpleNamespace(
            server=server, channel=channel, assistant=assistant, agent=agent, relay=relay, graph=env
        )


def sender(wa_id: str = WA) -> str:
    return base.sender_id_for("whatsapp", wa_id, ID_SECRET.encode(), prefix="wa")


async def send(
    h: Any,
    *messages: Dict[str, Any],
    statuses: List[Dict[str, Any]] = (),
    settle: bool = True,
    phone_number_id: str = PHONE_ID,
) -> Any:
    for message in messages:
        h.graph.user_wrote(message["from"], float(message["timestamp"]))
    response = await h.server.post(fg.whatsapp_body(phone_number_id, messages, statuses, name=NAME), APP_SECRET)
    if settle:
        await h.channel.settle()
    return response


def texts(h: Any, wa_id: str = WA) -> List[str]:
    return h.graph.whatsapp_texts(wa_id)


def sent(h: Any, wa_id: str = WA) -> List[Dict[str, Any]]:
    return h.graph.whatsapp_sent(wa_id)


def say(content: Any, key: str, lang: str = "en") -> str:
    return content.messages[key][lang]


def topic(title: str, payload: str, short: str = "") -> Dict[str, str]:
    button = {"title": title, "payload": payload}
    if short:
        button["short_title"] = short
    return button


# -- the gate -------------------------------------------------------------------------------------------------


async def test_the_handshake_through_the_webhook(h):
    ok = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1234567"}
    response = await h.server.get(ok)
    assert response.status_code == 200 and response.text == "1234567"
    for bad in ({**ok, "hub.verify_token": "verify-me-4567"}, {**ok, "hub.mode": "x"}, {}):
        assert (await h.server.get(bad)).status_code == 403


async def test_posts_without_a_valid_signature_are_refused_and_nothing_is_processed(h, caplog):
    body = fg.whatsapp_body(PHONE_ID, [fg.whatsapp_text(WA, "SECRET-WORDS-9090")], name=NAME)
    raw = json.dumps(body).encode()
    with caplog.at_level(logging.DEBUG):
        for signature in (
            None,
            "",
            "sha256=",
            sign(raw, "messenger-app-secret-0123"),
            sign(b"{}", APP_SECRET),
            "sha256=" + "f" * 64,
        ):
            assert (await h.server.post(body, None, raw=raw, signature=signature)).status_code == 403
        await h.channel.settle()
    assert h.assistant.messages == [] and h.graph.calls == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert WA not in logged and "SECRET-WORDS" not in logged and NAME not in logged


# -- a message and its answer -----------------------------------------------------------------------------------


async def test_a_message_is_answered_and_rasa_sees_no_phone_number_and_no_language(h, content):
    response = await send(h, fg.whatsapp_text(WA, "hello"))
    assert response.status_code == 200
    assert texts(h) == ["echo: hello"]
    message = h.assistant.messages[0]
    assert message.sender_id == sender() and WA not in message.sender_id and message.sender_id.startswith("wa-")
    assert message.input_channel == "whatsapp"
    assert message.metadata is None  # +66 is not Thai: no language hint from a phone number
    await send(h, fg.whatsapp_message(WA, "sticker", {"id": "1234", "mime_type": "image/webp"}))
    assert texts(h)[-1] == say(content, "non_text")  # English: nothing says otherwise
    tracker = await h.agent.tracker_store.retrieve(sender())
    dump = json.dumps(tracker.current_state(), default=str)
    assert WA not in dump and NAME not in dump
    body = h.graph.calls_of("whatsapp_send")[0].body
    assert body["to"] == WA and body["text"]["preview_url"] is False


async def test_the_address_and_message_ids_are_stored_without_the_phone_number(h):
    message = fg.whatsapp_text(WA, "hello")
    await send(h, message)
    assert h.channel.target(sender())[0] == WA
    database = channel_state.get_state().engine.url.database
    with sqlite3.connect(database) as connection:
        dump = "\n".join(
            str(row)
            for table in ("waypoint_channel_addresses", "waypoint_channel_seen")
            for row in connection.execute(f"SELECT * FROM {table}")
        )
    assert sender() in dump and WA not in dump
    assert message["id"] not in dump  # a wamid carries the phone number: only its keyed hash is kept


async def test_the_webhook_answers_at_once_and_a_retry_is_answered_once_even_on_another_server(h):
    h.assistant.delay = 0.5
    message = fg.whatsapp_text(WA, "once")
    started = time.monotonic()
    assert (await send(h, message, settle=False)).status_code == 200
    assert time.monotonic() - started < 0.45
    await send(h, message)
    assert texts(h) == ["echo: once"]
    other_state = channel_state.ChannelState(
        channel_state.get_state().engine.url.render_as_string(False), base.id_secret()
    )
    other = WhatsAppInput(state=other_state, relay=h.relay)
    assert other.dispatch(other.parse(fg.whatsapp_body(PHONE_ID, [message]))) == 0
    other_state.close()


async def test_a_users_messages_are_answered_in_order(h):
    h.assistant.delay = 0.1
    for i in range(5):
        await send(h, fg.whatsapp_text(WA, f"message {i}"), settle=False)
    await send(h, fg.whatsapp_text(OTHER, "meanwhile"), settle=False)
    await h.graph.until(lambda: texts(h, OTHER), what="the other user's answer")
    assert len(texts(h)) < 5
    await h.channel.settle()
    assert texts(h) == [f"echo: message {i}" for i in range(5)]


async def test_messages_to_another_number_of_the_account_are_left_alone(h):
    assert (await send(h, fg.whatsapp_text(WA, "hello"), phone_number_id="999000111")).status_code == 200
    assert h.assistant.messages == [] and h.graph.calls == []


async def test_a_failed_turn_is_answered_kindly(h, content):
    await send(h, fg.whatsapp_text(WA, "boom"))
    assert texts(h) == [say(content, "error_try_again")]


# -- replies -------------------------------------------------------------------------------------------------------


async def test_up_to_three_short_buttons_are_reply_buttons(h):
    h.assistant.script["yes or no"] = [
        {
            "text": "Do you agree?",
            "buttons": [
                topic("Yes", "/affirm"),
                topic("No", "/deny"),
                topic("What to do when the employer keeps your passport", "/ask_documents", "Passport kept"),
            ],
        }
    ]
    await send(h, fg.whatsapp_text(WA, "yes or no"))
    interactive = sent(h)[0]["interactive"]
    assert interactive["type"] == "button" and interactive["body"]["text"] == "Do you agree?"
    replies = [b["reply"] for b in interactive["action"]["buttons"]]
    assert [r["title"] for r in replies] == ["Yes", "No", "Passport kept"]
    assert [r["id"] for r in replies] == ["/affirm", "/deny", "/ask_documents"]
    await send(h, fg.whatsapp_reply(WA, "/affirm", "Yes"))
    assert h.assistant.texts[-1] == "/affirm"


async def test_a_long_title_without_a_short_one_goes_in_a_list_with_the_full_title_below(h):
    long_title = "Claiming the wages your employer never paid you"
    h.assistant.script["wages"] = [
        {
            "text": "Which one?",
            "buttons": [topic(long_title, "/ask_wages"), topic("Talk to a person", "/request_human")],
        }
    ]
    await send(h, fg.whatsapp_text(WA, "wages"))
    interactive = sent(h)[0]["interactive"]
    assert interactive["type"] == "list"
    rows = interactive["action"]["sections"][0]["rows"]
    assert rows[0]["title"].endswith("…") and utf16_len(rows[0]["title"]) <= 24
    assert rows[0]["description"] == long_title
    assert rows[1] == {"id": "/request_human", "title": "Talk to a person"}
    await send(h, fg.whatsapp_reply(WA, "/ask_wages", rows[0]["title"], list_reply=True))
    assert h.assistant.texts[-1] == "/ask_wages"


async def test_four_to_ten_buttons_are_a_list(h, content):
    buttons = [topic(f"Country {i}", f'/inform_country{{"country":"C{i}"}}') for i in range(10)]
    h.assistant.script["countries"] = [{"text": "Which country?", "buttons": buttons}]
    await send(h, fg.whatsapp_text(WA, "countries"))
    interactive = sent(h)[0]["interactive"]
    assert interactive["type"] == "list" and interactive["action"]["button"] == say(content, "label_options")
    rows = interactive["action"]["sections"][0]["rows"]
    assert [r["id"] for r in rows] == [b["payload"] for b in buttons]
    assert all("description" not in r for r in rows)


async def test_more_than_ten_buttons_are_the_first_nine_and_more(h, content):
    buttons = [topic(f"Topic number {i}", f"/topic_{i}", f"Topic {i}") for i in range(23)]
    h.assistant.script["all"] = [{"text": "All topics", "buttons": buttons}]
    await send(h, fg.whatsapp_text(WA, "all"))
    rows = sent(h)[0]["interactive"]["action"]["sections"][0]["rows"]
    assert len(rows) == 10 and [r["id"] for r in rows[:9]] == [f"/topic_{i}" for i in range(9)]
    assert [r["title"] for r in rows[:2]] == ["Topic 0", "Topic 1"]  # the short titles
    assert rows[9]["title"] == say(content, "label_more_options") and rows[9]["id"].startswith(MORE_PREFIX)
    await send(h, fg.whatsapp_reply(WA, rows[9]["id"], rows[9]["title"], list_reply=True))
    page = sent(h)[1]["interactive"]
    assert page["body"]["text"] == say(content, "more_options")
    rows = page["action"]["sections"][0]["rows"]
    assert [r["id"] for r in rows[:9]] == [f"/topic_{i}" for i in range(9, 18)] and rows[9]["id"].startswith(
        MORE_PREFIX
    )
    await send(h, fg.whatsapp_reply(WA, rows[9]["id"], rows[9]["title"], list_reply=True))
    last = sent(h)[2]["interactive"]
    assert last["type"] == "list"  # 5 left: no reply buttons, the short titles do fit, but more than 3
    assert [r["id"] for r in last["action"]["sections"][0]["rows"]] == [f"/topic_{i}" for i in range(18, 23)]
    assert h.assistant.texts == ["all"]


async def test_duplicate_titles_go_in_a_list(h):
    h.assistant.script["same"] = [{"text": "Pick", "buttons": [topic("Same", "/a"), topic("Same", "/b")]}]
    await send(h, fg.whatsapp_text(WA, "same"))
    assert sent(h)[0]["interactive"]["type"] == "list"


async def test_long_text_is_split_at_4096_and_the_buttons_carry_at_most_1024(h):
    text = "\n\n".join(("Đoạn %d. " % i + "Bạn có quyền được giúp đỡ miễn phí. " * 40).strip() for i in range(9))
    h.assistant.script["long"] = [{"text": text, "buttons": [topic("Yes", "/affirm"), topic("No", "/deny")]}]
    await send(h, fg.whatsapp_text(WA, "long"))
    bodies = sent(h)
    parts = [b["text"]["body"] for b in bodies if b["type"] == "text"]
    assert len(parts) > 1 and all(len(p) <= 4096 for p in parts)
    interactive = bodies[-1]["interactive"]
    assert len(interactive["body"]["text"]) <= 1024
    squash = lambda s: " ".join(s.split())  # noqa: E731 - nothing lost, cut only between sentences or paragraphs
    assert squash(" ".join(parts + [interactive["body"]["text"]])) == squash(text)
    assert all(p.rstrip().endswith(".") for p in parts)
    medium = "Word " * 400  # one message, too long to carry buttons: its end carries them
    h.assistant.script["medium"] = [{"text": medium, "buttons": [topic("Yes", "/affirm")]}]
    await send(h, fg.whatsapp_text(WA, "medium"))
    head, tail = sent(h)[-2], sent(h)[-1]["interactive"]["body"]["text"]
    assert head["type"] == "text" and len(tail) <= 1024 and head["text"]["body"] + " " + tail == medium.strip()
    h.assistant.script["only buttons"] = [{"buttons": [topic("Yes", "/affirm")]}]
    await send(h, fg.whatsapp_text(WA, "only buttons"))
    assert sent(h)[-1]["interactive"]["body"]["text"] == EMPTY_BODY


async def test_a_long_payload_travels_behind_a_short_key(h):
    payload = '/inform_country{"country":"TH","note":"' + "y" * 400 + '"}'
    h.assistant.script["where"] = [{"text": "Where?", "buttons": [topic("Thailand", payload)]}]
    await send(h, fg.whatsapp_text(WA, "where"))
    reply_id = sent(h)[0]["interactive"]["action"]["buttons"][0]["reply"]["id"]
    assert reply_id.startswith(PAYLOAD_PREFIX) and len(reply_id) <= 200
    await send(h, fg.whatsapp_reply(WA, reply_id, "Thailand"))
    assert h.assistant.texts[-1] == payload


async def test_a_templates_quick_reply_that_is_not_ours_is_read_as_words(h):
    await send(h, fg.whatsapp_message(WA, "button", {"payload": "SOMETHING_ELSE", "text": "Tell me more"}))
    assert h.assistant.texts[-1] == "Tell me more"


# -- what is not text ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,content_,key",
    [
        ("image", {"id": "111", "mime_type": "image/jpeg"}, "non_text"),
        ("sticker", {"id": "112", "mime_type": "image/webp", "animated": False}, "non_text"),
        ("audio", {"id": "113", "mime_type": "audio/ogg; codecs=opus", "voice": True}, "non_text"),
        ("video", {"id": "114", "mime_type": "video/mp4"}, "non_text"),
        ("document", {"id": "115", "filename": "contract.pdf", "mime_type": "application/pdf"}, "non_text"),
        ("unsupported", {}, "non_text"),
        ("location", {"latitude": 13.7563, "longitude": 100.5018, "name": "Somewhere"}, "personal_data_not_needed"),
        (
            "contacts",
            [{"name": {"formatted_name": "A Friend"}, "phones": [{"phone": "+66 2 000 0000"}]}],
            "personal_data_not_needed",
        ),
    ],
)
async def test_other_kinds_of_message_get_a_kind_answer(h, content, kind, content_, key):
    await send(h, fg.whatsapp_message(WA, kind, content_))
    assert texts(h) == [say(content, key)]
    assert h.assistant.messages == []


async def test_a_photo_caption_is_answered_after_the_kind_word(h, content):
    await send(h, fg.whatsapp_message(WA, "image", {"id": "116", "caption": "is this contract legal?"}))
    assert texts(h) == [say(content, "non_text"), "echo: is this contract legal?"]


async def test_reactions_and_delivery_reports_are_not_answered(h):
    reaction = fg.whatsapp_message(WA, "reaction", {"message_id": "wamid.X", "emoji": "👍"})
    delivered = {"id": "wamid.OURS", "status": "delivered", "timestamp": str(int(time.time())), "recipient_id": WA}
    await send(h, reaction, statuses=[delivered])
    assert h.graph.calls == [] and h.assistant.messages == []


async def test_opening_the_chat_shows_the_introduction_and_languages(h, content):
    await send(h, fg.whatsapp_message(WA, "request_welcome", {}))
    interactive = sent(h)[0]["interactive"]
    assert interactive["type"] == "list" and interactive["body"]["text"] == say(content, "intro")
    assert [r["id"] for r in interactive["action"]["sections"][0]["rows"]][0].startswith("/choose_language")


async def test_typed_commands(h, content):
    await send(h, fg.whatsapp_text(WA, "/language"))
    assert sent(h)[-1]["interactive"]["body"]["text"] == say(content, "ask_language")
    await send(h, fg.whatsapp_text(WA, "/human"))
    assert h.assistant.texts[-1] == "/request_human"


# -- deleting ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["delete my data", "/delete"])
async def test_delete_my_data_deletes_everything_on_the_server_and_says_the_app_keeps_the_chat(h, content, how):
    await send(h, fg.whatsapp_text(WA, "hello"))
    await send(h, fg.whatsapp_text(WA, how))
    assert texts(h)[-1] == say(content, "deleted_app_copy")
    assert h.assistant.messages[-1].input_channel == "whatsapp"
    assert await h.agent.tracker_store.retrieve(sender()) is None
    assert h.channel.state.address("whatsapp", sender()) is None
    await send(h, fg.whatsapp_text(WA, "hello again"))  # a new conversation starts
    assert texts(h)[-1] == "echo: hello again"


# -- the Graph API's refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,code", [(429, None), (400, 130429), (400, 131056), (400, 80007), (400, 4), (500, 131000), (502, None)]
)
async def test_rate_limits_and_server_errors_back_off_and_retry(h, status, code):
    h.graph.fail("whatsapp_send", status=status, code=code, times=2)
    await send(h, fg.whatsapp_text(WA, "hello"))
    assert [c.status for c in h.graph.calls_of("whatsapp_send", ok_only=False)] == [status, status, 200]
    assert texts(h) == ["echo: hello"]


async def test_a_refusal_for_one_user_never_stops_the_others(h):
    h.graph.fail("whatsapp_send", status=400, code=131026, times=1, match=lambda body: body["to"] == WA)
    await send(h, fg.whatsapp_text(WA, "one"), fg.whatsapp_text(OTHER, "two"))
    assert texts(h, OTHER) == ["echo: two"] and texts(h) == []
    assert len([c for c in h.graph.calls_of("whatsapp_send", ok_only=False) if c.body["to"] == WA]) == 1
    await send(h, fg.whatsapp_text(WA, "three"))
    assert texts(h) == ["echo: three"]


# -- bodies that are not what we expect ------------------------------------------------------------------------


async def test_malformed_bodies_get_400_or_200_never_500_and_the_next_message_is_answered(h):
    valid = fg.whatsapp_body(PHONE_ID, [fg.whatsapp_text(WA, "x")])
    change = valid["entry"][0]["changes"][0]
    cases = [
        (b"", 400),
        (b"null", 400),
        (b"[]", 400),
        (b"{" * 3000, 400),
        (b"[" * 100000 + b"]" * 100000, 400),
        (b'{"object": 1e999999}', 200),
        (b'{"object": ' + b"9" * 5000 + b"}", 400),
        (json.dumps({"object": "page", "entry": []}).encode(), 200),
        (json.dumps({"object": "whatsapp_business_account"}).encode(), 200),
        (
            json.dumps(
                {"object": "whatsapp_business_account", "entry": [{"changes": [{**change, "field": "statuses"}]}]}
            ).encode(),
            200,
        ),
        (
            json.dumps(
                {
                    "object": "whatsapp_business_account",
                    "entry": [
                        {
                            "changes": [
                                {
                                    "field": "messages",
                                    "value": {
                                        "messages": [
                                            {"from": WA},
                                            {"type": "text"},
                                            None,
                                            7,
                                            {"from": WA, "type": "text", "text": "not a dict"},
                                            {"from": WA, "type": "interactive", "interactive": {"button_reply": {}}},
                                            {"from": ["x"], "type": "text", "text": {"body": "x"}},
                                        ]
                                    },
                                }
                            ]
                        }
                    ],
                }
            ).encode(),
            200,
        ),
        (json.dumps({**valid, "padding": "x" * 100_000}).encode(), 200),
    ]
    for raw, expected in cases:
        response = await h.server.post(None, APP_SECRET, raw=raw)
        assert response.status_code == expected, raw[:60]
    await h.channel.settle()
    await send(h, fg.whatsapp_text(OTHER, "still there?"))
    assert texts(h, OTHER) == ["echo: still there?"]


def json_values():
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=20,
    )


def whatsapp_shaped():
    any_value = json_values()
    kinds = st.sampled_from(
        [
            "text",
            "image",
            "audio",
            "video",
            "document",
            "sticker",
            "location",
            "contacts",
            "interactive",
            "button",
            "reaction",
            "unsupported",
            "request_welcome",
            "system",
        ]
    )
    message = st.fixed_dictionaries(
        {},
        optional={
            "from": st.sampled_from([WA, OTHER, "", "../x", "+66 81"]) | any_value,
            "id": st.text(max_size=30) | any_value,
            "timestamp": st.integers().map(str) | any_value,
            "type": kinds | any_value,
            "text": st.fixed_dictionaries({}, optional={"body": st.text(max_size=200)}) | any_value,
            "interactive": any_value,
            "image": any_value,
            "audio": any_value,
            "button": any_value,
        },
    )
    status = st.fixed_dictionaries(
        {},
        optional={
            "id": st.text(max_size=20),
            "status": st.sampled_from(["sent", "delivered", "read", "failed"]) | any_value,
            "recipient_id": st.sampled_from([WA, OTHER]) | any_value,
            "errors": st.lists(st.fixed_dictionaries({}, optional={"code": st.integers() | any_value}), max_size=2)
            | any_value,
        },
    )
    value = st.fixed_dictionaries(
        {},
        optional={
            "metadata": st.fixed_dictionaries(
                {}, optional={"phone_number_id": st.sampled_from([PHONE_ID, "1"]) | any_value}
            )
            | any_value,
            "messages": st.lists(message, max_size=3) | any_value,
            "statuses": st.lists(status, max_size=2) | any_value,
            "contacts": any_value,
        },
    )
    change = st.fixed_dictionaries(
        {}, optional={"field": st.sampled_from(["messages", "x"]) | any_value, "value": value | any_value}
    )
    entry = st.fixed_dictionaries({}, optional={"id": any_value, "changes": st.lists(change, max_size=3) | any_value})
    return st.fixed_dictionaries(
        {"object": st.sampled_from(["whatsapp_business_account", "page"]) | any_value},
        optional={"entry": st.lists(entry, max_size=3) | any_value},
    )


def bodies():
    padded = st.builds(
        lambda body, size: json.dumps({**body, "padding": "x" * size}).encode(),
        whatsapp_shaped(),
        st.integers(0, 100_000),
    )
    return st.one_of(
        st.builds(lambda v: json.dumps(v).encode(), json_values()),
        st.builds(lambda v: json.dumps(v).encode(), whatsapp_shaped()),
        padded,
        st.binary(max_size=2000),
        st.binary(min_size=100_000, max_size=102_400),
    )


_fresh_numbers = iter(range(84900000000, 84999999999))


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(raw=bodies())
async def test_random_signed_bodies_never_get_a_500_and_the_next_message_is_answered(h, raw):
    response = await h.server.post(None, APP_SECRET, raw=raw)
    assert response.status_code in (200, 400)
    await h.channel.settle()
    user = str(next(_fresh_numbers))
    await send(h, fg.whatsapp_text(user, "are you there"))
    assert texts(h, user)[-1] == "echo: are you there"


# -- on and off ----------------------------------------------------------------------------------------------


def test_without_a_token_or_a_phone_number_id_the_channel_is_off(env, monkeypatch):
    assert WhatsAppInput.from_credentials({"auth_token": "ignored"}).enabled
    monkeypatch.delenv("WHATSAPP_PHONE_NUMBER_ID")
    assert not WhatsAppInput().enabled
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", PHONE_ID)
    monkeypatch.delenv("WHATSAPP_ACCESS_TOKEN")
    channel = WhatsAppInput.from_credentials(None)
    assert not channel.enabled and channel.get_output_channel() is None and channel.name() == "whatsapp"


# -- the 24-hour window and the live hand-off ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def operators():
    server = tg.FakeTelegram(TG_TOKEN).start()
    server.set_member(OPS, OPERATOR["id"], "member")
    yield server
    server.stop()


async def live_case(h: Any, operators: Any, content: Any) -> Any:
    operators.reset()
    client = await fg.attach_operators(h.relay, operators, TG_TOKEN, OPS)
    h.assistant.script["a person please"] = [
        {"text": say(content, "handoff_waiting")},
        {"custom": {"waypoint": "handoff_requested", "case_id": CASE, "language": "en", "country": "TH"}},
    ]
    await send(h, fg.whatsapp_text(WA, "a person please"))
    await h.graph.until(lambda: operators.calls_of("sendMessage", OPS), what="the case in the operators' chat")
    assert await h.relay.accept(CASE) is not None
    assert texts(h)[-1] == say(content, "handoff_connected")
    return client


def ops_texts(operators: Any) -> List[str]:
    return [c.params.get("text", "") for c in operators.calls_of("sendMessage", OPS)]


async def counsellor_says(h: Any, client: Any, operators: Any, text: str, reply_to: Dict[str, Any]) -> None:
    from telegram import Update

    update = tg.group_message_update(OPS, OPERATOR, text, reply_to=reply_to)
    await h.relay.desk.on_update(Update.de_json(update, client.bot))


async def test_a_live_hand_off_relays_text_and_a_voice_note_both_ways(h, operators, content):
    client = await live_case(h, operators, content)
    try:
        asked = len(h.assistant.messages)
        await send(h, fg.whatsapp_text(WA, "they keep my passport"))
        relayed = next(c for c in operators.calls_of("sendMessage", OPS) if "they keep my passport" in c.params["text"])
        assert CASE in relayed.params["text"] and WA not in relayed.params["text"]
        voice = b"OggS" + bytes(range(256)) * 30
        h.graph.add_media("778899001122", voice, "audio/ogg")
        await send(
            h,
            fg.whatsapp_message(
                WA, "audio", {"id": "778899001122", "mime_type": "audio/ogg; codecs=opus", "voice": True}
            ),
        )
        await h.graph.until(lambda: operators.calls_of("sendVoice", OPS), what="the voice note relayed")
        upload = operators.calls_of("sendVoice", OPS)[0]
        assert upload.files["voice"] == voice and CASE in upload.params["caption"]
        assert all(c.authorized for c in h.graph.calls_of("media_download"))  # fetched with the token
        h.graph.add_media("778899001133", b"\xff\xd8\xff" + b"1" * 300, "image/jpeg")
        await send(h, fg.whatsapp_message(WA, "image", {"id": "778899001133", "mime_type": "image/jpeg"}))
        await h.graph.until(lambda: operators.calls_of("sendPhoto", OPS), what="the photo relayed")
        await send(h, fg.whatsapp_message(WA, "sticker", {"id": "5"}))  # not relayed: the kind answer
        assert texts(h)[-1] == say(content, "non_text")
        assert len(h.assistant.messages) == asked

        await counsellor_says(h, client, operators, "We can help. Are you safe?", relayed.result)
        assert texts(h)[-1] == content.messages["handoff_counsellor"]["en"].format(text="We can help. Are you safe?")
    finally:
        await client.stop()


async def test_outside_the_24_hour_window_a_counsellors_answer_is_not_lost_silently(h, operators, content):
    client = await live_case(h, operators, content)
    try:
        await send(h, fg.whatsapp_text(WA, "are you there?"))
        relayed = next(c for c in operators.calls_of("sendMessage", OPS) if "are you there?" in c.params["text"])
        not_delivered = content.messages["operators_not_delivered"]["en"].format(case=CASE)

        # 1. our own record says the window has closed: nothing is sent, the operators are told
        at = time.time() - 25 * 3600
        h.channel.state.put_address("whatsapp", sender(), json.dumps({"id": WA, "at": int(at)}))
        before = len(h.graph.calls_of("whatsapp_send", ok_only=False))
        await counsellor_says(h, client, operators, "Hello again", relayed.result)
        assert len(h.graph.calls_of("whatsapp_send", ok_only=False)) == before
        assert any(not_delivered in t for t in ops_texts(operators))

        # 2. the Cloud API refuses at once (131047): the same
        h.channel.state.put_address("whatsapp", sender(), json.dumps({"id": WA, "at": int(time.time())}))
        h.graph.user_wrote(WA, at)
        told = len([t for t in ops_texts(operators) if not_delivered in t])
        await counsellor_says(h, client, operators, "Hello once more", relayed.result)
        refused = h.graph.calls_of("whatsapp_send", ok_only=False)[-1]
        assert refused.status == 400 and refused.result["error"]["code"] == 131047
        assert len(h.graph.calls_of("whatsapp_send", ok_only=False)) == before + 1  # not retried
        assert len([t for t in ops_texts(operators) if not_delivered in t]) == told + 1

        # 3. sent, then reported failed (a delivery report with 131047): the operators are told, once
        h.graph.user_wrote(WA)
        await counsellor_says(h, client, operators, "Last try", relayed.result)
        wamid = h.graph.calls_of("whatsapp_send")[-1].result["messages"][0]["id"]
        told = len([t for t in ops_texts(operators) if not_delivered in t])
        failed = fg.whatsapp_failed(WA, wamid)
        await send(h, statuses=[failed])
        await send(h, statuses=[failed])
        assert len([t for t in ops_texts(operators) if not_delivered in t]) == told + 1

        # a failed report of an ordinary reply tells nobody
        await send(h, fg.whatsapp_text(OTHER, "hi"))
        ordinary = h.graph.calls_of("whatsapp_send")[-1].result["messages"][0]["id"]
        await send(h, statuses=[fg.whatsapp_failed(OTHER, ordinary, 131026)])
        assert len([t for t in ops_texts(operators) if not_delivered in t]) == told + 1
    finally:
        await client.stop()


def test_the_window_is_24_hours():
    channel = WhatsAppInput.__new__(WhatsAppInput)
    assert channel.window(time.time() - 23.9 * 3600) == "response"
    assert channel.window(time.time() - 24.1 * 3600) is None


# -- logs ----------------------------------------------------------------------------------------------------------


async def test_logs_hold_no_text_no_phone_number_no_name(h, caplog):
    with caplog.at_level(logging.DEBUG):
        message = fg.whatsapp_text(WA, "PRIVATE-TEXT-1212")
        await send(h, message)
        h.graph.fail("whatsapp_send", status=400, code=131047)
        await send(h, fg.whatsapp_text(WA, "PRIVATE-TEXT-3434"))
        await send(h, statuses=[fg.whatsapp_failed(WA, "wamid.SOMETHING")])
        await send(h, fg.whatsapp_text(WA, "delete my data"))
    logged = "\n".join(r.getMessage() + str(r.args or "") for r in caplog.records)
    for secret in (WA, NAME, "PRIVATE-TEXT", message["id"], TOKEN, APP_SECRET):
        assert secret not in logged, secret


# -- end to end: the real servers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers(graph, tmp_path_factory):
    env = {
        "META_GRAPH_API_URL": graph.graph_url,
        "WHATSAPP_ACCESS_TOKEN": TOKEN,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": VERIFY,
        "WHATSAPP_PHONE_NUMBER_ID": PHONE_ID,
        "WAYPOINT_ID_SECRET": ID_SECRET,
    }
    with fg.meta_servers(tmp_path_factory.mktemp("whatsapp"), "channels.whatsapp.WhatsAppInput", env) as rasa:
        yield rasa


def post_to(server: Any, body: Dict[str, Any]) -> int:
    return fg.post_signed(server, "whatsapp", body, APP_SECRET)


def wait_for_texts(graph: Any, user: str, count: int, timeout: float = 90) -> List[str]:
    """The user's texts once there are ``count`` and no more come for a moment."""
    return fg.settled_texts(lambda: graph.whatsapp_texts(user), count, timeout=timeout)


@pytest.mark.model
def test_end_to_end_answered_without_the_phone_number_and_deleted(servers, graph, content):
    wa_id = "6281234567890"
    graph.user_wrote(wa_id)
    message = fg.whatsapp_text(wa_id, "hello")
    assert post_to(servers, fg.whatsapp_body(PHONE_ID, [message], name=NAME)) == 200
    assert post_to(servers, fg.whatsapp_body(PHONE_ID, [message], name=NAME)) == 200  # a retry
    first = wait_for_texts(graph, wa_id, 1)
    tracker = servers.tracker(sender(wa_id))
    dump = json.dumps(tracker)
    assert wa_id not in dump and NAME not in dump and message["id"] not in dump
    assert len([e for e in tracker["events"] if e.get("event") == "user"]) == 1  # answered once
    assert tracker["slots"].get("language") in (None, "en")  # +62 is not Indonesian
    count = len(graph.whatsapp_texts(wa_id))
    assert count == len(first)
    assert post_to(servers, fg.whatsapp_body(PHONE_ID, [fg.whatsapp_text(wa_id, "delete my data")])) == 200
    deleted = wait_for_texts(graph, wa_id, count + 1)
    assert content.messages["deleted_app_copy"]["en"] in deleted[count:]
    events = servers.tracker(sender(wa_id)).get("events") or []
    assert not [e for e in events if e.get("event") == "user"]
