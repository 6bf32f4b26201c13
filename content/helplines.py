"""Which verified numbers to show for a need, a country and a nationality, and
how they read in a language. Shared by the action server (its answers), the
Rasa server (answers while the action server is down, the hand-off relay) and
the channels, so that a number reads the same wherever it is shown.

Needs and the kinds of line that serve them, in the order they are shown:

- ``emergency``: the general emergency number or the police first, then the
  ambulance, then a line for foreigners, then the anti-trafficking line;
- ``crisis``: suicide and mental-health lines (never police numbers);
- ``child``: child lines, then the anti-trafficking line;
- ``trafficking``: anti-trafficking lines, then lines for violence;
- ``helplines``: everything the country has, emergency numbers first.

Nationals abroad: when the user's nationality is known and differs from the
country they are in (or that country is unknown to us), their home country's
line for citizens abroad is added. The language of a message is never taken as
a nationality.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Iterable, List, Optional, Sequence, Tuple

from content.texts import text

if TYPE_CHECKING:  # pragma: no cover
    from content.loader import Content, Helpline

ORDER = {
    "emergency": ("general", "police", "ambulance", "fire", "foreigners", "trafficking"),
    "crisis": ("crisis",),
    "child": ("child", "trafficking"),
    "trafficking": ("trafficking", "violence"),
    "report": ("trafficking", "general", "police", "violence", "child"),
    "helplines": ("general", "police", "ambulance", "fire", "foreigners", "trafficking", "violence", "child", "crisis"),
}
NEEDS = tuple(ORDER)
CHANNEL_LABELS = {"phone": "☎", "sms": "SMS", "whatsapp": "WhatsApp", "web": "🌐", "email": "✉"}


def _rank(helpline: "Helpline", need: str) -> Optional[int]:
    ranks = [ORDER[need].index(k) for k in helpline.kinds if k in ORDER[need]]
    return min(ranks) if ranks else None


def for_need(content: "Content", need: str, country: Optional[str], exclude: Iterable[str] = ()) -> List["Helpline"]:
    """The verified lines of ``country`` (every country's when None) for ``need``, in order."""
    skip = set(exclude)
    chosen = [
        (h, _rank(h, need))
        for h in content.helplines
        if (country is None or h.country == country) and "nationals_abroad" not in h.kinds and h.id not in skip
    ]
    countries = [c for c in content.countries if any(h.country == c for h, _ in chosen)]
    ranked = [(countries.index(h.country), r, i, h) for i, (h, r) in enumerate(chosen) if r is not None]
    return [h for *_, h in sorted(ranked, key=lambda item: item[:3])]


def abroad_lines(content: "Content", nationality: Optional[str], country: Optional[str]) -> List["Helpline"]:
    """The home country's lines for its citizens abroad, when the user is not at home."""
    if not nationality or nationality == country:
        return []
    return [h for h in content.helplines if h.country == nationality and "nationals_abroad" in h.kinds]


def format_line(helpline: "Helpline", language: str, now: Optional[dt.datetime] = None) -> str:
    """• name
    ☎ 191 · WhatsApp 019-261 5999 (open 24 hours)
    where it works, when not everywhere"""
    parts = []
    for channel in helpline.channels:
        value = str(channel["value"])
        if channel.get("extension"):
            value += " " + text("helpline_extension", language, extension=channel["extension"])
        note = channel.get("note") or {}
        note_text = note.get(language) or note.get("en") if note else ""
        parts.append(f"{CHANNEL_LABELS[channel['type']]} {value}" + (f" ({note_text})" if note_text else ""))
    status = helpline.open_now(now)
    hours = helpline.hours_text(language)
    if helpline.hours.get("always"):
        hours = text("open_24h", language)
    elif status is not None:
        hours = text("open_now" if status else "closed_now", language) + (f", {hours}" if hours else "")
    line = f"• {helpline.name(language)}\n  {' · '.join(parts)}" + (f" ({hours})" if hours else "")
    area = helpline.area_text(language)
    return line + (f"\n  {area}" if area else "")


def block(
    content: "Content",
    helplines: Iterable["Helpline"],
    language: str,
    group_by_country: bool,
    now: Optional[dt.datetime] = None,
) -> str:
    lines: List[str] = []
    current = None
    for helpline in helplines:
        if group_by_country and helpline.country != current:
            current = helpline.country
            lines.append(f"\n{content.country_name(current, language)}:")
        lines.append(format_line(helpline, language, now))
    return "\n".join(lines).strip()


def numbers_text(
    content: "Content",
    need: str,
    language: str,
    country: Optional[str],
    nationality: Optional[str] = None,
    now: Optional[dt.datetime] = None,
    exclude: Iterable[str] = (),
    abroad_from: Optional[str] = None,
) -> Tuple[str, List[str]]:
    """The numbers for a need as one message, and the ids of the lines it holds
    (none: it says plainly that no confirmed number is known).

    A known country with no verified line of the kind says so plainly and falls
    back to what is verified (its emergency numbers for a child; the home
    country's line abroad). A country we know by name but have no numbers for
    (Singapore, Taiwan ...) says so too. Unknown country: every country's lines.

    ``abroad_from``: the user is in that country and asks for the numbers of
    ``country``, their home: its line for citizens abroad comes first (short
    numbers such as 1343 work only inside the country)."""
    known = country in content.countries and any(h.country == country for h in content.helplines)
    place = content.country_name(country, language) if country else ""
    lines = for_need(content, need, country if known else None, exclude) if (known or not country) else []
    parts: List[str] = []
    home_abroad: List["Helpline"] = []
    if abroad_from and country and abroad_from != country:
        home_abroad = [
            h
            for h in content.helplines
            if h.country == country and "nationals_abroad" in h.kinds and h.id not in set(exclude)
        ]
        if home_abroad:
            parts.append(text("numbers_intro_abroad", language, country=place))
            parts.append(block(content, home_abroad, language, group_by_country=False, now=now))
    if country and not known:
        parts.append(text("helplines_no_numbers_country", language, country=place))
    elif lines:
        intro_key = {
            "emergency": "numbers_intro_emergency",
            "crisis": "numbers_intro_crisis",
            "child": "numbers_intro_child",
        }.get(need, "numbers_intro")
        parts.append(text(intro_key, language, country=place) if country else text(intro_key + "_all", language))
        parts.append(block(content, lines, language, group_by_country=not country, now=now))
    else:
        parts.append(text("helplines_none_of_kind", language, country=place, kind=text(f"need_{need}", language)))
        if need == "child" and known:  # never police numbers for a crisis of self-harm
            fallback = for_need(content, "emergency", country)
            if fallback:
                parts.append(text("numbers_intro_emergency", language, country=place))
                parts.append(block(content, fallback, language, group_by_country=False, now=now))
                lines = fallback
    abroad = [] if home_abroad else abroad_lines(content, nationality, country if known else None)
    if abroad:
        parts.append(text("numbers_intro_abroad", language, country=content.country_name(nationality, language)))
        parts.append(block(content, abroad, language, group_by_country=False, now=now))
    return "\n\n".join(p for p in parts if p), [h.id for h in home_abroad + lines + abroad]


def crisis_text(
    content: "Content", need: str, language: str, country: Optional[str], nationality: Optional[str] = None
) -> str:
    """A crisis's numbers as one message, the way the crisis action shows them:
    the country's lines when we know the country, else one short line per
    country (:func:`compact_text`), never the long all-country list. The hand-off
    relay and the Rasa server's own degraded answer use it too."""
    if country and country in content.countries:
        return numbers_text(content, need, language, country, nationality)[0]
    return compact_text(content, need, language, nationality)


def compact_text(content: "Content", need: str, language: str, nationality: Optional[str] = None) -> str:
    """Every country's numbers for a need, one short line each ("Thailand: ☎ 191 ·
    ☎ 1155 · ☎ 1669"): what a person in danger who has not said where they are can
    read on one screen."""
    lines = []
    for code in content.countries:
        numbers = [
            str(c["value"])
            for h in for_need(content, need, code)
            for c in h.channels
            if c["type"] in ("phone", "sms", "whatsapp")
        ]
        if numbers:
            unique = list(dict.fromkeys(numbers))
            phone = CHANNEL_LABELS["phone"]  # the mark the web page and apps turn into a tap-to-call link
            lines.append(f"{content.country_name(code, language)}: {' · '.join(f'{phone} {n}' for n in unique[:4])}")
    parts = [
        text("numbers_intro_" + need + "_all", language)
        if need in ("emergency", "crisis", "child")
        else text("numbers_intro_all", language),
        "\n".join(lines),
    ]
    abroad = abroad_lines(content, nationality, None)
    if abroad:
        parts.append(text("numbers_intro_abroad", language, country=content.country_name(nationality, language)))
        parts.append(block(content, abroad, language, group_by_country=False))
    return "\n\n".join(parts)


def first_numbers(content: "Content", need: str, country: Optional[str], limit: int = 2) -> str:
    """The first numbers for a need in a country, for a short reminder ("191 · 1669")."""
    numbers = [str(c["value"]) for h in for_need(content, need, country) for c in h.channels if c["type"] == "phone"]
    return " · ".join(list(dict.fromkeys(numbers))[:limit])


def find_number(content: "Content", typed: str) -> Optional["Helpline"]:
    """The helpline whose number the user typed back ("1300", "03-8000 8000")."""
    digits = "".join(ch for ch in typed if ch.isdigit())
    for helpline in content.helplines:
        for channel in helpline.channels:
            if digits and digits == "".join(ch for ch in str(channel["value"]) if ch.isdigit()):
                return helpline
    return None


def all_numbers(helplines: Sequence["Helpline"]) -> List[str]:
    return [str(c["value"]) for h in helplines for c in h.channels if c["type"] in ("phone", "sms", "whatsapp")]
