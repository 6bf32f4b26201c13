"""Speaking in the user's language: a domain response's variation for the
language, or a message of data/messages.yml, and buttons. Every user-visible
sentence comes from the domain or from data/ (messages, guides, helplines),
always in five languages."""
from __future__ import annotations

import functools
import logging
import string
from typing import Any, Dict, Iterable, List, Optional

import yaml
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.content import LANGUAGES, Content, get_content, project_root

logger = logging.getLogger(__name__)
DEFAULT_LANGUAGE = "en"


@functools.lru_cache(maxsize=1)
def _domain_file_responses() -> Dict[str, Any]:
    with open(project_root() / "domain.yml", encoding="utf-8") as handle:
        return (yaml.safe_load(handle) or {}).get("responses") or {}


def variation_for(responses: Dict[str, Any], name: str, language: str) -> Dict[str, Any]:
    """The variation of ``name`` whose condition is ``language == <language>``,
    else the unconditioned (English) one."""
    variations = responses.get(name) or _domain_file_responses().get(name)
    if not variations:
        raise KeyError(f"response {name} is not in the domain")
    fallback = None
    for variation in variations:
        conditions = variation.get("condition") or []
        if not conditions:
            fallback = fallback or variation
        elif any(c.get("name") == "language" and c.get("value") == language for c in conditions):
            return variation
    return fallback or variations[0]


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def fill(template: str, values: Dict[str, Any]) -> str:
    return string.Formatter().vformat(template, (), _Blank(values))


def button(title: str, payload: str) -> Dict[str, str]:
    return {"title": title, "payload": payload}


class Reply:
    """What one action says, in the conversation's language."""

    def __init__(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[str, Any],
                 language: Optional[str] = None):
        self.dispatcher = dispatcher
        self.tracker = tracker
        self.responses = (domain or {}).get("responses") or {}
        slot = tracker.get_slot("language")
        self.language = language or (slot if slot in LANGUAGES else DEFAULT_LANGUAGE)
        self.audience = tracker.get_slot("audience") or "survivor"
        self.content: Content = get_content()

    def text(self, name: str, **values: Any) -> str:
        """A domain response (``utter_*``) or a message of data/messages.yml."""
        if name.startswith("utter_"):
            template = variation_for(self.responses, name, self.language).get("text", "")
        else:
            texts = self.content.messages[name]
            template = texts.get(self.language) or texts[DEFAULT_LANGUAGE]
        return fill(template, values)

    def say(self, name: str, buttons: Optional[List[Dict[str, str]]] = None, **values: Any) -> None:
        self.send(self.text(name, **values), buttons)

    def send(self, text: str, buttons: Optional[List[Dict[str, str]]] = None, **extra: Any) -> None:
        self.dispatcher.utter_message(text=text, buttons=buttons or [], **extra)

    # -- buttons used in many places ------------------------------------
    def topic_button(self, topic_id: str) -> Dict[str, str]:
        from actions.content import intent_for_topic

        guide = self.content.guides[topic_id]
        return button(guide.text(self.language, "title"), f"/{intent_for_topic(topic_id)}")

    def person_button(self) -> Dict[str, str]:
        return button(self.text("label_talk_to_person"), "/request_human")

    def topic_buttons(self, topics: Iterable[str], with_person: bool = True) -> List[Dict[str, str]]:
        buttons = [self.topic_button(t) for t in topics if t in self.content.guides]
        return buttons + ([self.person_button()] if with_person else [])
