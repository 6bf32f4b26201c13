"""Retention: conversations and hand-off cases older than
WAYPOINT_RETENTION_DAYS (default 30) are deleted, and what the channels kept
(message ids, encrypted chat addresses, seen ids) past its own short life.

    python -m jobs.retention            # once (make purge)
    python -m jobs.retention --every 3600   # scheduled; scripts/run.sh starts it

It works on the Rasa server's stores: the tracker store endpoints.yml
configures (SQLite by default, PostgreSQL in the scale-out configuration) and
the Rasa server's own tables (content.settings.state_url()). Logs only counts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import pathlib
import sys
from typing import Tuple

logger = logging.getLogger("jobs.retention")
ROOT = pathlib.Path(__file__).resolve().parents[1]


def retention_days() -> float:
    from content import settings

    return max(settings.get_float("WAYPOINT_RETENTION_DAYS"), 0.0)


def tracker_store(endpoints: pathlib.Path):
    from rasa.core.tracker_store import TrackerStore
    from rasa.shared.core.domain import Domain
    from rasa.utils.endpoints import read_endpoint_config

    config = read_endpoint_config(str(endpoints), "tracker_store")
    return TrackerStore.create(config, Domain.empty())


async def purge_once(endpoints: pathlib.Path, days: float) -> Tuple[int, int]:
    from channels.state import get_state
    from handoff import repository
    from plugins.tracker_store import ForgetMixin, unwrap

    inner = unwrap(tracker_store(endpoints))
    conversations = await inner.purge(days) if isinstance(inner, ForgetMixin) else 0
    cases = repository.from_settings()
    try:
        removed_cases = cases.purge_older_than(days)
    finally:
        cases.close()
    get_state().purge()
    logger.info(
        "retention: %d conversation(s) and %d hand-off case(s) older than %g days deleted",
        conversations,
        removed_cases,
        days,
    )
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
    from content import settings

    logging.basicConfig(level=settings.get("LOG_LEVEL"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(run(pathlib.Path(args.endpoints), args.every))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
