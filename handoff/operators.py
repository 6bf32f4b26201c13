"""The operators' side of the hand-off: the counsellors' Telegram group
(``WAYPOINT_OPERATORS_CHAT_ID``), reached through the Telegram channel's Bot API
client.

A new case is posted with an Accept button (case id, language, country, topic
title, and the topic summary only if the user agreed to share it; never the
user's identity). Only members of that group act: an update must come from it
AND its sender's ``getChatMember`` status must be member, administrator or
creator (or the message was posted anonymously as the group itself, which only
its administrators can do). Anything else is ignored with one log line and no
answer. Operators answer by replying to any message of a case or with
``/reply <case> text``; ``/end`` (as a reply or ``/end <case>``) closes it.
The bot works with Telegram's group privacy mode on.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Awaitable, Callable, List, Optional

from content import languages, settings
from content.text import split_text
from content.texts import text as message_text
from handoff.case import CASE_ID_RE, CLOSED, LIVE, OPEN, WAITING, Case

logger = logging.getLogger(__name__)

ACCEPT_PREFIX = "wp-accept:"
MEMBER_STATUSES = ("member", "administrator", "creator")
STATE_LINES = {
    WAITING: "operators_waiting",
    LIVE: "operators_live",
    CLOSED: "operators_closed",
    "expired": "operators_expired",
    "cancelled": "operators_cancelled",
}


class OperatorsDesk:
    def __init__(self, relay: Any, client: Any, chat_id: Optional[int] = None, language: Optional[str] = None) -> None:
        self.relay = relay
        self.client = client  # channels.telegram.bot.TelegramBot
        if chat_id is None:
            raw = settings.get("WAYPOINT_OPERATORS_CHAT_ID")
            chat_id = int(raw) if re.fullmatch(r"-?\d+", raw) else None
            if raw and chat_id is None:
                logger.error("WAYPOINT_OPERATORS_CHAT_ID must be a numeric chat id; hand-offs are off")
        self.chat_id = chat_id
        self.language = languages.or_default((language or settings.get("WAYPOINT_OPERATORS_LANGUAGE")).lower())

    @property
    def ready(self) -> bool:
        return self.client is not None and self.chat_id is not None

    # -- texts ----------------------------------------------------------------------------------------
    def op(self, key: str, **values: Any) -> str:
        return message_text(key, self.language, **values)

    def _title(self, topic: Optional[str]) -> str:
        from content.loader import get_content

        guide = get_content().guides.get(topic or "")
        return guide.text(self.language, "title") if guide else (topic or "—")

    def _summary(self, summary: str) -> str:
        from content.loader import get_content

        guides = get_content().guides
        return re.sub(
            r"\b[a-z]+\.[a-z_]+\b",
            lambda m: guides[m.group(0)].text(self.language, "title") if m.group(0) in guides else m.group(0),
            summary,
        )

    def post_text(self, case: Case) -> str:
        from content.loader import get_content

        lines = []
        if case.reason == "operators_deleted":  # the user withdrew everything: only the id and the state stay
            lines.append(case.case_id)
        else:
            country = get_content().country_name(case.country, self.language) if case.country else "—"
            lang = languages.get(case.language)
            language = f"{lang.native_name if lang else case.language} ({case.language})"
            lines.append(
                self.op(
                    "operators_case",
                    case=case.case_id,
                    language=language,
                    country=country,
                    topic=self._title(case.topic),
                )
            )
            if case.summary:
                lines.append(self.op("operators_summary", summary=self._summary(case.summary)))
        if case.emergency:
            lines.append(self.op("operators_emergency"))
        lines.append(self.op(case.reason or STATE_LINES[case.state], case=case.case_id))
        return "\n\n".join(lines)

    def _keyboard(self, case: Case) -> List[List[Any]]:
        from telegram import InlineKeyboardButton

        return [[InlineKeyboardButton(self.op("operators_accept"), callback_data=ACCEPT_PREFIX + case.case_id)]]

    # -- posting ---------------------------------------------------------------------------------------
    async def send(self, case: Case, text: str, reply_to: Optional[int] = None) -> List[int]:
        if not self.ready:
            return []
        ids = []
        for part in split_text(text):
            message_id = await self.client.send_text(self.chat_id, part, reply_to=reply_to or case.post_id)
            if message_id is not None:
                ids.append(message_id)
                self.relay.repo.remember_message(message_id, case.case_id)
        if ids:
            self.relay.repo.add_relayed(case.case_id, ids)
        return ids

    async def offer(self, case: Case) -> bool:
        if not self.ready:
            return False
        post_id = await self.client.send_text(self.chat_id, self.post_text(case), self._keyboard(case))
        if post_id is None:
            return False
        self.relay.repo.update(case.case_id, post_id=post_id)
        self.relay.repo.remember_message(post_id, case.case_id)
        logger.info("hand-off case %s posted to the operators' chat", case.case_id)
        current = self.relay.repo.get(case.case_id)
        if current is not None and (current.state != WAITING or current.emergency):  # changed meanwhile
            await self.refresh(current)
        return True

    async def refresh(self, case: Case) -> None:
        if case.post_id is None or not self.ready:
            return
        keyboard = self._keyboard(case) if case.state == WAITING else None
        await self.client.edit_text(self.chat_id, case.post_id, self.post_text(case), keyboard)

    async def notice(self, case: Case, key: Optional[str]) -> None:
        """A line about the case under its post (its state's own line by default)."""
        if case.post_id is None:
            return
        line = self.op(key or STATE_LINES.get(case.state, "operators_closed"), case=case.case_id)
        await self.send(case, line if line.startswith(case.case_id) else f"{case.case_id}: {line}")

    async def withdraw(self, case: Case) -> None:
        """The user deleted their data: the case's relayed messages leave the chat."""
        if case.relayed and self.ready:
            await self.client.delete_messages(self.chat_id, case.relayed)
        self.relay.repo.clear_relayed(case.case_id)

    async def relay_from_user(self, case: Case, text: str, flagged: bool = False) -> bool:
        body = (self.op("operators_emergency") + "\n" if flagged else "") + self.op(
            "operators_from_user", case=case.case_id, text=text
        )
        return bool(await self.send(case, body))

    async def relay_media(self, case: Case, kind: str, fetch: Callable[[], Awaitable[Any]]) -> bool:
        """A voice note or photo of the user, forwarded under the case id (the
        file is fetched from the user's platform and re-sent; never stored)."""
        if not self.ready:
            return False
        try:
            data, filename = await fetch()
        except Exception as error:  # noqa: BLE001
            logger.warning("hand-off case %s: media not fetched (%s)", case.case_id, type(error).__name__)
            return False
        caption = self.op("operators_from_user", case=case.case_id, text=self.op(f"operators_media_{kind}"))
        message_id = await self.client.send_media(self.chat_id, kind, data, filename, caption, reply_to=case.post_id)
        if message_id is None:
            return False
        self.relay.repo.remember_message(message_id, case.case_id)
        self.relay.repo.add_relayed(case.case_id, [message_id])
        return True

    # -- the operators' chat ------------------------------------------------------------------------------
    async def _is_member(self, user: Any, sender_chat: Any = None) -> bool:
        if sender_chat is not None and getattr(sender_chat, "id", None) == self.chat_id:
            return True  # posted anonymously as the group: only its administrators can
        if user is None or getattr(user, "is_bot", False) or self.client is None:
            return False
        return await self.client.member_status(self.chat_id, user.id) in MEMBER_STATUSES

    async def on_update(self, update: Any) -> None:
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
        data = query.data or ""
        case_id = data[len(ACCEPT_PREFIX) :] if data.startswith(ACCEPT_PREFIX) else ""
        case = await self.relay.accept(case_id) if case_id else None
        if case is None:
            await self.client.answer_callback(query.id, self.op("operators_taken"))
            if case_id and self.relay.repo.get(case_id) is None and query.message is not None:
                await self.client.remove_keyboard(self.chat_id, query.message.message_id)
            return
        await self.client.answer_callback(query.id)
        await self.refresh(case)

    async def _reply(self, message: Any, text: str, case: Optional[Case] = None) -> None:
        message_id = await self.client.send_text(self.chat_id, text, reply_to=message.message_id)
        if case is not None and message_id is not None:
            self.relay.repo.remember_message(message_id, case.case_id)

    def _bot_username(self) -> str:
        try:
            return (self.client.bot.username or "").lower()
        except Exception:  # noqa: BLE001
            return ""

    def _find(self, case_id: str) -> Optional[Case]:
        return self.relay.repo.get(case_id.strip().upper()) if case_id else None

    async def _on_message(self, message: Any) -> None:
        replied = getattr(message.reply_to_message, "message_id", None)
        case_id = self.relay.repo.message_case(replied) if replied else None
        case = self.relay.repo.get(case_id) if case_id else None
        text = message.text
        if text is None:
            if case is not None:
                await self._reply(message, self.op("operators_text_only"), case)
            return
        stripped = text.strip()
        if stripped.startswith("/"):
            head, _, rest = stripped[1:].partition(" ")
            command, _, target = head.partition("@")
            if target and target.lower() != self._bot_username():
                return  # a command for another bot
            command, rest = command.lower(), rest.strip()
            if command == "reply":
                given, _, body = rest.partition(" ")
                await self._answer(self._find(given), given, body.strip(), message)
            elif command == "end" and (rest or case is not None):
                given = rest.split()[0] if rest else ""
                await self._operator_end(self._find(given) if given else case, given, message)
            elif command in ("help", "start", "end"):
                await self._reply(message, self.op("operators_usage"))
            return
        if case is not None:
            await self._answer(case, case.case_id, text, message)
        # anything else: the operators talking among themselves

    @staticmethod
    def _named(case: Optional[Case], given: str) -> str:
        if case is not None:
            return case.case_id
        given = given.strip().upper()
        return given if CASE_ID_RE.match(given) else "?"

    async def _answer(self, case: Optional[Case], given: str, text: str, message: Any) -> None:
        if case is None or case.state not in OPEN:
            await self._reply(message, self.op("operators_not_open", case=self._named(case, given)), case)
            return
        if case.state == WAITING:
            await self._reply(message, self.op("operators_accept_first", case=case.case_id), case)
            return
        if not text:
            await self._reply(message, self.op("operators_usage"), case)
            return
        self.relay.repo.remember_message(
            message.message_id, case.case_id
        )  # a reply to the operator's own message works too
        language, _ = await self.relay._language_country(case.sender_id, case)
        delivered = await self.relay.to_user(
            case.sender_id, case.channel, [{"text": message_text("handoff_counsellor", language, text=text)}]
        )
        if not delivered:
            logger.warning("hand-off case %s: a counsellor message could not be delivered", case.case_id)
            await self._reply(message, self.op("operators_not_delivered", case=case.case_id), case)

    async def _operator_end(self, case: Optional[Case], given: str, message: Any) -> None:
        if case is None or not case.open:
            await self._reply(message, self.op("operators_not_open", case=self._named(case, given)), case)
            return
        if case.state == WAITING:  # an operator declines: the user is told honestly
            await self.relay.finish(case, CLOSED, [("say", "handoff_unavailable"), ("numbers", "helplines")])
        else:
            await self.relay.finish(case, CLOSED, [("say", "handoff_ended"), ("numbers", "helplines")])
