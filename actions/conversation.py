"""Session start and the small turns of a conversation: greetings, thanks,
goodbye, "are you a bot?", who the user is, yes or no out of context, not now,
fear without a question, "stop sending numbers", and questions outside what the
assistant knows."""

from __future__ import annotations

from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.base import Events, WaypointAction, handler, menu_buttons
from actions.context import Facts
from actions.crisis import still_here
from actions.dialogue import CRISIS_TOPICS
from actions.reply import Reply
from content.texts import button

# Carried into a new session: what the user told us about themselves.
CARRIED_SLOTS = ("language", "audience", "country", "nationality", "is_minor", "numbers_muted")


class ActionSessionStart(Action):
    """A new session keeps only the language, audience, country, nationality,
    age and "no more numbers" the user gave; everything else starts empty."""

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


SIMPLE = {"greet": "greet", "goodbye": "goodbye", "thank": "thank", "bot_challenge": "bot_challenge"}


@handler("small_talk")
async def small_talk(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    intent = turn.intent or ""
    if intent in ("affirm", "thank") and tracker.get_slot("topic") in CRISIS_TOPICS and not turn.is_button:
        # "ok" or "thanks" right after crisis numbers: still here, a number, a person; never a menu
        still_here(reply, tracker.get_slot("topic"), tracker.get_slot("country"))
        return []
    if intent in SIMPLE:
        buttons = (
            [reply.person_button()] if intent == "bot_challenge" else (menu_buttons(reply) if intent == "greet" else [])
        )
        reply.say(SIMPLE[intent], buttons=buttons)
        return []
    if intent == "identify_as_practitioner" and "survivor_role" in turn.signals:
        intent = "identify_as_survivor"  # "I'm not a social worker, I'm the victim"
    if intent == "identify_as_practitioner":
        if tracker.get_slot("audience") == "practitioner":
            reply.say("audience_practitioner", buttons=menu_buttons(reply))
        else:  # a role statement the role lexicon did not confirm: asked, not assumed
            reply.say(
                "audience_check",
                buttons=[
                    button(reply.text("label_i_work_with_victims"), "/identify_as_practitioner"),
                    button(reply.text("label_i_need_help"), "/identify_as_survivor"),
                ],
            )
        return []
    if intent == "identify_as_survivor":
        reply.say("audience_survivor", buttons=menu_buttons(reply))
        return [SlotSet("audience", "survivor")] if tracker.get_slot("audience") != "survivor" else []
    if intent == "request_fewer_numbers":
        reply.say("fewer_numbers", buttons=[reply.person_button()])
        return [SlotSet("numbers_muted", True)]
    if intent == "express_distress":
        reply.say(
            "distress",
            buttons=[reply.danger_button(), reply.person_button()]
            + reply.topic_buttons(["help.safety_planning"], with_person=False),
        )
        return []
    if intent in ("not_now", "deny"):
        reply.say("not_now" if intent == "not_now" else "ok_menu", buttons=menu_buttons(reply))
        if "fear_of_being_seen" in turn.signals:  # "not now, they might see my phone"
            reply.say(
                "phone_safety",
                buttons=reply.topic_buttons(["help.safety_planning", "help.delete_my_data"], with_person=False),
            )
        return [SlotSet("pending_question", None), SlotSet("pending_topic", None)]
    if intent == "out_of_scope":
        reply.say("out_of_scope", buttons=menu_buttons(reply))
        return []
    reply.say("menu", buttons=menu_buttons(reply))
    return []


class ActionReply(WaypointAction):
    """The small turns (module docstring)."""

    handler_name = "small_talk"

    def name(self) -> Text:
        return "action_reply"
