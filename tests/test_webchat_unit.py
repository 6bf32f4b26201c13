"""The web chat channel's pure parts, without servers (tests/test_webchat.py
drives the real page in Chromium)."""

from channels.webchat import (
    RateLimiter,
    SlidingWindow,
    WebChatInput,
    i18n_script,
    language_code,
    parse_origins,
    visible,
)
from plugins.tracker_store import FORGET_MARKER


def test_sliding_window_forgets_after_the_window():
    window = SlidingWindow(limit=2, window=60)
    window.add("a", 0)
    window.add("a", 1)
    assert window.full("a", 59) and not window.full("b", 59)
    assert not window.full("a", 60.5)  # the first one left the window


def test_refused_messages_do_not_count_and_addresses_are_hashed():
    limiter = RateLimiter(per_session=2, per_address=3)
    assert limiter.allow("s1", "10.1.2.3", now=0) and limiter.allow("s1", "10.1.2.3", now=1)
    assert not limiter.allow("s1", "10.1.2.3", now=2)  # session full
    assert limiter.allow("s2", "10.1.2.3", now=3)
    assert not limiter.allow("s3", "10.1.2.3", now=4)  # address full
    assert limiter.allow("s3", "10.9.9.9", now=4)
    assert not any("10.1.2.3" in key for key in limiter.addresses.events)
    assert limiter.allow("s1", "10.1.2.3", now=70)  # a minute later


def test_prune_bounds_memory():
    window = SlidingWindow(limit=5, window=60, max_keys=100)
    for i in range(1000):
        window.add(f"k{i}", i)
    assert len(window.events) <= 100


def test_markers_and_custom_payloads_never_reach_the_page():
    messages = [
        {"recipient_id": "x", "text": "Done."},
        {"recipient_id": "x", "custom": FORGET_MARKER},
        {"custom": {"waypoint": "handoff_requested", "case_id": "C1"}},
        {"custom": {"other": 1}},
        {"text": "Pick", "buttons": [{"title": "A", "payload": "/a"}, {"title": "no payload"}]},
    ]
    assert visible(messages) == [{"text": "Done."}, {"text": "Pick", "buttons": [{"title": "A", "payload": "/a"}]}]


def test_settings():
    assert parse_origins("https://NGO.example/, http://b.example:8080/path, not-a-url,") == (
        "https://ngo.example",
        "http://b.example:8080",
    )
    assert language_code("ms-MY") == "ms" and language_code("th_TH") == "th"
    assert language_code("fr") is None and language_code(None) is None
    channel = WebChatInput(origins=("https://ngo.example",))
    assert "frame-ancestors 'self' https://ngo.example" in channel.csp()
    assert "unsafe-inline" not in channel.csp()


def test_exit_url_must_be_http(monkeypatch):
    monkeypatch.setenv("WAYPOINT_WEBCHAT_EXIT_URL", "javascript:alert(1)")
    assert WebChatInput.from_credentials({}).exit_url.startswith("https://")
    monkeypatch.setenv("WAYPOINT_WEBCHAT_EXIT_URL", 'https://example.org/news?a=1&b="2"')
    page = WebChatInput.from_credentials({}).page()
    assert 'href="https://example.org/news?a=1&amp;b=&quot;2&quot;"' in page


def test_page_words_exist_in_every_language_and_the_page_learns_the_languages():
    import json

    from content.languages import CODES, REGISTRY

    script = i18n_script()
    listed = json.loads(script.split("window.WAYPOINT_LANGUAGES = ", 1)[1].split(";\n", 1)[0])
    assert [entry["code"] for entry in listed] == list(CODES)
    assert [entry["name"] for entry in listed] == [lang.native_name for lang in REGISTRY]
    words = json.loads(script.split("window.WAYPOINT_I18N = ", 1)[1].strip().rstrip(";"))
    assert set(words) == set(CODES)
    for lang, table in words.items():
        assert {"quick_exit", "safety_note", "send", "delete", "deleted", "offline"} <= set(table)
        assert all(text.strip() for text in table.values()), lang
    assert words["ms"]["quick_exit"] != words["id"]["quick_exit"]
