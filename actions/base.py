"""The base of Waypoint's actions: every turn the action server answers goes
through :meth:`WaypointAction.run`, which

1. says the session's short introduction before the first answer of a session;
2. answers a language it cannot write with a language choice;
3. asks ``actions/dialogue.py`` what the turn is, in the light of the
   conversation (an answer to the assistant's own question, a follow-up, a
   crisis, a repeat ...), and hands the turn to that handler: the action Rasa's
   rules predicted is the default, the dialogue may send the turn elsewhere.

Handlers register by name (``@handler("answer_topic")``), so this module needs
none of them and no action module imports another: no import cycles.
"""

from __future__ import annotations

import abc
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.context import Facts, facts
from actions.reply import Reply
from content import languages

logger = logging.getLogger(__name__)

Events = List[Dict[Text, Any]]
Handler = Callable[[Reply, Tracker, Facts, Dict[str, Any]], Awaitable[Events]]
HANDLERS: Dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(function: Handler) -> Handler:
        HANDLERS[name] = function
        return function

    return register


async def dispatch(
    name: str, reply: Reply, tracker: Tracker, turn: Facts, data: Optional[Dict[str, Any]] = None
) -> Events:
    return await HANDLERS[name](reply, tracker, turn, data or {})


class WaypointAction(Action, abc.ABC):
    """Subclasses name the handler Rasa's rules map their intents to. Abstract,
    so the action server does not register it."""

    handler_name = ""
    show_intro = True

    @abc.abstractmethod
    def name(self) -> Text:
        """The action's name in domain.yml."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict) -> Events:
        from actions.dialogue import decide

        reply = Reply(dispatcher, tracker, domain)
        turn = facts(tracker)
        decision = decide(tracker, turn, self.handler_name)
        logger.info("turn: %s -> %s (%s)", turn.intent, decision.handler, decision.reason)
        events: Events = []
        urgent = decision.handler == "crisis" or bool(decision.data.get("danger"))
        if not tracker.get_slot("intro_shown") and (self.show_intro or urgent):
            if not urgent:  # never an introduction before crisis numbers (the numbers carry the essentials)
                reply.say("intro")
            events.append(SlotSet("intro_shown", True))
        if turn.proposal.get("reason") in languages.UNSUPPORTED_REASONS and not urgent and not turn.is_button:
            return events + await dispatch("unsupported_language", reply, tracker, turn)
        events += await dispatch(decision.handler, reply, tracker, turn, decision.data)
        if (
            tracker.get_slot("pending_question") == "country"
            and tracker.get_slot("country")
            and not any(e.get("event") == "slot" and e.get("name") == "pending_question" for e in events)
        ):  # the country came inside another message ("I'm 15, in Thailand"): the question is answered
            events += [SlotSet("pending_question", None), SlotSet("pending_topic", None)]
        if decision.handler != "fallback":
            events.append(SlotSet("fallback_count", 0.0))
        if not reply.sent and not any(e.get("event") == "restart" for e in events):
            logger.warning("turn: handler %s said nothing; the menu is offered", decision.handler)
            reply.say("menu", buttons=menu_buttons(reply))
        return events


MENU = {
    "survivor": [
        "ident.am_i_a_victim",
        "protect.rights_overview",
        "protect.documents",
        "help.safety_planning",
        "help.helplines",
    ],
    "practitioner": [
        "ident.indicators",
        "ident.referral_procedure",
        "ident.interviewing",
        "child.age_unknown",
        "help.helplines",
    ],
}


def menu_buttons(reply: Reply) -> List[Dict[str, str]]:
    return reply.topic_buttons(MENU[reply.audience])
