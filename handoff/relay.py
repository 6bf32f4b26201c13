"""The live hand-off, on the Rasa server: a counsellor in the operators'
Telegram chat talks to a user through the assistant, under a case id, and
neither sees the other's identity.

1. After the user's consent the action server ends its turn with the marker
   ``{"waypoint": "handoff_requested", "case_id", "language", "country",
   "topic", "summary"}``; the channel that carried the turn calls
   :meth:`Relay.case_requested`, which stores the case in the Rasa server's own
   repository (handoff/repository.py) and offers it to the operators
   (handoff/operators.py). The action server keeps no case: the two servers
   share no file.
2. Accept: the assistant pauses itself for that user (``ConversationPaused``
   under the lock store's lock) and tells them a counsellor joined.
3. While live, every message of the user goes to the operators' chat and never
   to Rasa (no relayed text in the tracker store); counsellors' answers reach
   the user in their channel: pushed where the channel can (Telegram,
   Messenger, WhatsApp register a sender), queued for web chat and REST
   (handoff/queues.py).
4. ``/end`` from either side resumes the assistant; the user gets a closing
   message and the helplines of their country. No Accept in time, or an
   operator declining: told honestly, with helplines. ``/cancel`` while waiting
   withdraws the request.

Crises first: while a case is waiting or live every message goes through the
crisis detector before anything else; danger gets the emergency numbers, thoughts
of self-harm the crisis lines, at once, and the operators are warned.
"Delete my data" during a case closes it, removes its relayed messages from the
operators' chat (Telegram allows that for 48 hours) and deletes the case.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Optional, Set

from content import languages, settings
from content.texts import text as message_text
from handoff.case import CANCELLED, CLOSED, EXPIRED, LIVE, WAITING, Case
from handoff.queues import FallbackQueues
from handoff.repository import CaseRepository

logger = logging.getLogger(__name__)

PAYLOAD_RE = re.compile(r"^/[A-Za-z0-9_]+(@\w+)?(\{.*\})?$", re.DOTALL)  # a button's payload or a bare command
Step = tuple  # ("say", key[, values]) or ("numbers", need)
Sender = Callable[[str, List[Dict[str, Any]]], Awaitable[bool]]


def marker_of(messages: Iterable[Dict[str, Any]], kind: str) -> Optional[Dict[str, Any]]:
    """The assistant's ``{"waypoint": kind, ...}`` marker among a turn's messages."""
    for item in messages:
        custom = item.get("custom") if isinstance(item, dict) else None
        if isinstance(custom, dict) and custom.get("waypoint") == kind:
            return custom
    return None


def compose(language: str, country: Optional[str], steps: Iterable[Step]) -> List[Dict[str, Any]]:
    """The user's messages for ``steps``, from the same texts and number lists
    the actions use (content/)."""
    from content.helplines import crisis_text
    from content.loader import get_content

    language = languages.or_default(language)
    out: List[Dict[str, Any]] = []
    for step in steps:
        if step[0] == "say":
            out.append({"text": message_text(step[1], language, **(step[2] if len(step) > 2 else {}))})
        else:
            out.append({"text": crisis_text(get_content(), step[1], language, country)})
    return [m for m in out if m.get("text")]


class Relay:
    """One per Rasa server process (:func:`handoff.get_relay`)."""

    def __init__(self, repository: CaseRepository, queues: FallbackQueues, timeout: Optional[float] = None) -> None:
        self.repo = repository
        self.queues = queues
        self.timeout = timeout if timeout is not None else settings.get_float("WAYPOINT_HANDOFF_TIMEOUT_SECONDS")
        self.app: Any = None
        self.desk: Any = None  # handoff.operators.OperatorsDesk once Telegram is attached
        self.senders: Dict[str, Sender] = {}  # channel name -> how to push to a user
        self.timers: Dict[str, asyncio.Task] = {}
        self.tasks: Set[asyncio.Task] = set()

    # -- plumbing -----------------------------------------------------------------------------------
    @property
    def agent(self) -> Any:
        return getattr(getattr(self.app, "ctx", None), "agent", None)

    @property
    def available(self) -> bool:
        return self.desk is not None and self.desk.ready

    def spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("hand-off relay: a background step failed (%s)", type(task.exception()).__name__)

    def case_of(self, sender_id: str) -> Optional[Case]:
        return self.repo.open_case_for(sender_id)

    def state_of(self, sender_id: str) -> Optional[str]:
        case = self.case_of(sender_id)
        return case.state if case else None

    async def _slots(self, sender_id: str) -> Dict[str, Any]:
        agent = self.agent
        if agent is None:
            return {}
        try:
            tracker = await agent.tracker_store.retrieve(sender_id)
        except Exception as error:  # noqa: BLE001 - the slots are a nicety here
            logger.warning("hand-off relay: conversation slots unknown (%s)", type(error).__name__)
            return {}
        return {k: tracker.get_slot(k) for k in ("language", "country")} if tracker is not None else {}

    async def _language_country(self, sender_id: str, case: Optional[Case] = None) -> tuple:
        slots = await self._slots(sender_id)
        language = slots.get("language") or (case.language if case else None)
        return languages.or_default(language), slots.get("country") or (case.country if case else None)

    async def tracker_events(self, sender_id: str, events: List[Any]) -> bool:
        """Appends events to a stored conversation under its lock; never creates one."""
        agent = self.agent
        if agent is None:
            logger.error("hand-off relay: no assistant to pause or resume")
            return False
        try:
            async with agent.lock_store.lock(sender_id):
                tracker = await agent.tracker_store.retrieve(sender_id)
                if tracker is None:
                    return False
                for event in events:
                    tracker.update(event)
                await agent.tracker_store.save(tracker)
            return True
        except Exception as error:  # noqa: BLE001
            logger.error("hand-off relay: conversation not updated (%s)", type(error).__name__)
            return False

    # -- reaching the user ----------------------------------------------------------------------------
    async def to_user(self, sender_id: str, channel: str, messages: List[Dict[str, Any]]) -> bool:
        if not messages:
            return True
        push = self.senders.get(channel)
        if push is not None:
            return await push(sender_id, messages)
        shown = [{k: v for k, v in m.items() if k in ("text", "buttons")} for m in messages]
        self.queues.push(sender_id, shown)
        return True

    async def say(self, sender_id: str, channel: str, steps: Iterable[Step], case: Optional[Case] = None) -> bool:
        language, country = await self._language_country(sender_id, case)
        return await self.to_user(sender_id, channel, compose(language, country, steps))

    def take(self, sender_id: str) -> List[Dict[str, Any]]:
        """What waits for a web chat or REST user; handed over once."""
        return self.queues.take(sender_id)

    # -- a case starts ----------------------------------------------------------------------------------
    async def case_requested(self, sender_id: str, marker: Dict[str, Any], channel: str) -> None:
        """The assistant asked for a person for ``sender_id`` (the user consented)."""
        case = Case.from_marker(sender_id, channel, marker, self.timeout)
        if case is None:
            logger.warning("hand-off: a marker without a valid case; ignored")
            return
        self.repo.pop_interrupted(sender_id)
        if self.case_of(sender_id) is not None or not self.repo.create(case):
            logger.info("hand-off case %s: already open", case.case_id)
            return
        logger.info("hand-off case %s: %s", case.case_id, WAITING)
        if not self.available:
            logger.error("hand-off case %s: no operators' chat to post it to", case.case_id)
            await self.expire(case)
            return
        self.spawn(self._offer(case))

    async def _offer(self, case: Case) -> None:
        if not await self.desk.offer(case):
            logger.error("hand-off case %s: could not be posted to the operators' chat", case.case_id)
            await self.expire(case)
            return
        self._start_timer(case.case_id, self.timeout)

    def _start_timer(self, case_id: str, delay: float) -> None:
        old = self.timers.pop(case_id, None)
        if old is not None:
            old.cancel()
        self.timers[case_id] = self.spawn(self._expire_later(case_id, delay))

    def _stop_timer(self, case_id: str) -> None:
        timer = self.timers.pop(case_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    async def _expire_later(self, case_id: str, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))
        self.timers.pop(case_id, None)
        case = self.repo.get(case_id)
        if case is not None and case.state == WAITING:
            await self.expire(case)

    async def expire(self, case: Case) -> None:
        await self.finish(case, EXPIRED, [("say", "handoff_unavailable"), ("numbers", "helplines")])

    # -- a case changes -----------------------------------------------------------------------------------
    async def accept(self, case_id: str) -> Optional[Case]:
        """An operator accepted: the assistant pauses for that user. None when
        the case was not waiting any more (another operator, a timeout)."""
        from rasa.shared.core.events import ConversationPaused, SlotSet

        moved, _, case = self.repo.move(case_id, LIVE)
        if not moved or case is None:
            return None
        self._stop_timer(case_id)
        logger.info("hand-off case %s: %s -> %s", case_id, WAITING, LIVE)
        await self.tracker_events(case.sender_id, [ConversationPaused(), SlotSet("handoff_stage", LIVE)])
        if not await self.say(case.sender_id, case.channel, [("say", "handoff_connected")], case) and self.desk:
            await self.desk.notice(case, "operators_not_delivered")
        return case

    async def finish(
        self,
        case: Case,
        state: str,
        user_steps: List[Step],
        reason: Optional[str] = None,
        notify_operators: bool = True,
    ) -> bool:
        from rasa.shared.core.events import ConversationResumed, SlotSet

        moved, was, current = self.repo.move(case.case_id, state)
        if not moved or current is None:
            return False
        logger.info("hand-off case %s: %s -> %s", case.case_id, was, state)
        if reason:
            self.repo.update(case.case_id, reason=reason)
            current.reason = reason
        self._stop_timer(case.case_id)
        events = ([ConversationResumed()] if was == LIVE else []) + [
            SlotSet("handoff_stage", None),
            SlotSet("handoff_case", None),
        ]
        await self.tracker_events(case.sender_id, events)  # the assistant answers again before the user is told
        if user_steps:
            await self.say(case.sender_id, case.channel, user_steps, current)
        if self.desk is not None:
            await self.desk.refresh(current)
            if notify_operators:
                await self.desk.notice(current, reason or None)
        return True

    # -- the user's side ----------------------------------------------------------------------------------
    @staticmethod
    def user_command(text: str, language: str) -> Optional[str]:
        """ "/end", "/cancel" or the web page's control labels, else None."""
        words = text.strip().lower().rstrip(".!。")
        if words.startswith("/"):
            words = words.split("@", 1)[0]
        for command, key in (("end", "webchat_end_chat"), ("cancel", "webchat_cancel_request")):
            labels = {message_text(key, language).lower(), message_text(key, languages.DEFAULT).lower()}
            if words in (command, "/" + command) or words in labels:
                return command
        return None

    async def command(self, sender_id: str, command: str) -> bool:
        """/end or /cancel from the user; False without an open case."""
        case = self.case_of(sender_id)
        if case is None:
            return False
        if case.state == WAITING:
            await self.finish(case, CANCELLED, [("say", "handoff_cancelled")])
        else:
            await self.finish(case, CLOSED, [("say", "handoff_ended"), ("numbers", "helplines")])
        return True

    async def intercept(self, sender_id: str, text: str, channel: str) -> bool:
        """Every user message of a channel, before Rasa. True: dealt with here
        (relayed, or a crisis answered while waiting); False: Rasa answers."""
        case = self.case_of(sender_id)
        if case is None:
            if self.repo.pop_interrupted(sender_id):
                await self.say(sender_id, channel, [("say", "handoff_unavailable"), ("numbers", "helplines")])
            return False
        command = self.user_command(text, case.language)
        if command is not None:
            return await self.command(sender_id, command)
        crisis = detect_crisis(text)
        if crisis:
            await self._crisis(case, crisis)
        if case.state == WAITING:
            return bool(crisis)  # a crisis was answered here; anything else the assistant answers while they wait
        if text.strip().lower().split("@", 1)[0] == "/help":
            await self.say(sender_id, case.channel, [("numbers", "helplines")], case)
            return True
        if PAYLOAD_RE.match(text.strip()):  # an old button or a bot command: the assistant is paused
            await self.say(sender_id, case.channel, [("say", "handoff_live_note")], case)
            return True
        if not (self.desk and await self.desk.relay_from_user(case, text, flagged=bool(crisis))):
            logger.warning("hand-off case %s: a user message could not be relayed", case.case_id)
            await self.say(sender_id, case.channel, [("say", "handoff_not_delivered")], case)
        return True

    async def intercept_media(
        self, sender_id: str, channel: str, kind: str, fetch: Callable[[], Awaitable[Any]]
    ) -> bool:
        """A voice note or a photo during a live case goes to the counsellor
        (many workers speak rather than type); True when it was a live case."""
        case = self.case_of(sender_id)
        if case is None or case.state != LIVE or self.desk is None:
            return False
        if not await self.desk.relay_media(case, kind, fetch):
            await self.say(sender_id, case.channel, [("say", "handoff_not_delivered")], case)
        return True

    async def _crisis(self, case: Case, kind: str) -> None:
        if kind == "self_harm":
            steps: List[Step] = [("say", "self_harm_now"), ("numbers", "crisis"), ("say", "self_harm_stay")]
        else:
            steps = [("say", "emergency"), ("numbers", "emergency"), ("say", "emergency_steps_short")]
        await self.say(case.sender_id, case.channel, steps, case)
        logger.warning("hand-off case %s: possible crisis (%s); numbers shown", case.case_id, kind)
        first = self.repo.flag_emergency(case.case_id)
        if self.desk is not None:
            current = self.repo.get(case.case_id) or case
            if first:
                await self.desk.refresh(current)
            if case.state == WAITING:
                await self.desk.notice(current, "operators_emergency")

    async def forget(self, sender_id: str) -> None:
        """The user deleted their conversation: an open case closes without a
        word to them, its relayed messages leave the operators' chat, nothing
        stays queued, and every case of theirs is deleted."""
        self.take(sender_id)
        case = self.case_of(sender_id)
        if case is not None:
            await self.finish(case, CLOSED if case.state == LIVE else CANCELLED, [], reason="operators_deleted")
            current = self.repo.get(case.case_id)
            if current is not None and self.desk is not None:
                await self.desk.withdraw(current)
        removed = self.repo.delete_for_sender(sender_id)
        if removed:
            logger.info("hand-off: %d case(s) deleted on the user's request", removed)

    # -- after a restart -----------------------------------------------------------------------------------
    async def recover(self) -> int:
        """Open cases survive a restart in the repository: a waiting one gets its
        timer again (with what is left of its time; on several servers whichever
        timer fires first expires it, once). A live case whose user cannot be
        reached any more (a Telegram chat known only to the old process) goes on:
        the counsellor's next answer tells them if it is not delivered."""
        try:
            cases = self.repo.open_cases()
        except Exception as error:  # noqa: BLE001
            logger.error("hand-off relay: case store unreadable (%s)", type(error).__name__)
            return 0
        for case in cases:
            if case.state == WAITING and case.case_id not in self.timers:
                self._start_timer(case.case_id, case.deadline - time.time())
        return len(cases)


def detect_crisis(text: str) -> Optional[str]:
    """``"self_harm"``, ``"danger"`` or None; never raises (a detector failure
    must not stop a message)."""
    try:
        from content.lexicons import crisis_kind

        return crisis_kind(text)
    except Exception as error:  # noqa: BLE001
        logger.error("hand-off relay: crisis detection failed (%s)", type(error).__name__)
        return None
