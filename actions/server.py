"""Starts the action server on 127.0.0.1 (not 0.0.0.0, as ``rasa run actions``
would), refusing requests without the shared token when one is set.

    SANIC_HOST=127.0.0.1 python -m actions.server   # port: WAYPOINT_ACTIONS_PORT

The Rasa server sends the token as ``?token=`` (endpoints.yml, action_endpoint).
"""
from __future__ import annotations

import hmac
import logging
import os

from rasa_sdk.endpoint import create_app
from sanic import response

logger = logging.getLogger("actions.server")


def build_app(token: str = ""):
    app = create_app("actions", cors_origins=[])

    @app.middleware("request")
    async def require_token(request):
        if request.path == "/health" or not token:
            return None
        if not hmac.compare_digest(request.args.get("token", ""), token):
            logger.warning("action server: request without the right token refused")
            return response.json({"error": "forbidden"}, status=403)
        return None

    return app


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("sanic.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from actions.content import get_content

    from actions import search

    content = get_content()  # fail at start, not at the first message, if content is broken
    search.warm_up(content)
    token = os.environ.get("WAYPOINT_ACTIONS_TOKEN", "")
    host = os.environ.get("SANIC_HOST", "127.0.0.1")
    port = int(os.environ.get("WAYPOINT_ACTIONS_PORT", "5055"))
    logger.info("action server on http://%s:%d (token %s)", host, port, "required" if token else "not set")
    build_app(token).run(host=host, port=port, access_log=False, workers=1, motd=False)


if __name__ == "__main__":
    main()
