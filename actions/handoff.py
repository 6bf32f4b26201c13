"""Hand-off to a human counsellor, always with consent.

Consent in two plain steps: (1) a counsellor will read your messages from now
on and will not see your name or number; (2) may I send them a short note of
the topics we talked about (no message text; numbers redacted)? Only then a
case is created in the assistant's own store (actions/store.py) and offered to
the operators (channels/operators.py relays it to their Telegram chat). When no
operators' chat is configured, the user is told so honestly and gets helplines.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions import store
from actions.conversation import WaypointAction
from actions.helplines import show_helplines
from actions.privacy import redact
from actions.respond import Reply, button

logger = logging.getLogger(__name__)


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def operators_configured() -> bool:
    return bool(os.environ.get("WAYPOINT_OPERATORS_CHAT_ID")) and bool(os.environ.get("TELEGRAM_BOT_TOKEN"))


def operators_on_duty(now: Optional[dt.datetime] = None, spec: Optional[str] = None) -> bool:
    """Whether WAYPOINT_OPERATOR_HOURS (e.g. "mon-fri 09:00-17:00 Asia/Bangkok";
    unset or "always": always) covers ``now``. A spec that cannot be read
    counts as always on duty (the timeout still protects the user) and is logged."""
    spec = (spec if spec is not None else os.environ.get("WAYPOINT_OPERATOR_HOURS", "")).strip()
    if not spec or spec.lower() == "always":
        return True
    try:
        days, hours, zone = spec.split()
        first, _, last = days.lower().partition("-")
        start_day, end_day = DAYS.index(first), DAYS.index(last or first)
        opens, closes = (dt.time.fromisoformat(part) for part in hours.split("-"))
        local = (now or dt.datetime.now(dt.timezone.utc)).astimezone(ZoneInfo(zone))
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        logger.error("WAYPOINT_OPERATOR_HOURS cannot be read; treating operators as on duty")
        return True
    day = local.weekday()
    in_days = start_day <= day <= end_day if start_day <= end_day else (day >= start_day or day <= end_day)
    return in_days and opens <= local.time() < closes


def yes_no(reply: Reply) -> List[Dict[str, str]]:
    return [button(reply.text("label_yes"), "/affirm"), button(reply.text("label_no"), "/deny")]


def topics_discussed(tracker: Tracker) -> List[str]:
    topics: List[str] = []
    for event in tracker.events:
        if event.get("event") == "slot" and event.get("name") == "topic" and event.get("value"):
            if event["value"] not in topics:
                topics.append(event["value"])
    return topics


def case_summary(tracker: Tracker) -> str:
    """Topic ids only: no message text leaves the conversation."""
    return redact("topics: " + ", ".join(topics_discussed(tracker))) if topics_discussed(tracker) else "topics: none yet"


class ActionRequestHandoff(WaypointAction):
    def name(self) -> Text:
        return "action_request_handoff"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        events: List[Dict[Text, Any]] = [SlotSet("topic", "help.talk_to_human")]
        existing = store.open_case_for(tracker.sender_id)
        if existing:
            reply.say("handoff_waiting")
            return events
        reply.say("handoff_consent", buttons=yes_no(reply))
        return events + [SlotSet("handoff_stage", "consent")]


class ActionHandoffConsent(WaypointAction):
    """The user's yes or no to the hand-off, then to sharing a topic summary."""

    def name(self) -> Text:
        return "action_handoff_consent"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        stage = tracker.get_slot("handoff_stage")
        said_yes = ((tracker.latest_message or {}).get("intent") or {}).get("name") == "affirm"
        if stage == "consent":
            if not said_yes:
                reply.say("handoff_declined")
                return [SlotSet("handoff_stage", None)]
            reply.say("handoff_share_summary", buttons=yes_no(reply))
            return [SlotSet("handoff_stage", "summary")]
        if stage == "summary":
            return self.open_case(reply, tracker, case_summary(tracker) if said_yes else None)
        reply.say("menu", buttons=self.menu_buttons(reply))
        return []

    def open_case(self, reply: Reply, tracker: Tracker, summary: Optional[str]) -> List[Dict[Text, Any]]:
        if not operators_configured():
            reply.say("handoff_not_configured")
            show_helplines(reply, tracker)
            return [SlotSet("handoff_stage", None)]
        if not operators_on_duty():
            reply.say("handoff_closed_hours")
            show_helplines(reply, tracker)
            return [SlotSet("handoff_stage", None)]
        asked = [t for t in topics_discussed(tracker) if not t.startswith("help.")]
        case = store.create_case(tracker.sender_id, tracker.get_latest_input_channel(), reply.language,
                                 tracker.get_slot("country"), asked[-1] if asked else None, summary)
        logger.info("hand-off case %s opened", case["case_id"])
        reply.say("handoff_waiting")
        reply.dispatcher.utter_message(json_message={"waypoint": "handoff_requested", "case_id": case["case_id"]})
        return [SlotSet("handoff_stage", "waiting"), SlotSet("handoff_case", case["case_id"])]
