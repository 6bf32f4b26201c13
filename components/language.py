"""Language identification for Waypoint's five languages: en, id, ms, vi, th.

How it decides, cheapest evidence first:

1. Script. Thai letters mean Thai; letters only Vietnamese writes (ư ơ đ ạ ả ...)
   mean Vietnamese. Both are *unambiguous*: the conversation may switch on them
   even for a one-word message.
2. Latin script without those marks: a multinomial naive Bayes model over
   character 1-4-grams and words, trained on the NLU examples (each intent block
   carries ``metadata: {language: xx}``; Vietnamese examples are also learnt
   without diacritics because people type them that way), plus
   - marker words (``lexicons/markers_<lang>.yml``): common words of one
     language that the others rarely use, which is how Malay (boleh, kerana,
     percuma, tak) is told from Indonesian (bisa, karena, gratis, nggak);
   - langdetect's profile for messages of four words or more, restricted to our
     languages (it has no Malay profile, so its "id" counts for both);
   - the channel's hint (e.g. Telegram's ``language_code``) as a prior.

The decision whether the *conversation* changes language is not made here: the
action server's slot validation combines this result with the current language
(``actions/language.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import threading
from collections import Counter
from typing import Dict, Iterable, List, Optional, Tuple

import yaml

from content import languages
from content.languages import LATIN_CODES as LATIN_LANGUAGES
from content.languages import UNSUPPORTED_REASONS, normalise_hint  # noqa: F401 - re-exported for the components
from content.nlu_files import nlu_examples, read_labelled_examples  # noqa: F401 - re-exported
from content.paths import lexicon_dir
from content.text import count_letters, latin_words, normalise, other_myanmar_script, strip_accents

# Words used in chat whatever the language: a message made only of them says
# nothing about the language (the hint, or English, is the best guess, and the
# conversation's language is kept).
INTERNATIONAL = {
    "hi",
    "hello",
    "helo",
    "hey",
    "ok",
    "okay",
    "okey",
    "oke",
    "thanks",
    "thank",
    "thx",
    "tq",
    "bye",
    "help",
    "sos",
    "yes",
    "no",
    "pls",
    "plz",
    "please",
    "sorry",
    "good",
    "hotline",
    "passport",
    "visa",
}

# Greetings Malay and Indonesian speakers both write, which also happen to be
# Vietnamese words typed without accents ("hai" = two): alone, they say "the
# Malay family" (data/languages.yml), never Vietnamese; the hint, else the
# statistics, choose which.
MALAY_FAMILY_GREETINGS = {"hai", "halo", "hallo", "haii", "haloo"}
MALAY_FAMILY = "malay"
# Weaker Vietnamese marks, also in loanwords and names (café, José): two count as one.
WEAK_MARKS = set("áéíóú")

# Function words of Filipino (Tagalog), which the Philippines' survivors may
# write: two or more of them and the message is in a language we do not answer
# in (asked which language to use), rather than read as Vietnamese or Malay.
# Words other languages also write ("ko", "mo", "ng" in Vietnamese chat) are left
# out; none of the training or held-out messages has two of these.
UNSUPPORTED_LATIN = {
    "ang",
    "mga",
    "ako",
    "hindi",
    "ano",
    "paano",
    "saan",
    "bakit",
    "yung",
    "naman",
    "talaga",
    "pwede",
    "puwede",
    "gusto",
    "wala",
    "meron",
    "opo",
    "ikaw",
    "siya",
    "niya",
    "namin",
    "natin",
    "kayo",
    "sila",
    "kasi",
    "ito",
    "iyan",
    "dito",
    "doon",
    "tulungan",
    "tulong",
    "salamat",
    "karapatan",
    "nasaan",
    "amo",
}


@dataclasses.dataclass
class LanguageGuess:
    language: str
    confidence: float
    scores: Dict[str, float]
    n_words: int
    unambiguous: bool
    reason: str

    def as_dict(self) -> Dict:
        return dataclasses.asdict(self)


def load_markers() -> Dict[str, List[str]]:
    """Marker words per Latin-script language (data/lexicons/<lang>/markers.yml),
    minus words claimed by two languages."""
    markers: Dict[str, List[str]] = {lang: [] for lang in LATIN_LANGUAGES}
    for lang in LATIN_LANGUAGES:
        path = lexicon_dir(lang) / "markers.yml"
        if path.exists():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            markers[lang].extend(str(w) for w in data.get("words") or [])
    cleaned: Dict[str, set] = {}
    for lang, words in markers.items():
        cleaned[lang] = {strip_accents(normalise(w)) for w in words if w}
    owners = Counter(w for ws in cleaned.values() for w in ws)
    return {lang: sorted(w for w in ws if owners[w] == 1) for lang, ws in cleaned.items()}


def _features(text: str) -> List[str]:
    feats: List[str] = []
    for word in latin_words(text):
        padded = f" {word} "
        feats.append("w:" + word)
        for n in (1, 2, 3, 4):
            feats.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return feats


class LanguageScorer:
    """Trained statistics plus lexicons; thread-safe for reading."""

    alpha = 0.5
    marker_weight = 3.0
    hint_weight = 2.5
    langdetect_weight = 2.0
    evidence_per_word = 6.0  # how many independent observations one word's n-grams count as

    def __init__(self, counts: Dict[str, Dict[str, int]], markers: Dict[str, List[str]]):
        self.counts = {lang: Counter(counts.get(lang, {})) for lang in LATIN_LANGUAGES}
        self.totals = {lang: sum(c.values()) for lang, c in self.counts.items()}
        self.vocab = len(set().union(*[set(c) for c in self.counts.values()])) or 1
        self.markers = {lang: set(markers.get(lang, [])) for lang in LATIN_LANGUAGES}
        self.multiword_markers = {lang: [m for m in words if " " in m] for lang, words in self.markers.items()}
        self._langdetect_lock = threading.Lock()

    # -- training -------------------------------------------------------
    @classmethod
    def train(cls, examples: Iterable[Tuple[str, str]], markers: Optional[Dict] = None) -> "LanguageScorer":
        counts: Dict[str, Counter] = {lang: Counter() for lang in LATIN_LANGUAGES}
        for text, lang in examples:
            if lang not in LATIN_LANGUAGES or not text:
                continue
            counts[lang].update(_features(strip_accents(normalise(text))))
        return cls({k: dict(v) for k, v in counts.items()}, markers or load_markers())

    @classmethod
    def from_nlu_files(cls, paths: Iterable[pathlib.Path]) -> "LanguageScorer":
        return cls.train(read_labelled_examples(paths))

    def to_json(self) -> str:
        return json.dumps(
            {
                "counts": {k: dict(v) for k, v in self.counts.items()},
                "markers": {k: sorted(v) for k, v in self.markers.items()},
            }
        )

    @classmethod
    def from_json(cls, data: str) -> "LanguageScorer":
        raw = json.loads(data)
        return cls(raw["counts"], raw["markers"])

    # -- identification ---------------------------------------------------
    def identify(self, text: str, hint: Optional[str] = None) -> LanguageGuess:
        text = normalise(text)
        hint = normalise_hint(hint)
        n_words = len(text.split())
        letters = count_letters(text)
        script, count = _main_script(text)
        if script == "myanmar" and count * 2 >= letters and other_myanmar_script(text):
            # Shan, Mon, Karen ... in the Myanmar script: said honestly, in Burmese when we have it.
            burmese = languages.languages_of_script("myanmar")
            lang = burmese[0] if burmese else (hint or languages.DEFAULT)
            return LanguageGuess(lang, 0.0, {lang: 0.0}, n_words, False, "unsupported language")
        if script is not None and count * 2 >= letters:
            own = languages.languages_of_script(script)
            if len(own) == 1:
                return LanguageGuess(own[0], 1.0, {own[0]: 1.0}, n_words, True, f"{script} script")
        for distinct in _DISTINCT:
            if _distinct_letters(text, distinct) >= 1 and self._distinct_script(text, distinct):
                return LanguageGuess(
                    distinct.code, 1.0, {distinct.code: 1.0}, n_words, True, f"{distinct.english_name.lower()} letters"
                )
        if letters == 0:
            lang = hint or "en"
            return LanguageGuess(lang, 0.0, {lang: 0.0}, n_words, False, "no letters")
        latin = sum(1 for ch in text if ch.isalpha() and ch.isascii()) + sum(
            _distinct_letters(text, lang) for lang in _DISTINCT
        )
        if latin * 2 < letters:
            # Another script (Burmese, Khmer, Chinese, Arabic ...): not one of ours.
            lang = hint or "en"
            return LanguageGuess(lang, 0.0, {lang: 0.0}, n_words, False, "unsupported script")
        plain = strip_accents(text)
        tokens = latin_words(plain)
        if len(set(tokens) & UNSUPPORTED_LATIN) >= 2:
            lang = hint or "en"
            return LanguageGuess(lang, 0.0, {lang: 0.0}, n_words, False, "unsupported language")
        if tokens and all(t in INTERNATIONAL for t in tokens):
            lang = hint or "en"
            return LanguageGuess(lang, 0.5, {lang: 0.5}, n_words, False, "international words")
        scores = self._latin_scores(plain, n_words, hint)
        family = [code for code in languages.members(MALAY_FAMILY) if code in scores]
        if family and tokens and all(t in MALAY_FAMILY_GREETINGS or t in INTERNATIONAL for t in tokens):
            lang = hint if hint in family else max(family, key=lambda code: scores[code])
            return LanguageGuess(lang, 0.5, {lang: 0.5}, n_words, False, "malay-family greeting")
        probs = _softmax(scores)
        best = max(probs, key=lambda code: probs[code])
        return LanguageGuess(best, probs[best], probs, n_words, False, "statistics")

    @staticmethod
    def _distinct_script(text: str, lang: "languages.Language") -> bool:
        # One strong mark is enough (e.g. "được"); a lone é in "café" is not.
        return any(ch in lang.distinct_letters for ch in text) or _distinct_letters(text, lang) >= 2

    def _latin_scores(self, text: str, n_words: int, hint: Optional[str]) -> Dict[str, float]:
        feats = _features(text)
        scores: Dict[str, float] = {}
        for lang in LATIN_LANGUAGES:
            counts, denom = self.counts[lang], self.totals[lang] + self.alpha * self.vocab
            scores[lang] = sum(math.log((counts.get(f, 0) + self.alpha) / denom) for f in feats)
        # Scale the likelihood so that one message is one piece of evidence,
        # not hundreds of correlated n-grams.
        if feats:
            weight = self.evidence_per_word / len(feats) * max(1.0, math.sqrt(n_words))
            scores = {k: v * weight for k, v in scores.items()}
        tokens = latin_words(text)
        padded = f" {' '.join(tokens)} "
        for lang in LATIN_LANGUAGES:
            hits = sum(1 for t in tokens if t in self.markers[lang])
            hits += sum(1 for m in self.multiword_markers[lang] if f" {m} " in padded)
            scores[lang] += self.marker_weight * hits
        if hint in scores:
            scores[hint] += self.hint_weight
        if n_words >= 4 and not self._settled(scores):
            for lang, p in self._langdetect(text).items():
                scores[lang] += self.langdetect_weight * math.log(p + 0.02)
        return scores

    def _settled(self, scores: Dict[str, float]) -> bool:
        """True when langdetect could not change the answer: the leader is ahead
        of every language outside its own Malay/Indonesian pair by more than the
        most langdetect can add or take away (it costs 1-3 ms a message). It adds
        between weight*log(0.02) and weight*log(1.02) to a language, the same to
        Indonesian and Malay (it cannot tell them apart); plus a margin of 1."""
        swing = self.langdetect_weight * (math.log(1.02) - math.log(0.02)) + 1.0
        best = max(scores, key=lambda code: scores[code])
        pair = set(languages.family_of(best))
        return all(scores[best] - v > swing for lang, v in scores.items() if lang not in pair)

    def warm_up(self) -> None:
        """Load langdetect's profiles now (about 0.6 s) rather than in the first
        long message a server answers."""
        self._langdetect("this message loads the language profiles")

    def _langdetect(self, text: str) -> Dict[str, float]:
        try:
            from langdetect import DetectorFactory, detect_langs
            from langdetect.lang_detect_exception import LangDetectException
        except ImportError:  # pragma: no cover - langdetect is a pinned dependency
            return {}
        with self._langdetect_lock:
            DetectorFactory.seed = 0
            try:
                found = {r.lang: r.prob for r in detect_langs(text)}
            except LangDetectException:
                return {}
        # langdetect has no Malay profile: its Indonesian (and some Tagalog) counts for the whole family.
        family = set(languages.members(MALAY_FAMILY))
        malay_like = sum(found.get(code, 0.0) for code in family) + 0.5 * found.get("tl", 0.0)
        return {lang: (malay_like if lang in family else found.get(lang, 0.0)) for lang in LATIN_LANGUAGES}


_DISTINCT = tuple(lang for lang in languages.REGISTRY if lang.distinct_letters)


def _distinct_letters(text: str, lang: "languages.Language") -> int:
    """Letters only ``lang`` writes, plus the weak ones halved."""
    return sum(1 for ch in text if ch in lang.distinct_letters) + sum(1 for ch in text if ch in WEAK_MARKS) // 2


def _main_script(text: str) -> Tuple[Optional[str], int]:
    """The registry script most of the text's characters belong to, and how many."""
    counts = Counter(s for s in map(languages.script_of, text) if s)
    if not counts:
        return None, 0
    return counts.most_common(1)[0]


def _softmax(scores: Dict[str, float]) -> Dict[str, float]:
    top = max(scores.values())
    exp = {k: math.exp(v - top) for k, v in scores.items()}
    total = sum(exp.values())
    return {k: round(v / total, 4) for k, v in exp.items()}
