"""Delete my data (a request: done at once) and questions about data (answered,
with a button to delete), and redaction of anything kept beyond the
conversation."""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, Text

from rasa_sdk import Tracker
from rasa_sdk.events import Restarted, SlotSet

from actions.base import Events, WaypointAction, dispatch, handler
from actions.context import Facts
from actions.reply import Reply
from content import settings
from content.texts import button

logger = logging.getLogger(__name__)

# The Rasa server sees this marker among the bot's messages: its tracker store
# deletes the conversation (plugins/tracker_store.py), its channels delete any
# hand-off case and both sides of a chat where the platform allows; it never
# reaches a user. It carries the conversation's language, so the next message
# after a deletion is still answered in it (kept in memory only, briefly).
FORGET = "forget_conversation"

REDACTIONS = [
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "[email]"),
    (re.compile(r"\b[A-Z]{1,2}\d{6,9}\b", re.IGNORECASE), "[passport-like number]"),
    (re.compile(r"(?:\+|\b)\d[\d\s().-]{6,}\d\b"), "[phone]"),
]


def redact(text: str) -> str:
    """Phone numbers, e-mail addresses and passport-like numbers removed."""
    for pattern, label in REDACTIONS:
        text = pattern.sub(label, text)
    return text


@handler("delete")
async def delete(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    logger.info("delete requested")
    channel = tracker.get_latest_input_channel() or ""
    reply.say("deleted_app_copy" if channel in ("messenger", "whatsapp") else "deleted")
    reply.marker({"waypoint": FORGET, "language": reply.language})
    return [Restarted()]


@handler("explain_deletion")
async def explain_deletion(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    reply.say(
        "about_deletion",
        days=settings.get("WAYPOINT_RETENTION_DAYS"),
        buttons=[button(reply.text("label_delete_now"), "/request_data_deletion")],
    )
    return [SlotSet("topic", "help.delete_my_data")]


class ActionDeleteData(WaypointAction):
    handler_name = "delete"
    show_intro = False

    def name(self) -> Text:
        return "action_delete_data"


class ActionExplain(WaypointAction):
    """Questions about the service (data, a person): answered, never acted on."""

    handler_name = "explain"

    def name(self) -> Text:
        return "action_explain"


@handler("explain")
async def explain(reply: Reply, tracker: Tracker, turn: Facts, data: Dict[str, Any]) -> Events:
    return await dispatch(
        "explain_human" if turn.intent == "ask_about_human" else "explain_deletion", reply, tracker, turn
    )
