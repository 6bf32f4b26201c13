"""Numbers are the part of Waypoint that can hurt someone: only VERIFIED
numbers ship, each in the row the reference names, and for every country and
every kind of need the answer is never empty and never lists a number twice."""

from __future__ import annotations

import pathlib
import re

import pytest

from content import helplines
from content.languages import CODES
from content.loader import load_content

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference" / "emergency-numbers.md"
SHARED = ROOT.parent / "shared" / "reference" / "emergency-numbers.md"
NEEDS = ("emergency", "crisis", "child", "trafficking", "helplines", "report")


def digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def verified_rows():
    """{row id: the VERIFIED row's text} of the reference's tables."""
    rows = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 3 and cells[-2].startswith("VERIFIED"):
            rows[cells[1]] = line
    return rows


@pytest.fixture(scope="module")
def content():
    return load_content()


def test_reference_is_the_shared_one():
    if not SHARED.exists():
        pytest.skip("../shared/reference is not beside this checkout")
    assert REFERENCE.read_text(encoding="utf-8") == SHARED.read_text(encoding="utf-8")


def test_every_number_is_verified_in_its_row(content):
    rows = verified_rows()
    for line in content.helplines:
        refs = [r.strip() for r in line.ref.split(",")]
        for ref in refs:
            assert ref in rows, f"{line.id}: row {ref} is not VERIFIED in {REFERENCE.name}"
        text = " ".join(rows[r] for r in refs)
        row_digits = {digits(n) for n in re.findall(r"\+?\d[\d\s().\-]{1,}\d|\b\d{3,}\b", text)}
        for channel in line.channels:
            if channel["type"] in ("phone", "sms", "whatsapp"):
                assert digits(str(channel["value"])) in row_digits, (
                    f"{line.id}: {channel['value']} is not in the VERIFIED row {line.ref}"
                )
            elif channel["type"] == "email":
                assert channel["value"] in text, f"{line.id}: {channel['value']} not in row {line.ref}"


def test_unconfirmed_numbers_are_absent(content):
    """Numbers the reference marks UNCONFIRMED or NOT FOUND never ship."""
    shipped = {digits(n) for n in helplines.all_numbers(content.helplines)}
    for unconfirmed in (
        "+66991301300",
        "+6625728442",
        "0376272929",
        "0963061414",
        "1383",
        "1288",
        "199",
        "192",
        "1191",
    ):
        assert digits(unconfirmed) not in shipped


@pytest.mark.parametrize("language", CODES)
def test_every_country_and_need_gets_an_answer(content, language):
    for country in list(content.countries) + [None]:
        for need in NEEDS:
            for nationality in (None, "VN", "ID"):
                text, shown = helplines.numbers_text(content, need, language, country, nationality)
                assert text.strip(), (country, need)
                assert not re.search(r"\{[a-z_]+\}", text), "a placeholder was left unfilled"
                assert len(shown) == len(set(shown)), f"{country} {need}: a line twice"


def test_emergency_order_puts_police_or_general_first(content):
    for country in {h.country for h in content.helplines}:
        lines = helplines.for_need(content, "emergency", country)
        if lines:
            first = set(lines[0].kinds)
            assert first & {"general", "police"} or not any({"general", "police"} & set(h.kinds) for h in lines), (
                country,
                lines[0].id,
            )


def test_crisis_never_falls_back_to_police(content):
    """A country with no verified crisis line gets that said plainly, not the police script."""
    for country in content.countries:
        text, shown = helplines.numbers_text(content, "crisis", "en", country)
        ids = {h.id: h for h in content.helplines}
        assert not any({"police", "general"} & set(ids[i].kinds) for i in shown if "crisis" not in ids[i].kinds), (
            country
        )


def test_named_countries_without_numbers_say_so(content):
    for country in ("MM", "SG", "HK", "TW"):
        text, shown = helplines.numbers_text(content, "crisis", "en", country, "VN")
        assert "confirmed" in text.lower()


def test_abroad_line_for_the_home_country(content):
    text, shown = helplines.numbers_text(content, "emergency", "en", "MY", "VN")
    assert "vn-consular-abroad" in shown and "my-999" in shown


def test_no_phone_numbers_in_answers_or_messages(content):
    """Answers and messages never carry a number: the numbers come from
    helplines.yml, with their source."""
    number = re.compile(r"(?<![\w.])(?:\+\d[\d \-]{6,}\d|\d{3,4}[ \-]\d{3,4}(?:[ \-]\d{2,4})?|1[0-9]{3,4})(?![\w.])")
    allowed = re.compile(r"\b(19|20)\d\d\b|\b2551\b|\b2560\b|\b2561\b|\b670\b")
    for guide in content.guides.values():
        for language, entry in guide.languages.items():
            for field in ("survivor", "survivor_more", "practitioner"):
                found = [m for m in number.findall(entry[field]) if not allowed.search(m)]
                assert not found, f"{guide.path.name}: {language}.{field}: {found}"
    for key, texts in content.messages.items():
        for language, text in texts.items():
            found = [m for m in number.findall(text) if not allowed.search(m)]
            assert not found, f"messages.{key}.{language}: {found}"


def test_names_are_in_the_users_language(content):
    """No English name of a line inside another language's answer (brands such
    as SAPA, MAPO or HEAL may stay)."""
    for line in content.helplines:
        english = line.names["en"]
        for language in CODES:
            if language != "en":
                assert line.names[language] != english, f"{line.id}: {language} name is the English one"
