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
from typing import Any, Dict, Iterable, List, Optional, Tuple

ROOT = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RestClient:
    """Talks to a Rasa server's REST channel and token-guarded HTTP API."""

    url: str
    token: str

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as response:
            raw = response.read()
            return json.loads(raw) if raw else None

    def say(self, sender: str, text: str, metadata: Optional[Dict] = None, timeout: float = 30) -> List[Dict[str, Any]]:
        body: Dict[str, Any] = {"sender": sender, "message": text}
        if metadata:
            body["metadata"] = metadata
        return self.request("POST", "/webhooks/rest/webhook", body, timeout=timeout)

    def tracker(self, sender: str) -> Dict[str, Any]:
        return self.request("GET", f"/conversations/{sender}/tracker?token={self.token}")


class Waypoint(RestClient):
    def __init__(self, var_dir: pathlib.Path, extra_env: Optional[Dict[str, str]] = None):
        self.var = var_dir
        self.rasa_port, self.actions_port = free_port(), free_port()
        self.token = "test-token-" + os.urandom(6).hex()
        self.env = {
            **os.environ,
            "WAYPOINT_RASA_PORT": str(self.rasa_port),
            "WAYPOINT_ACTIONS_PORT": str(self.actions_port),
            "WAYPOINT_API_TOKEN": self.token,
            "WAYPOINT_VAR": str(var_dir),
            "WAYPOINT_TRACKER_DB": str(var_dir / "tracker.db"),
            "WAYPOINT_STATE_DB": str(var_dir / "waypoint.db"),
            **(extra_env or {}),
        }
        self.env.pop("WAYPOINT_ACTIONS_TOKEN", None)
        self.process: Optional[subprocess.Popen] = None
        self.log = var_dir / "run.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rasa_port}"

    def start(self, timeout: float = 240) -> "Waypoint":
        self.process = subprocess.Popen(
            ["bash", "scripts/run.sh"],
            cwd=ROOT,
            env=self.env,
            stdout=open(self.log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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


# -- Separate servers, for the scale-out test and the serving benchmark -----------
# The pieces `scripts/run.sh` starts together, started one by one (through
# scripts/env.sh, so with the same environment defaults) so that a test can run
# several Rasa servers against one action server and shared stores, and stop
# one of them on its own.


def _wait_http(url: str, process: subprocess.Popen, log: pathlib.Path, timeout: float) -> float:
    """Seconds until `url` answers 200; raises if the process dies or time runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited early:\n" + log.read_text(errors="replace")[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready in {timeout:.0f} s:\n" + log.read_text(errors="replace")[-3000:])


class _Process:
    """A server started in its own process group through scripts/env.sh."""

    name = "server"

    def __init__(self, var_dir: pathlib.Path, env: Optional[Dict[str, str]] = None):
        self.var = pathlib.Path(var_dir)
        self.var.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {**os.environ, "WAYPOINT_VAR": str(self.var), **(env or {})}
        self.process: Optional[subprocess.Popen] = None
        self.log = self.var / f"{self.name}-{self.port}.log"
        self.ready_seconds: Optional[float] = None

    def command(self) -> List[str]:  # pragma: no cover - per server
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def health_url(self) -> str:
        return self.url + "/"

    def spawn(self, prefix: str = "source scripts/env.sh && ") -> None:
        """The command in a new process group, its output in the log."""
        script = prefix + "exec " + " ".join(_quote(part) for part in self.command())
        self.process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=ROOT,
            env=self.env,
            stdout=open(self.log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, timeout: float = 240) -> "_Process":
        self.spawn()
        self.ready_seconds = _wait_http(self.health_url(), self.process, self.log, timeout)
        return self

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return bool(self.process) and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.alive():
            os.killpg(self.process.pid, sig)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                return self.process.wait()
        return self.process.returncode if self.process else 0


def _quote(part: str) -> str:
    import shlex

    return shlex.quote(part)


class ActionServer(_Process):
    """`python -m actions.server` on a free loopback port, with a new token."""

    name = "actions"

    def __init__(self, var_dir: pathlib.Path, env: Optional[Dict[str, str]] = None):
        super().__init__(var_dir, env)
        self.token = self.env.get("WAYPOINT_ACTIONS_TOKEN") or "actions-" + os.urandom(8).hex()
        self.env.update(
            {"WAYPOINT_ACTIONS_PORT": str(self.port), "WAYPOINT_ACTIONS_TOKEN": self.token, "SANIC_HOST": "127.0.0.1"}
        )
        if "WAYPOINT_STATE_DB" not in (env or {}):
            self.env["WAYPOINT_STATE_DB"] = str(self.var / "waypoint.db")

    def command(self) -> List[str]:
        return [".venv/bin/python", "-m", "actions.server"]

    def health_url(self) -> str:
        return self.url + "/health"

    @property
    def webhook(self) -> str:
        return self.url + "/webhook"


class RasaServer(RestClient, _Process):
    """`python -m plugins.launch run` (Rasa's `run` with Waypoint's plug-ins, as
    scripts/supervise.py starts it) with the given model and endpoints file on
    a free loopback port, with the HTTP API on behind a new token. The endpoints file may use
    ${VARIABLES}: WAYPOINT_ACTIONS_URL (unless `env` gives it, e.g. through a
    Balancer) and WAYPOINT_ACTIONS_TOKEN are set from `actions`, the rest comes
    from `env`."""

    name = "rasa"

    def __init__(
        self,
        var_dir: pathlib.Path,
        endpoints: pathlib.Path,
        actions: Optional[ActionServer] = None,
        model: pathlib.Path = ROOT / "models" / "waypoint.tar.gz",
        credentials: pathlib.Path = ROOT / "credentials.yml",
        env: Optional[Dict[str, str]] = None,
    ):
        super().__init__(var_dir, env)
        self.endpoints, self.model, self.credentials = (
            pathlib.Path(endpoints),
            pathlib.Path(model),
            pathlib.Path(credentials),
        )
        self.token = "api-" + os.urandom(8).hex()
        if actions is not None:
            self.env.update(
                {
                    "WAYPOINT_ACTIONS_URL": (env or {}).get("WAYPOINT_ACTIONS_URL") or actions.webhook,
                    "WAYPOINT_ACTIONS_TOKEN": actions.token,
                    "WAYPOINT_ACTIONS_PORT": str(actions.port),
                }
            )
        for key, name in (("WAYPOINT_TRACKER_DB", "tracker.db"), ("WAYPOINT_STATE_DB", "waypoint.db")):
            if key not in (env or {}):  # never the caller's (e.g. the developer's var/)
                self.env[key] = str(self.var / name)

    def command(self) -> List[str]:  # as scripts/supervise.py starts it: Waypoint's plug-ins, then `rasa run`
        return [
            ".venv/bin/python",
            "-m",
            "plugins.launch",
            "run",
            "--model",
            str(self.model),
            "--interface",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--credentials",
            str(self.credentials),
            "--endpoints",
            str(self.endpoints),
            "--enable-api",
            "--auth-token",
            self.token,
            "--log-file",
            str(self.var / f"rasa-{self.port}.rasa.log"),
        ]


def read_env_lines(text: str) -> Dict[str, str]:
    """KEY=value lines (scripts/ensure-services.sh start) as a dict."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


class Services:
    """Real PostgreSQL and Redis on loopback ports, through scripts/ensure-services.sh
    (installs them with apt-get when missing)."""

    def __init__(self) -> None:
        self.env: Dict[str, str] = {}

    def start(self, timeout: float = 900) -> "Services":
        result = subprocess.run(
            ["bash", "scripts/ensure-services.sh", "start"], cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError("scripts/ensure-services.sh start failed:\n" + result.stderr[-3000:])
        self.env = read_env_lines(result.stdout)
        return self

    @property
    def directory(self) -> str:
        return self.env.get("WAYPOINT_SERVICES_DIR", "")

    def stop(self) -> None:
        if self.directory:
            subprocess.run(
                ["bash", "scripts/ensure-services.sh", "stop", self.directory],
                cwd=ROOT,
                capture_output=True,
                timeout=120,
            )
            self.env = {}

    def pg_url(self) -> str:
        e = self.env
        return (
            f"postgresql://{e['WAYPOINT_PG_USER']}:{e['WAYPOINT_PG_PASSWORD']}@{e['WAYPOINT_PG_HOST']}:"
            f"{e['WAYPOINT_PG_PORT']}/{e['WAYPOINT_PG_DB']}"
        )


def recognised_questions(
    server: RestClient, content: Any, languages: Iterable[str], per_language: int = 12, min_words: int = 4
) -> Dict[str, List[Tuple[str, str]]]:
    """Per language, up to `per_language` (message, topic) pairs: one training
    example for each guide question (not a request, a crisis or the numbers, and
    no sign of danger, of a role, a child or someone else) whose answer does not
    wait for a country, that the
    server's model assigns to that topic and language (through /model/parse),
    so that a reply can be matched to the message it answers."""
    import yaml

    from content.lexicons import signals

    topics = {  # guide questions (ask_*), answered with their guide's text; not requests nor crises
        intent: topic
        for intent, topic in content.intent_topics().items()
        if intent.startswith("ask_")
        and topic != "help.helplines"
        and topic in content.guides
        and not content.guides[topic].country_dependent
    }
    found: Dict[str, List[Tuple[str, str]]] = {}
    for lang in languages:
        pairs: List[Tuple[str, str]] = []
        for path in sorted((ROOT / "data" / "nlu" / lang).glob("*.yml")):
            for block in yaml.safe_load(path.read_text(encoding="utf-8")).get("nlu") or []:
                topic = topics.get(block.get("intent"))
                if not topic or len(pairs) >= per_language or any(t == topic for _, t in pairs):
                    continue
                for line in (block.get("examples") or "").splitlines():
                    text = line.strip()[2:].strip() if line.strip().startswith("- ") else ""
                    if len(text.split()) < min_words or "[" in text:
                        continue
                    parsed = server.request("POST", f"/model/parse?token={server.token}", {"text": text})
                    language = (parsed.get("language_id") or {}).get("language", lang)
                    if (
                        parsed["intent"]["name"] == block["intent"]
                        and parsed["intent"]["confidence"] > 0.6
                        and language == lang
                        and not parsed.get("crisis")  # answered as a crisis or with the danger button
                        and not signals(text, lang)
                        & {"writer_in_danger", "practitioner_role", "minor_self", "reporter"}
                    ):
                        pairs.append((text, topic))
                        break
        found[lang] = pairs
    return found


# Debian's Chromium as the web chat tests and the screenshot script run it.
CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Balancer(_Process):
    """deploy/nginx.conf itself, on loopback: its upstream servers replaced by
    the given Rasa and action server ports, its two listening ports by free
    loopback ports (`port`: the public side, `actions_port`: the action
    servers' side). nginx comes from `scripts/ensure-services.sh install-balancer`."""

    name = "nginx"

    def __init__(self, var_dir: pathlib.Path, rasa_ports: List[int], action_ports: List[int]):
        import re

        super().__init__(var_dir)
        self.actions_port = free_port()
        conf = (ROOT / "deploy" / "nginx.conf").read_text()
        replacements = [
            (r"server rasa:5005([^;]*);", "\n".join(f"server 127.0.0.1:{p}\\1;" for p in rasa_ports)),
            (r"server actions:5055([^;]*);", "\n".join(f"server 127.0.0.1:{p}\\1;" for p in action_ports)),
            (r"listen 8080;", f"listen 127.0.0.1:{self.port};"),
            (r"listen 5055;", f"listen 127.0.0.1:{self.actions_port};"),
        ]
        for pattern, replacement in replacements:
            conf, count = re.subn(pattern, replacement, conf)
            if count != 1:
                raise ValueError(f"deploy/nginx.conf: expected one `{pattern}`, found {count}")
        self.conf = self.var / "nginx.conf"
        self.conf.write_text(conf)

    def command(self) -> List[str]:
        import shutil

        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        return [nginx, "-p", str(self.var), "-c", str(self.conf), "-g", f"daemon off; pid {self.var}/nginx.pid;"]

    def start(self, timeout: float = 60) -> "Balancer":
        subprocess.run(
            ["bash", "scripts/ensure-services.sh", "install-balancer"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=900,
        )
        self.spawn(prefix="")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # listening (the Rasa servers may not be up yet)
            if self.process.poll() is not None:
                raise RuntimeError("nginx exited:\n" + self.log.read_text(errors="replace")[-3000:])
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise TimeoutError("nginx did not listen:\n" + self.log.read_text(errors="replace")[-3000:])

    @property
    def actions_webhook(self) -> str:
        return f"http://127.0.0.1:{self.actions_port}/webhook"


class BalancedClient(RestClient):
    """The REST channel through the balancer's public port."""

    def __init__(self, balancer: Balancer, token: str = ""):
        self.url, self.token = balancer.url, token
