"""Waypoint's plug-ins to the Rasa 3.6 server: the tracker store that forgets
and loads only recent turns, the Redis lock store, the per-message speed-ups,
the action guard (deadlines, a circuit breaker, answers when the action server
fails) and the lean component registry (no TensorFlow). ``plugins.launch`` is
the Rasa server's entry point: it installs the patches, says in one log line
which are on, then runs Rasa's own command line.

Every patch replaces one function of Rasa only when that function's source is
the one it was written against (a hash of it, :func:`source_matches`), each on
its own: another Rasa version keeps its own code for whatever changed, with a
warning naming the patch.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from typing import Any

logger = logging.getLogger(__name__)


def source_hash(function: Any) -> str:
    try:
        return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:16]
    except (OSError, TypeError):
        return ""


def source_matches(function: Any, expected: str, patch: str) -> bool:
    """True when ``function`` is the code ``patch`` was written for."""
    found = source_hash(getattr(function, "__func__", function))
    if found != expected:
        logger.warning(
            "Rasa's %s is not the version %s was written for; Rasa's own code stays",
            getattr(function, "__qualname__", function),
            patch,
        )
        return False
    return True
