"""The REST channel, hardened: Rasa's own (rasa.core.channels.rest) answers a
body that is not a JSON object, or metadata that is not a mapping, with a 500,
and logs the message text when a turn times out. This one answers every bad
request with a 400 and a JSON error, caps the text that reaches the NLU, never
shows the assistant's internal markers, and logs no text. During a live
hand-off (channels/operators.py) messages go to the counsellor, and what the
counsellor wrote comes with the answer to the user's next message.

    POST /webhooks/rest/webhook  {"sender": "...", "message": "...", "metadata": {"language_hint": "ms"}}
    -> [{"recipient_id": ..., "text": ..., "buttons": [...]}, ...]
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels.tracker_store import is_marker

logger = logging.getLogger(__name__)

MAX_CHARS = 4000
MAX_SENDER = 128


class BadRequest(ValueError):
    pass


def parse_body(raw: bytes) -> Tuple[str, str, Dict[str, Any]]:
    """(sender, text, metadata) of a request body, or BadRequest."""
    try:
        data = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("body is not JSON")
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    sender = data.get("sender", "default")
    if isinstance(sender, (int, float)) and not isinstance(sender, bool):
        sender = str(sender)
    if not isinstance(sender, str) or not sender.strip() or len(sender) > MAX_SENDER:
        raise BadRequest(f"sender must be a non-empty string of at most {MAX_SENDER} characters")
    text = data.get("message", "")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise BadRequest("message must be a string")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be a JSON object")
    return sender, text, metadata


def visible(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [m for m in messages if not is_marker(m.get("custom"))]


async def conversation_language(request: Request, sender: str) -> str:
    try:
        tracker = await request.app.ctx.agent.tracker_store.retrieve(sender)
        language = tracker.get_slot("language") if tracker else None
    except Exception:  # noqa: BLE001 - the language is a nicety here
        language = None
    return language or "en"


def handoff_relay(request: Request) -> Any:
    """The hand-off relay (channels/operators.py). REST users cannot be sent a
    message, so what a counsellor writes comes with the answer to their next one."""
    from channels import operators

    relay = operators.get_relay()
    relay.app = request.app
    return relay


def too_long_text(language: str) -> str:
    from actions.content import get_content

    texts = get_content().messages["too_long"]
    return texts.get(language) or texts["en"]


class RestInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "rest"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint("waypoint_rest", __name__)

        @bp.listener("before_server_stop")
        async def close_action_connections(app: Any, loop: Any) -> None:
            from channels.rasa_speedups import close_sessions

            await close_sessions()

        @bp.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @bp.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            try:
                sender, text, metadata = parse_body(request.body)
            except BadRequest as error:
                return response.json({"error": str(error)}, status=400)
            truncated = len(text) > MAX_CHARS
            if truncated:
                text = text[:MAX_CHARS]
                metadata = {**metadata, "truncated": True}
                logger.info("rest: a message longer than %d characters was cut", MAX_CHARS)
            relay = handoff_relay(request)
            try:
                if await relay.intercept(sender, text, self.name()):  # a hand-off is waiting or live
                    return response.json([{"recipient_id": sender, **m} for m in relay.take(sender)])
            except Exception as error:  # noqa: BLE001 - the assistant still answers
                logger.error("rest: hand-off relay failed (%s)", type(error).__name__)
            before = relay.take(sender)  # what a counsellor wrote since the user's last message
            collector = CollectingOutputChannel()
            try:
                await on_new_message(UserMessage(text, collector, sender, input_channel=self.name(),
                                                 metadata=metadata))
            except asyncio.CancelledError:
                logger.error("rest: a turn timed out")
                return response.json({"error": "timeout"}, status=503)
            except Exception as error:  # noqa: BLE001 - never a 500 with a stack trace
                logger.error("rest: a turn failed (%s)", type(error).__name__)
                return response.json({"error": "the assistant could not answer; please try again"}, status=503)
            replies = [{"recipient_id": sender, **m} for m in before] + visible(collector.messages)
            try:
                from channels.webchat import after_turn

                await after_turn(relay, sender, collector.messages, self.name())
            except Exception as error:  # noqa: BLE001
                logger.error("rest: hand-off relay failed (%s)", type(error).__name__)
            replies += [{"recipient_id": sender, **m} for m in relay.take(sender)]
            if truncated:
                language = await conversation_language(request, sender)
                replies.insert(0, {"recipient_id": sender, "text": too_long_text(language)})
            return response.json(replies)

        return bp
