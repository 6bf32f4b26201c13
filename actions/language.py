"""The sticky ``language`` slot.

The NLU component (components/language.py) judges the text; this module judges
the conversation. ``action_validate_slot_mappings`` runs after every user
message, before the next action is predicted, and decides whether the
conversation's language changes:

- an explicit choice (a button, /language, "can you speak Thai?") always wins;
- the first message of a conversation sets it (the channel's hint was already a
  prior inside the component);
- afterwards it changes only on unambiguous script (Thai letters, Vietnamese
  diacritics) or on a message of three or more words that the component
  assigns to another language with high confidence; never on one or two words,
  never on a button payload.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import ValidationAction

from actions.content import LANGUAGES
from actions.respond import Reply, button
from components.language import UNSUPPORTED_REASONS, normalise_hint
from components.textnorm import normalise, strip_accents

logger = logging.getLogger(__name__)

SWITCH_MIN_WORDS = 3
SWITCH_CONFIDENCE = 0.85
NATIVE_NAMES = {"en": "English", "id": "Bahasa Indonesia", "ms": "Bahasa Melayu", "vi": "Tiếng Việt", "th": "ภาษาไทย"}

# Names of the five languages as people write them in any of the five.
LANGUAGE_WORDS = {
    "en": ["english", "inggris", "inggeris", "bahasa inggris", "bahasa inggeris", "tieng anh", "anh ngu", "อังกฤษ", "eng", "engl"],
    "id": ["indonesian", "indonesia", "bahasa indonesia", "indon", "indo", "tieng indonesia", "tieng indo", "อินโดนีเซีย", "อินโด"],
    "ms": ["malay", "melayu", "bahasa melayu", "bahasa malaysia", "bm", "tieng ma lai", "tieng malaysia", "มาเลย์", "มลายู"],
    "vi": ["vietnamese", "vietnam", "viet", "tieng viet", "bahasa vietnam", "เวียดนาม"],
    "th": ["thai", "bahasa thai", "tieng thai", "ภาษาไทย", "ไทย"],
}


def named_language(text: Optional[str]) -> Optional[str]:
    """The language a message names ("can you speak Thai?" -> th), if exactly one."""
    if not text:
        return None
    plain = f" {strip_accents(normalise(text))} "
    found = set()
    for code, words in LANGUAGE_WORDS.items():
        for word in words:
            w = strip_accents(word)
            if re.search(r"[\u0E00-\u0E7F]", w):
                if w in plain:
                    found.add(code)
            elif re.search(rf"(?<![\w]){re.escape(w)}(?![\w])", plain):
                found.add(code)
    # "bahasa indonesia" must not also count as Malay's "bahasa ..." etc.
    if len(found) > 1 and "ms" in found and "id" in found and "melayu" not in plain and "malay" not in plain:
        found.discard("ms")
    return found.pop() if len(found) == 1 else None


def explicit_choice(tracker: Tracker) -> Optional[str]:
    latest = tracker.latest_message or {}
    for entity in latest.get("entities") or []:
        if entity.get("entity") == "language_choice" and entity.get("value") in LANGUAGES:
            return entity["value"]
    if (latest.get("intent") or {}).get("name") == "choose_language":
        return named_language(latest.get("text"))
    return None


def decide_language(current: Optional[str], proposal: Optional[Dict[str, Any]], text: Optional[str],
                    hint: Optional[str] = None) -> str:
    """The conversation's language after this message (``hint``: the channel's,
    e.g. Telegram's language_code, used when the message itself says nothing)."""
    current = current if current in LANGUAGES else None
    hint = normalise_hint(hint)
    if text and text.startswith("/"):
        # A button or command: no text to judge; keep the language, or take the hint.
        return current or hint or "en"
    if not isinstance(proposal, dict) or proposal.get("language") not in LANGUAGES:
        return current or "en"
    if proposal.get("reason") in UNSUPPORTED_REASONS + ("no letters",):
        return current or proposal["language"]
    if current is None:
        return proposal["language"]
    if proposal["language"] == current:
        return current
    if proposal.get("unambiguous"):
        return proposal["language"]
    if (proposal.get("n_words") or 0) >= SWITCH_MIN_WORDS and (proposal.get("confidence") or 0) >= SWITCH_CONFIDENCE:
        return proposal["language"]
    return current


class ValidateSlotMappings(ValidationAction):
    """Fills the custom-mapped slots after every user message."""

    def name(self) -> Text:
        return "action_validate_slot_mappings"

    async def extract_language(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        latest = tracker.latest_message or {}
        current = tracker.get_slot("language")
        hint = (latest.get("metadata") or {}).get("language_hint")
        chosen = explicit_choice(tracker) or decide_language(current, latest.get("language_id"), latest.get("text"), hint)
        return {"language": chosen} if chosen != current else {}

    async def extract_country(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Dict[Text, Any]:
        from actions.answers import country_from_message

        code = country_from_message(tracker)
        return {"country": code} if code and code != tracker.get_slot("country") else {}


def language_buttons() -> List[Dict[str, str]]:
    return [button(NATIVE_NAMES[code], f'/choose_language{{"language_choice":"{code}"}}') for code in LANGUAGES]


class ActionSetLanguage(Action):
    def name(self) -> Text:
        return "action_set_language"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> List[Dict[Text, Any]]:
        chosen = explicit_choice(tracker)
        if not chosen:
            Reply(dispatcher, tracker, domain).say("ask_language", buttons=language_buttons())
            return []
        Reply(dispatcher, tracker, domain, language=chosen).say("language_set")
        return [SlotSet("language", chosen)]
