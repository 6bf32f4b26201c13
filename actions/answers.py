"""Guide answers, short first: a recognised topic is answered from data/guides
in the user's language and for their audience. Survivors get the short first
message (one phone screen) with a "Tell me more" button; the detail, the note
for their country and the source follow on that button or on "tell me more"
typed. Practitioners get the steps and the standard at once. The country is
asked once when the answer depends on it, and the pending answer resumes when
it is given. Follow-ups are read against the last topic; the same question
twice gets a short reply pointing back; not understood twice in a row gets the
topics and a person.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.base import Events, WaypointAction, dispatch, handler, menu_buttons
from actions.context import Facts
from actions.reply import OTHER_COUNTRY, Reply
from actions.search import search
from content.loader import Guide
from content.texts import button

logger = logging.getLogger(__name__)

MORE = "#more"  # a pending topic waiting for the country before its detail


def country_note(reply: Reply, guide: Guide, country: Optional[str]) -> Optional[str]:
    note = guide.country_notes.get(country or "")
    return note.get(reply.language, note["en"]).strip() if note else None


def related_for(tracker: Tracker, guide: Guide, limit: int = 2) -> List[str]:
    related = list(guide.related[:limit])
    if tracker.get_slot("is_minor") and guide.topic != "child.child_victims" and "child.child_victims" not in related:
        related = ["child.child_victims"] + related[: limit - 1]
    return related


def send_answer(reply: Reply, tracker: Tracker, topic: str, part: str = "short", danger_button: bool = False) -> Events:
    """One topic's answer: ``short`` (survivors' first message, or the whole
    practitioner answer) or ``more`` (the detail, the country note, the source)."""
    guide = reply.content.guides[topic]
    country = tracker.get_slot("country")
    extra = [reply.danger_button()] if danger_button else []
    if reply.audience == "practitioner":
        note = country_note(reply, guide, country)
        text = "\n\n".join(
            [guide.text(reply.language, "practitioner")]
            + ([note] if note else [])
            + [guide.text(reply.language, "source")]
        )
        reply.send(text, extra + reply.topic_buttons(related_for(tracker, guide, 3)))
        part = "all"
    elif part == "short":
        reply.send(
            guide.text(reply.language, "survivor"),
            extra + [reply.more_button(topic)] + reply.topic_buttons(related_for(tracker, guide)),
        )
    else:
        note = country_note(reply, guide, country)
        text = "\n\n".join(
            [guide.text(reply.language, "survivor_more")]
            + ([note] if note else [])
            + [guide.text(reply.language, "source")]
        )
        reply.send(text, extra + reply.topic_buttons(related_for(tracker, guide, 3)))
    return [
        SlotSet("topic", topic),
        SlotSet("pending_topic", None),
        SlotSet("pending_question", None),
        SlotSet("answered", f"{topic}:{part}"),
    ]


@handler("answer_topic")
async def answer_topic(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    topic = data.get("topic") or reply.content.intent_topics().get(turn.intent or "")
    if topic not in reply.content.guides:
        return await dispatch("fallback", reply, tracker, turn)
    if topic == "help.helplines":
        return await dispatch("helplines", reply, tracker, turn)
    guide = reply.content.guides[topic]
    danger = bool(data.get("danger_button") or turn.possible_emergency)
    if (
        guide.country_dependent
        and not tracker.get_slot("country")
        and not tracker.get_slot("country_asked")
        and reply.audience == "practitioner"
    ):
        return [SlotSet("topic", topic)] + reply.ask_country(topic)
    events = send_answer(reply, tracker, topic, "short", danger_button=danger)
    if danger:
        reply.say("danger_check")
    return events


@handler("follow_up")
async def follow_up(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    kind = data.get("kind", "more")
    topic = data.get("topic") or turn.entity("topic_ref") or tracker.get_slot("topic")
    reporting = tracker.get_slot("reporting_for")
    if kind == "next":
        if reporting:
            return await dispatch(
                "report_for_other", reply, tracker, turn, {"child": reporting == "child", "next_steps": True}
            )
        if tracker.get_slot("topic") in ("help.emergency", "help.self_harm"):
            reply.say("next_steps_crisis", buttons=[reply.danger_button(), reply.person_button()])
            return []
        reply.say("next_steps", buttons=reply.topic_buttons(["help.helplines", "help.safety_planning"]))
        return []
    if topic not in reply.content.guides or topic in (
        "help.emergency",
        "help.self_harm",
        "help.talk_to_human",
        "help.delete_my_data",
    ):
        reply.say("follow_up_no_topic", buttons=menu_buttons(reply))
        return []
    answered = tracker.get_slot("answered") or ""
    if kind == "clarify":
        guide = reply.content.guides[topic]
        reply.say("clarify_intro", title=guide.text(reply.language, "title"))
        part = "short" if answered != f"{topic}:short" else "more"
        return send_answer(reply, tracker, topic, part)
    guide = reply.content.guides[topic]
    if answered in (f"{topic}:more", f"{topic}:all"):
        reply.say("nothing_more", buttons=reply.topic_buttons(guide.related[:3]))
        return [SlotSet("topic", topic)]
    if guide.country_dependent and not tracker.get_slot("country") and not tracker.get_slot("country_asked"):
        return [SlotSet("topic", topic)] + reply.ask_country(f"{topic}{MORE}")
    return send_answer(reply, tracker, topic, "more")


@handler("repeat")
async def repeat(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    topic = data["topic"]
    guide = reply.content.guides[topic]
    reply.say(
        "repeat_answer",
        title=guide.text(reply.language, "title"),
        buttons=[reply.more_button(topic), reply.person_button()],
    )
    return [SlotSet("answered", f"{topic}:repeat")]


@handler("set_country")
async def set_country(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    """A country or place given: the pending answer resumes, or what changes
    for that country follows the last answer ("and in Malaysia?")."""
    given = turn.entity("country") or turn.places.located or turn.places.only_place
    pending = tracker.get_slot("pending_topic")
    events: Events = [SlotSet("country_asked", True), SlotSet("pending_question", None)]
    known = given in reply.content.countries
    if given and given != OTHER_COUNTRY and not known:
        given = None
    if given and given != OTHER_COUNTRY:
        if tracker.get_slot("country") != given:
            events.append(SlotSet("country", given))
        name = reply.content.country_name(given, reply.language)
        has_numbers = any(h.country == given for h in reply.content.helplines)
        if not has_numbers:
            reply.say("country_no_numbers", country=name)
        elif not pending:
            reply.say("country_set", country=name)
    elif not pending:
        reply.say("country_unknown", buttons=reply.country_buttons())
        return events
    # The slot event takes effect after this action; what is said now already uses it.
    tracker.slots["country"] = given if given and given != OTHER_COUNTRY else tracker.get_slot("country")
    if pending == "help.helplines":
        return events + await dispatch("helplines", reply, tracker, turn, {"country": given})
    if pending in ("help.emergency", "help.self_harm"):
        return events + await dispatch(
            "crisis",
            reply,
            tracker,
            turn,
            {"kinds": ["self_harm" if pending == "help.self_harm" else "danger"], "country_only": True},
        )
    if pending and pending.endswith(MORE) and pending[: -len(MORE)] in reply.content.guides:
        return events + send_answer(reply, tracker, pending[: -len(MORE)], "more")
    if pending in reply.content.guides:
        return events + send_answer(reply, tracker, pending)
    topic = tracker.get_slot("topic")
    if given and given != OTHER_COUNTRY:
        events += for_the_new_country(reply, tracker, turn, topic, given)
    return events


def for_the_new_country(reply: Reply, tracker: Tracker, turn: Facts, topic: Optional[str], country: str) -> Events:
    """What changes for a country given after an answer: that country's note, or
    its numbers for a crisis or helplines answer."""
    if topic in ("help.emergency", "help.self_harm", "help.helplines"):
        need = {"help.emergency": "emergency", "help.self_harm": "crisis"}.get(topic, "helplines")
        reply.numbers(need, country, tracker.get_slot("nationality"))
        return []
    guide = reply.content.guides.get(topic or "")
    if guide is None:
        return []
    note = country_note(reply, guide, country)
    if note:
        reply.send(f"{note}\n\n{guide.text(reply.language, 'source')}", reply.topic_buttons(guide.related[:2]))
    else:
        reply.say(
            "no_country_note",
            country=reply.content.country_name(country, reply.language),
            title=guide.text(reply.language, "title"),
            buttons=[button(reply.text("label_helplines"), "/ask_help_helplines"), reply.person_button()],
        )
    return [SlotSet("answered", f"{topic}:country")]


@handler("fallback")
async def fallback(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    """Not understood: the three best-matching topics; the second time in a row,
    the topics menu and a person. Never a topic the user did not ask for."""
    count = int(tracker.get_slot("fallback_count") or 0) + 1
    hits = [topic for topic, _ in search(reply.content, turn.text, reply.language)] if not turn.is_button else []
    if count >= 2:
        reply.say("fallback_again", buttons=menu_buttons(reply))
    elif hits:
        reply.say("fallback_suggest", buttons=reply.topic_buttons(hits))
    else:
        reply.say("fallback_none", buttons=menu_buttons(reply))
    return [SlotSet("fallback_count", float(count))]


class ActionAnswerTopic(WaypointAction):
    handler_name = "answer_topic"

    def name(self) -> Text:
        return "action_answer_topic"


class ActionFollowUp(WaypointAction):
    handler_name = "follow_up"

    def name(self) -> Text:
        return "action_follow_up"


class ActionSetCountry(WaypointAction):
    handler_name = "set_country"

    def name(self) -> Text:
        return "action_set_country"


class ActionSearchTopics(WaypointAction):
    handler_name = "fallback"

    def name(self) -> Text:
        return "action_search_topics"
