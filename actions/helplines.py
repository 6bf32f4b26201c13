"""Numbers on request, in every wording: the country named in the message (a
Thai worker in Malaysia asking for Thai numbers gets Thai ones, and Thailand's
line for citizens abroad where one is verified), else the conversation's, else
one question. A country the assistant has no numbers for is said plainly, with
the home country's line for citizens abroad and a person. A number typed back
is recognised, not read as an age or a question."""

from __future__ import annotations

from typing import Any, Dict, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.base import Events, WaypointAction, handler
from actions.context import Facts
from actions.reply import Reply
from content import helplines
from content.texts import button


def _wanted_country(tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Optional[str]:
    """The country whose numbers are asked for: a button's, else the one country
    the message names besides where the user is ("i'm in malaysia, give me thai
    numbers"), else where the user is."""
    located = turn.places.located or tracker.get_slot("country")
    others = turn.places.named - {located} - ({turn.places.home} if turn.places.home == located else set())
    return (
        data.get("country")
        or turn.entity("country")
        or (next(iter(others)) if len(others) == 1 else None)
        or turn.places.located
        or turn.places.only_place
        or tracker.get_slot("country")
    )


@handler("helplines")
async def show_helplines(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    country = _wanted_country(tracker, turn, data)
    events: Events = [
        SlotSet("topic", "help.helplines"),
        SlotSet("numbers_muted", False),
        SlotSet("answered", "help.helplines:short"),
    ]
    if not country or country == "ZZ":
        return events + reply.ask_country("help.helplines")
    nationality = tracker.get_slot("nationality")
    located = tracker.get_slot("country")
    if country not in reply.content.countries:
        return events + reply.ask_country("help.helplines")
    # Asking for the numbers of one's own country while abroad: its line for
    # citizens abroad first (short numbers work only inside the country), then its lines.
    home = turn.places.home or nationality
    abroad_from = located if located and located != country and home in (None, country) else None
    has_numbers = any(h.country == country for h in reply.content.helplines)
    reply.numbers("helplines", country, None if abroad_from else nationality, abroad_from=abroad_from)
    if not has_numbers and not nationality:
        return events + reply.ask_home("help.helplines")
    reply.say("offer_person", buttons=[reply.person_button()])
    return events


@handler("typed_number")
async def typed_number(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    line = helplines.find_number(reply.content, turn.text)
    if line is None:
        reply.say("fallback_none")
        return []
    reply.say(
        "typed_number",
        name=line.name(reply.language),
        buttons=[button(reply.text("label_helplines"), "/ask_help_helplines"), reply.person_button()],
    )
    return []


class ActionShowHelplines(WaypointAction):
    handler_name = "helplines"

    def name(self) -> Text:
        return "action_show_helplines"
