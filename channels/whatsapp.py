"""Waypoint's WhatsApp channel (the WhatsApp Business Cloud API, on the Graph
API), off unless WHATSAPP_ACCESS_TOKEN (and WHATSAPP_PHONE_NUMBER_ID) is set.
credentials.yml registers ``channels.whatsapp.WhatsAppInput``.

- webhook ``/webhooks/whatsapp/webhook``: the subscription handshake (GET,
  ``WHATSAPP_VERIFY_TOKEN``) and signed POSTs (``WHATSAPP_APP_SECRET``);
  messages to another of the account's numbers are left alone;
- buttons: up to 3 whose titles fit 20 characters (the guides' ``short_title``
  first) are reply buttons; otherwise a list (rows of at most 24 characters,
  the full title as the row's description, at most 72); more than 10: the
  first 9 and "more choices". Text is split at 4,096 characters; the text
  that carries buttons is at most 1,024 (longer text goes first, on its own);
- no language hint: WhatsApp gives none, and a phone number's country code says
  nothing about a person's language or nationality;
- the 24-hour window: a free-form message can only be sent within 24 hours of
  the user's last message. The time of that message is kept (encrypted, with
  the address) per hashed sender; outside the window a counsellor's answer is
  not sent and ``push`` returns False, so the operators are told. When the
  Cloud API itself refuses (error 131047, at once or later in a failed
  delivery report), the same: never lost silently;
- voice notes and photos during a live hand-off are fetched from the Graph API
  into memory and relayed to the counsellor.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from channels.meta import (
    DAY,
    EMPTY_BODY,
    MEDIA_ID_RE,
    MEDIA_LIMIT,
    Incoming,
    MediaError,
    MetaConfig,
    MetaInput,
    MetaOutput,
    button_title,
    dicts,
    mapping,
    media_filename,
    seconds,
    shorten,
    split_for,
    string,
    user_id,
)
from content import settings
from content.text import utf16_len
from content.texts import text as message_text

logger = logging.getLogger(__name__)

PLATFORM = "whatsapp"
TEXT_LIMIT = 4096
BODY_LIMIT = 1024  # the text of an interactive message
REPLY_BUTTONS, BUTTON_TITLE, BUTTON_ID = 3, 20, 256
LIST_ROWS, ROW_TITLE, ROW_DESCRIPTION, ROW_ID = 10, 24, 72, 200
LIST_BUTTON, SECTION_TITLE = 20, 24
WINDOW_CLOSED = 131047  # "Re-engagement message": more than 24 hours since the user's last message
MEDIA_KINDS = {"image": "photo", "audio": "voice", "video": "video", "document": "file", "sticker": "sticker"}
IGNORED = ("reaction", "system")  # nothing to answer


class WhatsAppOutput(MetaOutput):
    @classmethod
    def name(cls) -> str:
        return PLATFORM


def _preferred(button: Dict[str, Any]) -> str:
    short = button.get("short_title")
    return " ".join(str(short if isinstance(short, str) and short.strip() else button.get("title") or "").split())


def _tail_apart(text: str) -> List[str]:
    """A text longer than an interactive message may carry, as (the head, a
    tail of at most 1,024 characters that carries the buttons), cut where
    split_text would cut (paragraphs, lines, sentences, words)."""
    pieces = split_for(text, BODY_LIMIT)
    tail = pieces[-1]
    at = text.rfind(tail)
    head = text[:at].strip() if at > 0 else "\n\n".join(pieces[:-1])
    return [part for part in (head, tail) if part]


class WhatsAppInput(MetaInput):
    """The ``whatsapp`` channel."""

    platform = PLATFORM
    label = "WhatsApp"
    prefix = "wa"
    token_setting = "WHATSAPP_ACCESS_TOKEN"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.token and not self.config.phone_number_id:
            logger.error("WhatsApp channel off: WHATSAPP_PHONE_NUMBER_ID is not set")
        self._other_number_logged = False

    @classmethod
    def config_from_env(cls, env: Optional[Dict[str, str]] = None) -> MetaConfig:
        return MetaConfig(
            token=settings.get("WHATSAPP_ACCESS_TOKEN", env),
            app_secret=settings.get("WHATSAPP_APP_SECRET", env),
            verify_token=settings.get("WHATSAPP_VERIFY_TOKEN", env),
            graph_url=settings.get("META_GRAPH_API_URL", env).rstrip("/"),
            phone_number_id=settings.get("WHATSAPP_PHONE_NUMBER_ID", env),
        )

    @property
    def enabled(self) -> bool:
        return super().enabled and bool(self.config.phone_number_id)

    def output_class(self) -> type:
        return WhatsAppOutput

    # -- webhook bodies ---------------------------------------------------------------------------
    def parse(self, data: Dict[str, Any]) -> Optional[List[Incoming]]:
        if data.get("object") != "whatsapp_business_account":
            return None
        events: List[Incoming] = []
        for entry in dicts(data.get("entry")):
            for change in dicts(entry.get("changes")):
                if change.get("field") != "messages":
                    continue
                value = mapping(change.get("value"))
                number = string(mapping(value.get("metadata")).get("phone_number_id"), 64)
                if number and number != self.config.phone_number_id:
                    if not self._other_number_logged:
                        logger.info("WhatsApp: messages to another phone number of the account are left alone")
                        self._other_number_logged = True
                    continue
                events += [e for e in map(self.message_event, dicts(value.get("messages"))) if e is not None]
                events += [e for e in map(self.status_event, dicts(value.get("statuses"))) if e is not None]
        return events

    @staticmethod
    def message_event(message: Dict[str, Any]) -> Optional[Incoming]:
        user = user_id(message.get("from"))
        if user is None:
            return None
        key = string(message.get("id"), 300) or None
        at = seconds(message.get("timestamp"))
        kind = string(message.get("type"), 40)
        if kind == "text":
            return Incoming(user, "text", key, text=string(mapping(message.get("text")).get("body")), at=at)
        if kind == "interactive":
            interactive = mapping(message.get("interactive"))
            reply = mapping(interactive.get("button_reply")) or mapping(interactive.get("list_reply"))
            payload = string(reply.get("id"), 2000)
            if not payload:
                return None
            return Incoming(user, "button", key, text=string(reply.get("title"), 200), payload=payload, at=at)
        if kind == "button":  # a template's quick reply
            button = mapping(message.get("button"))
            return Incoming(
                user,
                "button",
                key,
                text=string(button.get("text"), 200),
                payload=string(button.get("payload"), 2000),
                at=at,
            )
        if kind in ("location", "contacts"):
            return Incoming(user, "personal", key, at=at)
        if kind in MEDIA_KINDS:
            media = mapping(message.get(kind))
            caption = string(media.get("caption"), 10000) if kind in ("image", "video", "document") else ""
            return Incoming(
                user, "media", key, text=caption, media=MEDIA_KINDS[kind], ref=string(media.get("id"), 200), at=at
            )
        if kind == "request_welcome":  # the user opened the chat for the first time
            return Incoming(user, "start", key, at=at)
        if kind in IGNORED:
            return None
        return Incoming(user, "media", key, media="other", at=at)  # unsupported, unknown, orders...

    @staticmethod
    def status_event(status: Dict[str, Any]) -> Optional[Incoming]:
        if status.get("status") != "failed":
            return None
        user = user_id(status.get("recipient_id"))
        message_id = string(status.get("id"), 300)
        if user is None or not message_id:
            return None
        codes = tuple(
            e["code"]
            for e in dicts(status.get("errors"))
            if isinstance(e.get("code"), int) and not isinstance(e.get("code"), bool)
        )
        return Incoming(
            user, "status", f"failed:{message_id}", ref=message_id, codes=codes, at=seconds(status.get("timestamp"))
        )

    # -- per platform -------------------------------------------------------------------------------
    def window(self, last_at: float) -> Optional[str]:
        return "response" if time.time() - last_at <= DAY else None

    async def on_status(self, event: Incoming, sender: str) -> None:
        """A message we sent was not delivered. A counsellor's is never lost
        silently: the operators are told under the case."""
        relayed = self.state.seen(self.platform, self._key("relayed", event.ref))
        window = " (more than 24 hours since the user's last message)" if WINDOW_CLOSED in event.codes else ""
        logger.warning(
            "WhatsApp: a %s message was not delivered (codes %s)%s",
            "hand-off" if relayed else "reply",
            list(event.codes),
            window,
        )
        if not relayed:
            return
        try:
            case = self.relay.case_of(sender)
            desk = self.relay.desk
            if case is not None and desk is not None:
                await desk.notice(case, "operators_not_delivered")
        except Exception as error:  # noqa: BLE001
            logger.error("WhatsApp: hand-off relay failed (%s)", type(error).__name__)

    async def fetch_media(self, event: Incoming) -> Tuple[bytes, str]:
        """A user's voice note or photo: its URL from the Graph API, then the
        file (with the token) into memory."""
        if not MEDIA_ID_RE.fullmatch(event.ref or ""):
            raise MediaError("no media id")
        info = await self.graph.call("GET", event.ref, "media", attempts=3)  # type: ignore[union-attr]
        data = mapping(info.data)
        url = string(data.get("url"), 4000)
        if not info.ok or not url:
            raise MediaError("media not available")
        size = data.get("file_size")
        if isinstance(size, int) and size > MEDIA_LIMIT:
            raise MediaError("too large")
        content, content_type = await self.graph.download(url, MEDIA_LIMIT, auth=True)  # type: ignore[union-attr]
        return content, media_filename(event.media, string(data.get("mime_type"), 100) or content_type)

    def interactive(self, body: str, buttons: Sequence[Dict[str, Any]], language: str) -> Dict[str, Any]:
        """Reply buttons when up to 3 fit, else a list (paged beyond 10 rows)."""
        titles = [_preferred(b) for b in buttons]
        if (
            len(buttons) <= REPLY_BUTTONS
            and all(0 < utf16_len(t) <= BUTTON_TITLE for t in titles)
            and len(set(titles)) == len(titles)
        ):
            return {
                "type": "button",
                "body": {"text": body},
                "action": {
                    "buttons": [
                        {
                            "type": "reply",
                            "reply": {
                                "id": self.stored_payload(str(b["payload"]), BUTTON_ID),
                                "title": button_title(b, BUTTON_TITLE),
                            },
                        }
                        for b in buttons
                    ]
                },
            }
        rows = []
        for button in self.paged(buttons, LIST_ROWS, language):
            row = {
                "id": self.stored_payload(str(button["payload"]), ROW_ID),
                "title": shorten(_preferred(button), ROW_TITLE) or "…",
            }
            full = " ".join(str(button.get("title") or "").split())
            if full and full != row["title"]:
                row["description"] = shorten(full, ROW_DESCRIPTION)
            rows.append(row)
        label = shorten(message_text("label_options", language), LIST_BUTTON)
        return {
            "type": "list",
            "body": {"text": body},
            "action": {"button": label, "sections": [{"title": shorten(label, SECTION_TITLE), "rows": rows}]},
        }

    async def _post(self, user: str, content: Dict[str, Any]) -> Optional[str]:
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": user, **content}
        graph = self.graph
        assert graph is not None  # the channel is off without its Graph client
        result = await graph.call("POST", f"{self.config.phone_number_id}/messages", "send", body=body)
        if not result.ok:
            if result.code == WINDOW_CLOSED:
                logger.warning("WhatsApp: not sent: more than 24 hours since the user's last message")
            return None
        sent = dicts(mapping(result.data).get("messages"))
        return string(sent[0].get("id"), 300) if sent else ""

    async def send_one(
        self, user: str, text: str, buttons: Sequence[Dict[str, Any]], mode: str, language: str
    ) -> Optional[List[str]]:
        parts = split_for(text, TEXT_LIMIT)
        buttons = [b for b in buttons if b.get("payload")]
        interactive = None
        if buttons:
            if parts and utf16_len(parts[-1]) > BODY_LIMIT:
                parts += _tail_apart(parts.pop())
            body = parts.pop() if parts else EMPTY_BODY
            interactive = self.interactive(body, buttons, language)
        ids = []
        for part in parts:
            message_id = await self._post(user, {"type": "text", "text": {"body": part, "preview_url": False}})
            if message_id is None:
                return None
            ids.append(message_id)
        if interactive is not None:
            message_id = await self._post(user, {"type": "interactive", "interactive": interactive})
            if message_id is None:
                return None
            ids.append(message_id)
        return ids
