"""Text normalisation and language-aware word splitting shared by NLU, search and channels."""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from typing import Any, List, Optional, Sequence, Tuple

THAI_RE = re.compile(r"[\u0E00-\u0E7F]")
THAI_RUN_RE = re.compile(r"[\u0E00-\u0E7F]+")
# Latin letters with diacritics that are used in Vietnamese and (almost) never in
# English, Indonesian or Malay text.
VI_STRONG = set("ăâđêôơưàảãạằẳẵặắầẩẫậấèẻẽẹềểễệếìỉĩịòỏõọồổỗộốờởỡợớùủũụừửữựứỳỷỹỵý")
VI_WEAK = set("áéíóú")  # also in loanwords and names (café, José)
WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
LINK_RE = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)


MYANMAR_RE = re.compile(r"[\u1000-\u109F\uA9E0-\uA9FF\uAA60-\uAA7F]")
# Letters of the Myanmar script that Burmese does not use, but Shan, Mon, Karen
# and other languages written in it do (after any Zawgyi has become Unicode).
OTHER_MYANMAR_RE = re.compile(r"[\u105A-\u1099\u109A-\u109D\uA9E0-\uA9FF\uAA60-\uAA7F]")
# Above this probability (Google's detector) a message is converted from Zawgyi.
# Measured on the 1,953 Burmese training and held-out messages and their Zawgyi
# forms (ICU's my-Zawgyi): at 0.5, 1,906 of 1,918 Zawgyi messages come back as
# their Unicode and 2 Unicode messages are changed; at 0.95, 1,895 and none, but
# the commonest short Zawgyi ("မဂၤလာပါ", hello: 0.54) stays unread.
ZAWGYI_THRESHOLD = 0.5


@functools.lru_cache(maxsize=1)
def _zawgyi():
    """Google's Zawgyi detector and ICU's Zawgyi-to-Unicode transliterator."""
    import icu
    from myanmartools import ZawgyiDetector

    return ZawgyiDetector(), icu.Transliterator.createInstance("Zawgyi-my")


def zawgyi_probability(text: str) -> float:
    if not text or not MYANMAR_RE.search(text):
        return 0.0
    detector, _ = _zawgyi()
    return float(detector.get_zawgyi_probability(text))


def myanmar_unicode(text: str) -> str:
    """Burmese typed in the legacy Zawgyi encoding, converted to Unicode (text
    that is not Zawgyi comes back unchanged). Every reader of a message calls
    this first (normalise(), the language identifier)."""
    if not text or not MYANMAR_RE.search(text) or zawgyi_probability(text) < ZAWGYI_THRESHOLD:
        return text
    _, converter = _zawgyi()
    return converter.transliterate(text)


def other_myanmar_script(text: str) -> bool:
    """Myanmar-script text in another language than Burmese (Shan, Mon, Karen ...)."""
    converted = myanmar_unicode(text)
    return bool(OTHER_MYANMAR_RE.search(converted))


def normalise(text: str) -> str:
    """Zawgyi as Unicode, NFC, lower case, collapsed whitespace, control and
    format characters (zero-width spaces, common in Burmese) removed."""
    text = unicodedata.normalize("NFC", myanmar_unicode(text or ""))
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t ")
    return re.sub(r"\s+", " ", text).strip().lower()


def strip_accents(text: str) -> str:
    """'tôi bị giữ hộ chiếu' -> 'toi bi giu ho chieu' (đ -> d)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn"))


def latin_words(text: str) -> List[str]:
    return WORD_RE.findall(LINK_RE.sub(" ", text))


def count_thai(text: str) -> int:
    return len(THAI_RE.findall(text))


def count_letters(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha())


def vietnamese_marks(text: str) -> int:
    """Number of characters only Vietnamese writes (strong), plus weak ones halved."""
    strong = sum(1 for ch in text if ch in VI_STRONG)
    weak = sum(1 for ch in text if ch in VI_WEAK)
    return strong + weak // 2


@functools.lru_cache(maxsize=1)
def _thai_tokenize():
    from pythainlp.tokenize import word_tokenize

    return word_tokenize


def thai_words(text: str) -> List[str]:
    """Thai runs cut into words by pythainlp (newmm); other runs by word regex."""
    words: List[str] = []
    pos = 0
    cut = _thai_tokenize()
    for m in THAI_RUN_RE.finditer(text):
        words.extend(latin_words(text[pos : m.start()]))
        words.extend(w for w in cut(m.group(0), engine="newmm") if w.strip())
        pos = m.end()
    words.extend(latin_words(text[pos:]))
    return words


@functools.lru_cache(maxsize=1)
def _vi_tokenizer():
    from pyvi import ViTokenizer

    return ViTokenizer


def vietnamese_words(text: str) -> List[str]:
    """Vietnamese syllables joined into compounds by pyvi: 'hộ chiếu' -> 'hộ_chiếu'."""
    joined = _vi_tokenizer().tokenize(text)
    return [w for w in joined.split() if WORD_RE.search(w)]


@functools.lru_cache(maxsize=1)
def _khmer_tokenize():
    from khmernltk import word_tokenize

    return word_tokenize


def khmer_words(text: str) -> List[str]:
    """Khmer runs cut into words by khmer-nltk (CRF); other runs by word regex."""
    return _script_words(text, KHMER_RUN_RE, lambda run: _khmer_tokenize()(run))


@functools.lru_cache(maxsize=1)
def _lao_tokenize():
    from laonlp.tokenize import word_tokenize

    return word_tokenize


def lao_words(text: str) -> List[str]:
    """Lao runs cut into words by laonlp (dictionary); other runs by word regex."""
    return _script_words(text, LAO_RUN_RE, lambda run: _lao_tokenize()(run))


# A Burmese syllable: a consonant (or independent vowel) and what attaches to
# it (medials, vowels, tones, asat-killed finals, stacked consonants).
MYANMAR_SYLLABLE_RE = re.compile(
    r"(?:[\u1000-\u102A\u103F\u104C-\u104F\u1050-\u1055]"
    r"(?:\u1039[\u1000-\u1021]|[\u102B-\u103E\u1056-\u1059\u1062-\u1064\u1067-\u106D\u1071-\u1074"
    r"\u1082-\u108D\u108F\u109A-\u109D]|[\u1000-\u1021](?=\u103A|\u1039))*)|[\u1040-\u1049]+"
)


def myanmar_words(text: str) -> List[str]:
    """Burmese cut into syllables (there are no spaces between words; a syllable
    is the unit a maintained segmenter would start from), other runs by word regex."""
    return _script_words(text, MYANMAR_RUN_RE, lambda run: MYANMAR_SYLLABLE_RE.findall(run) or [run])


KHMER_RUN_RE = re.compile(r"[\u1780-\u17FF\u19E0-\u19FF]+")
LAO_RUN_RE = re.compile(r"[\u0E80-\u0EFF]+")
MYANMAR_RUN_RE = re.compile(r"[\u1000-\u109F\uA9E0-\uA9FF\uAA60-\uAA7F]+")


def _script_words(text: str, run_re: "re.Pattern[str]", cut) -> List[str]:
    words: List[str] = []
    pos = 0
    for m in run_re.finditer(text):
        words.extend(latin_words(text[pos : m.start()]))
        words.extend(w for w in cut(m.group(0)) if w.strip())
        pos = m.end()
    words.extend(latin_words(text[pos:]))
    return words


@functools.lru_cache(maxsize=1)
def _icu_word_breaker() -> Any:
    import icu

    return icu.BreakIterator.createWordInstance(icu.Locale.getRoot())


_icu_lock = threading.Lock()
# Runs of the scripts without spaces between words (Thai, Lao, Khmer, Myanmar).
DICTIONARY_SCRIPTS_RE = re.compile(r"[\u0E00-\u0EFF\u1000-\u109F\u1780-\u17FF\u19E0-\u19FF\uA9E0-\uA9FF\uAA60-\uAA7F]+")


def icu_words(text: str) -> List[str]:
    """Thai, Lao, Khmer and Burmese runs cut into words by ICU's dictionary
    break iterator (PyICU, already loaded for Zawgyi): the same cuts as
    khmer-nltk and laonlp on our data, at about a tenth of their memory
    (bench/reports/memory.md); other runs by word regex."""

    def cut(run: str) -> List[str]:
        with _icu_lock:  # one iterator, not safe to share between threads
            breaker = _icu_word_breaker()
            breaker.setText(run)
            start, out = breaker.first(), []
            for end in breaker:
                out.append(run[start:end])
                start = end
        return out

    return _script_words(text, DICTIONARY_SCRIPTS_RE, cut)


SEGMENTERS = {
    "words": latin_words,
    "pythainlp": thai_words,
    "pyvi": vietnamese_words,
    "khmer-nltk": khmer_words,
    "laonlp": lao_words,
    "myanmar-syllables": myanmar_words,
    "icu": icu_words,
}


def language_of_script(text: str) -> Optional[str]:
    """The registry language whose script most of the text is written in, when
    that script belongs to exactly one of our languages."""
    from collections import Counter

    from content import languages

    counts = Counter(s for s in map(languages.script_of, text) if s)
    for script, _ in counts.most_common(1):
        own = languages.languages_of_script(script)
        if len(own) == 1:
            return own[0]
    return None


def words(text: str, language: Optional[str] = None) -> List[str]:
    """Language-aware words of a normalised text (search, statistics): the
    language's segmenter from the registry (data/languages.yml)."""
    from content import languages

    text = normalise(text)
    lang = languages.get(language) or languages.get(language_of_script(text))
    segment = SEGMENTERS.get(lang.tokenizer if lang else "words", latin_words)
    return segment(text)


# -- splitting a reply into messages a platform accepts ---------------------------


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = 4096) -> List[str]:
    """Splits a reply into messages of at most ``limit`` UTF-16 units (how
    Telegram counts), on paragraph boundaries first, then lines, sentences,
    words, and only as a last resort inside a word."""
    text = text.strip()
    if not text:
        return []
    return [part.strip() for part in _split(text, limit, SPLIT_LEVELS) if part.strip()]


# (where to split, what joins two pieces again)
SPLIT_LEVELS = ((r"\n[ \t]*\n\s*", "\n\n"), (r"\n", "\n"), (r"(?<=[.!?。])\s+", " "), (r"[ \t]+", " "))


def _split(text: str, limit: int, levels: Sequence[Tuple[str, str]]) -> List[str]:
    if utf16_len(text) <= limit:
        return [text]
    if not levels:
        return _hard_cut(text, limit)
    pattern, joiner = levels[0]
    pieces = re.split(pattern, text)
    if len(pieces) == 1:
        return _split(text, limit, levels[1:])
    chunks: List[str] = []
    current: Optional[str] = None
    for piece in pieces:
        candidate = piece if current is None else current + joiner + piece
        if utf16_len(candidate) <= limit:
            current = candidate
            continue
        if current is not None:
            chunks.append(current)
        if utf16_len(piece) <= limit:
            current = piece
        else:
            sub = _split(piece, limit, levels[1:])
            chunks.extend(sub[:-1])
            current = sub[-1]
    if current is not None:
        chunks.append(current)
    return chunks


def _hard_cut(text: str, limit: int) -> List[str]:
    parts: List[str] = []
    current: List[str] = []
    size = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if size + width > limit:
            parts.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    return parts + ["".join(current)]


def cut_text(text: str, limit: int) -> str:
    """The first ``limit`` characters, ending on a word boundary when one is near."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return head[:space] if space > limit - 200 else head
