"""Session start, the shared base of Waypoint's actions, and the generic reply."""
from __future__ import annotations

import abc
import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.respond import Reply
from components.language import UNSUPPORTED_REASONS

logger = logging.getLogger(__name__)

CARRIED_SLOTS = ("language", "audience", "country", "is_minor")
MENU = {
    "survivor": ["ident.am_i_a_victim", "protect.rights_overview", "protect.documents", "remedy.unpaid_wages", "help.helplines"],
    "practitioner": ["ident.indicators", "ident.referral_procedure", "ident.interviewing", "child.age_unknown", "help.helplines"],
}


def proposal(tracker: Tracker) -> Dict[str, Any]:
    return (tracker.latest_message or {}).get("language_id") or {}


class WaypointAction(Action, abc.ABC):
    """Base class: says the session's short introduction before the first answer
    of a session, and answers an unsupported language with a language choice.
    Abstract, so the action server does not register it."""

    show_intro = True
    handles_unsupported_language = True

    @abc.abstractmethod
    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        """What the action says; returns its events."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> List[Dict[Text, Any]]:
        reply = Reply(dispatcher, tracker, domain)
        events: List[Dict[Text, Any]] = []
        if self.show_intro and not tracker.get_slot("intro_shown"):
            reply.say("intro")
            events.append(SlotSet("intro_shown", True))
        if self.handles_unsupported_language and proposal(tracker).get("reason") in UNSUPPORTED_REASONS:
            from actions.language import language_buttons

            reply.say("unsupported_language", buttons=language_buttons())
            return events
        return events + (await self.respond(reply, tracker) or [])

    @staticmethod
    def menu_buttons(reply: Reply) -> List[Dict[str, str]]:
        return reply.topic_buttons(MENU.get(reply.audience, MENU["survivor"]))


class ActionSessionStart(Action):
    """A new session keeps only the language, audience, country and age the user
    gave; everything else starts empty."""

    def name(self) -> Text:
        return "action_session_start"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> List[Dict[Text, Any]]:
        events: List[Dict[Text, Any]] = [SessionStarted()]
        for slot in CARRIED_SLOTS:
            value = tracker.get_slot(slot)
            if value is not None:
                events.append(SlotSet(slot, value))
        events.append(ActionExecuted("action_listen"))
        return events


class ActionIntro(WaypointAction):
    """The session's introduction, once, before a reply that is a plain response
    (rules: ``action_intro`` then ``utter_greet`` etc.)."""

    def name(self) -> Text:
        return "action_intro"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        return []


class ActionReply(WaypointAction):
    """"Yes"/"no" out of context and out-of-scope messages: what I can help with."""

    def name(self) -> Text:
        return "action_reply"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        intent = ((tracker.latest_message or {}).get("intent") or {}).get("name")
        reply.say("out_of_scope" if intent == "out_of_scope" else "menu", buttons=self.menu_buttons(reply))
        return []
