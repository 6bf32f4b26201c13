"""Countries, cities and nationalities named in a message (data/countries.yml,
data/places.yml).

Where the user is and where they are from are two different things:

- ``located``: the country the message says the user is in ("I'm in KL",
  "aku di surabaya", "toi o ha noi", "อยู่เชียงราย", a city or province named
  alone in answer to "which country?");
- ``home``: the country they are from ("I'm Vietnamese", "saya orang Indonesia",
  "from Myanmar");
- ``named``: every country the message names, whatever for ("numbers for
  thailand", "what about Malaysia?").

Matching: Latin-script names lower-cased and without diacritics, as whole words;
Vietnamese names that are common words once folded only as written; Thai,
Burmese, Khmer and Lao names as written, as substrings (those scripts put no
spaces between words). The longest match wins, so "lao cai" is Vietnam (not
Laos), "mang thai" (pregnant) is no place and "ภาษาไทย" is a language.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Optional, Tuple

from content.text import normalise, strip_accents

if TYPE_CHECKING:  # pragma: no cover
    from content.loader import Content

# Words just before a name that say "I am there" (accents folded), and after it
# for Burmese (postposition).
LOCATED_BEFORE = re.compile(
    r"(?<!\w)(?:in|at|inside|di|kat|dekat|dkt|dlm|dalam|sini di|o|tai|ben|dang o|"
    r"now in|stuck in|here in|ada di|skrg di|sekarang di|sy di|aku di|saya di|sang|qua ben)"
    r"[\s:,-]*$"
)
LOCATED_BEFORE_SCRIPT = re.compile(r"(?:อยู่|ที่|ตอนนี้อยู่|ใน|នៅ|ក្នុង|ຢູ່|ທີ່|ໃນ)\s*$")
LOCATED_AFTER_SCRIPT = re.compile(r"^\s*(?:မှာ|ထဲမှာ)")
FROM_BEFORE = re.compile(
    r"(?<!\w)(?:from|dari|asal|asal dari|org|orang|tu|tu ben|nguoi|quê|que|"
    r"(?:back\s+)?home\s+in|kampung\s+(?:halaman\s+)?(?:saya\s+|aku\s+|sy\s+|ku\s+)?(?:di|kat)|tanah\s+air|"
    r"que\s+(?:o|nha\s+o)|ve\s+nuoc|nuoc\s+minh\s+o)[\s:,-]*$"
)
FROM_BEFORE_SCRIPT = re.compile(r"(?:มาจาก|คน|ชาว|មកពី|ຈາກ|ມາຈາກ)\s*$")
# The writer's own place, where a message names two ("my friend is in Cambodia,
# I'm in Ipoh"): a first person just before the locative.
SELF_BEFORE = re.compile(
    r"(?<!\w)(?:i\s*'?\s*m|im|i\s+am|i\s+live|we\s+are|we\s*'?re|saya|sy|aku|ak|gue|gw|kami|"
    r"toi|tui|em|minh|bon\s+em|chung\s+toi)\s+(?:\w+\s+){0,2}?"
    r"(?:in|at|di|kat|dekat|dkt|dlm|o|dang\s+o|ben)[\s:,-]*$|"
    r"(?<!\w)(?:now|currently|skrg|sekarang|skg|kini|gio|bay\s+gio|hien\s+dang|hien\s+tai)\s+"
    r"(?:in|at|di|kat|dekat|dkt|o|dang\s+o|ben)[\s:,-]*$"
)
SELF_BEFORE_SCRIPT = re.compile(
    r"(?:(?:ผม|ฉัน|หนู|เรา|ดิฉัน|กู)\s*(?:ตอนนี้|ทำงาน)?|ตอนนี้)\s*(?:อยู่|อยู่ที่|ที่)\s*$|"
    r"ខ្ញុំ\s*(?:\S+\s*)?នៅ\s*$|ຂ້ອຍ\s*(?:\S+\s*)?ຢູ່\s*$"
)
LATIN = re.compile(r"[a-z]")


@dataclasses.dataclass(frozen=True)
class Entry:
    form: str
    kind: str  # country | place | nationality | language | not_place
    country: Optional[str]
    script: bool  # matched as a substring (Thai, Burmese, Khmer, Lao)
    folded: bool  # matched in the accent-folded text


@dataclasses.dataclass(frozen=True)
class Match:
    entry: Entry
    start: int
    end: int
    located: bool
    from_here: bool
    self_located: bool = False  # "I'm in ...", "saya kat ...": the writer's own place


@dataclasses.dataclass(frozen=True)
class Found:
    matches: Tuple[Match, ...] = ()

    def _countries(self, kinds: Tuple[str, ...], test=lambda m: True) -> FrozenSet[str]:
        return frozenset(m.entry.country for m in self.matches if m.entry.kind in kinds and m.entry.country and test(m))

    @property
    def named(self) -> FrozenSet[str]:
        return self._countries(("country", "place"))

    @property
    def located(self) -> Optional[str]:
        """The one country the message says the user is in (None if none or several)."""
        found = self._countries(("country", "place"), lambda m: m.located and not m.from_here)
        if len(found) > 1:  # two places: the one the writer says they are in
            found = self._countries(("country", "place"), lambda m: m.self_located and not m.from_here)
        return next(iter(found)) if len(found) == 1 else None

    @property
    def places(self) -> FrozenSet[str]:
        """Countries of cities, provinces and states named (a place names where one is)."""
        return self._countries(("place",), lambda m: not m.from_here)

    @property
    def home(self) -> Optional[str]:
        found = self._countries(("nationality",)) | self._countries(("country", "place"), lambda m: m.from_here)
        return next(iter(found)) if len(found) == 1 else None

    @property
    def only_place(self) -> Optional[str]:
        """The one country named, when the message names exactly one (for an
        answer to "which country are you in?")."""
        named = self.named
        return next(iter(named)) if len(named) == 1 else None


def _is_script(form: str) -> bool:
    return not LATIN.search(strip_accents(form)) and any(not ch.isascii() for ch in form)


def _entries(raw_countries: Dict, raw_places: Dict) -> List[Entry]:
    entries: List[Entry] = []

    def add(form: str, kind: str, country: Optional[str], as_written: bool = False) -> None:
        form = normalise(str(form))
        if not form:
            return
        script = _is_script(form)
        entries.append(
            Entry(
                form if (script or as_written) else strip_accents(form),
                kind,
                country,
                script,
                folded=not (script or as_written),
            )
        )

    for code, info in (raw_countries or {}).items():
        for name in list((info or {}).get("names", {}).values()) + list((info or {}).get("aliases") or []):
            add(name, "country", code)
        for name in (info or {}).get("aliases_as_written") or []:
            add(name, "country", code, as_written=True)
    for code, names in (raw_places.get("places") or {}).items():
        for name in names or []:
            add(name, "place", code)
    for code, names in (raw_places.get("places_as_written") or {}).items():
        for name in names or []:
            add(name, "place", code, as_written=True)
    for code, names in (raw_places.get("nationalities") or {}).items():
        for name in names or []:
            add(name, "nationality", code)
    for names in (raw_places.get("languages") or {}).values():
        for name in names or []:
            add(name, "language", None)
    for item in raw_places.get("conflicts") or []:
        add(item.get("text", ""), "place", item.get("country"))
    for names in (raw_places.get("not_places") or {}).values():
        for name in names or []:
            add(name, "not_place", None)
    return entries


class Matcher:
    def __init__(self, entries: List[Entry]) -> None:
        self.entries = sorted(entries, key=lambda e: -len(e.form))
        latin = [e for e in self.entries if e.folded]
        written = [e for e in self.entries if not e.folded and not e.script]
        script = [e for e in self.entries if e.script]
        self._latin = self._compile(latin, words=True)
        self._written = self._compile(written, words=True)
        self._script = self._compile(script, words=False)
        self._by_form = {(e.form, e.folded, e.script): e for e in reversed(self.entries)}

    @staticmethod
    def _compile(entries: List[Entry], words: bool) -> Optional["re.Pattern[str]"]:
        if not entries:
            return None
        alternatives = "|".join(re.escape(e.form) for e in entries)
        return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)" if words else f"(?:{alternatives})")

    def find(self, text: str) -> Found:
        if not text or not text.strip():
            return Found()
        written = normalise(text[:4000])
        folded = strip_accents(written)
        spans: List[Tuple[int, int, Entry, str]] = []
        for pattern, where, folded_form, script in (
            (self._latin, folded, True, False),
            (self._written, written, False, False),
            (self._script, written, False, True),
        ):
            if pattern is None:
                continue
            for m in pattern.finditer(where):
                entry = self._by_form.get((m.group(0), folded_form, script))
                if entry is not None:
                    spans.append((m.start(), m.end(), entry, where))
        # The longest match wins where two overlap (positions agree: folding keeps lengths
        # for Latin text; scripts are matched unfolded).
        spans.sort(key=lambda s: (-(s[1] - s[0]), s[0]))
        taken: List[Tuple[int, int]] = []
        matches: List[Match] = []
        for start, end, entry, where in spans:
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            if entry.kind in ("not_place", "language"):
                continue
            before = where[max(0, start - 24) : start]
            before_folded = strip_accents(before)
            after = where[end : end + 8]
            located = bool(
                LOCATED_BEFORE.search(before_folded)
                or LOCATED_BEFORE_SCRIPT.search(before)
                or LOCATED_AFTER_SCRIPT.search(after)
            )
            from_here = bool(FROM_BEFORE.search(before_folded) or FROM_BEFORE_SCRIPT.search(before))
            self_located = bool(SELF_BEFORE.search(before_folded) or SELF_BEFORE_SCRIPT.search(before))
            matches.append(Match(entry, start, end, located or self_located, from_here, self_located))
        return Found(tuple(sorted(matches, key=lambda m: m.start)))


@functools.lru_cache(maxsize=4)
def _matcher(content_id: int, countries_key: int) -> Matcher:
    import yaml

    from content.paths import data_dir

    raw_places: Dict[str, Any] = {}
    path = data_dir() / "places.yml"
    if path.exists():
        raw_places = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return Matcher(_entries(_CONTENT[content_id].countries, raw_places))


_CONTENT: Dict[int, "Content"] = {}


def find(content: "Content", text: str) -> Found:
    """What ``text`` names (module docstring)."""
    _CONTENT[id(content)] = content
    if len(_CONTENT) > 4:
        for key in list(_CONTENT)[:-4]:
            _CONTENT.pop(key, None)
    return _matcher(id(content), len(content.countries)).find(text)


def country_in_text(content: "Content", text: str, located: bool = False) -> Optional[str]:
    """The one country a message names (or, with ``located``, says the user is in)."""
    found = find(content, text)
    return found.located if located else found.only_place
