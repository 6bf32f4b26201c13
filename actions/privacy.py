"""Delete my data, and redaction of anything kept beyond the live conversation."""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Text

from rasa_sdk import Tracker
from rasa_sdk.events import Restarted

from actions import store
from actions.conversation import WaypointAction
from actions.respond import Reply

logger = logging.getLogger(__name__)

# The channels see this marker among the bot's messages and then delete the
# conversation from the tracker store (channels/forget.py); it never reaches a user.
FORGET_MARKER = {"waypoint": "forget_conversation"}

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


class ActionDeleteData(WaypointAction):
    show_intro = False
    handles_unsupported_language = False

    def name(self) -> Text:
        return "action_delete_data"

    async def respond(self, reply: Reply, tracker: Tracker) -> List[Dict[Text, Any]]:
        removed = store.delete_for_sender(tracker.sender_id)
        logger.info("delete requested: %d hand-off case(s) removed", removed)
        reply.say("deleted")
        reply.dispatcher.utter_message(json_message=FORGET_MARKER)
        return [Restarted()]
