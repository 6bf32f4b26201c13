"""Guide answers: a recognised topic answered from data/guides in the user's
language and for their audience, with its source, related topics and a person;
the country asked once when the answer depends on it; search when nothing was
recognised with confidence."""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.content import Content, Guide, get_content
from actions.conversation import WaypointAction
from actions.respond import Reply, button
from actions.search import search
from components.textnorm import normalise, strip_accents

logger = logging.getLogger(__name__)

ASKED_COUNTRIES = ("TH", "ID", "MY", "VN", "PH", "KH", "AU")
OTHER_COUNTRY = "ZZ"  # button value for "another country": nothing is stored


def intent_name(tracker: Tracker) -> Optional[str]:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


# Words that say "where I am" just before a country's name, accents folded:
# en in/at, ms/id di/kat/dekat, vi ở/tại (bên), th อยู่/ที่.
LOCATED_BEFORE = re.compile(r"(?<!\w)(?:in|at|di|kat|dekat|dkt|o|tai)(?:\s+ben)?[\s:,-]*$")
THAI_LOCATED_BEFORE = re.compile(r"(?:อยู่|ที่)\s*$")


def country_in_text(content: Content, text: str, located: bool = False) -> Optional[str]:
    """The one country a message names (None if none or several). With
    ``located``, only a country the message says the user is in ("I'm in
    Thailand", "sy kat Malaysia", "em đang ở Campuchia", "อยู่มาเลเซีย"): one
    named without such a word ("I want to go back to Vietnam") says nothing about
    where the user is. Thai is matched as written (folding accents would delete
    its vowels: "เล่าว่า" would contain "ลาว", Laos), the rest accent-folded."""
    thai_text, plain = f" {normalise(text)} ", f" {strip_accents(normalise(text))} "
    found = set()
    for code, info in content.countries.items():
        for alias in info.get("aliases") or []:
            if re.search(r"[\u0E00-\u0E7F]", str(alias)):
                where, before, pattern = thai_text, THAI_LOCATED_BEFORE, re.escape(normalise(str(alias)))
            else:
                a = strip_accents(normalise(str(alias)))
                where, before, pattern = plain, LOCATED_BEFORE, rf"(?<!\w){re.escape(a)}(?!\w)"
            if any(not located or before.search(where[max(0, m.start() - 16):m.start()])
                   for m in re.finditer(pattern, where)):
                found.add(code)
    return found.pop() if len(found) == 1 else None


def country_from_message(tracker: Tracker) -> Optional[str]:
    """The country a message gives: a button's entity, or a country named in a
    message that answers the country question or says where the user is."""
    latest = tracker.latest_message or {}
    for entity in latest.get("entities") or []:
        if entity.get("entity") == "country":
            value = str(entity.get("value") or "").upper()
            return value if re.fullmatch(r"[A-Z]{2}", value) and value != OTHER_COUNTRY else None
    if intent_name(tracker) == "inform_country" or tracker.get_slot("pending_topic"):
        return country_in_text(get_content(), latest.get("text") or "")
    text = latest.get("text") or ""
    return country_in_text(get_content(), text, located=True) if not text.startswith("/") else None


def country_buttons(reply: Reply) -> List[Dict[str, str]]:
    buttons = [button(reply.content.country_name(code, reply.language), f'/inform_country{{"country":"{code}"}}')
               for code in ASKED_COUNTRIES]
    return buttons + [button(reply.text("label_other_country"), f'/inform_country{{"country":"{OTHER_COUNTRY}"}}')]


def ask_country(reply: Reply, topic: str) -> List[Dict[Text, Any]]:
    reply.say("ask_country", buttons=country_buttons(reply))
    return [SlotSet("pending_topic", topic), SlotSet("country_asked", True)]


def country_note(reply: Reply, guide: Guide, country: Optional[str]) -> Optional[str]:
    note = guide.country_notes.get(country or "")
    if not note:
        return None
    name = reply.content.country_name(country, reply.language)
    return f"{reply.text('country_note', country=name)} {note.get(reply.language, note['en']).strip()}"


def answer_text(reply: Reply, guide: Guide, country: Optional[str]) -> str:
    audience = "practitioner" if reply.audience == "practitioner" else "survivor"
    note = country_note(reply, guide, country)
    parts = [guide.text(reply.language, audience)] + ([note] if note else []) + [guide.text(reply.language, "source")]
    return "\n\n".join(parts)


def for_the_new_country(reply: Reply, tracker: Tracker, topic: Optional[str], country: str) -> None:
    """The country given after an answer ("and in Malaysia?"): what changes for
    it, without repeating the whole answer: the emergency numbers or helplines
    of that country, or the answer's note for that country."""
    from actions.helplines import show_helplines

    if topic == "help.emergency":
        show_helplines(reply, tracker, emergency_only=True)
    elif topic == "help.helplines":
        show_helplines(reply, tracker)
    elif topic in reply.content.guides:
        guide = reply.content.guides[topic]
        note = country_note(reply, guide, country)
        if note:
            reply.send(f"{note}\n\n{guide.text(reply.language, 'source')}", reply.topic_buttons(guide.related[:2]))


def send_answer(reply: Reply, tracker: Tracker, topic: str) -> List[Dict[Text, Any]]:
    """The answer to ``topic`` with its source line, related topics and a person."""
    if topic == "help.helplines":
        from actions.helplines import show_helplines

        return show_helplines(reply, tracker)
    guide = reply.content.guides[topic]
    related = list(guide.related[:3])
    if tracker.get_slot("is_minor") and topic != "child.child_victims" and "child.child_victims" not in related:
        related = ["child.child_victims"] + related[:2]
    reply.send(answer_text(reply, guide, tracker.get_slot("country")), reply.topic_buttons(related))
    return [SlotSet("pending_topic", None)]


class ActionAnswerTopic(WaypointAction):
    def name(self) -> Text:
        return "action_answer_topic"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        topic = reply.content.intent_topics().get(intent_name(tracker) or "")
        if topic not in reply.content.guides:
            return await ActionSearchTopics().respond(reply, tracker)
        events: List[Dict[Text, Any]] = [SlotSet("topic", topic)]
        guide = reply.content.guides[topic]
        if guide.country_dependent and not tracker.get_slot("country") and not tracker.get_slot("country_asked"):
            danger_check(reply, tracker)
            return events + ask_country(reply, topic)
        events += send_answer(reply, tracker, topic)
        danger_check(reply, tracker)
        return events


def danger_check(reply: Reply, tracker: Tracker) -> None:
    """A question that mentions danger (components/nlu.py, EmergencyOverride):
    answered as asked, with one tap to the emergency numbers."""
    if (tracker.latest_message or {}).get("possible_emergency"):
        reply.say("danger_check", buttons=[button(reply.text("label_danger_now"), "/report_emergency")])


class ActionSetCountry(WaypointAction):
    def name(self) -> Text:
        return "action_set_country"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        # action_validate_slot_mappings has already stored a recognised country.
        country = tracker.get_slot("country")
        given = country_from_message(tracker)
        pending = tracker.get_slot("pending_topic")
        events: List[Dict[Text, Any]] = [SlotSet("country_asked", True)]
        if given and given not in reply.content.countries:
            reply.say("country_unknown", country=given)
        elif given:
            reply.say("country_set", country=reply.content.country_name(given, reply.language))
        if pending in reply.content.guides:
            return events + send_answer(reply, tracker, pending)
        if given and given in reply.content.countries:
            for_the_new_country(reply, tracker, tracker.get_slot("topic"), given)
        if not given and not country:
            reply.say("country_unknown", country="")
        return events


class ActionSearchTopics(WaypointAction):
    """Nothing recognised with confidence: offer the three best-matching topics."""

    def name(self) -> Text:
        return "action_search_topics"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        text = (tracker.latest_message or {}).get("text") or ""
        hits = [topic for topic, _ in search(reply.content, text, reply.language)] if not text.startswith("/") else []
        if hits:
            reply.say("fallback_suggest", buttons=reply.topic_buttons(hits))
        else:
            reply.say("fallback_none", buttons=WaypointAction.menu_buttons(reply))
        return []
