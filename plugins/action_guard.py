"""Never silence: when the action server fails, the Rasa server answers itself.

Every call to the action server (``RemoteAction.run``) gets a deadline far below
Rasa's five minutes (``WAYPOINT_ACTION_TIMEOUT_SECONDS``, default 4; half of it
for the slot validation that opens every turn). A call
that fails or runs out of time is answered by the Rasa server from the same
data files the actions use (content/):

- a message the NLU read as danger now, thoughts of self-harm or a child in
  danger gets the numbers at once, in the user's language: the country's if
  the conversation knows it, otherwise every country's (crisis lines for
  self-harm, never the police script alone);
- anything else gets a short kind message: something went wrong on our side,
  try again in a minute, and the word to type in an emergency.

A circuit breaker keeps a frozen or dead action server from costing every user
a deadline: after ``WAYPOINT_BREAKER_FAILURES`` failures in a row it opens and
every call is answered at once; after ``WAYPOINT_BREAKER_RESET_SECONDS`` one
call tries the action server again and, if it answers, calls flow as before. A
call in the same turn as one that just failed is answered at once too (the
slot validation ran out of time: the action after it would as well).

Nothing is retried here, so no action runs twice. ``action_session_start``
falls back to Rasa's own session start; ``action_validate_slot_mappings``
(the sticky language, the country) to no change. Log lines name the action
and the error type, never the message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Dict, List, Optional, Tuple

from content import languages, settings
from plugins import source_matches

logger = logging.getLogger(__name__)

EXPECTED_RUN = "ccabf6f1160d527a"  # sha256 (16 hex digits) of RemoteAction.run's source in rasa 3.6.21
SILENT_ACTIONS = ("action_validate_slot_mappings", "action_extract_slots")
CRISIS_INTENTS = {"report_emergency": "emergency", "report_self_harm": "crisis", "inform_minor": "child"}
SAME_TURN_SECONDS = 30.0


class Breaker:
    """Closed (calls go through), open (answered at once), half-open (one try)."""

    def __init__(self, failures: int, reset_after: float) -> None:
        self.threshold, self.reset_after = max(1, failures), reset_after
        self.failures = 0
        self.opened_at: Optional[float] = None
        self.trying = False
        # sender id -> (when a call of theirs failed, the turn it failed in)
        self.last_failure: Dict[str, Tuple[float, Optional[str]]] = {}

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.reset_after else "open"

    def allow(self, sender_id: str, turn: Optional[str] = None) -> bool:
        """Whether to call the action server now. A call in the same turn as one
        of this user's that just failed is answered at once (the action after a
        slot validation that ran out of time would run out of time too); the
        user's next message is a turn like any other."""
        failed = self.last_failure.get(sender_id)
        state = self.state
        if failed is not None:
            at, failed_turn = failed
            if turn is not None and failed_turn == turn:
                return False
            # the same request (a session start that failed has no turn yet): a few seconds
            if time.monotonic() - at < min(self.reset_after, deadline() + 1.0, SAME_TURN_SECONDS):
                return False
        if state == "closed":
            return True
        if state == "half-open" and not self.trying:
            self.trying = True
            return True
        return False

    def succeeded(self, sender_id: str) -> None:
        if self.opened_at is not None:
            logger.info("action server answering again: circuit breaker closed")
        self.failures, self.opened_at, self.trying = 0, None, False
        self.last_failure.pop(sender_id, None)

    def failed(self, sender_id: str, turn: Optional[str] = None) -> None:
        self.failures += 1
        self.trying = False
        self.last_failure[sender_id] = (time.monotonic(), turn)
        if len(self.last_failure) > 10000:
            self.last_failure.clear()
        if self.failures >= self.threshold and (self.opened_at is None or self.state == "half-open"):
            self.opened_at = time.monotonic()
            logger.warning(
                "action server failing: circuit breaker open for %.0f s; the Rasa server answers", self.reset_after
            )


_breaker: Optional[Breaker] = None
_installed: Dict[str, bool] = {}


def breaker() -> Breaker:
    global _breaker
    if _breaker is None:
        _breaker = Breaker(
            settings.get_int("WAYPOINT_BREAKER_FAILURES"), settings.get_float("WAYPOINT_BREAKER_RESET_SECONDS")
        )
    return _breaker


def deadline(name: str = "") -> float:
    """WAYPOINT_ACTION_TIMEOUT_SECONDS for an action that answers; half of it for
    the session start and the slot validation that open a turn (they take
    milliseconds, and fall back to Rasa's own behaviour):
    with a hung action server the first answer, the numbers included, comes
    after that half, not after two full deadlines."""
    full = max(0.1, settings.get_float("WAYPOINT_ACTION_TIMEOUT_SECONDS"))
    return full / 2 if name in SILENT_ACTIONS or name == "action_session_start" else full


def install() -> Dict[str, bool]:
    """Wraps RemoteAction.run (once); returns whether it is on."""
    global _installed
    if _installed:
        return dict(_installed)
    from rasa.core.actions.action import RemoteAction

    original = RemoteAction.__dict__.get("run")
    if original is None or not source_matches(original, EXPECTED_RUN, "action_guard"):
        _installed = {"deadlines": False}
        return dict(_installed)

    async def run(self: Any, output_channel: Any, nlg: Any, tracker: Any, domain: Any) -> List[Any]:
        return await guarded_run(original, self, output_channel, nlg, tracker, domain)

    run.__wrapped__ = original  # type: ignore[attr-defined]
    RemoteAction.run = run
    _installed = {"deadlines": True}
    warm_content()
    return dict(_installed)


def warm_content() -> None:
    """Loads the content when the Rasa server starts, so that a degraded answer
    never depends on reading the files at that moment: an edit in progress then
    keeps the last good version in service (content.loader.get_content)."""
    from content.loader import ContentError, get_content

    try:
        get_content()
    except (ContentError, OSError) as error:
        logger.error("degraded answers: content not loaded at start (%s); will retry when needed", type(error).__name__)


async def guarded_run(
    original: Any, action: Any, output_channel: Any, nlg: Any, tracker: Any, domain: Any
) -> List[Any]:
    from rasa.core.actions.action import ActionExecutionRejection
    from rasa.shared.exceptions import RasaException

    guard = breaker()
    name = action.name()
    latest = getattr(tracker, "latest_message", None)
    turn = getattr(latest, "message_id", None) if latest is not None else None
    if guard.allow(tracker.sender_id, turn):
        try:
            events = await asyncio.wait_for(original(action, output_channel, nlg, tracker, domain), deadline(name))
            guard.succeeded(tracker.sender_id)
            return events
        except ActionExecutionRejection:
            guard.succeeded(tracker.sender_id)
            raise
        except (asyncio.TimeoutError, RasaException) as error:
            guard.failed(tracker.sender_id, turn)
            logger.error(
                "action server: %s failed (%s); the Rasa server answers",
                name,
                "no answer in time" if isinstance(error, asyncio.TimeoutError) else type(error).__name__,
            )
    else:  # not called: not a failure of the action server (it would re-open the breaker for everyone)
        logger.warning("action server: %s not called (breaker %s); the Rasa server answers", name, guard.state)
    return await fallback_events(name, output_channel, nlg, tracker, domain)


async def fallback_events(name: str, output_channel: Any, nlg: Any, tracker: Any, domain: Any) -> List[Any]:
    if name in SILENT_ACTIONS:
        return []
    if name == "action_session_start":
        from rasa.core.actions.action import ActionSessionStart

        return await ActionSessionStart().run(output_channel, nlg, tracker, domain)
    from rasa.shared.core.events import BotUttered

    return [BotUttered(message["text"], {"buttons": None}) for message in degraded_messages(tracker)]


def _language(tracker: Any) -> str:
    slot = tracker.get_slot("language") if "language" in tracker.slots else None
    if languages.is_supported(slot):
        return str(slot)
    latest = getattr(tracker, "latest_message", None)
    proposal = (latest.parse_data.get("language_id") or {}) if latest is not None else {}
    return languages.or_default(proposal.get("language") if isinstance(proposal, dict) else None)


def need_of(tracker: Any) -> Optional[str]:
    """The crisis the latest message describes, from the NLU's reading and,
    as a second opinion, the crisis lexicons."""
    latest = getattr(tracker, "latest_message", None)
    if latest is None:
        return None
    intent = (latest.intent or {}).get("name")
    if intent in CRISIS_INTENTS:
        return CRISIS_INTENTS[intent]
    try:
        from content.lexicons import crisis_kind, signal

        kind = crisis_kind(latest.text or "")
        if kind:
            return "crisis" if kind == "self_harm" else "emergency"
        if signal(latest.text or "", "minor_self"):
            return "child"
    except Exception as error:  # noqa: BLE001 - the numbers must not depend on the lexicons loading
        logger.error("degraded answer: crisis lexicons failed (%s)", type(error).__name__)
    return None


def degraded_messages(tracker: Any) -> List[Dict[str, Any]]:
    """What the Rasa server says itself (module docstring). Never empty."""
    from content.helplines import crisis_text
    from content.loader import get_content
    from content.texts import text

    language = _language(tracker)
    need = need_of(tracker)
    try:
        if need is not None:
            country = tracker.get_slot("country") if "country" in tracker.slots else None
            lead = {"emergency": "emergency", "crisis": "self_harm_now", "child": "minor_now"}[need]
            body = crisis_text(get_content(), need, language, country)
            return [{"text": text(lead, language)}, {"text": body}, {"text": text("degraded_after_crisis", language)}]
        return [{"text": text("degraded", language)}]
    except Exception as error:  # noqa: BLE001 - content unreadable: still never silent
        logger.error("degraded answer: content unavailable (%s)", type(error).__name__)
        return [
            {
                "text": "Sorry, something went wrong on our side. Please try again in a minute. "
                "If you are in danger, call your local emergency number."
            }
        ]
