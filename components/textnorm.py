"""Text normalisation and language-aware word splitting shared by NLU, search and channels."""
from __future__ import annotations

import functools
import re
import unicodedata
from typing import List, Optional

THAI_RE = re.compile(r"[\u0E00-\u0E7F]")
THAI_RUN_RE = re.compile(r"[\u0E00-\u0E7F]+")
# Latin letters with diacritics that are used in Vietnamese and (almost) never in
# English, Indonesian or Malay text.
VI_STRONG = set(
    "ăâđêôơư"
    "àảãạằẳẵặắầẩẫậấèẻẽẹềểễệếìỉĩịòỏõọồổỗộốờởỡợớùủũụừửữựứỳỷỹỵý"
)
VI_WEAK = set("áéíóú")  # also in loanwords and names (café, José)
WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
LINK_RE = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)


def normalise(text: str) -> str:
    """NFC, lower case, collapsed whitespace, control characters removed."""
    text = unicodedata.normalize("NFC", text or "")
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C" or ch in "\n\t ")
    return re.sub(r"\s+", " ", text).strip().lower()


def strip_accents(text: str) -> str:
    """'tôi bị giữ hộ chiếu' -> 'toi bi giu ho chieu' (đ -> d)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize(
        "NFC", "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    )


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


def words(text: str, language: Optional[str] = None) -> List[str]:
    """Language-aware words of a normalised text (used by search and statistics)."""
    text = normalise(text)
    if language == "th" or (language is None and count_thai(text)):
        return thai_words(text)
    if language == "vi":
        return vietnamese_words(text)
    return latin_words(text)
