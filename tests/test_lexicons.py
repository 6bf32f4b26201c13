"""The crisis and signal lexicons (data/lexicons/<lang>/) do what their own
samples say, through the code that uses them (content/lexicons.py), and the
failures seen live stay fixed."""

from __future__ import annotations

import pytest

from content import lexicons
from content.languages import CODES


@pytest.mark.parametrize("language", CODES)
def test_every_pattern_compiles(language, caplog):
    lexicons.load.cache_clear()
    lexicon = lexicons.load(language)
    assert not [r for r in caplog.records if "does not compile" in r.getMessage()]
    assert lexicon.crises["emergency"].positive and lexicon.crises["self_harm"].positive
    assert all(lexicon.signals[name] for name in lexicons.SIGNALS), f"{language}: a signal section is empty"


@pytest.mark.parametrize("language", CODES)
def test_signal_samples(language):
    lexicon = lexicons.load(language)
    failures = []
    for name in lexicons.SIGNALS:
        samples = lexicon.samples.get(name) or {}
        for text in samples.get("should_match") or []:
            if not lexicons.signal(text, name, language):
                failures.append(f"{name} missed: {text}")
        for text in samples.get("should_not_match") or []:
            if lexicons.signal(text, name, language):
                failures.append(f"{name} wrongly hit: {text}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("language", CODES)
def test_crisis_samples(language):
    """Each file's own samples, through the detector of every language at once
    (as the assistant runs it): what should fire fires; what should not does
    not fire in that language's lexicon."""
    lexicon = lexicons.load(language)
    failures = []
    for crisis in lexicons.CRISES:
        samples = lexicon.samples.get(f"{crisis}:patterns") or {}
        for text in samples.get("should_match") or []:
            if not lexicons.crisis_hits(text, crisis):
                failures.append(f"{crisis} missed: {text}")
        for text in samples.get("should_not_match") or []:
            if language in lexicons.crisis_hits(text, crisis):
                failures.append(f"{crisis} wrongly hit: {text}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "text,kinds",
    [
        ("im in Malaysia and my boss is beating us right now, help", {"danger"}),
        ("i have the pills from the clinic here, im going to take all of them tonight", {"self_harm"}),
        ("saya rasa nak bunuh diri", {"self_harm"}),
        ("aku mau bunuh diri", {"self_harm"}),
        ("em muốn chết", {"self_harm"}),
        ("ไม่อยากอยู่แล้ว", {"self_harm"}),
        ("my boss hit me last year, can I get compensation?", set()),
        ("1300", set()),
        ("how do I support a client who says she wants to die", set()),
    ],
)
def test_crisis_kinds(text, kinds):
    assert set(lexicons.crisis_kinds(text)) == kinds


def test_a_long_story_of_the_past_is_not_an_emergency_now():
    story = (
        "Two years ago an agent in my village promised me work in a factory in Thailand. I paid him all my "
        "savings and my mother borrowed more. At the border they put us in a truck and took us to a port. "
        "I went to work on a fishing boat instead of a factory. The captain beat us every day and locked us "
        "in the hold at night. They kept my passport and never paid me. We worked twenty hours a day for "
        "more than a year, far from land. Some men got sick and died at sea and nobody took them home. "
        "In 2024 the boat came to port in Indonesia and I ran away with two friends. A fisherman helped us, "
        "a shelter took us in, and after four months the police and the embassy sent me home. "
    )
    question = "Now I am home in my village. Can I still get my wages or compensation?"
    assert lexicons.crisis_kinds(story + question) == frozenset()
    assert "danger" in lexicons.crisis_kinds("They are beating us right now, please help")


@pytest.mark.parametrize(
    "text,expected,absent",
    [
        ("I am 15 years old and I am in Thailand.", {"minor_self"}, {"reporter"}),
        (
            "my little sister is 15 and a man is taking her to work in a karaoke",
            {"reporter", "child_other"},
            {"minor_self"},
        ),
        ("1300", set(), {"minor_self"}),
        ("I'm a new police officer. How do I interview a possible trafficking victim?", {"practitioner_role"}, set()),
        ("saya bukan pekerja sosial, saya mangsa", {"survivor_role"}, {"practitioner_role"}),
        ("saya kat KL", set(), {"practitioner_role"}),
        ("eh gak jadi deh", {"not_now"}, {"clear_yes"}),
        ("no wait not now. they might see my phone", {"not_now", "fear_of_being_seen"}, {"clear_yes"}),
        ("yes please", {"clear_yes"}, {"not_now"}),
        ("ถ้าเป็นเด็กล่ะคะ", set(), {"minor_self"}),
    ],
)
def test_signals_seen_live(text, expected, absent):
    found = lexicons.signals(text)
    assert expected <= found, found
    assert not (absent & found), found
