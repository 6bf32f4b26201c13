"""The language registry, read from data/languages.yml: the only place where
Waypoint's languages are listed. Everything else (the NLU components, the
actions, the channels, the web page, the content checks, the tests) learns them
from here.

Adding a language is one entry in that file plus its data (README, "Adding a
language"; tests/test_registry.py walks that checklist for a made-up language):

- ``data/nlu/<code>/*.yml``: examples, each intent block with
  ``metadata: {language: <code>}``;
- ``data/messages.yml``: every message in the language;
- ``data/guides/*/*.yml``: every answer (both audiences), title and country note;
- ``data/countries.yml`` and ``data/helplines.yml``: names in the language;
- ``data/lexicons/<code>/``: ``emergency.yml``, ``self_harm.yml``,
  ``signals.yml`` and, for a Latin-script language, ``markers.yml``.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, Optional, Tuple

from content.paths import data_dir

# How the length of a first answer is measured and bounded (issue: one phone screen).
WORD_LIMIT = 80
CHAR_LIMIT = 450


@dataclasses.dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1
    native_name: str  # on buttons and in the web page's picker
    english_name: str
    script: str  # "latin", "thai", "myanmar", "khmer", "lao"
    tokenizer: str  # how words are cut: "words" (spaces), "pythainlp", "pyvi", "khmer-nltk", "laonlp", "syllables"
    hint_aliases: Tuple[str, ...] = ()  # other codes channels send for it (ISO 639-2/3, legacy)
    names: Tuple[str, ...] = ()  # how people name the language in any of ours ("can you speak Thai?")
    spacy_blank: Optional[str] = None  # spaCy's blank language, where it has one that segments this script
    distinct_letters: str = ""  # letters only this Latin-script language writes (unambiguous evidence)
    family: str = ""  # languages of one family share greetings and negative crisis patterns (Malay, Indonesian)
    font_package: str = ""  # Debian package with a font for its script (screenshots, browser tests)
    locale: str = ""  # BCP 47 with the region most of its users write from ("ms-MY"); the code when absent

    @property
    def latin(self) -> bool:
        return self.script == "latin"

    @property
    def folds_accents(self) -> bool:
        """Latin-script text is also matched without diacritics (people type
        Vietnamese without them); other scripts' marks are letters."""
        return self.latin

    @property
    def length_unit(self) -> str:
        """Words where words are separated by spaces, characters otherwise."""
        return "words" if self.latin else "characters"

    @property
    def length_limit(self) -> int:
        return WORD_LIMIT if self.latin else CHAR_LIMIT


SCRIPTS: Dict[str, Tuple[Tuple[int, int], ...]] = {
    "thai": ((0x0E00, 0x0E7F),),
    "lao": ((0x0E80, 0x0EFF),),
    "myanmar": ((0x1000, 0x109F), (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F)),
    "khmer": ((0x1780, 0x17FF), (0x19E0, 0x19FF)),
}


def _load() -> Tuple[Language, ...]:
    """The entries of data/languages.yml (the registry's one file)."""
    import yaml

    path = data_dir() / "languages.yml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = []
    fields = {f.name for f in dataclasses.fields(Language)}
    for item in raw.get("languages") or []:
        values = {k: v for k, v in (item or {}).items() if k in fields}
        for key in ("hint_aliases", "names"):
            values[key] = tuple(str(v) for v in values.get(key) or ())
        entries.append(Language(**values))
    if not entries:
        raise RuntimeError(f"{path}: no languages")
    unknown = [e.code for e in entries if e.script != "latin" and e.script not in SCRIPTS]
    if unknown:
        raise RuntimeError(f"{path}: unknown script for {', '.join(unknown)}")
    return tuple(entries)


REGISTRY: Tuple[Language, ...] = _load()
BY_CODE: Dict[str, Language] = {lang.code: lang for lang in REGISTRY}
CODES: Tuple[str, ...] = tuple(lang.code for lang in REGISTRY)
DEFAULT = "en"
LATIN_CODES: Tuple[str, ...] = tuple(lang.code for lang in REGISTRY if lang.latin)

# Reasons the language identifier gives for a message it cannot answer in one
# of ours (the actions then offer the language choice).
UNSUPPORTED_REASONS = ("unsupported script", "unsupported language")


def family_of(code: str) -> Tuple[str, ...]:
    """The languages of ``code``'s family (itself first), or just ``code``."""
    lang = BY_CODE.get(code)
    if lang is None or not lang.family:
        return (code,)
    return (code,) + tuple(other.code for other in REGISTRY if other.family == lang.family and other.code != code)


def members(family: str) -> Tuple[str, ...]:
    return tuple(lang.code for lang in REGISTRY if lang.family == family)


def get(code: Optional[str]) -> Optional[Language]:
    return BY_CODE.get(code or "")


def is_supported(code: Optional[str]) -> bool:
    return (code or "") in BY_CODE


def or_default(code: Optional[str]) -> str:
    return code if code in BY_CODE else DEFAULT


def normalise_hint(hint: Optional[str]) -> Optional[str]:
    """A channel's language hint ('en-US', 'ms_MY', 'in', 'mya') -> one of ours, else None."""
    if not hint or not isinstance(hint, str):
        return None
    code = hint.strip().lower().replace("_", "-").split("-")[0]
    if code in BY_CODE:
        return code
    for lang in REGISTRY:
        if code in lang.hint_aliases:
            return lang.code
    return None


def script_of(ch: str) -> Optional[str]:
    """The registry script a character belongs to (None for Latin, digits, punctuation)."""
    point = ord(ch)
    for script, ranges in SCRIPTS.items():
        if any(lo <= point <= hi for lo, hi in ranges):
            return script
    return None


def script_pattern(script: str) -> "re.Pattern[str]":
    return re.compile("[" + "".join(f"\\u{lo:04X}-\\u{hi:04X}" for lo, hi in SCRIPTS[script]) + "]")


def languages_of_script(script: str) -> Tuple[str, ...]:
    return tuple(lang.code for lang in REGISTRY if lang.script == script)


def language_buttons(payload: str = '/choose_language{{"language_choice":"{code}"}}') -> list:
    return [{"title": lang.native_name, "payload": payload.format(code=lang.code)} for lang in REGISTRY]
