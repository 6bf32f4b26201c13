"""BM25 search over the guide content, per language, with language-aware
tokens (Thai segmented by pythainlp, Vietnamese by pyvi plus its syllables,
accents folded). Used when no topic was recognised with confidence: the best
three topics are offered as buttons, never answered unasked."""

from __future__ import annotations

import math
from collections import Counter
from typing import Dict, Iterable, List, Tuple

from content.languages import CODES as LANGUAGES
from content.loader import Content, intent_for_topic
from content.nlu_files import nlu_examples, training_files
from content.text import strip_accents, words


def search_tokens(text: str, language: str) -> List[str]:
    tokens = words(text, language)
    if language == "vi":
        syllables = [s for t in tokens for s in t.split("_")] if tokens else []
        tokens = tokens + [s for s in syllables if s not in tokens]
    return [strip_accents(t) for t in tokens if len(t) > 1 or language == "th"]


class BM25:
    def __init__(self, documents: Dict[str, List[str]], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.tf = {doc: Counter(tokens) for doc, tokens in documents.items()}
        self.length = {doc: len(tokens) for doc, tokens in documents.items()}
        self.avg = (sum(self.length.values()) / len(self.length)) if self.length else 1.0
        df = Counter(t for tf in self.tf.values() for t in tf)
        n = len(documents)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def score(self, query: Iterable[str]) -> List[Tuple[str, float]]:
        terms = list(dict.fromkeys(query))
        results = []
        for doc, tf in self.tf.items():
            norm = self.k1 * (1 - self.b + self.b * self.length[doc] / self.avg)
            s = sum(self.idf[t] * tf[t] * (self.k1 + 1) / (tf[t] + norm) for t in terms if t in tf)
            if s > 0:
                results.append((doc, s))
        return sorted(results, key=lambda r: -r[1])


def _examples_by_intent(language: str) -> Dict[str, List[str]]:
    by_intent: Dict[str, List[str]] = {}
    for path in training_files(language):
        for text, intent, _ in nlu_examples(path):
            by_intent.setdefault(intent, []).append(text)
    return by_intent


_indexes: Dict[Tuple[int, str], BM25] = {}


def _index(language: str, content: Content) -> BM25:
    key = (id(content), language)
    if key in _indexes:
        return _indexes[key]
    examples = _examples_by_intent(language)
    documents = {}
    for topic_id, guide in content.guides.items():
        entry = guide.languages[language]
        text = " ".join(
            [entry["title"]] * 3
            + [entry["survivor"], entry["practitioner"]]
            + examples.get(intent_for_topic(topic_id), [])
        )
        documents[topic_id] = search_tokens(text, language)
    if len(_indexes) > 16:  # content reloaded many times: drop old indexes
        _indexes.clear()
    _indexes[key] = BM25(documents)
    return _indexes[key]


def search(content: Content, text: str, language: str, limit: int = 3) -> List[Tuple[str, float]]:
    if language not in LANGUAGES or not text:
        return []
    index = _index(language, content)
    return index.score(search_tokens(text[:2000], language))[:limit]


def warm_up(content: Content) -> None:
    """Build every language's index at start-up (Thai and Vietnamese take about
    a second each, which the first low-confidence message would otherwise wait)."""
    for language in LANGUAGES:
        _index(language, content)
