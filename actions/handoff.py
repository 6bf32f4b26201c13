"""Hand-off to a human counsellor, always with consent, and only a clear yes.

Consent in two plain steps: (1) a counsellor will read your messages from now
on and will not see your name or number; (2) may I send them a short note of
the topics we talked about (topic ids only)? At each step only an unambiguous
yes (the Yes button, or words the lexicons list as a clear yes) counts; "never
mind", "not now", "wait", anything unclear, cancels or asks once more, with a
short safety note when the user fears their phone is seen.

Then the case is described in a marker at the end of the turn; the Rasa
server's relay (handoff/) stores it in its own store and offers it to the
operators. The action server keeps no case and shares no file with the Rasa
server. When no operators' chat is configured or no one is on duty, the user is
told honestly and gets helplines.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any, Dict, List, Optional, Text
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet

from actions.base import Events, WaypointAction, handler
from actions.context import Facts, events_of
from actions.reply import Reply
from content import settings
from content.texts import button

logger = logging.getLogger(__name__)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
YES_INTENTS = ("affirm",)
MAX_ASKS = 2


def operators_configured() -> bool:
    return bool(settings.get("WAYPOINT_OPERATORS_CHAT_ID")) and bool(settings.get("TELEGRAM_BOT_TOKEN"))


def operators_on_duty(now: Optional[dt.datetime] = None, spec: Optional[str] = None) -> bool:
    """Whether WAYPOINT_OPERATOR_HOURS (e.g. "mon-fri 09:00-17:00 Asia/Bangkok";
    unset or "always": always) covers ``now``. A spec that cannot be read
    counts as always on duty (the timeout still protects the user) and is logged."""
    spec = (spec if spec is not None else settings.get("WAYPOINT_OPERATOR_HOURS")).strip()
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


def new_case_id() -> str:
    return "WP-" + secrets.token_hex(3).upper()


def topics_discussed(tracker: Tracker) -> List[str]:
    return list(dict.fromkeys(t for t in events_of(tracker, "topic") if t))


def case_summary(tracker: Tracker) -> str:
    """Topic ids only: no message text leaves the conversation."""
    topics = topics_discussed(tracker)
    return "topics: " + ", ".join(topics) if topics else "topics: none yet"


def clear_yes(turn: Facts) -> bool:
    """Only the Yes button or an unambiguous yes in words (signals.yml clear_yes)."""
    if turn.is_button:
        return turn.intent in YES_INTENTS
    return "clear_yes" in turn.signals and "not_now" not in turn.signals


def available(reply: Reply, tracker: Tracker) -> bool:
    if not operators_configured():
        reply.say("handoff_not_configured")
        return False
    if not operators_on_duty():
        reply.say("handoff_closed_hours")
        return False
    return True


@handler("request_handoff")
async def request_handoff(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    events: Events = [SlotSet("topic", "help.talk_to_human")]
    if tracker.get_slot("handoff_stage") in ("waiting", "live"):
        reply.say("handoff_waiting")
        return events
    if not available(reply, tracker):
        if tracker.get_slot("country"):
            reply.numbers("helplines", tracker.get_slot("country"), tracker.get_slot("nationality"))
        else:
            reply.say("offer_helplines", buttons=[button(reply.text("label_helplines"), "/ask_help_helplines")])
        return events
    reply.say("handoff_consent", buttons=reply.yes_no())
    return events + [SlotSet("pending_question", "handoff_consent"), SlotSet("consent_asks", 1.0)]


@handler("handoff_consent")
async def handoff_consent(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    stage = tracker.get_slot("pending_question")
    asks = int(tracker.get_slot("consent_asks") or 1)
    done: Events = [SlotSet("pending_question", None), SlotSet("consent_asks", None)]
    if clear_yes(turn):
        if stage == "handoff_consent":
            reply.say("handoff_share_summary", buttons=reply.yes_no())
            return [SlotSet("pending_question", "handoff_summary"), SlotSet("consent_asks", 1.0)]
        return done + open_case(reply, tracker, case_summary(tracker))
    refused = turn.intent in ("deny", "not_now") or bool({"not_now", "fear_of_being_seen"} & turn.signals)
    if stage == "handoff_summary" and refused:
        return done + open_case(reply, tracker, None)  # a person yes, the note no
    if refused or asks >= MAX_ASKS:
        reply.say("handoff_declined")
        if "fear_of_being_seen" in turn.signals:
            reply.say(
                "phone_safety",
                buttons=reply.topic_buttons(["help.safety_planning", "help.delete_my_data"], with_person=False),
            )
        return done
    reply.say("consent_unclear", buttons=reply.yes_no())
    return [SlotSet("consent_asks", float(asks + 1))]


def open_case(reply: Reply, tracker: Tracker, summary: Optional[str]) -> Events:
    if not available(reply, tracker):
        if tracker.get_slot("country"):
            reply.numbers("helplines", tracker.get_slot("country"), tracker.get_slot("nationality"))
        return []
    asked = [t for t in topics_discussed(tracker) if not t.startswith("help.")]
    case_id = new_case_id()
    logger.info("hand-off case %s requested", case_id)
    reply.say("handoff_waiting")
    reply.marker(
        {
            "waypoint": "handoff_requested",
            "case_id": case_id,
            "language": reply.language,
            "country": tracker.get_slot("country"),
            "topic": asked[-1] if asked else None,
            "summary": summary,
        }
    )
    return [SlotSet("handoff_stage", "waiting"), SlotSet("handoff_case", case_id)]


@handler("explain_human")
async def explain_human(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    """A question whether a person is available, answered; a button to ask for one."""
    if not operators_configured():
        reply.say("human_not_available", buttons=[button(reply.text("label_helplines"), "/ask_help_helplines")])
    elif not operators_on_duty():
        reply.say("human_closed_now", buttons=[button(reply.text("label_helplines"), "/ask_help_helplines")])
    else:
        reply.say("human_available", buttons=[reply.person_button()])
    return [SlotSet("topic", "help.talk_to_human")]


class ActionRequestHandoff(WaypointAction):
    handler_name = "request_handoff"

    def name(self) -> Text:
        return "action_request_handoff"


class ActionHandoffConsent(WaypointAction):
    handler_name = "handoff_consent"

    def name(self) -> Text:
        return "action_handoff_consent"
