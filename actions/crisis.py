"""Crises first: danger now, thoughts of self-harm, a child, someone writing
for another person. Numbers come first, without an introduction or a question
before them; only VERIFIED numbers (data/helplines.yml), the user's country's
when known, every country's on one short screen otherwise.

- Danger now: one message with the numbers (police or the general number,
  then ambulance, then the anti-trafficking line; the home country's line for
  citizens abroad when the user said where they are from), then the safety
  steps by situation (help.emergency's guide text), then the offer of a person.
- Self-harm: short and calm; the crisis lines (never police numbers, unless
  others are a danger too, then both); the guide's words; a person now.
- The same crisis again in a session: a short reply (I'm here; the first
  numbers; a person?), not the whole block again. "Stop sending numbers" is
  respected: one line only.
- A child writing: the child answer and the country's child line (its
  emergency numbers, said plainly, where no child line is verified).
- Someone writing for a child or another adult: spoken to them, about the
  person, with the numbers to call for that person; never marked a minor.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Text

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.base import Events, WaypointAction, handler
from actions.context import Facts
from actions.reply import Reply
from content import helplines

logger = logging.getLogger(__name__)


def _place(tracker: Tracker, turn: Facts) -> Any:
    """The country the numbers are for: where the message says, else the conversation's."""
    return (
        turn.places.located or (turn.places.only_place if turn.places.places else None) or tracker.get_slot("country")
    )


def _numbers(reply: Reply, need: str, country: Any, nationality: Any) -> None:
    known = country in reply.content.countries
    if country and known:
        reply.numbers(need, country, nationality)
    else:
        reply.send(helplines.compact_text(reply.content, need, reply.language, nationality))


def _ask_where(reply: Reply, tracker: Tracker, country: Any, topic: str) -> Events:
    """After the numbers: which country (when unknown), or, in a country we have
    no numbers for, which country the user is from (its line for citizens abroad)."""
    if country in reply.content.countries:
        if tracker.get_slot("nationality"):
            reply.say("offer_person_now", buttons=[reply.person_button()])
            return []
        return reply.ask_home(topic)
    return reply.ask_country(topic, key="crisis_ask_country", with_person=True)


def _knows(reply: Reply, country: Any) -> bool:
    """A country the assistant knows and has verified lines for."""
    return country in reply.content.countries and any(h.country == country for h in reply.content.helplines)


def _first_number(reply: Reply, need: str, country: Any) -> str:
    """The first numbers of ``need`` in ``country`` for a short reply, or "" where it has none."""
    return helplines.first_numbers(reply.content, need, country) if _knows(reply, country) else ""


def still_here(reply: Reply, topic: str, country: Any) -> None:
    """The short crisis reply: still here, the first number of that crisis's kind for the country (or the
    lines above), and a person one button away."""
    self_harm = topic == "help.self_harm"
    first = _first_number(reply, "crisis" if self_harm else "emergency", country)
    key = ("self_harm_again" if self_harm else "crisis_again") + ("" if first else "_no_number")
    reply.say(
        key,
        numbers=first,
        buttons=[reply.person_button(), reply.danger_button()] if not self_harm else [reply.person_button()],
    )


def _a_line_open_now(reply: Reply, need: str, country: Any) -> bool:
    """Whether a line of ``need`` in ``country`` is open now, or may be (hours unknown)."""
    return any(h.open_now() is not False for h in helplines.for_need(reply.content, need, country))


def _answered_before(tracker: Tracker, topic: str) -> bool:
    """Whether this conversation's recent turns answered ``topic`` (a crisis) already."""
    return any(
        e.get("event") == "slot" and e.get("name") == "topic" and e.get("value") == topic for e in tracker.events
    )


@handler("crisis")
async def crisis(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    kinds = set(data.get("kinds") or ["danger"])
    self_harm = "self_harm" in kinds
    topic = "help.self_harm" if self_harm else "help.emergency"
    country, nationality = _place(tracker, turn), tracker.get_slot("nationality")
    count = int(tracker.get_slot("crisis_count") or 0)
    events: Events = [
        SlotSet("topic", topic),
        SlotSet("intro_shown", True),
        SlotSet("crisis_count", float(count + 1)),
        SlotSet("answered", f"{topic}:short"),
    ]
    if "minor_self" in turn.signals and tracker.get_slot("audience") != "practitioner":
        events.append(SlotSet("is_minor", True))  # a child in danger: the child line with the emergency numbers
    need = "crisis" if self_harm else "emergency"
    known = _knows(reply, country)
    if data.get("country_only"):  # the country given after the numbers: that country's, in full
        _numbers(reply, need, country, nationality)
        if self_harm and "danger" in kinds:
            _numbers(reply, "emergency", country, nationality)
        reply.say("offer_person_now", buttons=[reply.person_button()])
        return events
    first = _first_number(reply, need, country)
    # the short reply only after the same kind of crisis was answered in full (a self-harm message after a
    # danger one gets its crisis lines), or when the user asked for fewer numbers and there is one to give
    if (count >= 1 and _answered_before(tracker, topic)) or (tracker.get_slot("numbers_muted") and first):
        still_here(reply, topic, country)
        return events
    if self_harm:
        reply.say("self_harm_now")
        _numbers(reply, "crisis", country, nationality)
        if "danger" in kinds:
            _numbers(reply, "emergency", country, nationality)
        elif known and not _a_line_open_now(reply, "crisis", country):
            # every crisis line of the country is closed now (Talian HEAL closes at midnight): the
            # emergency number, said as being for a life in danger now, not for the police
            always = [
                str(c["value"])
                for h in helplines.for_need(reply.content, "emergency", country)
                if h.hours.get("always")
                for c in h.channels
                if c["type"] == "phone"
            ]
            if always:
                reply.say("self_harm_lines_closed", numbers=always[0])
        guide = reply.content.guides.get("help.self_harm")
        if guide is not None:
            reply.send(guide.text(reply.language, "survivor"))
    else:
        _numbers(reply, "emergency", country, nationality)
        if (tracker.get_slot("is_minor") or "minor_self" in turn.signals) and known:
            reply.numbers("child", country, None)
        guide = reply.content.guides.get("help.emergency")
        if guide is not None:
            reply.send(guide.text(reply.language, "survivor"))
    if not known:
        return events + _ask_where(reply, tracker, country, topic)
    reply.say("offer_person_now", buttons=[reply.person_button()])
    return events


@handler("minor")
async def minor(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    country = _place(tracker, turn)
    events: Events = [
        SlotSet("is_minor", True),
        SlotSet("topic", "child.child_victims"),
        SlotSet("answered", "child.child_victims:short"),
    ]
    reply.say("minor")
    if country in reply.content.countries:
        reply.numbers("child", country, tracker.get_slot("nationality"))
        reply.say("offer_person", buttons=reply.topic_buttons(["child.child_victims", "help.safety_planning"]))
        return events
    reply.send(helplines.compact_text(reply.content, "child", reply.language))
    return events + _ask_where(reply, tracker, country, "help.helplines")


def _their_place(tracker: Tracker, turn: Facts) -> Any:
    """Where the person reported is: the one country the message names besides
    the writer's own ("my friend went to Malaysia ... I'm in the Philippines"),
    else as for the writer."""
    others = turn.places.named - {turn.places.located, turn.places.home}
    if len(others) == 1:  # "my friend went to Malaysia" names where the friend is
        return next(iter(others))
    return _place(tracker, turn)


@handler("report_for_other")
async def report_for_other(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    child = bool(data.get("child"))
    country = _their_place(tracker, turn)
    events: Events = [
        SlotSet("reporting_for", "child" if child else "adult"),
        SlotSet("topic", "child.child_victims" if child else "ident.am_i_a_victim"),
    ]
    if data.get("next_steps"):
        reply.say("reporter_next_steps_child" if child else "reporter_next_steps", buttons=[reply.person_button()])
        return events
    reply.say("reporter_child" if child else "reporter_adult")
    need = "child" if child else "report"
    if data.get("danger") and country in reply.content.countries:
        reply.numbers("emergency", country, None)
    asked = data.get("topic")
    topic_buttons = (
        [reply.topic_button(asked)]
        if asked in reply.content.guides
        and asked not in ("ident.am_i_a_victim", "child.child_victims", "help.helplines")
        else []
    )
    if country in reply.content.countries:
        reply.numbers(need, country, None)
        reply.say("reporter_offer", buttons=[*topic_buttons, reply.person_button()])
        return events
    reply.send(helplines.compact_text(reply.content, "child" if child else "emergency", reply.language))
    return events + reply.ask_country("help.helplines", key="reporter_ask_country")


class ActionHandleCrisis(WaypointAction):
    """Danger now or thoughts of self-harm: numbers first, no introduction before them."""

    handler_name = "crisis"
    show_intro = False

    def name(self) -> Text:
        return "action_handle_crisis"


class ActionAcknowledgeMinor(WaypointAction):
    handler_name = "minor"

    def name(self) -> Text:
        return "action_acknowledge_minor"
