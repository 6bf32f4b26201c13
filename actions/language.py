"""The slots each user message may change, decided by the conversation.

The NLU component (components/language.py) judges the text; this module judges
the conversation. ``action_validate_slot_mappings`` runs after every user
message, before the next action is predicted, and decides:

- ``language`` (sticky): an explicit choice (a button, /language, "can you
  speak Thai?") always wins; the first message of a conversation sets it (the
  channel's hint was already a prior inside the component; after a deletion the
  channel passes the deleted conversation's language as the hint); afterwards it
  changes only on unambiguous script (Thai letters, Vietnamese diacritics) or
  on a message of three or more words that the component assigns to another
  language with high confidence; never on one or two words, never on a button,
  never on an acknowledgement ("ok thanks", "cam on"), never on a message that
  only says where the user is ("i'm in johor now");
- ``country`` (where the user is) and ``nationality`` (where they are from):
  from a button, from "I'm in / di / ở / อยู่ ..." with a country or a city, or
  from a place given in answer to "which country?"; a place never sets where
  the user is from, a nationality never where they are;
- ``audience``: only an explicit statement of role ("I'm a social worker",
  also inside a longer question) makes it ``practitioner``; "I'm not a social
  worker" or "I am the victim" makes it ``survivor`` again; nothing else.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import ValidationAction

from actions.base import Events, WaypointAction, handler
from actions.context import Facts, facts
from actions.reply import Reply
from content import languages
from content.languages import CODES as LANGUAGES
from content.languages import UNSUPPORTED_REASONS, normalise_hint
from content.loader import get_content
from content.text import normalise, strip_accents

logger = logging.getLogger(__name__)

# Words that acknowledge, thank or greet in any of our languages (accents folded).
ACKNOWLEDGEMENTS = {
    "ok",
    "okay",
    "oke",
    "okey",
    "okie",
    "k",
    "kk",
    "thanks",
    "thank",
    "you",
    "thx",
    "tq",
    "ty",
    "terima",
    "kasih",
    "makasih",
    "trimakasih",
    "mksh",
    "cam",
    "on",
    "cảm",
    "ơn",
    "a",
    "ạ",
    "nhe",
    "nha",
    "yes",
    "ya",
    "yup",
    "baik",
    "sip",
    "noted",
    "alright",
    "good",
    "great",
    "dạ",
    "da",
    "vang",
    "u",
    "uhm",
    "hmm",
    "ohh",
    "oh",
    "faham",
    "paham",
    "understood",
    "got",
    "it",
}
THAI_ACKNOWLEDGEMENTS = {
    "ขอบคุณ",
    "ขอบคุณค่ะ",
    "ขอบคุณครับ",
    "โอเค",
    "โอเคค่ะ",
    "โอเคครับ",
    "ค่ะ",
    "ครับ",
    "ได้ค่ะ",
    "ได้ครับ",
    "เข้าใจแล้ว",
    "ขอบใจ",
    "ok ค่ะ",
    "ok ครับ",
}
SWITCH_MIN_WORDS = 3
SWITCH_CONFIDENCE = 0.85
# Names of our languages as people write them, in any of them (data/languages.yml).
LANGUAGE_WORDS = {lang.code: list(lang.names) for lang in languages.REGISTRY}


def named_language(text: Optional[str]) -> Optional[str]:
    """The language a message names ("can you speak Thai?" -> th), if exactly one."""
    if not text:
        return None
    plain = f" {strip_accents(normalise(text))} "
    found = set()
    for code, words in LANGUAGE_WORDS.items():
        if any(_named(strip_accents(word), plain) for word in words):
            found.add(code)
    # Names inside other names ("bahasa indonesia" holds Malay's "bahasa ..."):
    # the language whose matched name is longest wins among a family.
    if len(found) > 1:
        longest = {
            code: max(
                (len(strip_accents(w)) for w in LANGUAGE_WORDS[code] if _named(strip_accents(w), plain)), default=0
            )
            for code in found
        }
        best = max(found, key=lambda c: longest[c])
        found = {
            c
            for c in found
            if c == best
            or languages.BY_CODE[c].family != languages.BY_CODE[best].family
            or not languages.BY_CODE[c].family
        }
    return found.pop() if len(found) == 1 else None


def _named(word: str, plain: str) -> bool:
    """``word`` in ``plain``: as a substring in scripts without spaces, else as a whole word."""
    if not word.isascii() and not any(ch.isascii() and ch.isalpha() for ch in word):
        return word in plain
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", plain) is not None


def explicit_choice(tracker: Tracker) -> Optional[str]:
    latest = tracker.latest_message or {}
    for entity in latest.get("entities") or []:
        if entity.get("entity") == "language_choice" and entity.get("value") in LANGUAGES:
            return entity["value"]
    if (latest.get("intent") or {}).get("name") == "choose_language":
        return named_language(latest.get("text"))
    return None


def decide_language(
    current: Optional[str], proposal: Optional[Dict[str, Any]], text: Optional[str], hint: Optional[str] = None
) -> str:
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
        # the first message: the channel's hint wins over a weak guess (gibberish, a word both languages share)
        if (
            hint in LANGUAGES
            and hint != proposal["language"]
            and not proposal.get("unambiguous")
            and (proposal.get("confidence") or 0) < SWITCH_CONFIDENCE
        ):
            return hint
        return proposal["language"]
    if proposal["language"] == current:
        return current
    if proposal.get("unambiguous"):
        return proposal["language"]
    if (proposal.get("n_words") or 0) >= SWITCH_MIN_WORDS and (proposal.get("confidence") or 0) >= SWITCH_CONFIDENCE:
        return proposal["language"]
    return current


def acknowledgement(text: Optional[str]) -> bool:
    """ "ok", "thanks", "cam on", "terima kasih", "ขอบคุณ" ...: says nothing about a change of language."""
    words = [w for w in re.split(r"\W+", strip_accents(normalise(text or ""))) if w]
    return (
        bool(words)
        and len(words) <= 4
        and all(w in ACKNOWLEDGEMENTS for w in words)
        or normalise(text or "").strip(" !.") in THAI_ACKNOWLEDGEMENTS
    )


class ValidateSlotMappings(ValidationAction):
    """Fills the custom-mapped slots after every user message."""

    def name(self) -> Text:
        return "action_validate_slot_mappings"

    async def extract_language(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict
    ) -> Dict[Text, Any]:
        latest = tracker.latest_message or {}
        current = tracker.get_slot("language")
        hint = (latest.get("metadata") or {}).get("language_hint")
        text = latest.get("text") or ""
        chosen = explicit_choice(tracker)
        if not chosen:
            if current and (acknowledgement(text) or _only_a_place(tracker)):
                return {}
            chosen = decide_language(current, latest.get("language_id"), text, hint)
        return {"language": chosen} if chosen != current else {}

    async def extract_country(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict
    ) -> Dict[Text, Any]:
        turn = facts(tracker)
        code = turn.entity("country")
        if code is None:
            pending = tracker.get_slot("pending_question")
            asked = pending == "country" or (turn.intent == "inform_country" and pending != "home")
            lone = len(turn.places.places) == 1 and not turn.places.home and pending != "home"  # "Myanmar" answering
            code = (  # "where are you from?" is the home country, not where the user is
                turn.places.located
                or (turn.places.only_place if asked and not turn.places.home else None)
                or (next(iter(turn.places.places)) if lone else None)
            )
        if not code or code == "ZZ" or code not in get_content().countries:
            return {}
        return {"country": code} if code != tracker.get_slot("country") else {}

    async def extract_nationality(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict
    ) -> Dict[Text, Any]:
        turn = facts(tracker)
        code = turn.entity("nationality") or turn.places.home
        if code is None and tracker.get_slot("pending_question") == "home" and not turn.places.located:
            code = turn.places.only_place  # the answer to "which country are you from?"
        if not code or code not in get_content().countries:
            return {}
        return {"nationality": code} if code != tracker.get_slot("nationality") else {}

    async def extract_audience(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict
    ) -> Dict[Text, Any]:
        turn = facts(tracker)
        current = tracker.get_slot("audience")
        if turn.is_button and turn.intent in ("identify_as_practitioner", "identify_as_survivor"):
            wanted = "practitioner" if turn.intent == "identify_as_practitioner" else "survivor"
        elif "survivor_role" in turn.signals:
            wanted = "survivor"
        elif "practitioner_role" in turn.signals:
            wanted = "practitioner"
        else:
            return {}
        return {"audience": wanted} if wanted != current else {}


def _only_a_place(tracker: Tracker) -> bool:
    """A short message that only says where the user is ("i'm in johor now")."""
    turn = facts(tracker)
    return bool(turn.places.named) and turn.n_words <= 5 and not turn.proposal.get("unambiguous")


@handler("set_language")
async def set_language(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    chosen = explicit_choice(tracker)
    if not chosen:
        reply.say("ask_language", buttons=languages.language_buttons())
        return []
    chosen_reply = Reply(reply.dispatcher, tracker, None, language=chosen)
    chosen_reply.say("language_set")
    reply.sent.append("language_set")
    if tracker.get_slot("intro_shown"):
        return [SlotSet("language", chosen)]
    chosen_reply.say("intro")  # the session's introduction, in the language just chosen
    return [SlotSet("language", chosen), SlotSet("intro_shown", True)]


@handler("unsupported_language")
async def unsupported_language(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    names = ", ".join(lang.native_name for lang in languages.REGISTRY)
    reply.say("unsupported_language", languages=names, buttons=languages.language_buttons())
    return []


class ActionSetLanguage(WaypointAction):
    handler_name = "set_language"
    show_intro = False

    def name(self) -> Text:
        return "action_set_language"
