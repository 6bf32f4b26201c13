"""A hand-off case and its small state machine.

    waiting ──Accept──> live ──/end (either side)──> closed
       │                  └──"delete my data"──────> closed
       ├──no Accept in WAYPOINT_HANDOFF_TIMEOUT_SECONDS──> expired
       ├──/cancel (the user)──> cancelled
       └──/end (an operator declines)──> closed

A case holds ids, states and what the user agreed to share (the topic, a
redacted summary of topic ids); never message text.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any, Dict, List, Optional

WAITING, LIVE, CLOSED, EXPIRED, CANCELLED = "waiting", "live", "closed", "expired", "cancelled"
OPEN = (WAITING, LIVE)
TRANSITIONS = {WAITING: (LIVE, EXPIRED, CANCELLED, CLOSED), LIVE: (CLOSED,)}
CASE_ID_RE = re.compile(r"^WP-[0-9A-F]{6}$")
CHANNELS = ("telegram", "webchat", "rest", "messenger", "whatsapp")


def allowed(old: str, new: str) -> bool:
    return new in TRANSITIONS.get(old, ())


@dataclasses.dataclass
class Case:
    case_id: str
    sender_id: str
    channel: str  # how the user is reached: telegram | webchat | rest | messenger | whatsapp
    language: str
    country: Optional[str] = None
    topic: Optional[str] = None
    summary: Optional[str] = None
    state: str = WAITING
    reason: Optional[str] = None  # the operators' line for a finished case, when not the state's own
    post_id: Optional[int] = None  # the case's post in the operators' chat
    emergency: bool = False
    relayed: List[int] = dataclasses.field(default_factory=list)  # our messages of the case in the operators' chat
    deadline: float = 0.0  # when a waiting case expires (epoch seconds)
    created_at: float = dataclasses.field(default_factory=time.time)
    updated_at: float = dataclasses.field(default_factory=time.time)

    @property
    def open(self) -> bool:
        return self.state in OPEN

    @classmethod
    def from_marker(cls, sender_id: str, channel: str, marker: Dict[str, Any], timeout: float) -> Optional["Case"]:
        """The case the action server described in its ``handoff_requested``
        marker, or None when the marker is not a valid one."""
        case_id = str(marker.get("case_id") or "")
        if not CASE_ID_RE.match(case_id) or channel not in CHANNELS:
            return None
        clean = {
            k: (str(marker[k])[:200] if marker.get(k) is not None else None)
            for k in ("language", "country", "topic", "summary")
        }
        return cls(
            case_id,
            sender_id,
            channel,
            clean["language"] or "en",
            clean["country"],
            clean["topic"],
            clean["summary"],
            deadline=time.time() + timeout,
        )
