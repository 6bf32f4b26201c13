"""The live hand-off to a human counsellor, on the Rasa server.

- ``case``: a case and its state machine;
- ``repository``: where cases live (the Rasa server's own SQLite or PostgreSQL
  tables; never a file the action server touches);
- ``queues``: what waits for web chat and REST users (memory or Redis);
- ``relay``: the case's life and the user's side;
- ``operators``: the counsellors' Telegram chat.

Channels reach it through :func:`get_relay`; the action server never imports
it (it only asks for a person, in a marker at the end of its turn).
"""

from __future__ import annotations

from typing import Any, Optional

from handoff.relay import Relay

_relay: Optional[Relay] = None


def get_relay(app: Any = None) -> Relay:
    """This server's relay (created on first use from the settings)."""
    global _relay
    if _relay is None:
        from handoff import queues, repository

        _relay = Relay(repository.from_settings(), queues.from_settings())
    if app is not None:
        _relay.app = app
    return _relay


def attach_operators(relay: Relay, client: Any) -> None:
    """The Telegram channel started: the operators' chat is reachable through its client."""
    from handoff.operators import OperatorsDesk

    relay.desk = OperatorsDesk(relay, client)
    if relay.desk.chat_id is None:
        import logging

        logging.getLogger(__name__).info("hand-off: WAYPOINT_OPERATORS_CHAT_ID is not set; live hand-offs are off")
    relay.spawn(relay.recover())


def reset() -> None:
    """Forget this process's relay (tests)."""
    global _relay
    if _relay is not None:
        _relay.repo.close()
    _relay = None
