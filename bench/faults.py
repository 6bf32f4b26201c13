"""Faults: what a person in danger gets when the action server hangs or dies.

The two servers start as `make run` starts them (embedded defaults). For every
language of the registry, an emergency message and an ordinary question (each
as the language's training data writes it) are sent:

1. healthy: the baseline, in the same run;
2. action server frozen (SIGSTOP to its process group: a hung process or an
   overloaded machine): the first message meets the deadline
   (WAYPOINT_ACTION_TIMEOUT_SECONDS), later ones the open circuit breaker;
3. action server resumed (SIGCONT): how long until answers are normal again;
4. action server killed (SIGKILL), then started again on the same port.

For each: seconds to the reply, whether the reply holds a verified number
(emergencies), whether it is a real answer or the Rasa server's own degraded
one, and whether any message went unanswered. The issue's aims: with the
action server frozen or dead an emergency gets a number within 10 s (aim 2),
an ordinary message a kind answer within 10 s, the next message after it
returns is answered normally, nothing is lost.

    .venv/bin/python -m bench.faults
"""

from __future__ import annotations

import os
import pathlib
import signal
import statistics
import tempfile
import time
from typing import Any, Dict, List, Tuple

from bench.common import LANGUAGES, ROOT, write_report
from content.helplines import all_numbers
from content.loader import get_content
from content.nlu_files import sample
from content.settings import get_float
from tests.servers import ActionServer, RasaServer

EMERGENCY, ORDINARY = "report_emergency", "ask_protect_documents"


def _degraded_texts() -> List[str]:
    content = get_content()
    return [t for key in ("degraded", "degraded_after_crisis") for t in content.messages[key].values()]


class Run:
    def __init__(self) -> None:
        self.var = pathlib.Path(tempfile.mkdtemp(prefix="faults-"))
        self.actions = ActionServer(self.var / "actions").start()
        self.rasa = RasaServer(self.var / "rasa", ROOT / "endpoints.yml", self.actions).start()
        self.numbers = [n for n in all_numbers(get_content().helplines) if len(n) >= 3]
        self.degraded = _degraded_texts()
        self.sent = 0
        self.unanswered = 0

    def say(self, lang: str, intent: str, label: str) -> Dict[str, Any]:
        text = sample(lang, intent) or sample(lang, "greet") or "help"
        sender = f"faults-{label}-{lang}-{os.urandom(3).hex()}"
        started = time.monotonic()
        try:
            messages = self.rasa.say(sender, text, metadata={"language_hint": lang}, timeout=60)
        except Exception as error:  # noqa: BLE001 - an unanswered message is a result here
            messages = []
            print(f"{label} {lang}: no answer ({type(error).__name__})")
        seconds = time.monotonic() - started
        body = "\n".join(m.get("text") or "" for m in messages)
        self.sent += 1
        self.unanswered += not body.strip()
        return {
            "seconds": seconds,
            "answered": bool(body.strip()),
            "number": any(n in body for n in self.numbers),
            "degraded": any(d and d in body for d in self.degraded),
        }

    def round(self, label: str) -> Dict[str, List[Dict[str, Any]]]:
        out: Dict[str, List[Dict[str, Any]]] = {"emergency": [], "ordinary": []}
        for lang in LANGUAGES:
            out["emergency"].append(self.say(lang, EMERGENCY, label))
            out["ordinary"].append(self.say(lang, ORDINARY, label))
        return out

    def signal_actions(self, sig: int) -> None:
        os.killpg(self.actions.pid, sig)

    def until_normal(self, limit: float = 90.0) -> Tuple[float, int]:
        """Seconds until an ordinary question gets a real answer again, and how
        many degraded answers came meanwhile (one question a second)."""
        started = time.monotonic()
        degraded = 0
        while time.monotonic() - started < limit:
            result = self.say(LANGUAGES[0], ORDINARY, "recovery")
            if result["answered"] and not result["degraded"]:
                return time.monotonic() - started, degraded
            degraded += 1
            time.sleep(1)
        return float("nan"), degraded

    def stop(self) -> None:
        for process in (self.rasa, self.actions):
            try:
                process.stop()
            except Exception:  # noqa: BLE001
                pass


def row(label: str, results: Dict[str, List[Dict[str, Any]]]) -> str:
    e, o = results["emergency"], results["ordinary"]
    return (
        f"| {label} | {max(r['seconds'] for r in e):.1f} s | {statistics.median(r['seconds'] for r in e):.2f} s | "
        f"{sum(r['number'] for r in e)}/{len(e)} | {max(r['seconds'] for r in o):.1f} s | "
        f"{sum(r['answered'] for r in o)}/{len(o)} | {sum(r['degraded'] for r in e + o)} |"
    )


def faults_table() -> List[str]:
    """The table of every fault, as docs/security.md has it (one copy)."""
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    section = text.split("## When a part fails", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def main() -> None:
    run = Run()
    try:
        healthy = run.round("healthy")
        run.signal_actions(signal.SIGSTOP)
        frozen = run.round("frozen")
        run.signal_actions(signal.SIGCONT)
        frozen_recovery, frozen_degraded = run.until_normal()
        run.signal_actions(signal.SIGKILL)
        run.actions.process.wait(timeout=30)
        killed = run.round("killed")
        restarted_at = time.monotonic()
        run.actions.start()
        restart_seconds = time.monotonic() - restarted_at
        killed_recovery, killed_degraded = run.until_normal()
        after = run.round("after")
    finally:
        run.stop()
    deadline = get_float("WAYPOINT_ACTION_TIMEOUT_SECONDS")
    body = [
        f"One emergency message and one ordinary question in each of the {len(LANGUAGES)} languages per row, in",
        f"this order, with the servers started as `make run` starts them; the action server's deadline is {deadline:g} s",
        "(WAYPOINT_ACTION_TIMEOUT_SECONDS). 'Degraded' counts replies the Rasa server wrote itself",
        "(plugins/action_guard.py); a number is any verified number of data/helplines.yml in the reply.",
        "",
        "| action server | emergency: slowest reply | emergency: median | emergency with a number | ordinary: slowest |"
        " ordinary answered | degraded replies |",
        "|---|---|---|---|---|---|---|",
        row("healthy (baseline)", healthy),
        row("frozen (SIGSTOP)", frozen),
        row("killed (SIGKILL)", killed),
        row("back (after both)", after),
        "",
        f"After SIGCONT, normal answers again after {frozen_recovery:.1f} s ({frozen_degraded} degraded answers to one",
        "question a second meanwhile: the breaker waits WAYPOINT_BREAKER_RESET_SECONDS before trying again). After the",
        f"kill, the action server took {restart_seconds:.1f} s to start again and answers were normal {killed_recovery:.1f} s",
        f"after it began starting ({killed_degraded} degraded answers meanwhile).",
        "",
        f"Messages sent: {run.sent}; unanswered: {run.unanswered}.",
        "",
        "Under `make run` a killed action server is started again by scripts/supervise.py (tests/test_supervision.py);",
        "here the benchmark starts it itself so that the time it takes is measured on its own.",
        "",
        "## Every fault",
        "",
        "The other faults are exercised by the tests named in the last column (real PostgreSQL, Redis, nginx and a",
        "filled tmpfs); the table is docs/security.md's.",
        "",
    ] + faults_table()
    write_report("faults", "Faults: a frozen or dead action server", ".venv/bin/python -m bench.faults", body)


if __name__ == "__main__":
    main()
