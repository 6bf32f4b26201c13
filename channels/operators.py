"""The live hand-off: a counsellor in the operators' Telegram chat talks to a
user through the bot, under a case id, and neither sees the other's identity.

How a case goes (one small state machine per case)::

    waiting ──Accept──> live ──/end (either side)──> closed
       │                  └──"delete my data"──────> closed
       ├──no Accept in WAYPOINT_HANDOFF_TIMEOUT_SECONDS──> expired
       ├──/cancel (the user)──> cancelled
       └──/end (an operator declines)──> closed

1. The action server creates the case in its own store (actions/store.py) after
   the user's consent and ends its turn with the marker ``{"waypoint":
   "handoff_requested", "case_id": ...}``. The channel that carried the turn
   (Telegram, web chat, REST) calls :meth:`Relay.case_requested`; the relay
   posts the case (id, language, country, topic title, the summary only if the
   user agreed to share it) to ``WAYPOINT_OPERATORS_CHAT_ID`` with an Accept
   button. Never the user's Telegram identity or web session id.
2. A member of the operators' chat presses Accept: the assistant pauses itself
   for that user (Rasa's ``ConversationPaused`` appended to the tracker under
   the lock store's lock), the user is told a counsellor joined, the post says
   who may answer and how.
3. While live, the user's messages are relayed to the operators' chat as
   "WP-… · user: text" (replying to the case's post), and never reach Rasa, so
   no relayed text is written to the tracker store. Operators answer by replying
   to any message of the case, or with ``/reply <case> text``; the user sees
   "Counsellor: text" in their language.
4. ``/end`` from either side (web chat: typing /end or the "End chat" control;
   operators: ``/end`` as a reply or ``/end <case>``) appends
   ``ConversationResumed``; the user gets ``handoff_ended`` and the helplines of
   their country. No Accept in time: ``handoff_unavailable`` and helplines, the
   post says expired. ``/cancel`` (web chat: "cancel" or the control) while
   waiting: ``handoff_cancelled``, the post says cancelled.

Emergencies first: while a case is waiting or live every user message goes
through ``components.emergency.detect()`` before anything else; on a hit the user
at once gets the emergency message, the emergency helplines of their country
(every country's when unknown) and the safety steps (composed by
actions/helplines.py's own functions, as ``action_handle_emergency`` does), the
post gets a warning line and the operators a notice; a live relay goes on, the
message itself flagged.

Only members of the operators' chat act there: an update must come from that
chat AND its sender's ``getChatMember`` status must be member, administrator or
creator (or the message was posted anonymously as the group itself, which only
its administrators can do). Anything else is ignored: no answer, one log line
without text. The bot works with Telegram's group privacy mode on (it only
needs commands and replies to its own messages).

Web chat and REST users cannot be sent a message: what the counsellor writes
waits in memory (:meth:`Relay.take`) until the page polls
(``POST /webhooks/webchat/poll``) or, on REST, until the user's next message
(with Redis: in Redis, see below, on whichever server the poll reaches).

Privacy: the relay keeps no message text on disk. Relayed text lives only in
the Telegram chats themselves and, for web chat and REST users, in memory until
delivered (with Redis: in the user's delivery queue in Redis, deleted when
taken and expiring after ``QUEUE_TTL`` at most; nothing else in Redis holds
text). The case store holds states and the post's message id. Log lines
name case ids and states, never text or identities. "Delete my data" (or
/delete, the web page's delete control, the quick exit) during a case closes it
and deletes the relayed messages of the case from the operators' chat (the Bot
API allows that for 48 hours).

Settings: ``WAYPOINT_OPERATORS_CHAT_ID`` (the group; also enables hand-offs in
the action server together with ``TELEGRAM_BOT_TOKEN``),
``WAYPOINT_HANDOFF_TIMEOUT_SECONDS`` (600), ``WAYPOINT_OPERATORS_LANGUAGE``
(the operators' chat language: en, id, ms, vi or th; default en).

Several servers: without ``WAYPOINT_REDIS_HOST`` the relay's state is in the
memory of the one Rasa server that runs the Telegram channel; when that server
restarts, open cases are closed (their posts say so, paused conversations are
resumed) and each user is told and given helplines when they next write. With
the scale-out settings (``WAYPOINT_REDIS_HOST``, ``WAYPOINT_REDIS_PORT``,
``WAYPOINT_REDIS_PASSWORD``, ``WAYPOINT_REDIS_DB``) the state is shared by
every server through Redis (channels/relay_state.py): any server creates a
case, takes the operators' Accept / replies / /end, relays a user's message and
hands a web chat or REST user their queued messages; each state change is a
compare-and-set in one Redis transaction, so a case expires, is accepted or
closes once even when two servers race. The waiting case's timer runs on the
server that posted it (and on any that restarts meanwhile) and re-reads the
shared state before acting; a restart keeps the cases Redis holds. If Redis
cannot be reached, the server warns once and goes on with its own memory.
Telegram users are still reached only through the server that saw their chat
last (the chat id stays in that process): keep the Telegram webhook on one
server, as deploy/README.md says for the Telegram channel's other state.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import re
import time
from typing import Any, Deque, Dict, Iterable, List, Optional, Set

from channels.telegram_channel import LANGUAGE_LABELS, LANGUAGES, message_text, split_text

logger = logging.getLogger(__name__)

WAITING, LIVE, CLOSED, EXPIRED, CANCELLED = "waiting", "live", "closed", "expired", "cancelled"
OPEN = (WAITING, LIVE)
TRANSITIONS = {WAITING: {LIVE, EXPIRED, CANCELLED, CLOSED}, LIVE: {CLOSED}}
STATE_LINES = {WAITING: "operators_waiting", LIVE: "operators_live", CLOSED: "operators_closed",
               EXPIRED: "operators_expired", CANCELLED: "operators_cancelled"}
ACCEPT_PREFIX = "wp-accept:"
CASE_ID_RE = re.compile(r"^WP-[0-9A-F]{6}$")
PAYLOAD_RE = re.compile(r"^/[A-Za-z0-9_]+(@\w+)?(\{.*\})?$", re.DOTALL)  # a button's payload or a bare command
MEMBER_STATUSES = ("member", "administrator", "creator")
QUEUE_LIMIT = 200  # undelivered counsellor messages kept per web user (memory only)
QUEUE_TTL = 48 * 3600.0  # ... and for how long, when the page never asks for them
REMEMBERED_MESSAGES = 20000  # operators' chat message id -> case id, for replies
REMEMBERED_CASES = 2000  # finished cases kept in memory, so late replies get a clear answer
DEFAULT_TIMEOUT = 600.0


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        logger.error("%s is not a number; using %s", name, default)
        return default


@dataclasses.dataclass
class Case:
    case_id: str
    sender_id: str
    channel: str  # "telegram" | "webchat" | "rest": how the user is reached
    language: str
    country: Optional[str]
    topic: Optional[str]
    summary: Optional[str]
    state: str = WAITING
    reason: Optional[str] = None  # the operators' line for a finished case, when not the state's own
    post_id: Optional[int] = None
    emergency: bool = False
    relayed: List[int] = dataclasses.field(default_factory=list)  # our messages of this case in the operators' chat
    timer: Optional[asyncio.Task] = None

    def move(self, new: str) -> bool:
        """waiting -> live -> closed | expired | cancelled; False if not allowed from here."""
        if new not in TRANSITIONS.get(self.state, ()):
            return False
        logger.info("hand-off case %s: %s -> %s", self.case_id, self.state, new)
        self.state = new
        return True

    @property
    def open(self) -> bool:
        return self.state in OPEN


class _NoShared(Exception):
    """No shared state (no Redis configured, or it failed): use this process's memory."""


class Relay:
    """One per Rasa server process (:func:`get_relay`). Its state is in this
    process's memory, or shared by every server through Redis when
    ``WAYPOINT_REDIS_HOST`` is set (channels/relay_state.py); then ``cases``
    only caches the cases this server has seen (and holds their timers)."""

    def __init__(self, chat_id: Optional[str] = None, timeout: Optional[float] = None,
                 operators_language: Optional[str] = None, env: Optional[Dict[str, str]] = None):
        chat_id = chat_id if chat_id is not None else os.environ.get("WAYPOINT_OPERATORS_CHAT_ID", "").strip()
        self.chat_id: Optional[int] = int(chat_id) if re.fullmatch(r"-?\d+", chat_id or "") else None
        if chat_id and self.chat_id is None:
            logger.error("WAYPOINT_OPERATORS_CHAT_ID must be a numeric chat id; hand-offs are off")
        self.timeout = timeout if timeout is not None else _env_float("WAYPOINT_HANDOFF_TIMEOUT_SECONDS", DEFAULT_TIMEOUT)
        language = (operators_language or os.environ.get("WAYPOINT_OPERATORS_LANGUAGE", "") or "en").strip().lower()
        self.operators_language = language if language in LANGUAGES else "en"
        self.telegram: Any = None  # channels.telegram_channel.TelegramInput, once attached
        self.app: Any = None
        self.cases: "collections.OrderedDict[str, Case]" = collections.OrderedDict()
        self.by_sender: Dict[str, str] = {}  # sender id -> open case id
        self.by_message: "collections.OrderedDict[int, str]" = collections.OrderedDict()
        self.queues: Dict[str, Deque[Dict[str, Any]]] = {}
        self.queued_at: Dict[str, float] = {}
        self.interrupted: Set[str] = set()  # senders whose case a restart closed: told on their next message
        self.tasks: Set[asyncio.Task] = set()
        self.shared: Any = None  # channels.relay_state.SharedRelayState when Redis is configured
        try:
            from channels.relay_state import SharedRelayState

            shared = SharedRelayState.from_env(env)
            if shared is not None:
                shared.ping()
                self.shared = shared
                logger.info("hand-off relay: state shared through Redis")
        except Exception as error:
            logger.warning("hand-off relay: Redis unreachable (%s); this server's memory only", type(error).__name__)

    # -- shared state -------------------------------------------------------------------------------
    def _shared(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """A call to the shared state; raises _NoShared without one. When Redis
        fails, this server goes on alone with its memory (one warning)."""
        shared = self.shared
        if shared is None:
            raise _NoShared()
        try:
            return getattr(shared, name)(*args, **kwargs)
        except Exception as error:
            logger.warning("hand-off relay: Redis unreachable (%s); this server's memory only from now on",
                           type(error).__name__)
            self.shared = None
            raise _NoShared() from None

    def _apply(self, record: Optional[Dict[str, Any]]) -> Optional[Case]:
        """The cached Case (its timer kept) brought up to date with a shared record."""
        if not record:
            return None
        case = self.cases.get(record["case_id"])
        if case is None:
            case = Case(record["case_id"], record["sender_id"], record.get("channel") or "telegram",
                        record.get("language") or "en", record.get("country"), record.get("topic"),
                        record.get("summary"))
            self.cases[case.case_id] = case
        case.state = record.get("state") or case.state
        case.reason = record.get("reason")
        post = record.get("post_id")
        case.post_id = int(post) if post and post.lstrip("-").isdigit() else None
        case.emergency = record.get("emergency") == "1"
        case.relayed = list(record.get("relayed") or [])
        return case

    def _get(self, case_id: Optional[str]) -> Optional[Case]:
        if not case_id:
            return None
        try:
            return self._apply(self._shared("get", case_id))
        except _NoShared:
            return self.cases.get(case_id)

    def _set(self, case: Case, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(case, name, value)
        try:
            self._shared("update", case.case_id, **{k: (("1" if v else None) if isinstance(v, bool) else v)
                                                   for k, v in fields.items()})
        except _NoShared:
            pass

    def _add_relayed(self, case: Case, ids: List[int]) -> None:
        case.relayed.extend(ids)
        try:
            self._shared("add_relayed", case.case_id, ids)
        except _NoShared:
            pass

    def _move(self, case: Case, new: str) -> Optional[str]:
        """The state change, atomic across servers when shared: the state it
        left, or None when not allowed (the case then shows its current state)."""
        try:
            moved, was, record = self._shared("move", case.case_id, new, TRANSITIONS, OPEN)
        except _NoShared:
            was = case.state
            return was if case.move(new) else None
        if record:
            self._apply(record)
        if not moved:
            return None
        logger.info("hand-off case %s: %s -> %s", case.case_id, was, new)
        case.state = new
        return was

    # -- plumbing -----------------------------------------------------------------------------------
    @property
    def agent(self) -> Any:
        return getattr(getattr(self.app, "ctx", None), "agent", None)

    @property
    def client(self) -> Any:
        return getattr(self.telegram, "client", None)

    def _spawn(self, coroutine: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("hand-off relay: a background step failed (%s)", type(task.exception()).__name__)

    @staticmethod
    async def _store(function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, function, *args)

    def case_of(self, sender_id: str) -> Optional[Case]:
        try:
            case = self._get(self._shared("sender_case", sender_id))
            return case if case is not None and case.open else None
        except _NoShared:
            pass
        case_id = self.by_sender.get(sender_id)
        case = self.cases.get(case_id) if case_id else None
        return case if case is not None and case.open else None

    def state_of(self, sender_id: str) -> Optional[str]:
        case = self.case_of(sender_id)
        return case.state if case else None

    def _remember_message(self, message_id: Optional[int], case: Case) -> None:
        if not message_id:
            return
        try:
            self._shared("remember", message_id, case.case_id)
            return
        except _NoShared:
            pass
        self.by_message[message_id] = case.case_id
        self.by_message.move_to_end(message_id)
        while len(self.by_message) > REMEMBERED_MESSAGES:
            self.by_message.popitem(last=False)

    def _forget_finished_cases(self) -> None:
        finished = [cid for cid, c in self.cases.items() if not c.open or (self.shared is not None and c.timer is None)]
        for case_id in finished[:max(0, len(finished) - REMEMBERED_CASES)]:
            self.cases.pop(case_id, None)

    def _message_case(self, message_id: int) -> Optional[str]:
        try:
            return self._shared("message_case", message_id)
        except _NoShared:
            return self.by_message.get(message_id)

    def _interrupt(self, sender_id: str) -> None:
        try:
            self._shared("interrupt", sender_id)
        except _NoShared:
            self.interrupted.add(sender_id)

    def _pop_interrupted(self, sender_id: str) -> bool:
        try:
            told = bool(self._shared("pop_interrupted", sender_id))
        except _NoShared:
            told = False
        if sender_id in self.interrupted:
            self.interrupted.discard(sender_id)
            told = True
        return told

    def _discard_interrupted(self, sender_id: str) -> None:
        self._pop_interrupted(sender_id)

    # -- texts --------------------------------------------------------------------------------------
    def _op(self, key: str, **values: Any) -> str:
        """A text of data/messages.yml in the operators' language."""
        return message_text(key, self.operators_language).format(**values) if values else \
            message_text(key, self.operators_language)

    def _topic_title(self, topic: Optional[str]) -> str:
        from actions.content import get_content

        guide = get_content().guides.get(topic or "")
        return guide.text(self.operators_language, "title") if guide else (topic or "—")

    def _summary_text(self, summary: str) -> str:
        """The stored summary (topic ids, redacted) with topic ids shown as titles."""
        from actions.content import get_content

        guides = get_content().guides
        return re.sub(r"\b[a-z]+\.[a-z_]+\b",
                      lambda m: guides[m.group(0)].text(self.operators_language, "title") if m.group(0) in guides
                      else m.group(0), summary)

    def post_text(self, case: Case) -> str:
        from actions.content import get_content

        lines = []
        if case.reason == "operators_deleted":  # the user withdrew everything: only the id and the state stay
            lines.append(case.case_id)
        else:
            country = get_content().country_name(case.country, self.operators_language) if case.country else "—"
            language = f"{LANGUAGE_LABELS.get(case.language, case.language)} ({case.language})"
            lines.append(self._op("operators_case", case=case.case_id, language=language, country=country,
                                  topic=self._topic_title(case.topic)))
            if case.summary:
                lines.append(self._op("operators_summary", summary=self._summary_text(case.summary)))
        if case.emergency:
            lines.append(self._op("operators_emergency"))
        lines.append(self._op(case.reason or STATE_LINES[case.state], case=case.case_id))
        return "\n\n".join(lines)

    def _accept_keyboard(self, case: Case) -> List[List[Any]]:
        from telegram import InlineKeyboardButton

        return [[InlineKeyboardButton(self._op("operators_accept"), callback_data=ACCEPT_PREFIX + case.case_id)]]

    async def _user_language_country(self, case: Case) -> tuple:
        language, country = case.language, case.country
        agent = self.agent
        if agent is not None:
            try:
                tracker = await agent.tracker_store.retrieve(case.sender_id)
                if tracker is not None:
                    language = tracker.get_slot("language") or language
                    country = tracker.get_slot("country") or country
            except Exception as error:
                logger.warning("hand-off relay: conversation slots unknown (%s)", type(error).__name__)
        return (language if language in LANGUAGES else "en"), country

    @staticmethod
    def compose(language: str, country: Optional[str], steps: Iterable[tuple]) -> List[Dict[str, Any]]:
        """Messages composed by the action server's own helpers (same texts and
        helpline formatting as its actions). ``steps``: ("say", key, values) or
        ("helplines", emergency_only)."""
        from rasa_sdk import Tracker
        from rasa_sdk.executor import CollectingDispatcher

        from actions.helplines import show_helplines
        from actions.respond import Reply

        tracker = Tracker("handoff-relay", {"language": language, "country": country, "audience": "survivor"},
                          {}, [], False, None, {}, "action_listen")
        dispatcher = CollectingDispatcher()
        reply = Reply(dispatcher, tracker, {}, language)
        for step in steps:
            if step[0] == "say":
                reply.say(step[1], **(step[2] if len(step) > 2 else {}))
            else:
                show_helplines(reply, tracker, emergency_only=bool(step[1]))
        return [{"text": m.get("text") or "", "buttons": m.get("buttons") or []} for m in dispatcher.messages
                if m.get("text") or m.get("buttons")]

    # -- reaching the user --------------------------------------------------------------------------
    async def _to_user(self, case_or_sender: Any, channel: Optional[str], messages: List[Dict[str, Any]]) -> bool:
        sender = case_or_sender.sender_id if isinstance(case_or_sender, Case) else case_or_sender
        channel = case_or_sender.channel if isinstance(case_or_sender, Case) else channel
        if channel == "telegram":
            if self.telegram is None:
                return False
            ok = True
            for item in messages:
                ok = await self.telegram.send_to_sender(sender, item.get("text", ""), item.get("buttons") or ()) and ok
            return ok
        shown_items = []
        for item in messages:
            shown = {"text": item.get("text", "")}
            if item.get("buttons"):
                shown["buttons"] = [{"title": str(b.get("title", "")), "payload": str(b.get("payload", ""))}
                                    for b in item["buttons"]]
            shown_items.append(shown)
        try:
            self._shared("push", sender, shown_items, QUEUE_LIMIT, QUEUE_TTL)
            return True
        except _NoShared:
            pass
        queue = self.queues.setdefault(sender, collections.deque(maxlen=QUEUE_LIMIT))
        self.queued_at[sender] = time.monotonic()
        queue.extend(shown_items)
        return True

    def take(self, sender_id: str) -> List[Dict[str, Any]]:
        """What waits for a web chat or REST user (counsellor messages, notices); handed over once."""
        try:
            shared = self._shared("take", sender_id)
        except _NoShared:
            shared = []
        queue = self.queues.pop(sender_id, None)
        self.queued_at.pop(sender_id, None)
        return shared + (list(queue) if queue else [])

    def _drop_old_queues(self) -> None:
        cutoff = time.monotonic() - QUEUE_TTL
        for sender in [s for s, at in self.queued_at.items() if at < cutoff]:
            self.queues.pop(sender, None)
            self.queued_at.pop(sender, None)

    async def _say_to_user(self, case: Case, steps: Iterable[tuple]) -> bool:
        language, country = await self._user_language_country(case)
        return await self._to_user(case, None, self.compose(language, country, steps))

    # -- the operators' chat --------------------------------------------------------------------------
    async def _to_operators(self, case: Case, text: str, reply_to: Optional[int] = None) -> List[int]:
        client = self.client
        if client is None or self.chat_id is None:
            return []
        ids = []
        for part in split_text(text):
            message_id = await client.send_text(self.chat_id, part, reply_to=reply_to or case.post_id)
            if message_id is not None:
                ids.append(message_id)
                self._remember_message(message_id, case)
        return ids

    async def _refresh_post(self, case: Case) -> None:
        if case.post_id is None or self.client is None or self.chat_id is None:
            return
        keyboard = self._accept_keyboard(case) if case.state == WAITING else None
        await self.client.edit_text(self.chat_id, case.post_id, self.post_text(case), keyboard)

    async def _notice(self, case: Case, text: str, reply_to: Optional[int] = None) -> None:
        self._add_relayed(case, await self._to_operators(case, text, reply_to))

    # -- the Rasa tracker ---------------------------------------------------------------------------
    async def _tracker_events(self, sender_id: str, events: List[Any]) -> bool:
        """Appends events to a stored conversation, under its lock; never creates one."""
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
        except Exception as error:
            logger.error("hand-off relay: conversation not updated (%s)", type(error).__name__)
            return False

    # -- a case starts ------------------------------------------------------------------------------
    async def case_requested(self, sender_id: str, case_id: Any, channel: str) -> None:
        """The marker of a new case went through ``channel`` for ``sender_id``."""
        from actions import store

        if not isinstance(case_id, str) or case_id in self.cases:
            return
        record = await self._store(store.get_case, case_id)
        if record is None or record.get("sender_id") != sender_id or record.get("state") != WAITING:
            logger.warning("hand-off case %s: marker without a matching waiting case; ignored", case_id)
            return
        self._discard_interrupted(sender_id)
        case = Case(case_id, sender_id, channel, record.get("language") or "en", record.get("country"),
                    record.get("topic"), record.get("summary"))
        try:
            fields = {k: v for k, v in dataclasses.asdict(case).items() if k not in ("timer", "relayed")}
            if not self._shared("create", {**fields, "deadline": time.time() + self.timeout}):
                return  # another server has it already
        except _NoShared:
            pass
        self.cases[case_id] = case
        self.by_sender[sender_id] = case_id
        self._forget_finished_cases()
        self._drop_old_queues()
        self._spawn(self._offer(case))

    async def _offer(self, case: Case) -> None:
        from actions import store

        post_id = None
        if self.client is not None and self.chat_id is not None:
            post_id = await self.client.send_text(self.chat_id, self.post_text(case), self._accept_keyboard(case))
        if post_id is None:
            logger.error("hand-off case %s: could not be posted to the operators' chat", case.case_id)
            await self._expire(case)
            return
        self._set(case, post_id=post_id)
        self._remember_message(post_id, case)
        case = self._get(case.case_id) or case  # changed on another server meanwhile?
        await self._store(store.set_state, case.case_id, case.state, str(post_id))
        logger.info("hand-off case %s posted to the operators' chat", case.case_id)
        if case.state != WAITING or case.emergency:  # changed while the post was on its way
            await self._refresh_post(case)
        if case.state == WAITING:
            case.timer = self._spawn(self._expire_later(case))

    async def _expire_later(self, case: Case, delay: Optional[float] = None) -> None:
        await asyncio.sleep(self.timeout if delay is None else delay)
        case.timer = None
        await self._expire(self._get(case.case_id) or case)  # as the shared state has it now

    async def _expire(self, case: Case) -> None:
        await self._finish(case, EXPIRED, [("say", "handoff_unavailable"), ("helplines", False)])

    # -- a case ends --------------------------------------------------------------------------------
    async def _finish(self, case: Case, state: str, user_steps: List[tuple], reason: Optional[str] = None,
                      notify_operators: bool = True) -> bool:
        from actions import store
        from rasa.shared.core.events import ConversationResumed, SlotSet

        was = self._move(case, state)
        if was is None:
            return False
        self._set(case, reason=reason)
        if case.timer is not None and case.timer is not asyncio.current_task():
            case.timer.cancel()
        case.timer = None
        if self.by_sender.get(case.sender_id) == case.case_id:
            self.by_sender.pop(case.sender_id, None)
        await self._store(store.set_state, case.case_id, state)
        events = ([ConversationResumed()] if was == LIVE else []) + [SlotSet("handoff_stage", None),
                                                                     SlotSet("handoff_case", None)]
        await self._tracker_events(case.sender_id, events)  # the assistant answers again before the user is told
        if user_steps:
            await self._say_to_user(case, user_steps)
        await self._refresh_post(case)
        if notify_operators and case.post_id is not None:
            await self._notice(case, f"{case.case_id}: {self._op(reason or STATE_LINES[state], case=case.case_id)}")
        return True

    # -- the user's side ----------------------------------------------------------------------------
    def _user_command(self, text: str, language: str) -> Optional[str]:
        words = text.strip().lower().rstrip(".!。")
        if words.startswith("/"):
            words = words.split("@", 1)[0]
        for command, key in (("end", "webchat_end_chat"), ("cancel", "webchat_cancel_request")):
            labels = {message_text(key, language).lower(), message_text(key, "en").lower()}
            if words in (command, "/" + command) or words in labels:
                return command
        return None

    async def user_command(self, sender_id: str, command: str) -> bool:
        """/end or /cancel from the user; False when there is no open case (the
        channel then treats the words as an ordinary message)."""
        case = self.case_of(sender_id)
        if case is None:
            return False
        if case.state == WAITING:
            await self._finish(case, CANCELLED, [("say", "handoff_cancelled")])
        else:
            await self._finish(case, CLOSED, [("say", "handoff_ended"), ("helplines", False)])
        return True

    async def intercept(self, sender_id: str, text: str, channel: str) -> bool:
        """Every user message of a channel, before Rasa. True: dealt with here
        (relayed, or an emergency answered while waiting); False: Rasa answers."""
        case = self.case_of(sender_id)
        if case is None:
            if self._pop_interrupted(sender_id):
                language = await self._language_of(sender_id)
                await self._to_user(sender_id, channel, self.compose(
                    language, await self._country_of(sender_id),
                    [("say", "handoff_unavailable"), ("helplines", False)]))
            return False
        command = self._user_command(text, case.language)
        if command is not None:
            return await self.user_command(sender_id, command)
        hit = self._detect(text)
        if hit:
            await self._emergency(case)
        if case.state == WAITING:
            return hit  # the emergency was answered here; anything else the assistant answers while they wait
        if text.strip().lower().split("@", 1)[0] == "/help":
            await self._say_to_user(case, [("helplines", False)])
            return True
        if PAYLOAD_RE.match(text.strip()):  # an old button or a bot command: the assistant is paused
            await self._say_to_user(case, [("say", "handoff_live_note")])
            return True
        sent = await self._to_operators(case, (self._op("operators_emergency") + "\n" if hit else "")
                                        + self._op("operators_from_user", case=case.case_id, text=text))
        self._add_relayed(case, sent)
        if not sent:
            logger.warning("hand-off case %s: a user message could not be relayed", case.case_id)
            await self._say_to_user(case, [("say", "handoff_not_delivered")])
        return True

    @staticmethod
    def _detect(text: str) -> bool:
        from components.emergency import detect

        try:
            return bool(detect(text))
        except Exception as error:  # the detector must never stop a message
            logger.error("hand-off relay: emergency detection failed (%s)", type(error).__name__)
            return False

    async def _emergency(self, case: Case) -> None:
        await self._say_to_user(case, [("say", "emergency"), ("helplines", True), ("say", "emergency_steps")])
        logger.warning("hand-off case %s: possible emergency; emergency numbers shown", case.case_id)
        try:
            first = self._shared("flag_emergency", case.case_id)
            case.emergency = True
        except _NoShared:
            first = not case.emergency
            case.emergency = True
        if first:
            await self._refresh_post(case)
        if case.state == WAITING and case.post_id is not None:
            await self._notice(case, f"{case.case_id}: {self._op('operators_emergency')}")

    async def _language_of(self, sender_id: str) -> str:
        agent = self.agent
        try:
            tracker = await agent.tracker_store.retrieve(sender_id) if agent is not None else None
            language = tracker.get_slot("language") if tracker is not None else None
        except Exception:
            language = None
        return language if language in LANGUAGES else "en"

    async def _country_of(self, sender_id: str) -> Optional[str]:
        agent = self.agent
        try:
            tracker = await agent.tracker_store.retrieve(sender_id) if agent is not None else None
            return tracker.get_slot("country") if tracker is not None else None
        except Exception:
            return None

    async def forget(self, sender_id: str) -> None:
        """The user deleted their conversation: the case closes without a word to
        them, its relayed messages leave the operators' chat, nothing stays queued."""
        self.take(sender_id)
        self._discard_interrupted(sender_id)
        case = self.case_of(sender_id)
        if case is None:
            return
        await self._finish(case, CLOSED if case.state == LIVE else CANCELLED, [], reason="operators_deleted")
        if case.relayed and self.client is not None and self.chat_id is not None:
            await self.client.delete_messages(self.chat_id, case.relayed)
            case.relayed.clear()
        try:  # the shared record keeps only the id and the state, for late replies of the operators
            self._shared("clear_relayed", case.case_id)
            self._shared("update", case.case_id, sender_id="", country=None, topic=None, summary=None)
        except _NoShared:
            pass
        from actions import store

        await self._store(store.delete_for_sender, sender_id)

    # -- the operators' side ------------------------------------------------------------------------
    async def _is_member(self, user: Any, sender_chat: Any = None) -> bool:
        if sender_chat is not None and getattr(sender_chat, "id", None) == self.chat_id:
            return True  # posted anonymously as the group: only its administrators can
        if user is None or getattr(user, "is_bot", False) or self.client is None:
            return False
        return await self.client.member_status(self.chat_id, user.id) in MEMBER_STATUSES

    def _bot_username(self) -> str:
        try:
            return (self.client.bot.username or "").lower()
        except Exception:
            return ""

    async def on_operators_update(self, update: Any, channel: Any = None) -> None:
        chat = update.effective_chat
        if chat is None or self.chat_id is None or chat.id != self.chat_id:
            return
        query = update.callback_query
        if query is not None:
            if not await self._is_member(query.from_user):
                logger.info("operators' chat: a button press from a non-member was ignored")
                return
            await self._on_button(query)
            return
        message = update.message
        if message is None:
            return  # edits, membership changes: nothing to do
        if not await self._is_member(message.from_user, message.sender_chat):
            logger.info("operators' chat: a message from a non-member was ignored")
            return
        await self._on_message(message)

    async def _on_button(self, query: Any) -> None:
        from actions import store
        from rasa.shared.core.events import ConversationPaused, SlotSet

        data = query.data or ""
        case = self._get(data[len(ACCEPT_PREFIX):]) if data.startswith(ACCEPT_PREFIX) else None
        if case is None or self._move(case, LIVE) is None:
            await self.client.answer_callback(query.id, self._op("operators_taken"))
            if case is None and data.startswith(ACCEPT_PREFIX) and query.message is not None:
                await self.client.remove_keyboard(self.chat_id, query.message.message_id)  # a case from before a restart
            return
        await self.client.answer_callback(query.id)
        if case.timer is not None:
            case.timer.cancel()
            case.timer = None
        await self._store(store.set_state, case.case_id, LIVE)
        await self._tracker_events(case.sender_id, [ConversationPaused(), SlotSet("handoff_stage", LIVE)])
        if not await self._say_to_user(case, [("say", "handoff_connected")]):
            await self._notice(case, self._op("operators_not_delivered", case=case.case_id))
        await self._refresh_post(case)

    def _find(self, case_id: str) -> Optional[Case]:
        return self._get(case_id.strip().upper())

    async def _reply(self, message: Any, text: str, case: Optional[Case] = None) -> None:
        message_id = await self.client.send_text(self.chat_id, text, reply_to=message.message_id)
        if case is not None:
            self._remember_message(message_id, case)

    async def _on_message(self, message: Any) -> None:
        replied = getattr(message.reply_to_message, "message_id", None)
        case = self._get(self._message_case(replied)) if replied else None
        text = message.text
        if text is None:
            if case is not None:
                await self._reply(message, self._op("operators_text_only"), case)
            return
        stripped = text.strip()
        if stripped.startswith("/"):
            head, _, rest = stripped[1:].partition(" ")
            command, _, target = head.partition("@")
            if target and target.lower() != self._bot_username():
                return  # a command for another bot
            command, rest = command.lower(), rest.strip()
            if command == "reply":
                case_id, _, body = rest.partition(" ")
                await self._answer(self._find(case_id), case_id, body.strip(), message)
            elif command == "end" and (rest or case is not None):
                target_case = self._find(rest.split()[0]) if rest else case
                await self._operator_end(target_case, rest.split()[0] if rest else "", message)
            elif command in ("help", "start", "end"):
                await self._reply(message, self._op("operators_usage"))
            return
        if case is not None:
            await self._answer(case, case.case_id, text, message)
        # anything else: the operators talking among themselves

    def _named(self, case: Optional[Case], given: str) -> str:
        if case is not None:
            return case.case_id
        given = given.strip().upper()
        return given if CASE_ID_RE.match(given) else "?"

    async def _answer(self, case: Optional[Case], given: str, text: str, message: Any) -> None:
        if case is None or case.state not in OPEN:
            await self._reply(message, self._op("operators_not_open", case=self._named(case, given)), case)
            return
        if case.state == WAITING:
            await self._reply(message, self._op("operators_accept_first", case=case.case_id), case)
            return
        if not text:
            await self._reply(message, self._op("operators_usage"), case)
            return
        self._remember_message(message.message_id, case)  # a reply to the operator's own message works too
        language, _ = await self._user_language_country(case)
        delivered = await self._to_user(case, None, [{"text": message_text("handoff_counsellor", language, text=text)}])
        if not delivered:
            logger.warning("hand-off case %s: a counsellor message could not be delivered", case.case_id)
            await self._reply(message, self._op("operators_not_delivered", case=case.case_id), case)

    async def _operator_end(self, case: Optional[Case], given: str, message: Any) -> None:
        if case is None or not case.open:
            await self._reply(message, self._op("operators_not_open", case=self._named(case, given)), case)
            return
        if case.state == WAITING:  # an operator declines: the user is told honestly
            await self._finish(case, CLOSED, [("say", "handoff_unavailable"), ("helplines", False)])
        else:
            await self._finish(case, CLOSED, [("say", "handoff_ended"), ("helplines", False)])

    # -- after a restart ----------------------------------------------------------------------------
    async def recover(self) -> int:
        """Cases left open by an earlier run of this server cannot be relayed any
        more (their users' chats and queues lived in memory): each is closed, its
        conversation resumed, its post edited; the user is told on their next message.
        With the state shared through Redis, a case that Redis still holds goes
        on (a waiting one gets a timer here too: whichever server's fires first
        expires it, once); only cases Redis lost are closed."""
        from actions import store
        from rasa.shared.core.events import ConversationResumed, SlotSet

        try:
            records = await self._store(store.all_cases)
        except Exception as error:
            logger.error("hand-off relay: case store unreadable (%s)", type(error).__name__)
            return 0
        stale = []
        for record in records:
            if record.get("state") not in OPEN or record.get("case_id") in self.cases:
                continue
            if self.shared is not None:
                case = self._get(record["case_id"])
                if case is not None:
                    if not case.open:
                        await self._store(store.set_state, case.case_id, case.state)
                    elif case.state == WAITING and case.timer is None:
                        try:
                            deadline = float((self._shared("get", case.case_id) or {}).get("deadline") or 0)
                        except (_NoShared, ValueError):
                            deadline = 0.0
                        case.timer = self._spawn(self._expire_later(case, max(0.0, deadline - time.time())))
                    continue
            stale.append(record)
        for record in stale:
            await self._store(store.set_state, record["case_id"], EXPIRED)
            events = ([ConversationResumed()] if record["state"] == LIVE else []) + [
                SlotSet("handoff_stage", None), SlotSet("handoff_case", None)]
            await self._tracker_events(record["sender_id"], events)
            self._interrupt(record["sender_id"])
            post = str(record.get("operator_ref") or "")
            if post.isdigit() and self.client is not None and self.chat_id is not None:
                await self.client.edit_text(self.chat_id, int(post),
                                            f"{record['case_id']}\n\n{self._op('operators_restarted')}")
            logger.info("hand-off case %s: %s -> %s (server restarted)", record["case_id"], record["state"], EXPIRED)
        return len(stale)


_relay: Optional[Relay] = None


def get_relay() -> Relay:
    global _relay
    if _relay is None:
        _relay = Relay()
    return _relay


def marker_case(messages: Iterable[Dict[str, Any]], kind: str = "handoff_requested") -> Optional[Any]:
    """The case id of a ``handoff_requested`` marker among a turn's messages
    (or True for another ``kind`` of marker), else None."""
    for item in messages:
        custom = item.get("custom") if isinstance(item, dict) else None
        if isinstance(custom, dict) and custom.get("waypoint") == kind:
            return custom.get("case_id") if kind == "handoff_requested" else True
    return None


def attach(channel: Any) -> None:
    """Called once by the Telegram channel when the server starts (its hooks)."""
    relay = get_relay()
    relay.telegram = channel
    relay.app = channel.app or relay.app
    if relay.chat_id is None:
        logger.info("hand-off relay: WAYPOINT_OPERATORS_CHAT_ID is not set; live hand-offs are off")
    channel.operators_handler = relay.on_operators_update
    channel.handoff_handler = lambda sender, case_id: relay.case_requested(sender, case_id, "telegram")
    channel.message_interceptor = lambda sender, text: relay.intercept(sender, text, "telegram")
    channel.command_handlers["end"] = lambda sender, _chat: relay.user_command(sender, "end")
    channel.command_handlers["cancel"] = lambda sender, _chat: relay.user_command(sender, "cancel")
    channel.forget_handler = relay.forget
    relay._spawn(relay.recover())
