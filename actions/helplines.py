"""The helpline directory (data/helplines.yml), emergencies and children."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Dict, Iterable, List, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.content import Helpline
from actions.conversation import WaypointAction
from actions.respond import Reply

logger = logging.getLogger(__name__)

CHANNEL_LABELS = {"phone": "☎", "sms": "SMS", "whatsapp": "WhatsApp", "web": "Web"}


def format_helpline(reply: Reply, helpline: Helpline, now: Optional[dt.datetime] = None) -> str:
    channels = " · ".join(
        f"{CHANNEL_LABELS[c['type']]} {c['value']}" for c in helpline.channels
    )
    status = helpline.open_now(now)
    if helpline.hours.get("always"):
        hours = reply.text("open_24h")
    elif status is None:
        hours = ""
    else:
        hours = reply.text("open_now" if status else "closed_now")
    line = f"• {helpline.organisation}\n  {channels}"
    return line + (f" ({hours})" if hours else "")


def helpline_block(reply: Reply, helplines: Iterable[Helpline], group_by_country: bool) -> str:
    lines: List[str] = []
    current = None
    for helpline in helplines:
        if group_by_country and helpline.country != current:
            current = helpline.country
            lines.append(f"\n{reply.content.country_name(current, reply.language)}:")
        lines.append(format_helpline(reply, helpline))
    return "\n".join(lines).strip()


def show_helplines(reply: Reply, tracker: Tracker, purposes: Optional[Iterable[str]] = None,
                   emergency_only: bool = False) -> List[Dict[Text, Any]]:
    """The helplines for the user's country; every country's when it is unknown."""
    country = tracker.get_slot("country")
    wanted = set(purposes or [])
    chosen = [h for h in reply.content.helplines_for(country if country in reply.content.countries else None)
              if (not emergency_only or h.emergency) and (not wanted or wanted & set(h.purposes))]
    name = reply.content.country_name(country, reply.language)
    if country and not chosen:
        reply.say("helplines_none", buttons=[reply.person_button()], country=name)
        return []
    intro = reply.text("helplines_intro", country=name) if country else reply.text("helplines_all")
    reply.send(f"{intro}\n{helpline_block(reply, chosen, group_by_country=not country)}")
    return []


class ActionShowHelplines(WaypointAction):
    def name(self) -> Text:
        return "action_show_helplines"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        from actions.answers import ask_country

        events: List[Dict[Text, Any]] = [SlotSet("topic", "help.helplines")]
        if not tracker.get_slot("country") and not tracker.get_slot("country_asked"):
            return events + ask_country(reply, "help.helplines")
        show_helplines(reply, tracker)
        reply.say("offer_person", buttons=[reply.person_button()])
        return events


class ActionHandleEmergency(WaypointAction):
    """Immediate danger: numbers first, then short safety steps, then a person.
    No introduction before the numbers, no question before the numbers."""

    show_intro = False
    handles_unsupported_language = False

    def name(self) -> Text:
        return "action_handle_emergency"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        reply.say("emergency")
        show_helplines(reply, tracker, emergency_only=True)
        reply.say("emergency_steps")
        reply.say("offer_person", buttons=[reply.person_button()])
        return [SlotSet("topic", "help.emergency"), SlotSet("intro_shown", True)]


class ActionAcknowledgeMinor(WaypointAction):
    """A child: child-specific answers and child helplines."""

    def name(self) -> Text:
        return "action_acknowledge_minor"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        country = tracker.get_slot("country")
        children = [h for h in reply.content.helplines_for(country if country in reply.content.countries else None)
                    if "children" in h.purposes]
        lines = helpline_block(reply, children, group_by_country=not country)
        reply.send(f"{reply.text('minor')}\n{lines}".strip(),
                   reply.topic_buttons(["child.child_victims", "help.safety_planning"]))
        return [SlotSet("is_minor", True)]
