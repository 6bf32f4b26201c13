"""Three fixes to Rasa 3.6 for costs it pays on every message, whatever the
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

3. Every call to the action server (two or three per user message) goes
through ``EndpointConfig.request``, which opens a new aiohttp session, so a new
TCP connection, and closes it again. Here each endpoint keeps one session per
event loop and its connections alive (for 2 s, under the 5 s after which the
action server, Sanic, closes an idle one). A request that meets a connection
the server closed at that very moment (``ServerDisconnectedError``, or a
connection reset: it was never read) is sent once more on a new one.

``install()`` is called once by plugins.launch, the Rasa server's entry point,
before Rasa starts. Each patch checks the source of the function it replaces
(plugins.source_matches) and stays off on its own when that changed (another
Rasa version keeps Rasa's code there). ``WAYPOINT_RASA_SPEEDUPS=0`` turns all
three off (bench/serving.py measures the server without them that way).

A request re-sent after a connection reset may have reached the action server
already; the action server answers an identical request a second time from a
short cache without running the action again (actions/server.py), so no action
runs twice.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import weakref
from typing import Any, Dict

from content import settings
from plugins import source_matches

logger = logging.getLogger(__name__)
_installed: Dict[str, bool] = {}


EXPECTED = {  # sha256 (16 hex digits) of the patched functions' source in rasa 3.6.21
    "validate": "f8cdb4be68123961",  # RemoteAction._validate_action_result
    "events": "b5cf570fa7f286c7",  # Event.resolve_by_type
    "session": "e55aa13d9d4fb4bc",  # EndpointConfig.session
    "request": "ccdb778aed8208e2",  # EndpointConfig.request
}


def install() -> Dict[str, bool]:
    """The three fixes, each on its own; returns which are on."""
    global _installed
    names = ("validate_once", "event_types", "kept_alive_connections")
    if settings.get("WAYPOINT_RASA_SPEEDUPS") == "0":
        return {name: False for name in names}
    if _installed:
        return dict(_installed)
    _installed = {
        "validate_once": _validate_once(),
        "event_types": _cache_event_types(),
        "kept_alive_connections": _reuse_connections(),
    }
    return dict(_installed)


def _validate_once() -> bool:
    import jsonschema
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    original = RemoteAction.__dict__.get("_validate_action_result")
    if original is None or not source_matches(original, EXPECTED["validate"], "validate_once"):
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
    return True


def _cache_event_types() -> bool:
    from rasa.shared.core.events import Event

    original = Event.__dict__.get("resolve_by_type")
    if not isinstance(original, staticmethod) or not source_matches(
        original.__func__, EXPECTED["events"], "event_types"
    ):
        return False
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
    return True


KEEPALIVE_SECONDS = 2.0
RESET_ERRNOS = (errno.ECONNRESET, errno.EPIPE)
_pools: "weakref.WeakKeyDictionary[Any, Dict[int, Any]]" = weakref.WeakKeyDictionary()


async def close_sessions() -> None:
    """Close the kept-alive sessions of the running event loop (server shutdown)."""
    loop = asyncio.get_running_loop()
    for session in list(_pools.pop(loop, {}).values()):
        await session.close()


class _Borrowed:
    """``async with endpoint.session() as s`` without closing the shared session."""

    def __init__(self, session: Any) -> None:
        self.session = session

    async def __aenter__(self) -> Any:
        return self.session

    async def __aexit__(self, *exc: Any) -> bool:
        return False


def _reuse_connections() -> bool:
    import aiohttp
    from rasa.utils import endpoints

    config = endpoints.EndpointConfig
    original_session = config.__dict__.get("session")
    original_request = config.__dict__.get("request")
    if not (
        source_matches(original_session, EXPECTED["session"], "kept_alive_connections")
        and source_matches(original_request, EXPECTED["request"], "kept_alive_connections")
    ):
        return False

    def session(self: Any) -> Any:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return original_session(self)
        per_endpoint = _pools.setdefault(loop, {})
        shared = per_endpoint.get(id(self))
        if shared is None or shared.closed:
            auth = (
                aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"]) if self.basic_auth else None
            )
            shared = aiohttp.ClientSession(
                headers=self.headers,
                auth=auth,
                timeout=aiohttp.ClientTimeout(total=endpoints.DEFAULT_REQUEST_TIMEOUT),
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS),
            )
            per_endpoint[id(self)] = shared
            weakref.finalize(self, per_endpoint.pop, id(self), None)
        return _Borrowed(shared)

    async def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await original_request(self, *args, **kwargs)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
            # Closed (FIN) or reset (RST) as the request went out: depending on
            # timing, a server timing out an idle connection shows as either.
            if isinstance(error, aiohttp.ClientOSError) and getattr(error, "errno", None) not in RESET_ERRNOS:
                raise
            logger.debug("endpoint closed a kept-alive connection; the request is sent again")
            return await original_request(self, *args, **kwargs)

    session.__wrapped__ = original_session  # type: ignore[attr-defined]
    request.__wrapped__ = original_request  # type: ignore[attr-defined]
    config.session = session
    config.request = request
    return True
