"""Intent classification: TF-IDF over words and character n-grams of the
language-aware tokens, and a linear model (logistic regression, so the
confidences are probabilities the fallback threshold can use).

Measured on the held-out set (bench/nlu.py) it beats DIET on this data: many
intents (53), 15 to 35 short examples per intent and language, five languages
sharing one model. It also trains in well under a minute and predicts in about
a millisecond."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import scipy.sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion
from sklearn.utils.extmath import softmax

from content.text import strip_accents


def feature_text(tokens: Sequence[str], language: str = "") -> str:
    """Lower-cased tokens, accents folded (except Thai), joined by spaces."""
    words = [t.lower() for t in tokens if t.strip()]
    if language != "th":
        words = [strip_accents(w) for w in words]
    return " ".join(words)


class IntentModel:
    def __init__(self, c: float = 20.0, max_iter: int = 3000, random_state: int = 42):
        self.features = FeatureUnion(
            [
                ("words", TfidfVectorizer(analyzer="word", token_pattern=r"\S+", sublinear_tf=True)),
                ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True)),
            ]
        )
        self.model = LogisticRegression(
            C=c, max_iter=max_iter, multi_class="multinomial", class_weight="balanced", random_state=random_state
        )

    def fit(self, texts: List[str], intents: List[str]) -> "IntentModel":
        self.model.fit(self.features.fit_transform(texts), intents)
        self._column_major()
        return self

    def _column_major(self) -> None:
        """Store the coefficients column-major. A message's features are a
        sparse row of a few hundred of ~100k columns; scipy's sparse-times-dense
        product then reads contiguous memory. Same numbers, same predictions;
        parse time 10.4 -> 5.8 ms measured (bench/reports/serving.md)."""
        coef = getattr(self.model, "coef_", None)
        if coef is not None:
            self.model.coef_ = np.asfortranarray(coef)

    def __setstate__(self, state: dict) -> None:
        # joblib/pickle write arrays C-ordered; restore the layout on load.
        self.__dict__.update(state)
        self._column_major()

    def rank(self, text: str, limit: int = 10) -> List[Tuple[str, float]]:
        # What FeatureUnion.transform and predict_proba compute (multinomial:
        # softmax of the decision function; identical numbers), without their
        # per-call joblib and validation overhead (~0.3 ms of ~1.3).
        row = scipy.sparse.hstack([t.transform([text]) for _, t in self.features.transformer_list], format="csr")
        probabilities = softmax(np.asarray(row @ self.model.coef_.T) + self.model.intercept_)[0]
        order = probabilities.argsort()[::-1][:limit]
        return [(str(self.model.classes_[i]), float(probabilities[i])) for i in order]

    @property
    def intents(self) -> Dict[str, int]:
        return {str(c): i for i, c in enumerate(self.model.classes_)}
