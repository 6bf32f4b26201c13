"""The web chat, end to end: a real headless Chromium (Debian's, through
Playwright) against the servers started as `make run` starts them.

scripts/ensure-chromium.sh installs Chromium when it is missing."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import pytest

from content.loader import data_dir, load_content
from tests.servers import CHROMIUM, CHROMIUM_ARGS, Waypoint

pytestmark = [pytest.mark.model, pytest.mark.browser]

EXIT_URL = "https://www.google.com/search?q=weather"
ALLOWED_ORIGIN = "https://ngo.example"
RATE_SESSION, RATE_ADDRESS = 6, 40
KEY = "waypoint-chat"


@pytest.fixture(scope="module")
def waypoint(tmp_path_factory):
    env = {
        "WAYPOINT_WEBCHAT_ORIGINS": ALLOWED_ORIGIN,
        "WAYPOINT_WEBCHAT_RATE_SESSION": str(RATE_SESSION),
        "WAYPOINT_WEBCHAT_RATE_ADDRESS": str(RATE_ADDRESS),
    }
    server = Waypoint(tmp_path_factory.mktemp("webchat"), env).start()
    yield server
    assert server.stop() in (0, 130, -2, 143)


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run scripts/ensure-chromium.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Chat:
    """One browser tab on the chat page, recording every request it makes."""

    def __init__(self, browser, waypoint: Waypoint, width: int = 360, height: int = 740):
        self.waypoint = waypoint
        self.context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
        self.page = self.context.new_page()
        self.requests: List[str] = []
        self.errors: List[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self) -> "Chat":
        self.page.goto(self.waypoint.url + "/chat")
        self.page.locator("html[lang]").wait_for()
        return self

    def bot_count(self) -> int:
        return self.page.locator(".from-bot").count()

    def wait_bot(self, before: int) -> None:
        """Until the answer to what was just sent is in (the page shows "writing" meanwhile)."""
        self.page.locator("#writing").wait_for(state="hidden", timeout=60_000)

    def send(self, text: str) -> List[str]:
        before = self.bot_count()
        self.page.fill("#message", text)
        self.page.press("#message", "Enter")
        self.wait_bot(before)
        return self.bot_texts()[before:]

    def pick_language(self, code: str) -> List[str]:
        before = self.bot_count()
        self.page.select_option("#language", code)
        self.wait_bot(before)
        return self.bot_texts()[before:]

    def bot_texts(self) -> List[str]:
        return [
            t.strip()
            for t in self.page.locator(".from-bot").evaluate_all(
                "(els) => els.map((e) => (e.querySelector('.text') || {}).textContent || '')"
            )
        ]

    def stored(self) -> Optional[Dict[str, Any]]:
        raw = self.page.evaluate(f"() => window.sessionStorage.getItem('{KEY}')")
        return json.loads(raw) if raw else None

    def sender(self) -> str:
        return "web-" + self.stored()["session"]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def chat(browser, waypoint):
    tab = Chat(browser, waypoint).open()
    yield tab
    tab.close()


def user_texts(tracker: Dict[str, Any]) -> List[str]:
    return [e.get("text") or "" for e in tracker["events"] if e["event"] == "user"]


def post(
    waypoint: Waypoint,
    path: str,
    body: bytes,
    headers: Optional[Dict[str, str]] = None,
    source: str = "127.0.0.1",
    method: str = "POST",
) -> Tuple[int, Dict[str, str], Any]:
    """A raw HTTP request from a chosen loopback source address."""
    connection = http.client.HTTPConnection("127.0.0.1", waypoint.rasa_port, timeout=60, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(raw) if raw else None
    finally:
        connection.close()


# -- the page itself ---------------------------------------------------------


def test_page_headers_forbid_inline_scripts_and_other_origins(waypoint):
    for path in ("/chat", "/webhooks/webchat/static/chat.js", "/webhooks/webchat/i18n.js"):
        with urllib.request.urlopen(waypoint.url + path) as response:
            headers = {k.lower(): v for k, v in response.getheaders()}
            response.read()
        csp = headers["content-security-policy"]
        directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
        assert directives["default-src"] == ["'self'"]
        assert directives["script-src"] == ["'self'"]
        assert directives["style-src"] == ["'self'"]
        assert directives["frame-ancestors"] == ["'self'", ALLOWED_ORIGIN]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert "set-cookie" not in headers
    # The page names no other site but the quick exit's destination.
    page = urllib.request.urlopen(waypoint.url + "/chat").read().decode()
    assert set(re.findall(r"https?://[^\"' >]+", page)) <= {EXIT_URL}
    assert "<script>" not in page and " style=" not in page and "onclick" not in page


def test_the_picker_offers_every_language_of_the_registry(chat, content):
    from content import languages

    options = chat.page.locator("#language option").evaluate_all("(els) => els.map((o) => [o.value, o.textContent])")
    assert [value for value, _ in options if value] == list(languages.CODES)
    assert {value: name for value, name in options if value} == {
        lang.code: lang.native_name for lang in languages.REGISTRY
    }
    for code in languages.CODES:  # the page's own words follow the choice
        chat.page.select_option("#language", code)
        chat.wait_bot(0)
        assert (
            chat.page.locator("#message").get_attribute("placeholder") == content.messages["webchat_placeholder"][code]
        )


def test_loads_nothing_from_elsewhere_and_sets_no_cookie(chat, waypoint):
    chat.send("hello")
    assert chat.requests and all(url.startswith(waypoint.url) for url in chat.requests)
    assert chat.context.cookies() == []
    assert chat.errors == []


def test_thai_question_then_a_button(chat, waypoint, content):
    assert chat.pick_language("th") == [content.messages["language_set"]["th"], content.messages["intro"]["th"]]
    assert chat.page.evaluate("() => document.documentElement.lang") == "th"
    assert chat.page.locator("#quick-exit").inner_text() == content.messages["webchat_quick_exit"]["th"]
    assert chat.page.locator("#message").get_attribute("placeholder") == content.messages["webchat_placeholder"]["th"]
    assert chat.page.locator(".from-user .text").first.inner_text() == "ภาษาไทย"

    replies = chat.send("นายจ้างยึดพาสปอร์ตไม่ยอมคืน ทำยังไงดี")
    answer = content.guides["protect.documents"].text("th", "survivor")
    assert answer[:40] in "\n".join(replies)
    tracker = waypoint.tracker(chat.sender())
    assert tracker["slots"]["language"] == "th"
    assert tracker["slots"]["topic"] == "protect.documents"
    hints = [(e.get("metadata") or {}).get("language_hint") for e in tracker["events"] if e["event"] == "user"]
    assert hints == ["th", "th"]  # the page's choice travels as metadata with every message

    # Press a related-topic button whose answer needs no country.
    buttons = [m for m in chat.stored()["messages"] if m.get("buttons")][-1]["buttons"]
    topics = content.intent_topics()
    index = next(
        i
        for i, b in enumerate(buttons)
        if b["payload"].lstrip("/") in topics and not content.guides[topics[b["payload"].lstrip("/")]].country_dependent
    )
    button = chat.page.locator(".from-bot").filter(has=chat.page.locator(".choice")).last.locator(".choice").nth(index)
    title = button.inner_text()
    assert title == buttons[index]["title"]
    before = chat.bot_count()
    button.click()
    chat.wait_bot(before)
    assert chat.page.locator(".from-user .text").last.inner_text() == title
    topic = waypoint.tracker(chat.sender())["slots"]["topic"]
    assert topic == topics[buttons[index]["payload"].lstrip("/")]
    assert content.guides[topic].text("th", "survivor")[:40] in "\n".join(chat.bot_texts()[before:])
    assert chat.errors == []


def test_the_introduction_comes_after_picking_a_language(chat, content):
    """The page's language picker sends a language choice first; the
    introduction (a computer program; how to delete; the emergency word) comes
    right after it, in the language picked, and is not repeated."""
    shown = chat.pick_language("th")
    assert content.messages["intro"]["th"] in shown
    replies = chat.send("นายจ้างยึดพาสปอร์ตไม่ยอมคืน ทำยังไงดี")
    assert content.messages["intro"]["th"] not in replies


def tel_links(chat) -> List[str]:
    return chat.page.locator(".from-bot a[href^='tel:'], .from-bot a[href^='sms:']").evaluate_all(
        "(els) => els.map((a) => a.getAttribute('href'))"
    )


def check_links(hrefs: List[str], content) -> None:
    known = {re.sub(r"[^\d+]", "", str(c["value"])) for h in content.helplines for c in h.channels}
    for href in hrefs:
        assert re.fullmatch(r"(tel|sms):\+?\d{3,15}", href)
        assert href.split(":", 1)[1] in known


def test_phone_numbers_are_tap_to_call_links(chat, content):
    """The numbers of a country's full list (after the country is known) are links."""
    chat.send("/ask_help_helplines")
    chat.send('/inform_country{"country":"MY"}')
    hrefs = tel_links(chat)
    assert "tel:999" in hrefs
    check_links(hrefs, content)


def test_the_first_crisis_numbers_are_tap_to_call_links(chat, content):
    """Someone in danger who has not said where they are gets every country's
    emergency numbers on one screen ("Malaysia: 999 · 112 · ..."): on a phone,
    each must be one tap from a call."""
    replies = chat.send("emergency")
    assert content.messages["numbers_intro_emergency_all"]["en"] in replies
    hrefs = tel_links(chat)
    assert "tel:999" in hrefs and "tel:191" in hrefs, hrefs
    check_links(hrefs, content)


def test_keyboard_order_live_region_and_small_screens(browser, waypoint):
    tab = Chat(browser, waypoint, width=320, height=640).open()
    try:
        page = tab.page
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == "quick-exit"
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == "language"
        log = page.locator("#log")
        assert log.get_attribute("role") == "log" and log.get_attribute("aria-live") == "polite"
        # Keyboard only: type, send with Enter, answer arrives in the live region.
        page.locator("#message").focus()
        page.keyboard.type("hello")
        page.keyboard.press("Enter")
        tab.wait_bot(0)
        tab.send("my boss took my passport and won't give it back")  # a long answer
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 320
        # Only the conversation scrolls: quick exit and the message box stay on screen.
        for selector in ("#quick-exit", "#message", "#send"):
            box = page.locator(selector).bounding_box()
            assert box and box["y"] >= 0 and box["y"] + box["height"] <= 640 and box["x"] + box["width"] <= 320
        assert page.evaluate("() => document.scrollingElement.scrollTop") == 0
        page.keyboard.press("Tab")  # from the message box to the send button
        focused = page.evaluate(
            "() => { const e = document.activeElement; const s = getComputedStyle(e);"
            " return [e.id, s.outlineStyle, parseFloat(s.outlineWidth)]; }"
        )
        assert focused[0] == "send" and focused[1] != "none" and focused[2] >= 2  # focus is visible
    finally:
        tab.close()


# -- safety ------------------------------------------------------------------


def test_quick_exit_leaves_no_trace_and_back_does_not_return(browser, waypoint):
    tab = Chat(browser, waypoint)
    try:
        tab.context.route(
            "https://www.google.com/**",
            lambda route: route.fulfill(status=200, content_type="text/html", body="<html><body>Weather</body></html>"),
        )
        page = tab.page
        page.goto(waypoint.url + "/webhooks/webchat/")  # where the user was before the chat
        tab.open()
        tab.send("my boss took my passport")
        sender = tab.sender()
        assert tab.stored()["messages"] and user_texts(waypoint.tracker(sender))
        page.click("#quick-exit")
        page.wait_for_url(EXIT_URL)
        page.go_back()
        page.wait_for_load_state()
        assert page.url == waypoint.url + "/webhooks/webchat/"  # the chat is gone from this tab's history
        assert page.evaluate("() => window.sessionStorage.length") == 0
        for _ in range(40):  # the page also asks the server to forget (fire and forget)
            if not user_texts(waypoint.tracker(sender)):
                break
            time.sleep(0.25)
        assert user_texts(waypoint.tracker(sender)) == []
    finally:
        tab.close()


def test_escape_twice_is_a_quick_exit(chat):
    chat.context.route(
        "https://www.google.com/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body="<html><body>Weather</body></html>"),
    )
    chat.send("hello")
    chat.page.keyboard.press("Escape")
    chat.page.keyboard.press("Escape")
    chat.page.wait_for_url(EXIT_URL)
    assert "Weather" in chat.page.content()


def test_html_in_messages_is_shown_as_text(chat, waypoint):
    attack = "<img src=x onerror=\"window.pwned=1;document.title='pwned'\">"
    chat.send(attack)
    assert chat.page.locator(".from-user .text").first.inner_text() == attack
    assert chat.page.locator("#log img").count() == 0
    # A bot message restored from sessionStorage is text too.
    state = chat.stored()
    state["messages"].append(
        {"who": "bot", "text": attack + " <b>bold</b>", "buttons": [{"title": "<i>x</i>", "payload": "/greet"}]}
    )
    chat.page.evaluate("(s) => window.sessionStorage.setItem('waypoint-chat', JSON.stringify(s))", state)
    chat.page.reload()
    chat.page.locator(".from-bot .text").last.wait_for()
    assert chat.page.locator(".from-bot .text").last.inner_text() == attack + " <b>bold</b>"
    assert chat.page.locator(".from-bot .choice").last.inner_text() == "<i>x</i>"
    assert chat.page.locator("#log img, #log b, #log i").count() == 0
    assert chat.page.evaluate("() => window.pwned === undefined && document.title !== 'pwned'")
    assert attack in user_texts(waypoint.tracker(chat.sender()))


def test_delete_control_empties_the_tracker(chat, waypoint, content):
    marker = "ZEBRA-4411-WEBCHAT"
    chat.send(f"my boss took my passport {marker}")
    sender = chat.sender()
    assert any(marker in t for t in user_texts(waypoint.tracker(sender)))
    chat.page.click("#delete")
    chat.page.click("#delete-yes")
    chat.page.locator("#notice").filter(has_text=content.messages["webchat_deleted"]["en"]).wait_for()
    assert chat.page.locator("#log .message").count() == 0
    assert chat.stored()["messages"] == [] and "web-" + chat.stored()["session"] != sender
    tracker = waypoint.tracker(sender)
    assert user_texts(tracker) == [] and marker not in json.dumps(tracker)


def test_delete_my_data_marker_never_reaches_the_page(waypoint):
    sender = "markercheck0123456789"
    status, _, replies = post(
        waypoint,
        "/webhooks/webchat/webhook",
        json.dumps({"sender": sender, "message": "my boss took my passport"}).encode(),
    )
    assert status == 200
    status, _, replies = post(
        waypoint, "/webhooks/webchat/webhook", json.dumps({"sender": sender, "message": "delete my data"}).encode()
    )
    assert status == 200 and replies
    assert all(set(r) <= {"text", "buttons"} for r in replies)
    assert "waypoint" not in json.dumps(replies)
    assert user_texts(waypoint.tracker("web-" + sender)) == []


# -- limits and bad requests -------------------------------------------------------


def test_too_long_message_gets_a_kind_answer(chat, waypoint, content):
    chat.send("hello")
    long_text = "help " * 401  # 2005 characters
    replies = chat.send(long_text)
    assert replies == [content.messages["webchat_too_long"]["en"].format(limit=2000)]
    assert all(len(t) <= 2000 for t in user_texts(waypoint.tracker(chat.sender())))
    assert chat.errors == []


def test_session_rate_limit_answers_kindly_in_the_users_language(chat, waypoint, content):
    chat.pick_language("vi")
    for i in range(RATE_SESSION - 1):
        replies = chat.send("ok")
        assert replies != [content.messages["rate_limited"]["vi"]], f"limited after {i + 2} messages"
    assert chat.send("ok") == [content.messages["rate_limited"]["vi"]]
    assert chat.page.locator("#composer").is_visible() and chat.errors == []
    assert len(user_texts(waypoint.tracker(chat.sender()))) == RATE_SESSION  # the refused one never reached Rasa


def test_address_rate_limit(waypoint, content):
    source = "127.0.0.2"  # its own address, so other tests keep theirs
    too_long = "x" * 2001  # refused before Rasa, but counted
    for i in range(RATE_ADDRESS):
        sender = f"address-test-{i // RATE_SESSION:04d}-abcdef"
        status, _, _ = post(
            waypoint,
            "/webhooks/webchat/webhook",
            json.dumps({"sender": sender, "message": too_long}).encode(),
            source=source,
        )
        assert status == 413
    body = json.dumps(
        {"sender": "address-test-fresh-session", "message": "hello", "metadata": {"language_hint": "ms-MY"}}
    ).encode()
    status, _, replies = post(waypoint, "/webhooks/webchat/webhook", body, source=source)
    assert (status, replies) == (429, [{"text": content.messages["rate_limited"]["ms"]}])
    status, _, replies = post(waypoint, "/webhooks/webchat/webhook", body)  # another address is still served
    assert status == 200 and replies


@pytest.mark.parametrize("path", ["/webhooks/webchat/webhook", "/webhooks/webchat/delete"])
@pytest.mark.parametrize(
    "body,expected",
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object"),
        (b"[" * 50_000, "body is not valid JSON"),
        (b'{"sender": "x", "message": "hi"}', "sender must be"),
        (b'{"sender": "../../conversations/1", "message": "hi"}', "sender must be"),
        (b'{"sender": 12345678901234567890, "message": "hi"}', "sender must be"),
    ],
)
def test_malformed_requests_get_400_with_a_json_error(waypoint, path, body, expected):
    status, headers, reply = post(waypoint, path, body)
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert reply["error"].startswith(expected)


@pytest.mark.parametrize("message", [42, None, "   ", ["hi"]])
def test_a_message_must_be_text(waypoint, message):
    body = json.dumps({"sender": "abcdefabcdefabcdef99", "message": message}).encode()
    status, _, reply = post(waypoint, "/webhooks/webchat/webhook", body)
    assert status == 400 and reply["error"].startswith("message must be")


def test_cors_only_for_configured_origins(waypoint):
    preflight = {
        "Origin": ALLOWED_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    status, headers, _ = post(waypoint, "/webhooks/webchat/webhook", b"", preflight, method="OPTIONS")
    assert status in (200, 204)
    assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    body = json.dumps({"sender": "corscheck0123456789", "message": "hello"}).encode()
    status, headers, replies = post(waypoint, "/webhooks/webchat/webhook", body, {"Origin": ALLOWED_ORIGIN})
    assert status == 200 and replies and headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    status, headers, _ = post(waypoint, "/webhooks/webchat/webhook", body, {"Origin": "https://evil.example"})
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = post(
        waypoint, "/webhooks/webchat/webhook", b"", {**preflight, "Origin": "https://evil.example"}, method="OPTIONS"
    )
    assert "access-control-allow-origin" not in headers


def test_logs_hold_no_user_text(chat, waypoint):
    secret = "WOMBAT-3390-WEBCHAT"
    chat.send(f"my name is {secret} and my boss keeps my passport")
    chat.send(secret * 200)  # refused as too long: not logged either
    for path in waypoint.var.rglob("*.log"):
        assert secret not in path.read_text(errors="replace"), f"{path.name} logged the user's text"
