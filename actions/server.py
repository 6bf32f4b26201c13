"""Starts the action server on 127.0.0.1 (not 0.0.0.0, as ``rasa run actions``
would), refusing requests without the shared token when one is set.

    SANIC_HOST=127.0.0.1 python -m actions.server   # port: WAYPOINT_ACTIONS_PORT

The Rasa server sends the token as ``?token=`` (endpoints.yml, action_endpoint).

Idempotent: the Rasa server re-sends a request once when its kept-alive
connection was closed or reset as the request went out (plugins/speedups.py);
the first copy may have run. A request identical to one answered in the last
``REPLAY_SECONDS`` (the same action on the same conversation state: the body
holds every event of the turn) gets the same answer again without running the
action twice.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import time
from typing import Any, Tuple

from rasa_sdk.endpoint import create_app
from sanic import response

from content import settings

logger = logging.getLogger("actions.server")
REPLAY_SECONDS = 30.0
REPLAY_SIZE = 2000


class ReplayCache:
    """Answers of the last few seconds, by a hash of the request body."""

    def __init__(self, ttl: float = REPLAY_SECONDS, size: int = REPLAY_SIZE) -> None:
        self.ttl, self.size = ttl, size
        self.items: "collections.OrderedDict[str, Tuple[float, int, bytes, str]]" = collections.OrderedDict()

    @staticmethod
    def key(body: bytes) -> str:
        return hashlib.sha256(body).hexdigest()

    def get(self, key: str) -> Any:
        item = self.items.get(key)
        if item is None or item[0] < time.monotonic() - self.ttl:
            return None
        return item

    def put(self, key: str, status: int, body: bytes, content_type: str) -> None:
        self.items[key] = (time.monotonic(), status, body, content_type)
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)


def build_app(token: str = "") -> Any:
    app = create_app("actions", cors_origins=[])
    replays = ReplayCache()

    @app.middleware("request")
    async def require_token(request: Any) -> Any:
        if request.path == "/health" or not token:
            pass
        elif not hmac.compare_digest(request.args.get("token", ""), token):
            logger.warning("action server: request without the right token refused")
            return response.json({"error": "forbidden"}, status=403)
        if request.path == "/webhook" and request.method == "POST":
            request.ctx.replay_key = replays.key(request.body or b"")
            seen = replays.get(request.ctx.replay_key)
            if seen is not None:
                logger.info("action server: a repeated request answered again without running the action")
                return response.raw(seen[2], status=seen[1], content_type=seen[3])
        return None

    @app.middleware("response")
    async def remember(request: Any, resp: Any) -> None:
        key = getattr(request.ctx, "replay_key", None)
        if key and resp is not None and resp.status == 200 and resp.body is not None:
            replays.put(key, resp.status, resp.body, resp.content_type or "application/json")

    return app


def warm_up() -> None:
    """Reads one message in every language the way a turn does (lexicons and
    signals compiled, places matched, segmenters loaded), before the server
    listens: the first person to write after a restart must not meet the Rasa
    server's deadline (WAYPOINT_ACTION_TIMEOUT_SECONDS) while this loads."""
    import time

    from rasa_sdk import Tracker

    from actions.context import facts
    from actions.dialogue import decide
    from content import languages, lexicons
    from content.nlu_files import sample

    started = time.monotonic()
    lexicons.warm_up()
    for language in languages.CODES:
        text = sample(language, "report_emergency") or sample(language, "greet") or "help"
        latest = {
            "text": text,
            "intent": {"name": "report_emergency", "confidence": 1.0},
            "entities": [],
            "intent_ranking": [],
            "language_id": {"language": language},
        }
        tracker = Tracker("warm-up", {"language": language}, latest, [], False, None, {}, "action_listen")
        decide(tracker, facts(tracker), "crisis")
    logger.info("action server: warmed up in %.1f s", time.monotonic() - started)


def main() -> None:
    logging.basicConfig(level=settings.get("LOG_LEVEL"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("sanic.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from actions import search
    from content.loader import get_content

    content = get_content()  # fail at start, not at the first message, if content is broken
    search.warm_up(content)
    warm_up()
    token = settings.get("WAYPOINT_ACTIONS_TOKEN")
    host = settings.get("SANIC_HOST")
    port = settings.get_int("WAYPOINT_ACTIONS_PORT")
    logger.info("action server on http://%s:%d (token %s)", host, port, "required" if token else "not set")
    build_app(token).run(host=host, port=port, access_log=False, workers=1, motd=False)


if __name__ == "__main__":
    main()
