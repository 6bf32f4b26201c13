"""The Rasa server's entry point: Waypoint's plug-ins installed, then Rasa's
own command line, unchanged (``python -m plugins.launch run --model ...`` is
``rasa run --model ...``; scripts/run.sh and deploy/ use it).

One log line says which plug-ins are on. Rasa's ``train``, ``test`` and
``shell`` also run through here (make test, make shell).
"""

from __future__ import annotations

import logging
import sys
from typing import Dict, List, Optional

logger = logging.getLogger("plugins")


def install() -> Dict[str, bool]:
    """Every plug-in that patches Rasa, in order (the lean registry first: it
    must act before Rasa imports its components)."""
    from plugins import action_guard, lean, speedups

    on: Dict[str, bool] = {}
    on.update({f"lean.{k}": v for k, v in lean.install().items()})
    on.update({f"speedups.{k}": v for k, v in speedups.install().items()})
    on.update({f"action_guard.{k}": v for k, v in action_guard.install().items()})
    return on


def describe(on: Dict[str, bool]) -> str:
    active = ", ".join(k for k, v in on.items() if v) or "none"
    off = ", ".join(k for k, v in on.items() if not v)
    return f"Waypoint plug-ins on: {active}" + (f"; off: {off}" if off else "")


def main(argv: Optional[List[str]] = None) -> None:
    on = install()
    line = describe(on)
    print(line, file=sys.stderr, flush=True)  # Rasa configures logging only once its command line runs
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa"] + list(sys.argv[1:] if argv is None else argv)
    rasa_main()


if __name__ == "__main__":
    main()
