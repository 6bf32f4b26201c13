"""Runs Waypoint's processes on the embedded defaults and keeps them running
(``make run`` -> scripts/run.sh -> this).

- the action server (``python -m actions.server``), the Rasa server
  (``python -m plugins.launch run ...``) and the retention job
  (``python -m jobs.retention --every ...``);
- a process that exits is started again after a back-off (1, 2, 4 ... up to
  30 s), and the console says so; a second exit within a minute is reported
  plainly ("crashed twice in a minute"), and restarts go on;
- while the action server is down the Rasa server answers by itself
  (plugins/action_guard.py): crises get their numbers, everything else a kind
  message; nobody meets silence while it restarts;
- Ctrl-C (or SIGTERM) stops all three: SIGTERM, then SIGKILL after 15 s.

Logs of the servers go to $WAYPOINT_VAR (rasa.log, actions.log, retention.log).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional

BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
TWICE_WINDOW = 60.0


def say(text: str) -> None:
    print(f"[waypoint {time.strftime('%H:%M:%S')}] {text}", flush=True)


@dataclasses.dataclass
class Service:
    name: str
    command: List[str]
    log: str
    env: Dict[str, str]
    process: Optional[subprocess.Popen] = None
    exits: List[float] = dataclasses.field(default_factory=list)
    backoff: float = BACKOFF_START
    restart_at: float = 0.0
    started_at: float = 0.0

    def start(self) -> None:
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started_at = time.monotonic()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass


class Supervisor:
    def __init__(self, services: List[Service]) -> None:
        self.services = services
        self.stopping = False

    def handle_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def watch_once(self) -> None:
        now = time.monotonic()
        for service in self.services:
            process = service.process
            if process is not None and process.poll() is not None:
                code = process.returncode
                service.process = None
                service.exits = [t for t in service.exits if now - t < TWICE_WINDOW] + [now]
                if now - service.started_at > 2 * BACKOFF_MAX:
                    service.backoff = BACKOFF_START  # it had been running fine: start over
                if len(service.exits) >= 2:
                    say(
                        f"{service.name} crashed twice in a minute (exit code {code}); restarting in "
                        f"{service.backoff:.0f} s. See {service.log}."
                    )
                else:
                    say(f"{service.name} stopped (exit code {code}); restarting in {service.backoff:.0f} s.")
                service.restart_at = now + service.backoff
                service.backoff = min(service.backoff * 2, BACKOFF_MAX)
            if service.process is None and service.restart_at and now >= service.restart_at:
                service.restart_at = 0.0
                service.start()
                say(f"{service.name} started again.")

    def run(self, ready: Optional[List[str]] = None, banner: str = "") -> int:
        signal.signal(signal.SIGINT, self.handle_signal)
        signal.signal(signal.SIGTERM, self.handle_signal)
        for service in self.services:
            service.start()
        if ready and not self.wait_ready(ready):
            self.stop_all()
            return 1
        if banner:
            print(banner, flush=True)
        while not self.stopping:
            self.watch_once()
            time.sleep(0.5)
        self.stop_all()
        return 0

    def wait_ready(self, urls: List[str], timeout: float = 300.0) -> bool:
        deadline = time.monotonic() + timeout
        pending = list(urls)
        while pending and time.monotonic() < deadline and not self.stopping:
            self.watch_once()
            for url in list(pending):
                try:
                    with urllib.request.urlopen(url, timeout=2):
                        pending.remove(url)
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.5)
        if pending:
            say("the servers did not answer in time: " + ", ".join(pending))
        return not pending

    def stop_all(self) -> None:
        say("stopping Waypoint...")
        for service in self.services:
            service.stop(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for service in self.services:
            while service.process is not None and service.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            service.stop(signal.SIGKILL)


def main() -> int:
    sys.path.insert(0, os.getcwd())
    from content import settings

    env = dict(os.environ)
    var = str(settings.var_dir())
    python = sys.executable
    rasa_port = settings.get("WAYPOINT_RASA_PORT")
    actions_port = settings.get("WAYPOINT_ACTIONS_PORT")
    rasa = [
        python,
        "-m",
        "plugins.launch",
        "run",
        "--model",
        "models/waypoint.tar.gz",
        "--interface",
        "127.0.0.1",
        "--port",
        rasa_port,
        "--credentials",
        "credentials.yml",
        "--endpoints",
        "endpoints.yml",
    ]
    if settings.get("WAYPOINT_API_TOKEN"):
        rasa += ["--enable-api", "--auth-token", settings.get("WAYPOINT_API_TOKEN")]
    else:
        say("WAYPOINT_API_TOKEN is not set: Rasa's HTTP API stays off (channels still work).")
    services = [
        Service(
            "action server", [python, "-m", "actions.server"], f"{var}/actions.log", {**env, "SANIC_HOST": "127.0.0.1"}
        ),
        Service(
            "retention job",
            [python, "-m", "jobs.retention", "--every", settings.get("WAYPOINT_RETENTION_EVERY")],
            f"{var}/retention.log",
            env,
        ),
        Service("Rasa server", rasa, f"{var}/rasa.log", env),
    ]
    telegram = (
        "on (webhook /webhooks/telegram/webhook; make telegram-webhook URL=...)"
        if settings.get("TELEGRAM_BOT_TOKEN")
        else "off (TELEGRAM_BOT_TOKEN not set)"
    )
    banner = f"""
Waypoint is running.
  REST:      POST http://127.0.0.1:{rasa_port}/webhooks/rest/webhook  {{"sender": "me", "message": "hello"}}
  Web chat:  http://127.0.0.1:{rasa_port}/chat
  Telegram:  {telegram}
  Terminal:  make shell
  Logs:      {var}/rasa.log, {var}/actions.log
A process that stops is restarted. Press Ctrl-C to stop.
"""
    ready = [f"http://127.0.0.1:{rasa_port}/", f"http://127.0.0.1:{actions_port}/health"]
    return Supervisor(services).run(ready, banner)


if __name__ == "__main__":
    sys.exit(main())
