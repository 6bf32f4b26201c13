"""Starts Waypoint the way `make run` does (scripts/run.sh) on free loopback
ports, for the end-to-end tests, and talks to its REST channel."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Waypoint:
    def __init__(self, var_dir: pathlib.Path, extra_env: Optional[Dict[str, str]] = None):
        self.var = var_dir
        self.rasa_port, self.actions_port = free_port(), free_port()
        self.token = "test-token-" + os.urandom(6).hex()
        self.env = {**os.environ, "WAYPOINT_RASA_PORT": str(self.rasa_port),
                    "WAYPOINT_ACTIONS_PORT": str(self.actions_port), "WAYPOINT_API_TOKEN": self.token,
                    "WAYPOINT_VAR": str(var_dir), "WAYPOINT_TRACKER_DB": str(var_dir / "tracker.db"),
                    "WAYPOINT_STATE_DB": str(var_dir / "waypoint.db"), **(extra_env or {})}
        self.env.pop("WAYPOINT_ACTIONS_TOKEN", None)
        self.process: Optional[subprocess.Popen] = None
        self.log = var_dir / "run.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    def start(self, timeout: float = 240) -> "Waypoint":
        self.process = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=self.env,
                                        stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("Waypoint exited early:\n" + self.log.read_text()[-3000:])
            if "Waypoint is running" in self.log.read_text():
                return self
            time.sleep(1)
        raise TimeoutError("Waypoint did not start:\n" + self.log.read_text()[-3000:])

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                return self.process.wait()
        return self.process.returncode if self.process else 0

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as response:
            raw = response.read()
            return json.loads(raw) if raw else None

    def say(self, sender: str, text: str, metadata: Optional[Dict] = None) -> List[Dict[str, Any]]:
        body = {"sender": sender, "message": text}
        if metadata:
            body["metadata"] = metadata
        return self.request("POST", "/webhooks/rest/webhook", body)

    def tracker(self, sender: str) -> Dict[str, Any]:
        return self.request("GET", f"/conversations/{sender}/tracker?token={self.token}")
