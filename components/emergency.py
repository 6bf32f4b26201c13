"""High-recall detector for immediate danger and thoughts of self-harm.

Missing an emergency is the worst failure this product can have, so this runs
on every message, in every language at once (the language of a frightened,
misspelt message may itself be misjudged), before and independently of the
intent classifier, and also inside a conversation paused for a counsellor.

Patterns live in ``lexicons/emergency_<lang>.yml``: ``patterns`` (regular
expressions, searched in the lower-cased text and in its accent-stripped form)
and ``negative_patterns`` (past, hypothetical or procedural phrasing that marks
a mention of danger as not happening now). A negative pattern of a language
only cancels that language's hits.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import re
from typing import List, Optional, Tuple

import yaml

from components import LANGUAGES
from components.textnorm import THAI_RE, normalise, strip_accents

logger = logging.getLogger(__name__)
LEXICON_DIR = pathlib.Path(__file__).parent / "lexicons"

FAMILIES = {"id": ("id", "ms"), "ms": ("ms", "id")}

# Always on, whatever the lexicon files say: universal distress signals.
BUILTIN_PATTERNS = [r"\bsos\b", r"\b(?:911|999|112)\b", r"\bmayday\b"]


@dataclasses.dataclass(frozen=True)
class LanguagePatterns:
    language: str
    positive: Tuple[re.Pattern, ...]
    negative: Tuple[re.Pattern, ...]


@dataclasses.dataclass
class Detection:
    is_emergency: bool
    languages: List[str]

    def __bool__(self) -> bool:
        return self.is_emergency


def _compile(patterns, path: pathlib.Path, field: str) -> Tuple[re.Pattern, ...]:
    compiled = []
    for i, pattern in enumerate(patterns or []):
        try:
            compiled.append(re.compile(str(pattern), re.IGNORECASE))
        except re.error as error:
            # A broken pattern must not silence the others; it is named in the log.
            logger.error("emergency lexicon %s: %s[%d] does not compile: %s", path.name, field, i, error)
    return tuple(compiled)


@functools.lru_cache(maxsize=4)
def load_lexicons(directory: str = str(LEXICON_DIR)) -> Tuple[LanguagePatterns, ...]:
    lexicons = [LanguagePatterns("*", _compile(BUILTIN_PATTERNS, pathlib.Path("builtin"), "patterns"), ())]
    for lang in LANGUAGES:
        path = pathlib.Path(directory) / f"emergency_{lang}.yml"
        if not path.exists():
            logger.warning("emergency lexicon missing for %s: %s", lang, path)
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            logger.error("emergency lexicon %s is not valid YAML (%s); using the others", path.name, type(error).__name__)
            continue
        lexicons.append(
            LanguagePatterns(
                lang,
                _compile(data.get("patterns"), path, "patterns"),
                _compile(data.get("negative_patterns"), path, "negative_patterns"),
            )
        )
    return tuple(lexicons)


def detect(text: Optional[str], lexicons: Optional[Tuple[LanguagePatterns, ...]] = None) -> Detection:
    """Whether ``text`` describes immediate danger or thoughts of self-harm."""
    if not text or not isinstance(text, str):
        return Detection(False, [])
    lowered = normalise(text[:5000])
    # Accent-folded too ("toi muon chet"), except Thai: folding would delete its
    # tone marks and vowels and make unrelated words match.
    forms = {lowered} if THAI_RE.search(lowered) else {lowered, strip_accents(lowered)}
    lexicons = lexicons if lexicons is not None else load_lexicons()
    negatives = {lex.language: lex.negative for lex in lexicons}
    hits: List[str] = []
    for lex in lexicons:
        if any(p.search(form) for p in lex.positive for form in forms):
            # Malay and Indonesian share most words, so each one's lexicon also
            # fires on the other's text: the negative patterns of both apply.
            family = FAMILIES.get(lex.language, (lex.language,))
            cancel = [n for lang in family for n in negatives.get(lang, ())]
            if not any(n.search(form) for n in cancel for form in forms):
                hits.append(lex.language)
    return Detection(bool(hits), hits)

