"""Waypoint's Facebook Messenger channel (the Messenger Platform's Send API and
webhooks, on the Graph API), off unless MESSENGER_PAGE_ACCESS_TOKEN is set.
credentials.yml registers ``channels.messenger.MessengerInput``; Rasa's own
facebook channel is never used.

- webhook ``/webhooks/messenger/webhook``: the subscription handshake (GET,
  ``MESSENGER_VERIFY_TOKEN``) and signed POSTs (``MESSENGER_APP_SECRET``);
  channels/meta.py does what Messenger and WhatsApp share;
- buttons become quick replies (at most 13, titles at most 20 characters: the
  guides' ``short_title`` when there is one); more than 13: the first 12 and
  "more choices"; text is split at 2,000 characters;
- the user's Messenger locale (User Profile API, ``fields=locale`` only, kept
  in this process's memory) is a language hint, never a fact;
- a counsellor's answer (the hand-off) goes out as a normal response within 24
  hours of the user's last message, with the ``HUMAN_AGENT`` tag up to 7 days
  (where Meta granted the page that feature), otherwise it is not sent and the
  operators are told;
- "delete my data" deletes everything on the server; the assistant says that
  the chat stays in the Messenger app and how to delete it there.

``python -m channels.messenger setup`` (``make messenger-setup``) sets the Get
Started button, the greeting and the persistent menu, per language.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from channels.meta import (
    DAY,
    DELETE,
    EMPTY_BODY,
    LANGUAGE,
    MEDIA_LIMIT,
    START,
    GraphClient,
    Incoming,
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
from content import languages, settings
from content.texts import text as message_text

logger = logging.getLogger(__name__)

PLATFORM = "messenger"
TEXT_LIMIT = 2000
QUICK_REPLIES = 13
TITLE_LIMIT = 20
PAYLOAD_LIMIT = 1000
HUMAN_AGENT_FOR = 7 * DAY
MODES = {
    "response": {"messaging_type": "RESPONSE"},
    "human_agent": {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"},
}
GREETING_LIMIT = 160
MENU_TITLE_LIMIT = 30
# Our registry languages as Meta locales (the greeting and the menu, per locale):
# each entry's BCP 47 locale ("ms-MY") written Meta's way ("ms_MY").
LOCALES = {lang.code: lang.locale.replace("-", "_") for lang in languages.REGISTRY if lang.locale}
# Those of ours on Meta's published list of supported locales (Messenger
# Platform, "Supported Locales"); if Meta refuses the others, setup retries with these.
LISTED_LOCALES = ("en_GB", "en_US", "id_ID", "ms_MY", "vi_VN", "th_TH")
MEDIA_KINDS = {"audio": "voice", "video": "video", "file": "file"}
PROFILE_WAIT = 5.0  # seconds the first answer waits for the user's locale


class MessengerOutput(MetaOutput):
    @classmethod
    def name(cls) -> str:
        return PLATFORM


class MessengerInput(MetaInput):
    """The ``messenger`` channel."""

    platform = PLATFORM
    label = "Messenger"
    prefix = "fb"
    token_setting = "MESSENGER_PAGE_ACCESS_TOKEN"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._locales: "collections.OrderedDict[str, Optional[str]]" = collections.OrderedDict()

    @classmethod
    def config_from_env(cls, env: Optional[Dict[str, str]] = None) -> MetaConfig:
        return MetaConfig(
            token=settings.get("MESSENGER_PAGE_ACCESS_TOKEN", env),
            app_secret=settings.get("MESSENGER_APP_SECRET", env),
            verify_token=settings.get("MESSENGER_VERIFY_TOKEN", env),
            graph_url=settings.get("META_GRAPH_API_URL", env).rstrip("/"),
        )

    def output_class(self) -> type:
        return MessengerOutput

    # -- webhook bodies ---------------------------------------------------------------------------
    def parse(self, data: Dict[str, Any]) -> Optional[List[Incoming]]:
        if data.get("object") != "page":
            return None
        events = []
        for entry in dicts(data.get("entry")):
            for item in dicts(entry.get("messaging")):  # "standby" (another app has the thread): not ours
                event = self.event(item)
                if event is not None:
                    events.append(event)
        return events

    @staticmethod
    def event(item: Dict[str, Any]) -> Optional[Incoming]:
        user = user_id(mapping(item.get("sender")).get("id"))
        if user is None:
            return None
        at = seconds(item.get("timestamp"), 1000.0)
        message = item.get("message")
        if isinstance(message, dict):
            if message.get("is_echo"):
                return None  # the page's own message
            mid = string(message.get("mid"), 300) or None
            text = string(message.get("text"))
            payload = string(mapping(message.get("quick_reply")).get("payload"), 2000)
            if payload:
                return Incoming(user, "button", mid, text=text, payload=payload, at=at)
            if text.strip():
                return Incoming(user, "text", mid, text=text, at=at)
            attachments = dicts(message.get("attachments"))
            if attachments:
                return MessengerInput.attachment(user, mid, attachments[0], at)
            return None
        postback = item.get("postback")
        if isinstance(postback, dict):
            payload = string(postback.get("payload"), 2000)
            if not payload:
                return None
            stamp = string(item.get("timestamp"), 30)
            key = string(postback.get("mid"), 300) or (f"postback:{user}:{stamp}" if stamp else None)
            return Incoming(user, "button", key, text=string(postback.get("title"), 200), payload=payload, at=at)
        edit = item.get("message_edit")
        if isinstance(edit, dict):
            mid = string(edit.get("mid"), 300)
            key = f"edit:{mid}:{string(edit.get('num_edit'), 20)}" if mid else None
            return Incoming(user, "edited", key, at=at)
        return None  # deliveries, reads, reactions, referrals, opt-ins: nothing to answer

    @staticmethod
    def attachment(user: str, mid: Optional[str], attachment: Dict[str, Any], at: float) -> Incoming:
        kind = string(attachment.get("type"), 40)
        payload = mapping(attachment.get("payload"))
        if kind == "location":
            return Incoming(user, "personal", mid, at=at)
        if kind == "image":
            media = "sticker" if payload.get("sticker_id") else "photo"
        else:
            media = MEDIA_KINDS.get(kind, "other")
        return Incoming(user, "media", mid, media=media, ref=string(payload.get("url"), 4000), at=at)

    # -- per platform -------------------------------------------------------------------------------
    async def hint_for(self, event: Incoming, sender: str) -> Optional[str]:
        """The user's Messenger locale, asked once per process (only the
        ``locale`` field; pages without that permission get no hint)."""
        if sender in self._locales:
            self._locales.move_to_end(sender)
            return self._locales[sender]
        hint = None
        if self.graph is not None:
            try:  # the answer does not wait long for a hint
                result = await asyncio.wait_for(
                    self.graph.call(
                        "GET", event.user, "profile locale", params={"fields": "locale"}, attempts=1, quiet=True
                    ),
                    PROFILE_WAIT,
                )
            except asyncio.TimeoutError:
                result = None
                logger.info("Messenger: the user's locale was not known in time; no hint")
            if result is not None and result.ok:
                hint = languages.normalise_hint(string(mapping(result.data).get("locale"), 20) or None)
        self._locales[sender] = hint
        while len(self._locales) > 20000:
            self._locales.popitem(last=False)
        return hint

    def forget_local(self, sender: str) -> None:
        super().forget_local(sender)
        self._locales.pop(sender, None)

    def window(self, last_at: float) -> Optional[str]:
        age = time.time() - last_at
        if age <= DAY:
            return "response"
        if age <= HUMAN_AGENT_FOR:
            return "human_agent"
        return None

    async def fetch_media(self, event: Incoming) -> Tuple[bytes, str]:
        """An attachment from Messenger's CDN (its URL is signed; no token is sent there)."""
        data, content_type = await self.graph.download(event.ref, MEDIA_LIMIT, auth=False)  # type: ignore[union-attr]
        return data, media_filename(event.media, content_type)

    def quick_replies(self, buttons: Sequence[Dict[str, Any]], language: str) -> List[Dict[str, Any]]:
        return [
            {
                "content_type": "text",
                "title": button_title(button, TITLE_LIMIT),
                "payload": self.stored_payload(str(button["payload"]), PAYLOAD_LIMIT),
            }
            for button in self.paged(buttons, QUICK_REPLIES, language)
        ]

    async def send_one(
        self, user: str, text: str, buttons: Sequence[Dict[str, Any]], mode: str, language: str
    ) -> Optional[List[str]]:
        quick = self.quick_replies(buttons, language) if buttons else []
        parts = split_for(text, TEXT_LIMIT) or ([EMPTY_BODY] if quick else [])
        ids = []
        for i, part in enumerate(parts):
            message: Dict[str, Any] = {"text": part}
            if quick and i == len(parts) - 1:
                message["quick_replies"] = quick
            body = {"recipient": {"id": user}, "message": message, **MODES.get(mode, MODES["response"])}
            result = await self.graph.call("POST", "me/messages", "send", body=body)  # type: ignore[union-attr]
            if not result.ok:
                return None
            ids.append(string(mapping(result.data).get("message_id"), 300))
        return ids


# -- the page's profile: Get Started, greeting, persistent menu ----------------------------------------------------


def _translated(key: str, language: str) -> bool:
    from content.loader import get_content

    return bool(get_content().messages.get(key, {}).get(language))


def greeting_text(language: str) -> str:
    return shorten(message_text("messenger_greeting", language), GREETING_LIMIT)


def menu_items(language: str) -> List[Dict[str, str]]:
    """The persistent menu: helplines, a person, the language, delete."""
    items = [
        ("label_helplines", "/ask_help_helplines"),
        ("label_talk_to_person", "/request_human"),
        ("command_language", LANGUAGE),
        ("command_delete", DELETE),
    ]
    return [
        {"type": "postback", "title": shorten(message_text(key, language), MENU_TITLE_LIMIT), "payload": payload}
        for key, payload in items
    ]


def profile_body(locales: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The Messenger profile: English as the default locale, then each registry
    language (with a Meta locale) whose texts are written in it."""
    greeting = [{"locale": "default", "text": greeting_text(languages.DEFAULT)}]
    menu = [{"locale": "default", "composer_input_disabled": False, "call_to_actions": menu_items(languages.DEFAULT)}]
    for code in languages.CODES:
        locale = LOCALES.get(code)
        if not locale or (locales is not None and locale not in locales):
            continue
        if _translated("messenger_greeting", code):
            greeting.append({"locale": locale, "text": greeting_text(code)})
        if all(
            _translated(key, code)
            for key in ("label_helplines", "label_talk_to_person", "command_language", "command_delete")
        ):
            menu.append({"locale": locale, "composer_input_disabled": False, "call_to_actions": menu_items(code)})
    return {"get_started": {"payload": START}, "greeting": greeting, "persistent_menu": menu}


async def setup(config: MetaConfig, backoff: float = 1.0) -> int:
    client = GraphClient(config.token, config.graph_url, "Messenger", backoff=backoff)
    try:
        body = profile_body()
        result = await client.call("POST", "me/messenger_profile", "set profile", body=body)
        if not result.ok and result.code == 100:
            print(
                "Meta refused a locale; setting the profile with the locales on Meta's published list only.",
                file=sys.stderr,
            )
            body = profile_body(LISTED_LOCALES)
            result = await client.call("POST", "me/messenger_profile", "set profile", body=body)
        if not result.ok:
            print(
                f"Setting the Messenger profile failed (HTTP {result.status or 'none'}, code {result.code}).",
                file=sys.stderr,
            )
            return 1
        locales = sorted({item["locale"] for item in body["greeting"] + body["persistent_menu"]})
        print(f"Messenger profile set: Get Started button, greeting and persistent menu for {', '.join(locales)}.")
        return 0
    finally:
        await client.close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m channels.messenger", description="Waypoint's Messenger channel")
    commands = parser.add_subparsers(dest="command", required=True)
    setup_command = commands.add_parser("setup", help="set the page's Get Started button, greeting and menu")
    setup_command.add_argument("--print", action="store_true", help="print the profile instead of setting it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.print:
        print(json.dumps(profile_body(), ensure_ascii=False, indent=2))
        return 0
    config = MessengerInput.config_from_env()
    if not config.token:
        print("MESSENGER_PAGE_ACCESS_TOKEN is not set.", file=sys.stderr)
        return 2
    return asyncio.run(setup(config))


if __name__ == "__main__":
    sys.exit(main())
