"""Two fixes to Rasa 3.6 for costs it pays on every message, whatever the
conversation (measured with py-spy, bench/reports/serving.md).

1. Rasa checks every action server response with ``jsonschema.validate(response,
schema)`` (``RemoteAction._validate_action_result``). jsonschema 4's
``validate`` first re-validates the *schema itself* against the draft 2020-12
metaschema, on every call; with three action calls per user message that was
about 60% of the Rasa server's CPU (py-spy, bench/reports/serving.md). Here the
same schema is checked once and its validator reused: responses are validated
exactly as before (same schema, same errors, same message), only the repeated
self-check goes.

2. Loading a tracker turns each stored event back into an object through
``Event.resolve_by_type``, which walks the whole tree of Event subclasses
(``all_subclasses``, with an ``inspect.isabstract`` per class) for every single
event: about 0.1 ms an event, more than the JSON decoding and the SQL query
together. The class found for a type name is remembered; unknown names still go
to Rasa's code (and its error).

``install()`` is called by channels.tracker_store.WaypointSQLTrackerStore,
which every Waypoint Rasa server loads (endpoints.yml,
deploy/endpoints.scale.yml). It does nothing if Rasa's method is not the one it
expects (another Rasa version), so an upgrade falls back to Rasa's own code;
``WAYPOINT_RASA_SPEEDUPS=0`` in the environment turns both off (bench/serving.py
measures the server without them that way).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict

logger = logging.getLogger(__name__)
_installed = False


def install() -> bool:
    global _installed
    if _installed:
        return True
    if os.environ.get("WAYPOINT_RASA_SPEEDUPS", "1").strip() == "0":
        return False
    try:
        import jsonschema
        from rasa.core.actions.action import RemoteAction
        from rasa.shared.constants import DOCS_BASE_URL
    except ImportError:  # pragma: no cover - not a Rasa server
        return False
    original = RemoteAction.__dict__.get("_validate_action_result")
    if original is None or getattr(original, "__qualname__", "") != "RemoteAction._validate_action_result":
        logger.warning("Rasa's RemoteAction changed; action responses are validated the stock way")
        return False
    schema = RemoteAction.action_response_format_spec()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)  # once, as jsonschema.validate() would on every call
    validator = validator_class(schema)

    def _validate_action_result(self: Any, result: Dict[str, Any]) -> bool:
        error = jsonschema.exceptions.best_match(validator.iter_errors(result))
        if error is not None:
            error.message += (
                f". Failed to validate Action server response from API, "
                f"make sure your response from the Action endpoint is valid. "
                f"For more information about the format visit "
                f"{DOCS_BASE_URL}/custom-actions"
            )
            raise error
        return True

    _validate_action_result.__wrapped__ = original  # type: ignore[attr-defined]
    RemoteAction._validate_action_result = _validate_action_result
    _cache_event_types()
    _installed = True
    return True


def _cache_event_types() -> None:
    from rasa.shared.core.events import Event

    original = Event.__dict__.get("resolve_by_type")
    if not isinstance(original, staticmethod):
        logger.warning("Rasa's Event.resolve_by_type changed; event types are looked up the stock way")
        return
    lookup = original.__func__
    found: Dict[str, Any] = {}

    def resolve_by_type(type_name: str, default: Any = None) -> Any:
        cls = found.get(type_name)
        if cls is None:
            cls = lookup(type_name, default)
            if cls is not None and cls is not default:
                found[type_name] = cls
        return cls

    resolve_by_type.__wrapped__ = lookup  # type: ignore[attr-defined]
    Event.resolve_by_type = staticmethod(resolve_by_type)
