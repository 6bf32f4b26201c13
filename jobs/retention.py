"""Retention: conversations and hand-off cases older than
WAYPOINT_RETENTION_DAYS (default 30) are deleted.

    python -m channels.retention            # once (make purge)
    python -m channels.retention --every 3600   # scheduled; scripts/run.sh starts it

The tracker store is the one endpoints.yml configures (SQLite by default,
PostgreSQL in the scale-out configuration). Logs only counts.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import pathlib
import sys
from typing import Tuple

logger = logging.getLogger("channels.retention")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def retention_days() -> float:
    try:
        days = float(os.environ.get("WAYPOINT_RETENTION_DAYS", "30"))
    except ValueError:
        logger.error("WAYPOINT_RETENTION_DAYS is not a number; using 30")
        return 30.0
    return max(days, 0.0)


def tracker_store(endpoints: pathlib.Path):
    from rasa.core.tracker_store import TrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.utils.endpoints import read_endpoint_config

    config = read_endpoint_config(str(endpoints), "tracker_store")
    return TrackerStore.create(config, Domain.empty())


async def purge_once(endpoints: pathlib.Path, days: float) -> Tuple[int, int]:
    from actions import store as cases
    from channels.tracker_store import ForgetMixin, unwrap

    inner = unwrap(tracker_store(endpoints))
    conversations = await inner.purge(days) if isinstance(inner, ForgetMixin) else 0
    removed_cases = cases.purge_older_than(days)
    logger.info("retention: %d conversation(s) and %d hand-off case(s) older than %g days deleted",
                conversations, removed_cases, days)
    return conversations, removed_cases


async def run(endpoints: pathlib.Path, every: float) -> None:
    while True:
        try:
            await purge_once(endpoints, retention_days())
        except Exception as error:  # noqa: BLE001 - the schedule must survive one failed run
            logger.error("retention run failed: %s", type(error).__name__)
        if not every:
            return
        await asyncio.sleep(every)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoints", default=str(ROOT / "endpoints.yml"))
    parser.add_argument("--every", type=float, default=0.0, help="seconds between runs; 0 = once")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(pathlib.Path(args.endpoints), args.every))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
