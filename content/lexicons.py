"""The crisis and conversation lexicons of every language (data/lexicons/<lang>/).

- ``emergency.yml``: danger now from other people; ``self_harm.yml``: thoughts
  of ending one's life or of self-harm. Each has ``patterns`` and
  ``negative_patterns`` (past, hypothetical or procedural phrasing that cancels
  that language's hits; languages of one family, Malay and Indonesian, share
  them). Missing a crisis is the worst failure this product can have, so both
  run on every message in every language at once (a frightened, misspelt
  message's language may itself be misjudged), before and apart from the intent
  classifier, and inside a paused conversation too.
- ``signals.yml``: what a message says about the writer and the conversation:
  ``minor_self`` (the writer is under 18), ``reporter`` (they write about
  someone else), ``child_other`` (that someone is a child), ``practitioner_role``
  and ``survivor_role`` (who they are), ``clear_yes`` (an unambiguous yes to a
  consent question), ``not_now``, ``fear_of_being_seen``, ``present`` (now,
  tonight, still). A pattern with a named group ``age`` counts only when the age
  is under 18.

Patterns are Python regular expressions, searched in the normalised message and,
for Latin-script languages, also without diacritics (people type Vietnamese
without them); Thai, Burmese, Khmer and Lao are matched as written. A broken
pattern is logged by file and position and skipped; the others stay on.

Long messages: a long account of what happened is not an emergency now. In a
message of more than ``LONG_MESSAGE`` characters, a danger pattern counts only in
its last two sentences or, in its last part, in a sentence that says now,
tonight, still ... (``present``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import re
from typing import Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import yaml

from content import languages
from content.paths import lexicon_dir
from content.text import normalise, strip_accents

logger = logging.getLogger(__name__)

SIGNALS = (
    "minor_self",
    "reporter",
    "child_other",
    "practitioner_role",
    "survivor_role",
    "clear_yes",
    "not_now",
    "fear_of_being_seen",
    "present",
    "writer_in_danger",
    "question",
)
CRISES = ("emergency", "self_harm")
BUILTIN_EMERGENCY = (r"\bsos\b", r"\bmayday\b")  # universal distress words, whatever the files say
LONG_MESSAGE = 400
RECENT_SHARE = 0.25  # the last part of a long message where a sign of now still counts
ADULT_AGE = 18
DIGITS = str.maketrans("၀၁၂၃၄၅၆၇၈၉០១២៣៤៥៦៧៨៩໐໑໒໓໔໕໖໗໘໙๐๑๒๓๔๕๖๗๘๙", "0123456789012345678901234567890123456789")
SENTENCE_RE = re.compile(r"(?<=[.!?。\n])\s+|(?<=[។၊။])\s*")


@dataclasses.dataclass(frozen=True)
class Patterns:
    positive: Tuple["re.Pattern[str]", ...] = ()
    negative: Tuple["re.Pattern[str]", ...] = ()


@dataclasses.dataclass(frozen=True)
class Lexicon:
    language: str
    crises: Dict[str, Patterns]
    signals: Dict[str, Tuple["re.Pattern[str]", ...]]
    samples: Dict[str, Dict[str, List[str]]]


def _compile(patterns: Sequence, where: str) -> Tuple["re.Pattern[str]", ...]:
    compiled = []
    for i, pattern in enumerate(patterns or []):
        try:
            compiled.append(re.compile(str(pattern), re.IGNORECASE))
        except re.error as error:
            logger.error("lexicon %s[%d] does not compile (%s); the others stay on", where, i, error)
    return tuple(compiled)


def _read(path: pathlib.Path) -> dict:
    if not path.exists():
        logger.warning("lexicon missing: %s", path)
        return {}
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as error:
        logger.error("lexicon %s cannot be read (%s); the other languages stay on", path, type(error).__name__)
        return {}


@functools.lru_cache(maxsize=None)
def load(language: str, directory: Optional[str] = None) -> Lexicon:
    folder = pathlib.Path(directory) if directory else lexicon_dir(language)
    crises = {}
    samples: Dict[str, Dict[str, List[str]]] = {}
    for crisis in CRISES:
        data = _read(folder / f"{crisis}.yml")
        crises[crisis] = Patterns(
            _compile(data.get("patterns") or [], f"{language}/{crisis}.yml patterns"),
            _compile(data.get("negative_patterns") or [], f"{language}/{crisis}.yml negative_patterns"),
        )
        samples.update({f"{crisis}:{k}": v for k, v in (data.get("samples") or {}).items()})
    data = _read(folder / "signals.yml")
    signals = {name: _compile(data.get(name) or [], f"{language}/signals.yml {name}") for name in SIGNALS}
    samples.update(data.get("samples") or {})
    return Lexicon(language, crises, signals, samples)


def all_lexicons() -> Tuple[Lexicon, ...]:
    return tuple(load(code) for code in languages.CODES)


def forms(text: str) -> FrozenSet[str]:
    """The forms a pattern is searched in: the normalised text, digits of every
    script as 0-9, and, when it has Latin letters, also without diacritics."""
    lowered = normalise(text[:20000]).translate(DIGITS)
    if any("a" <= ch <= "z" for ch in lowered):
        return frozenset({lowered, strip_accents(lowered)})
    return frozenset({lowered})


def _sentences(text: str) -> List[str]:
    return [s for s in SENTENCE_RE.split(text) if s.strip()]


def _window(text: str, present: Tuple["re.Pattern[str]", ...]) -> str:
    """What of a long message may hold a danger now: its last two sentences, and
    the sentences with a sign of now in its last part (a long account of the
    past, with "every day" early in it, ends with a question, not a plea)."""
    if len(text) <= LONG_MESSAGE:
        return text
    sentences = _sentences(text)
    tail = sentences[int(len(sentences) * (1 - RECENT_SHARE)) : -2] if len(sentences) > 2 else []
    keep = sentences[-2:] + [s for s in tail if any(p.search(s) for p in present)]
    return " ".join(keep)


def crisis_hits(text: Optional[str], crisis: str) -> List[str]:
    """The languages whose ``crisis`` patterns fire on ``text`` (after their
    family's negative patterns)."""
    if not text or not isinstance(text, str):
        return []
    lexicons = all_lexicons()
    present = tuple(p for lex in lexicons for p in lex.signals.get("present", ()))
    variants = forms(text)
    if crisis == "emergency":
        variants = frozenset(_window(v, present) for v in variants)
    negatives = {lex.language: lex.crises[crisis].negative for lex in lexicons}
    hits = []
    if crisis == "emergency" and any(re.search(p, v, re.IGNORECASE) for p in BUILTIN_EMERGENCY for v in variants):
        hits.append("*")
    for lex in lexicons:
        if any(p.search(v) for p in lex.crises[crisis].positive for v in variants):
            cancel = [n for code in languages.family_of(lex.language) for n in negatives.get(code, ())]
            if not any(n.search(v) for n in cancel for v in variants):
                hits.append(lex.language)
    return hits


def crisis_negated(text: Optional[str], crisis: str) -> bool:
    """Whether a negative pattern of ``crisis`` (an idiom, a joke, a past or
    procedural phrasing: "so hungry I could die haha") matches ``text`` in any
    language. Used where the classifier alone saw a crisis."""
    if not text or not isinstance(text, str):
        return False
    variants = forms(text)
    return any(n.search(v) for lex in all_lexicons() for n in lex.crises[crisis].negative for v in variants)


def crisis_kinds(text: Optional[str]) -> FrozenSet[str]:
    """{"danger", "self_harm"}, either, or nothing."""
    kinds = set()
    if crisis_hits(text, "self_harm"):
        kinds.add("self_harm")
    if crisis_hits(text, "emergency"):
        kinds.add("danger")
    return frozenset(kinds)


def crisis_kind(text: Optional[str]) -> Optional[str]:
    """The crisis a message describes: ``self_harm`` before ``danger`` (a person
    thinking of suicide is never sent the police script alone), or None."""
    kinds = crisis_kinds(text)
    return "self_harm" if "self_harm" in kinds else ("danger" if kinds else None)


def _reading_languages(language: Optional[str]) -> Tuple[str, ...]:
    """The lexicons a signal is read in: the conversation's language and English,
    or every language when the conversation's is not known."""
    if language is not None and languages.is_supported(language):
        return tuple(dict.fromkeys((language, languages.DEFAULT)))
    return languages.CODES


def _ages(text: Optional[str], name: str, language: Optional[str]) -> Iterator[Optional[int]]:
    """For every match of signal ``name`` in ``text`` (in the languages
    :func:`_reading_languages` names): the age its ``age`` group found (-1 when
    that group holds no number), or None when the pattern has no such group."""
    if not text or not isinstance(text, str):
        return
    variants = forms(text)
    for code in _reading_languages(language):
        for pattern in load(code).signals.get(name, ()):
            for variant in variants:
                for match in pattern.finditer(variant):
                    age = match.groupdict().get("age")
                    yield None if age is None else (int(age) if age.isdigit() else -1)


def signal(text: Optional[str], name: str, language: Optional[str] = None) -> bool:
    """Whether a signal of ``signals.yml`` is in ``text``: read in ``language``
    (the conversation's) and English, which people mix into every language; in
    every language when it is not known. Unlike a crisis, a signal is read in
    one language: Malay and Indonesian judge shared words differently (whose
    husband, whose friend). An ``age`` group must be under 18."""
    return any(age is None or 0 <= age < ADULT_AGE for age in _ages(text, name, language))


def adult_age_stated(text: Optional[str], language: Optional[str] = None) -> bool:
    """Whether a ``minor_self`` pattern with an ``age`` group finds the writer's
    age at 18 or over ("I am 23", "ຂ້ອຍອາຍຸ 23"): the writer says they are an
    adult, whatever the classifier made of other numbers in the message."""
    return any(age is not None and ADULT_AGE <= age < 100 for age in _ages(text, "minor_self", language))


def signals(text: Optional[str], language: Optional[str] = None) -> FrozenSet[str]:
    return frozenset(name for name in SIGNALS if signal(text, name, language))


def warm_up() -> None:
    for lex in all_lexicons():
        lex.crises  # noqa: B018 - loading is the point
