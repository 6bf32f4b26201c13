"""What one user message says, read once: the NLU's reading (intent, ranking,
language proposal, crisis kinds), the signals of the lexicons (a child, someone
reporting for another person, a role, a clear yes, not now), the places named,
and the conversation so far (the slots). Pure: no replies, no events."""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from rasa_sdk import Tracker

from content import lexicons
from content.loader import get_content

BUTTON_RE = re.compile(r"^/[A-Za-z0-9_]+(\{.*\})?$", re.DOTALL)
DIGITS_RE = re.compile(r"^[\s+()\-.\d]{3,}$")


@dataclasses.dataclass(frozen=True)
class Facts:
    text: str
    intent: Optional[str]
    confidence: float
    ranking: Tuple[Tuple[str, float], ...]
    entities: Tuple[Dict[str, Any], ...]
    crisis: FrozenSet[str]  # "danger", "self_harm" (the NLU's crisis override)
    possible_emergency: bool  # a question that mentions danger
    classifier_intent: Optional[str]  # what the classifier said before a crisis override
    proposal: Dict[str, Any]  # the language identifier's proposal
    signals: FrozenSet[str]
    places: Any  # content.places.Found

    @property
    def is_button(self) -> bool:
        return bool(BUTTON_RE.match(self.text.strip()))

    @property
    def is_question(self) -> bool:
        # a question mark, or a question as people write one without it: the question words
        # and particles of each language (the `question` signal of data/lexicons/<lang>/signals.yml)
        text = self.text.strip()
        return "?" in text or "？" in text or "question" in self.signals

    @property
    def n_words(self) -> int:
        return len(self.text.split())

    @property
    def only_digits(self) -> bool:
        return bool(DIGITS_RE.match(self.text)) and sum(ch.isdigit() for ch in self.text) >= 3

    def entity(self, name: str) -> Optional[str]:
        for entity in self.entities:
            if entity.get("entity") == name and entity.get("value") not in (None, ""):
                return str(entity["value"])
        return None

    def probability(self, intent: str) -> float:
        return next((p for name, p in self.ranking if name == intent), 0.0)


@functools.lru_cache(maxsize=256)
def _read(text: str, language: Optional[str]) -> Tuple[FrozenSet[str], Any]:
    from content.places import find

    if BUTTON_RE.match(text.strip()):
        return frozenset(), find(get_content(), "")
    return lexicons.signals(text, language), find(get_content(), text)


def facts(tracker: Tracker) -> Facts:
    latest = tracker.latest_message or {}
    text = latest.get("text") or ""
    intent = latest.get("intent") or {}
    ranking = tuple(
        (str(r.get("name")), float(r.get("confidence") or 0.0))
        for r in latest.get("intent_ranking") or []
        if r.get("name")
    )
    override = latest.get("emergency_override") or {}
    proposal = latest.get("language_id") or {}
    language = tracker.get_slot("language") or (proposal.get("language") if isinstance(proposal, dict) else None)
    signals, places = _read(text[:20000], language)
    return Facts(
        text=text,
        intent=intent.get("name"),
        confidence=float(intent.get("confidence") or 0.0),
        ranking=ranking,
        entities=tuple(latest.get("entities") or ()),
        crisis=frozenset(latest.get("crisis") or ()),
        possible_emergency=bool(latest.get("possible_emergency")),
        classifier_intent=override.get("classifier_intent") if isinstance(override, dict) else None,
        proposal=latest.get("language_id") or {},
        signals=signals,
        places=places,
    )


def events_of(tracker: Tracker, name: str) -> List[Any]:
    """Values a slot took in this session, oldest first."""
    return [e.get("value") for e in tracker.events if e.get("event") == "slot" and e.get("name") == name]
