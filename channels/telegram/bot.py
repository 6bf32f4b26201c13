"""python-telegram-bot's ``Bot`` wrapped behind the few calls Waypoint makes
(the Bot is wrapped, not inherited from). Every call respects 429's
``retry_after``, retries network errors with backoff, and on failure logs the
method and the error type (never the text, never the chat) and returns None: a
failed send never takes the server down."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import functools
import logging
import random
import warnings
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence, Tuple

from content import languages
from content.texts import text as message_text

logger = logging.getLogger(__name__)

# httpx logs every request URL at INFO, and Telegram's URLs contain the bot token.
for _noisy in ("httpx", "httpcore", "telegram"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

ALLOWED_UPDATES = ("message", "edited_message", "callback_query", "my_chat_member")
DELETE_BATCH = 100  # deleteMessages takes at most 100 ids


def retry_after_seconds(error: Exception) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = getattr(error, "retry_after", 1)
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class TelegramBot:
    """python-telegram-bot's ``Bot`` behind the few calls Waypoint makes.

    Every call respects 429's ``retry_after``, retries network errors with
    backoff, and on failure logs the method and the error type (never the text,
    never the chat) and returns None: a failed send never takes the server down."""

    def __init__(
        self,
        token: str,
        api_base_url: Optional[str] = None,
        max_attempts: int = 5,
        max_wait: float = 120.0,
        backoff: float = 0.5,
    ):
        from telegram import Bot
        from telegram.request import HTTPXRequest

        kwargs: Dict[str, Any] = {}
        if api_base_url and "{" in api_base_url:  # PTB's own form, e.g. http://host/bot{token}
            kwargs.update(base_url=api_base_url, base_file_url=api_base_url.replace("/bot", "/file/bot", 1))
        elif api_base_url:
            base = api_base_url[:-4] if api_base_url.endswith("/bot") else api_base_url
            kwargs.update(base_url=f"{base}/bot", base_file_url=f"{base}/file/bot")
        self.bot = Bot(
            token,
            request=HTTPXRequest(
                connection_pool_size=64, read_timeout=15, write_timeout=15, connect_timeout=10, pool_timeout=10
            ),
            get_updates_request=HTTPXRequest(connection_pool_size=2, read_timeout=10, connect_timeout=10),
            **kwargs,
        )
        self.max_attempts, self.max_wait, self.backoff = max_attempts, max_wait, backoff
        self.failures: Dict[str, int] = collections.Counter()

    async def start(self) -> bool:
        try:
            await self.bot.initialize()
            return True
        except Exception as error:  # noqa: BLE001 - the server keeps running; every call retries on its own
            logger.warning("Telegram: getMe failed (%s); will keep trying on each call", type(error).__name__)
            return False

    async def stop(self) -> None:
        try:
            await self.bot.shutdown()
        except Exception:  # noqa: BLE001  # pragma: no cover - shutting down anyway
            pass

    async def call(self, method: str, factory: Callable[[], Awaitable[Any]], *, quiet: Tuple[type, ...] = ()) -> Any:
        from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TimedOut

        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            try:
                return await factory()
            except RetryAfter as error:
                delay = retry_after_seconds(error)
                if waited + delay > self.max_wait or attempt == self.max_attempts:
                    return self._failed(method, error)
                logger.info("Telegram: %s rate-limited, retrying after %.1f s", method, delay)
                await asyncio.sleep(delay)
                waited += delay
            except (BadRequest, Forbidden, InvalidToken) as error:  # BadRequest is a NetworkError: check it first
                if quiet and isinstance(error, quiet):
                    logger.debug("Telegram: %s refused (%s)", method, type(error).__name__)
                    return None
                return self._failed(method, error)
            except (NetworkError, TimedOut) as error:
                if attempt == self.max_attempts:
                    return self._failed(method, error)
                delay = min(self.backoff * 2 ** (attempt - 1), 30) * (0.8 + 0.4 * random.random())
                logger.info(
                    "Telegram: %s failed (%s), retry %d in %.1f s", method, type(error).__name__, attempt, delay
                )
                await asyncio.sleep(delay)
                waited += delay
            except Exception as error:  # noqa: BLE001 - every other failure is reported, never raised
                return self._failed(method, error)
        return None  # pragma: no cover

    def _failed(self, method: str, error: Exception) -> None:
        self.failures[method] += 1
        logger.warning("Telegram: %s failed for good (%s)", method, type(error).__name__)
        logger.debug("Telegram: %s failure detail", method, exc_info=True)
        return None

    # the calls -------------------------------------------------------------------------------
    async def send_text(
        self,
        chat_id: int,
        text: str,
        keyboard: Optional[Sequence[Sequence[Any]]] = None,
        reply_to: Optional[int] = None,
    ) -> Optional[int]:
        from telegram import InlineKeyboardMarkup, LinkPreviewOptions, ReplyParameters

        markup = InlineKeyboardMarkup(keyboard) if keyboard else None
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        message = await self.call(
            "sendMessage",
            lambda: self.bot.send_message(
                chat_id,
                text,
                reply_markup=markup,
                reply_parameters=reply,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            ),
        )
        return message.message_id if message is not None else None

    async def edit_text(
        self, chat_id: int, message_id: int, text: str, keyboard: Optional[Sequence[Sequence[Any]]] = None
    ) -> bool:
        """Replaces a message's text; without ``keyboard`` its inline keyboard goes."""
        from telegram import InlineKeyboardMarkup, LinkPreviewOptions
        from telegram.error import BadRequest

        markup = InlineKeyboardMarkup(keyboard or [])
        return bool(
            await self.call(
                "editMessageText",
                lambda: self.bot.edit_message_text(
                    text,
                    chat_id=chat_id,
                    message_id=message_id,
                    reply_markup=markup,
                    link_preview_options=LinkPreviewOptions(is_disabled=True),
                ),
                quiet=(BadRequest,),
            )
        )

    async def member_status(self, chat_id: int, user_id: int) -> Optional[str]:
        """A user's status in a chat (``member``, ``administrator``, ``creator``, ``left``...), None if unknown."""
        from telegram.error import BadRequest

        member = await self.call(
            "getChatMember", lambda: self.bot.get_chat_member(chat_id, user_id), quiet=(BadRequest,)
        )
        return getattr(member, "status", None)

    async def answer_callback(self, callback_id: str, text: Optional[str] = None) -> bool:
        return bool(
            await self.call("answerCallbackQuery", lambda: self.bot.answer_callback_query(callback_id, text=text))
        )

    async def remove_keyboard(self, chat_id: int, message_id: int) -> None:
        from telegram.error import BadRequest

        await self.call(
            "editMessageReplyMarkup",
            lambda: self.bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id, reply_markup=None),
            quiet=(BadRequest,),
        )

    async def delete_messages(self, chat_id: int, message_ids: Sequence[int]) -> int:
        """Deletes in batches of at most 100; a refused batch is retried one by one.
        Returns how many ids were sent in accepted calls."""
        from telegram.error import BadRequest

        ids = sorted(set(int(i) for i in message_ids))
        done = 0
        for start in range(0, len(ids), DELETE_BATCH):
            batch = ids[start : start + DELETE_BATCH]
            if await self.call(
                "deleteMessages", functools.partial(self.bot.delete_messages, chat_id, batch), quiet=(BadRequest,)
            ):
                done += len(batch)
                continue
            for message_id in batch:
                if await self.call(
                    "deleteMessage",
                    functools.partial(self.bot.delete_message, chat_id, message_id),
                    quiet=(BadRequest,),
                ):
                    done += 1
        return done

    async def send_media(
        self, chat_id: int, kind: str, data: bytes, filename: str, caption: str, reply_to: Optional[int] = None
    ) -> Optional[int]:
        """A voice note or photo (the hand-off relays users' media to counsellors)."""
        from telegram import InputFile, ReplyParameters

        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        upload = InputFile(data, filename=filename)
        if kind == "photo":
            factory = lambda: self.bot.send_photo(chat_id, upload, caption=caption, reply_parameters=reply)  # noqa: E731
        elif kind == "voice":
            factory = lambda: self.bot.send_voice(chat_id, upload, caption=caption, reply_parameters=reply)  # noqa: E731
        else:
            factory = lambda: self.bot.send_document(chat_id, upload, caption=caption, reply_parameters=reply)  # noqa: E731
        message = await self.call(f"send_{kind}", factory)
        return message.message_id if message is not None else None

    async def download(self, file_id: str, limit: int = 20 * 1024 * 1024) -> Tuple[bytes, str]:
        """A user's file from Telegram (for the hand-off relay), into memory only."""
        file = await self.call("getFile", lambda: self.bot.get_file(file_id))
        if file is None or (file.file_size or 0) > limit:
            raise ValueError("file not available")
        data = await file.download_as_bytearray()
        return bytes(data), (file.file_path or "file").rsplit("/", 1)[-1]

    async def leave_chat(self, chat_id: int) -> bool:
        return bool(await self.call("leaveChat", lambda: self.bot.leave_chat(chat_id)))

    async def set_webhook(self, url: str, secret: str) -> bool:
        return bool(
            await self.call(
                "setWebhook",
                lambda: self.bot.set_webhook(
                    url, secret_token=secret, allowed_updates=list(ALLOWED_UPDATES), max_connections=40
                ),
            )
        )

    async def delete_webhook(self) -> bool:
        return bool(await self.call("deleteWebhook", lambda: self.bot.delete_webhook(drop_pending_updates=False)))

    async def set_commands(self) -> int:
        from telegram import BotCommand

        done = 0
        for language in (None,) + languages.CODES:
            lang = language or languages.DEFAULT
            commands = [
                BotCommand("start", message_text("command_start", lang)),
                BotCommand("language", message_text("command_language", lang)),
                BotCommand("help", message_text("label_helplines", lang)),
                BotCommand("human", message_text("label_talk_to_person", lang)),
                BotCommand("delete", message_text("command_delete", lang)),
            ]
            if await self.call(
                "setMyCommands", functools.partial(self.bot.set_my_commands, commands, language_code=language)
            ):
                done += 1
        return done

    async def get_updates(self, offset: Optional[int], timeout: int = 25) -> Sequence[Any]:
        from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter

        try:
            return await self.bot.get_updates(offset=offset, timeout=timeout, allowed_updates=list(ALLOWED_UPDATES))
        except RetryAfter as error:
            await asyncio.sleep(retry_after_seconds(error))
        except (Conflict, InvalidToken) as error:
            logger.warning(
                "Telegram: getUpdates refused (%s); is a webhook set or another poller running?", type(error).__name__
            )
            await asyncio.sleep(10)
        except NetworkError as error:
            logger.info("Telegram: getUpdates failed (%s)", type(error).__name__)
            await asyncio.sleep(2)
        return ()
