"""The REST channel, hardened: Rasa's own (rasa.core.channels.rest) answers a
body that is not a JSON object, or metadata that is not a mapping, with a 500,
and logs the message text when a turn times out. This one answers every bad
request with a 400 and a JSON error, caps the text that reaches the NLU, never
shows the assistant's internal markers, logs no text, and when a turn fails
answers kindly instead of with an error. During a live hand-off messages go to
the counsellor, and what the counsellor wrote comes with the answer to the
user's next message.

    POST /webhooks/rest/webhook  {"sender": "...", "message": "...", "metadata": {"language_hint": "ms"}}
    -> [{"recipient_id": ..., "text": ..., "buttons": [...]}, ...]
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Dict, List, Tuple

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from channels import base
from content.texts import text as message_text

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
        raise BadRequest("body is not JSON") from None
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


class RestInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "rest"

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        bp = Blueprint("waypoint_rest", __name__)

        @bp.listener("before_server_stop")
        async def close_action_connections(app: Any, loop: Any) -> None:
            from plugins.speedups import close_sessions

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
            agent = request.app.ctx.agent
            hint = base.language_hint(
                sender, metadata.get("language_hint") if isinstance(metadata.get("language_hint"), str) else None
            )
            if hint:
                metadata = {**metadata, "language_hint": hint}
            truncated = len(text) > MAX_CHARS
            if truncated:
                text = text[:MAX_CHARS]
                metadata = {**metadata, "truncated": True}
                logger.info("rest: a message longer than %d characters was cut", MAX_CHARS)
            relay = base.relay_for(request.app)
            try:
                if await relay.intercept(sender, text, self.name()):  # a hand-off is waiting or live
                    return response.json([{"recipient_id": sender, **m} for m in relay.take(sender)])
            except Exception as error:  # noqa: BLE001 - the assistant still answers
                logger.error("rest: hand-off relay failed (%s)", type(error).__name__)
            before = relay.take(sender)  # what a counsellor wrote since the user's last message
            collector = CollectingOutputChannel()
            answered = await base.run_turn(
                on_new_message,
                UserMessage(text, collector, sender, input_channel=self.name(), metadata=metadata),
                self.name(),
            )
            replies: List[Dict[str, Any]] = [{"recipient_id": sender, **m} for m in before]
            shown = base.visible(collector.messages)
            if not answered or not shown and not base.marker(collector.messages, base.FORGET):
                language = await base.conversation_language(agent, sender, hint)
                shown = shown + [base.sorry(language)]
            replies += [{"recipient_id": sender, **m} for m in shown]
            try:
                await base.after_turn(relay, sender, collector.messages, self.name())
            except Exception as error:  # noqa: BLE001
                logger.error("rest: hand-off relay failed (%s)", type(error).__name__)
            replies += [{"recipient_id": sender, **m} for m in relay.take(sender)]
            if truncated:
                language = await base.conversation_language(agent, sender, hint)
                replies.insert(0, {"recipient_id": sender, "text": message_text("too_long", language)})
            return response.json(replies)

        return bp
