"""Rasa 3.6 graph components: language identification, a per-language tokenizer,
the intent classifier and the crisis override. The logic lives in plain modules
beside this one and in the neutral ``content`` package (registry, lexicons)."""

import functools
import logging
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import TOKENS_NAMES
from rasa.nlu.tokenizers.tokenizer import Token, Tokenizer
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, METADATA, METADATA_INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from components.intents import IntentModel, feature_text
from components.language import LanguageScorer
from content import languages, lexicons
from content.languages import normalise_hint
from content.text import SEGMENTERS, WORD_RE, language_of_script, myanmar_unicode

logger = logging.getLogger(__name__)

LANGUAGE_ID = "language_id"  # key of the proposal in the parse data
EMERGENCY_INTENT = "report_emergency"
SELF_HARM_INTENT = "report_self_harm"
CRISIS_INTENTS = {"self_harm": SELF_HARM_INTENT, "danger": EMERGENCY_INTENT}
FALLBACK_INTENT = "nlu_fallback"
HINT_KEYS = ("language_hint", "language_code", "locale")


def message_hint(message: Message) -> Optional[str]:
    metadata = message.get(METADATA) or {}
    if not isinstance(metadata, dict):
        return None
    for key in HINT_KEYS:
        hint = normalise_hint(metadata.get(key))
        if hint:
            return hint
    return None


def training_language(message: Message) -> Optional[str]:
    metadata = message.get(METADATA) or {}
    intent_meta = metadata.get(METADATA_INTENT) if isinstance(metadata, dict) else None
    return intent_meta.get("language") if isinstance(intent_meta, dict) else None


class TrainedComponent(GraphComponent):
    """A component that holds one trained object, stored as one file in the model.
    Subclasses name the file and say how to read, write and stand in for it."""

    FILE = ""

    def __init__(
        self, config: Dict[Text, Any], model_storage: ModelStorage, resource: Resource, trained: Any = None
    ) -> None:
        self._config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        self._trained = trained

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {}

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "TrainedComponent":
        return cls(config, model_storage, resource)

    @classmethod
    def load(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> "TrainedComponent":
        try:
            with model_storage.read_from(resource) as directory:
                trained = cls.read(directory / cls.FILE)
        except (ValueError, FileNotFoundError):
            logger.warning("%s: %s not found in the model", cls.__name__, cls.FILE)
            trained = cls.untrained()
        return cls(config, model_storage, resource, trained)

    def persist(self, trained: Any) -> Resource:
        self._trained = trained
        with self._model_storage.write_to(self._resource) as directory:
            self.write(trained, directory / self.FILE)
        return self._resource

    @staticmethod
    def read(path):  # pragma: no cover - per subclass
        raise NotImplementedError

    @staticmethod
    def write(trained: Any, path) -> None:  # pragma: no cover - per subclass
        raise NotImplementedError

    @staticmethod
    def untrained() -> Any:
        return None


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class LanguageIdentifier(TrainedComponent):
    """Proposes the message's language; the action server decides whether the
    conversation switches (see actions/language.py)."""

    FILE = "language_scorer.json"

    @staticmethod
    def read(path) -> LanguageScorer:
        scorer = LanguageScorer.from_json(path.read_text(encoding="utf-8"))
        scorer.warm_up()
        return scorer

    @staticmethod
    def write(trained: LanguageScorer, path) -> None:
        path.write_text(trained.to_json(), encoding="utf-8")

    @staticmethod
    def untrained() -> LanguageScorer:
        return LanguageScorer.train([])  # lexicons only

    def train(self, training_data: TrainingData) -> Resource:
        pairs = [
            (str(m.get(TEXT)), str(training_language(m)))
            for m in training_data.intent_examples
            if m.get(TEXT) and training_language(m)
        ]
        logger.info("language scorer trained on %d labelled examples", len(pairs))
        return self.persist(LanguageScorer.train(pairs))

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        # Training examples carry their true language: the tokenizer uses it.
        for message in training_data.training_examples:
            text = message.get(TEXT)
            if isinstance(text, str) and text != myanmar_unicode(text):
                message.set(TEXT, myanmar_unicode(text))  # Zawgyi examples are learnt as Unicode
            lang = training_language(message)
            if lang:
                message.set(LANGUAGE_ID, {"language": lang, "confidence": 1.0, "unambiguous": True})
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not isinstance(text, str) or not text.strip():
                continue
            unicode_text = myanmar_unicode(text)
            if unicode_text != text:  # Burmese typed in Zawgyi: every later component reads Unicode
                message.set(TEXT, unicode_text)
            guess = self._trained.identify(unicode_text, hint=message_hint(message))
            proposal = guess.as_dict()
            proposal["hint"] = message_hint(message)
            proposal["zawgyi"] = unicode_text != text
            message.set(LANGUAGE_ID, proposal, add_to_output=True)
        return messages


@functools.lru_cache(maxsize=None)
def _spacy_blank(lang: str):
    import spacy

    return spacy.blank(lang)


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=False)
class MultilingualTokenizer(Tokenizer):
    """Each language cut into words by its registry tokenizer (data/languages.yml):
    through spaCy's blank language where it has one (Thai by pythainlp,
    Vietnamese into syllable compounds by pyvi, joined with ``_``), otherwise by
    the project's own segmenter (content/text.py); English, Indonesian and Malay
    into words (spaCy 3.4 has no Malay; Malay is written in the same Latin
    alphabet with the same word boundaries as Indonesian and English)."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {
            "intent_tokenization_flag": False,
            "intent_split_symbol": "_",
            "token_pattern": None,
            "prefix_separator_symbol": None,
        }

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "MultilingualTokenizer":
        cls.warm_up()
        return cls(config)

    @classmethod
    def warm_up(cls) -> None:
        """Load every language's segmenter (dictionaries, CRF models) at start-up:
        otherwise the first Thai or Vietnamese message of a server's life waits
        about 0.9 s for them (bench/reports/serving.md)."""
        for lang in languages.REGISTRY:
            if lang.spacy_blank:
                _spacy_blank(lang.spacy_blank)(lang.native_name)
            elif lang.tokenizer in SEGMENTERS:
                SEGMENTERS[lang.tokenizer](lang.native_name)

    @staticmethod
    def message_language(message: Message, attribute: Text) -> Optional[str]:
        proposal = message.get(LANGUAGE_ID) if attribute == TEXT else None
        if isinstance(proposal, dict) and proposal.get("language"):
            return proposal["language"]
        return None

    def tokenize(self, message: Message, attribute: Text) -> List[Token]:
        text = message.get(attribute) or ""
        code = language_of_script(text) or self.message_language(message, attribute)
        lang = languages.get(code)
        if lang is not None and lang.spacy_blank:
            tokens = [
                Token(t.text.replace(" ", "_"), t.idx)
                for t in _spacy_blank(lang.spacy_blank)(text)
                if not t.is_space and WORD_RE.search(t.text)
            ]
        elif lang is not None and lang.tokenizer not in ("words",) and lang.tokenizer in SEGMENTERS:
            tokens = self._segmented(text, SEGMENTERS[lang.tokenizer](text))
        else:
            tokens = [Token(m.group(0), m.start()) for m in WORD_RE.finditer(text)]
        if not tokens and text.strip():
            tokens = [Token(text.strip(), text.index(text.strip()[0]))]
        return self._apply_token_pattern(tokens)

    @staticmethod
    def _segmented(text: str, words: List[str]) -> List[Token]:
        """Tokens with their offsets for words a segmenter cut out of ``text``."""
        lowered, tokens, position = text.lower(), [], 0
        for word in words:
            found = lowered.find(word.lower(), position)
            start = found if found >= 0 else position
            tokens.append(Token(word, start))
            position = start + len(word) if found >= 0 else position
        return tokens


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class TfidfIntentClassifier(TrainedComponent):
    """Intent from the tokens (components/intents.py): TF-IDF + logistic regression."""

    FILE = "intent_model.joblib"

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"C": 20.0, "ranking_length": 10}

    @staticmethod
    def read(path) -> IntentModel:
        import joblib

        return joblib.load(path)

    @staticmethod
    def write(trained: IntentModel, path) -> None:
        import joblib

        joblib.dump(trained, path)

    @staticmethod
    def _text(message: Message) -> str:
        tokens = [t.text for t in message.get(TOKENS_NAMES[TEXT]) or []]
        proposal = message.get(LANGUAGE_ID) or {}
        return feature_text(tokens, proposal.get("language", "") if isinstance(proposal, dict) else "")

    def train(self, training_data: TrainingData) -> Resource:
        examples = [m for m in training_data.intent_examples if m.get(INTENT)]
        model = IntentModel(c=float(self._config["C"])).fit(
            [self._text(m) for m in examples], [m.get(INTENT) for m in examples]
        )
        logger.info("intent model trained on %d examples, %d intents", len(examples), len(model.intents))
        return self.persist(model)

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = self._text(message)
            if self._trained is None or not WORD_RE.search(text):
                # Empty, emoji, symbols or invisible marks: nothing to classify.
                # Said plainly as "not understood" (never e.g. a "yes").
                message.set(INTENT, {"name": FALLBACK_INTENT, "confidence": 1.0}, add_to_output=True)
                message.set(INTENT_RANKING_KEY, [], add_to_output=True)
                continue
            ranking = self._trained.rank(text, int(self._config["ranking_length"]))
            message.set(INTENT, {"name": ranking[0][0], "confidence": ranking[0][1]}, add_to_output=True)
            message.set(INTENT_RANKING_KEY, [{"name": n, "confidence": c} for n, c in ranking], add_to_output=True)
        return messages


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=False)
class EmergencyOverride(GraphComponent):
    """Runs last: when a crisis lexicon fires (content/lexicons.py), the intent
    becomes ``report_self_harm`` (thoughts of ending one's life; it comes first)
    or ``report_emergency`` (danger now from others), whatever the classifier
    thought: recall first. Both kinds are marked in ``crisis`` so the answer can
    give crisis lines and, when others are dangerous too, the emergency numbers.

    One exception: when the classifier is sure of a guide question
    (``keep_topic_confidence``, an ``ask_*`` intent) and gives the crisis intents
    almost nothing (``max_emergency_probability``), the message is a question
    that mentions danger ("they lock us in at night, is this trafficking?"): it
    keeps its intent and is marked ``possible_emergency``; the answer then ends
    with a button straight to the emergency numbers (actions/answers.py).
    Measured on the held-out sets (bench/reports/emergency.md).

    Where no crisis lexicon fires and only the classifier says crisis, a
    negative pattern of that crisis's lexicons (an idiom, a joke, a story of the
    past, a procedural question: "laughing to death haha"), with no sign of
    now in it, turns it into the best other intent, marked ``possible_emergency`` (the answer ends with the
    button to the emergency numbers): the classifier cannot tell idioms, the
    lexicons' negatives were written for them.

    And where nothing says crisis but the classifier gives the crisis intents
    together at least ``danger_button_probability``, the message is marked
    ``possible_emergency`` too: its answer ends with the button to the numbers,
    a safety net for danger said in words nobody wrote into a lexicon."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {"keep_topic_confidence": 0.75, "max_emergency_probability": 0.1, "danger_button_probability": 0.25}

    @staticmethod
    def idiom_instead(message: Message, intent: Optional[str], lexicon_kinds: frozenset) -> Optional[Dict[Text, Any]]:
        """The best non-crisis intent when only the classifier saw a crisis and
        that crisis's negative patterns match the text; otherwise None."""
        if lexicon_kinds or intent not in CRISIS_INTENTS.values():
            return None
        crisis = "self_harm" if intent == SELF_HARM_INTENT else "emergency"
        text = message.get(TEXT)
        if not lexicons.crisis_negated(text, crisis) or lexicons.signal(text, "present"):
            return None  # a sign of now (now, tonight, still ...) keeps the crisis: recall first
        others = [
            r
            for r in (message.get(INTENT_RANKING_KEY) or [])
            if r.get("name") not in CRISIS_INTENTS.values() and r.get("name") != FALLBACK_INTENT
        ]
        return dict(others[0]) if others else None

    def __init__(self, config: Optional[Dict[Text, Any]] = None) -> None:
        config = {**self.get_default_config(), **(config or {})}
        self.keep_topic_confidence = float(config["keep_topic_confidence"])
        self.max_emergency_probability = float(config["max_emergency_probability"])
        self.danger_button_probability = float(config["danger_button_probability"])

    @staticmethod
    def crisis_probability(message: Message) -> float:
        """What the classifier gives the crisis intents together."""
        ranking = message.get(INTENT_RANKING_KEY) or []
        return sum(r.get("confidence", 0.0) for r in ranking if r.get("name") in CRISIS_INTENTS.values())

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> "EmergencyOverride":
        lexicons.warm_up()
        return cls(config)

    def confident_question(self, message: Message) -> Optional[Dict[Text, Any]]:
        ranking = [r for r in (message.get(INTENT_RANKING_KEY) or []) if r.get("name") != FALLBACK_INTENT]
        if not ranking:
            return None
        top = ranking[0]
        danger = self.crisis_probability(message)
        if (
            str(top.get("name", "")).startswith("ask_")
            and top.get("confidence", 0.0) >= self.keep_topic_confidence
            and danger <= self.max_emergency_probability
        ):
            return top
        return None

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT)
            kinds = lexicons.crisis_kinds(text) if isinstance(text, str) else frozenset()
            intent = (message.get(INTENT) or {}).get("name")
            instead = self.idiom_instead(message, intent, kinds)
            if instead is not None:
                message.set(INTENT, instead, add_to_output=True)
                message.set("possible_emergency", True, add_to_output=True)
                continue
            if intent in CRISIS_INTENTS.values():
                kinds = kinds | {"self_harm" if intent == SELF_HARM_INTENT else "danger"}
            if not kinds:
                if self.crisis_probability(message) >= self.danger_button_probability:
                    message.set("possible_emergency", True, add_to_output=True)  # the answer ends with the button
                continue
            message.set("crisis", sorted(kinds), add_to_output=True)
            question = self.confident_question(message) if intent not in CRISIS_INTENTS.values() else None
            if question is not None and "self_harm" not in kinds:
                # The classifier's answer stands (also over a fallback, which it beat).
                message.set(INTENT, dict(question), add_to_output=True)
                message.set("possible_emergency", True, add_to_output=True)
                continue
            chosen = SELF_HARM_INTENT if "self_harm" in kinds else EMERGENCY_INTENT
            previous = message.get(INTENT) or {}
            message.set(INTENT, {"name": chosen, "confidence": 1.0}, add_to_output=True)
            ranking = [r for r in (message.get(INTENT_RANKING_KEY) or []) if r.get("name") != chosen]
            message.set(INTENT_RANKING_KEY, [{"name": chosen, "confidence": 1.0}] + ranking, add_to_output=True)
            message.set("emergency_override", {"classifier_intent": previous.get("name")}, add_to_output=True)
        return messages
