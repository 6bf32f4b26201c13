"""The NLU components' contracts that the benchmarks rely on: the held-out sets
stay out of the training data; the fast paths compute what they replace; the
emergency override keeps a confident guide question and overrides the rest."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from components.intents import IntentModel
from components.language import LanguageScorer
from components.nlu import EmergencyOverride
from content.languages import CODES as LANGUAGES
from content.nlu_files import nlu_examples
from tests.conftest import ROOT


def messages_in(folder):
    return [(text, intent) for path in sorted((ROOT / folder).rglob("*.yml")) for text, intent, _ in nlu_examples(path)]


def key(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.mark.parametrize("folder", ["tests/nlu", "tests/nlu_blind"])
def test_held_out_sets_never_appear_in_the_training_data(folder):
    training = {key(t) for t, _ in messages_in("data/nlu")}
    held = messages_in(folder)
    assert len(held) > 800
    leaked = [t for t, _ in held if key(t) in training]
    assert leaked == []


def test_held_out_sets_cover_every_intent_in_every_language(domain):
    """The blind set was written for the intents of 2026-11 (its README); every
    intent, the ones added since included, is in the held-out set tests/nlu."""
    for lang in LANGUAGES:
        blind_path = ROOT / "tests" / "nlu_blind" / f"{lang}.yml"  # the five languages of 2026-11 only
        blind = {i for _, i, _ in nlu_examples(blind_path)} if blind_path.exists() else set()
        held = {i for _, i, _ in nlu_examples(ROOT / "tests" / "nlu" / f"{lang}.yml")}
        assert blind <= set(domain["intents"]), lang
        assert held == set(domain["intents"]), (lang, set(domain["intents"]) - held)


def small_model():
    texts = [
        "where is my passport",
        "boss keeps my passport",
        "i want to go home",
        "how to go back home",
        "they did not pay my salary",
        "no salary for 3 months",
        "can i get a lawyer",
        "free lawyer please",
    ]
    intents = ["documents", "documents", "home", "home", "wages", "wages", "lawyer", "lawyer"]
    return IntentModel().fit(texts, intents)


def test_intent_ranking_is_what_sklearn_computes():
    model = small_model()
    for text in ["passport", "lawyer for salary", "home home", "nothing in common", ""]:
        expected = model.model.predict_proba(model.features.transform([text]))[0]
        ranked = dict(model.rank(text, limit=10))
        for intent, index in model.intents.items():
            assert ranked[intent] == pytest.approx(expected[index], abs=1e-12)


def test_coefficients_are_column_major_after_fit_and_after_loading():
    model = small_model()
    assert model.model.coef_.flags["F_CONTIGUOUS"]
    loaded = pickle.loads(pickle.dumps(model))
    assert loaded.model.coef_.flags["F_CONTIGUOUS"]
    assert np.array_equal(loaded.model.coef_, model.model.coef_)
    assert loaded.rank("my passport") == model.rank("my passport")


class AlwaysLangdetect(LanguageScorer):
    def _settled(self, scores):
        return False


def test_skipping_langdetect_never_changes_the_answer(scorer):
    """langdetect is skipped only when it could not change the winner."""
    markers = {k: sorted(v) for k, v in scorer.markers.items()}
    fast, always = LanguageScorer(scorer.counts, markers), AlwaysLangdetect(scorer.counts, markers)
    calls = []
    original = fast._langdetect
    fast._langdetect = lambda text: calls.append(text) or original(text)
    held = [t for t, _ in messages_in("tests/nlu")] + [t for t, _ in messages_in("tests/nlu_blind")]
    long_messages = [t for t in held if len(t.split()) >= 4][:500]
    for text in long_messages:
        for hint in (None, "ms", "id"):
            quick, slow = fast.identify(text, hint), always.identify(text, hint)
            assert quick.language == slow.language, text
            assert quick.confidence == pytest.approx(slow.confidence, abs=0.01), text
    assert 0 < len(calls) < len(long_messages)  # skipped for some, still asked for others


def parsed(text, ranking):
    message = Message({TEXT: text})
    message.set(INTENT, dict(ranking[0]))
    message.set(INTENT_RANKING_KEY, ranking)
    return message


def test_emergency_override_keeps_a_confident_guide_question():
    override = EmergencyOverride()
    text = "i cant leave the dormitory and they lock the door every night, is this trafficking"
    message = parsed(
        text,
        [{"name": "ask_ident_am_i_a_victim", "confidence": 0.93}, {"name": "report_emergency", "confidence": 0.02}],
    )
    override.process([message])
    assert message.get(INTENT)["name"] == "ask_ident_am_i_a_victim"
    assert message.get("possible_emergency") is True


@pytest.mark.parametrize(
    "ranking",
    [
        [{"name": "ask_ident_am_i_a_victim", "confidence": 0.6}, {"name": "report_emergency", "confidence": 0.2}],
        [{"name": "ask_ident_am_i_a_victim", "confidence": 0.9}, {"name": "report_emergency", "confidence": 0.15}],
        [{"name": "inform_country", "confidence": 0.95}, {"name": "report_emergency", "confidence": 0.01}],
        [{"name": "nlu_fallback", "confidence": 0.3}, {"name": "ask_protect_shelter", "confidence": 0.28}],
        [],
    ],
)
def test_emergency_override_wins_otherwise(ranking):
    message = parsed(
        "they locked the door and he is hitting my friend now", ranking or [{"name": "greet", "confidence": 1.0}]
    )
    if not ranking:
        message.set(INTENT_RANKING_KEY, [])
    EmergencyOverride().process([message])
    assert message.get(INTENT) == {"name": "report_emergency", "confidence": 1.0}
    assert message.get(INTENT_RANKING_KEY)[0]["name"] == "report_emergency"
    assert not message.get("possible_emergency")


def test_no_lexicon_hit_changes_nothing():
    ranking = [{"name": "ask_protect_legal_aid", "confidence": 0.4}, {"name": "report_emergency", "confidence": 0.3}]
    message = parsed("free lawyer?", ranking)
    EmergencyOverride().process([message])
    assert message.get(INTENT)["name"] == "ask_protect_legal_aid"


@pytest.mark.parametrize(
    "text,crisis",
    [("so hungry i could die haha", "report_self_harm"), ("nhớ mẹ muốn chết luôn á", "report_self_harm")],
)
def test_an_idiom_only_the_classifier_took_for_a_crisis_keeps_the_next_intent_with_the_button(text, crisis):
    ranking = [{"name": crisis, "confidence": 0.7}, {"name": "express_distress", "confidence": 0.2}]
    message = parsed(text, ranking)
    EmergencyOverride().process([message])
    assert message.get(INTENT)["name"] == "express_distress"
    assert message.get("possible_emergency") is True


@pytest.mark.parametrize("text", ["i want to die", "i have pills here, going to take them all tonight", "muốn chết"])
def test_the_classifiers_crisis_stands_without_an_idiom(text):
    ranking = [{"name": "report_self_harm", "confidence": 0.7}, {"name": "express_distress", "confidence": 0.2}]
    message = parsed(text, ranking)
    EmergencyOverride().process([message])
    assert message.get(INTENT)["name"] == "report_self_harm"


def test_a_question_the_classifier_finds_a_little_dangerous_gets_the_button():
    ranking = [{"name": "ask_protect_shelter", "confidence": 0.55}, {"name": "report_emergency", "confidence": 0.3}]
    message = parsed("where can i sleep tonight, the agent is angry", ranking)
    EmergencyOverride().process([message])
    assert message.get(INTENT)["name"] == "ask_protect_shelter" and message.get("possible_emergency") is True
    calm = parsed("free lawyer?", [{"name": "ask_protect_legal_aid", "confidence": 0.9}])
    EmergencyOverride().process([calm])
    assert not calm.get("possible_emergency")
