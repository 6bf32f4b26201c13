"""`make run` keeps Waypoint running (scripts/run.sh -> scripts/supervise.py).

Waypoint is started as `make run` starts it, on free ports (tests/servers.py's
Waypoint). The action server, found by its command line among the
supervisor's children, is killed: the supervisor says so on its console and
starts it again, and a message is then answered normally. Killed a second time
within a minute, the console says "crashed twice in a minute" (and it is
started again). Ctrl-C (SIGINT to the process group) stops every process."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional

import pytest

from content.loader import data_dir, load_content
from tests.servers import Waypoint

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())


@pytest.fixture(scope="module")
def waypoint(tmp_path_factory):
    server = Waypoint(tmp_path_factory.mktemp("supervised")).start()
    yield server
    if server.process.poll() is None:
        server.stop()


def children(parent: int) -> Dict[int, str]:
    """pid -> command line of the processes whose parent is `parent` (from /proc)."""
    found = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            state = stat.rsplit(")", 1)[1].split()[0]
            if ppid == parent and state != "Z":
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError, IndexError):
            continue
    return found


def running(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def action_server_pid(waypoint: Waypoint) -> Optional[int]:
    pids = [pid for pid, cmd in children(waypoint.process.pid).items() if "-m actions.server" in cmd]
    assert len(pids) <= 1, pids
    return pids[0] if pids else None


def console(waypoint: Waypoint) -> str:
    return waypoint.log.read_text(errors="replace")


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def actions_healthy(waypoint: Waypoint) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{waypoint.actions_port}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def kill_action_server(waypoint: Waypoint) -> int:
    pid = wait_for(lambda: action_server_pid(waypoint), 30, "the action server among the supervisor's children")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not running(pid), 10, "the action server to die")
    return pid


def answered_normally(waypoint: Waypoint, content, sender: str) -> List[Dict]:
    replies = waypoint.say(sender, "my boss took my passport and wont give it back")
    text = "\n".join(r.get("text") or "" for r in replies)
    assert content.guides["protect.documents"].text("en", "survivor")[:40] in text, text
    assert content.messages["degraded"]["en"] not in text
    return replies


def test_the_supervisor_runs_three_processes(waypoint):
    commands = list(children(waypoint.process.pid).values())
    assert any("-m actions.server" in c for c in commands)
    assert any("-m plugins.launch run" in c for c in commands)
    assert any("-m jobs.retention" in c for c in commands)
    assert "Waypoint is running" in console(waypoint)


def test_a_killed_action_server_is_started_again(waypoint, content):
    answered_normally(waypoint, content, "supervised-before")
    old = kill_action_server(waypoint)
    wait_for(
        lambda: re.search(r"action server stopped \(exit code -9\); restarting in \d+ s", console(waypoint)),
        15,
        "the console to say the action server stopped",
    )
    wait_for(lambda: "action server started again." in console(waypoint), 30, "the restart")
    new = wait_for(lambda: action_server_pid(waypoint), 30, "the new action server")
    assert new != old
    wait_for(lambda: actions_healthy(waypoint), 120, "the new action server to answer")
    answered_normally(waypoint, content, "supervised-after")
    assert "crashed twice in a minute" not in console(waypoint)


def test_killed_twice_in_a_minute_the_console_says_so_and_it_still_restarts(waypoint, content):
    before = console(waypoint).count("action server started again.")
    kill_action_server(waypoint)
    wait_for(lambda: console(waypoint).count("action server started again.") > before, 30, "a restart")
    kill_action_server(waypoint)  # the second exit within a minute
    wait_for(
        lambda: "action server crashed twice in a minute" in console(waypoint),
        15,
        "the console to say it crashed twice in a minute",
    )
    wait_for(lambda: console(waypoint).count("action server started again.") >= before + 2, 30, "the second restart")
    wait_for(lambda: actions_healthy(waypoint), 120, "the action server to answer again")
    answered_normally(waypoint, content, "supervised-after-twice")


def test_ctrl_c_stops_everything(waypoint):
    pids = list(children(waypoint.process.pid))
    assert len(pids) == 3
    os.killpg(waypoint.process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    code = waypoint.process.wait(timeout=60)
    assert code == 0
    assert "stopping Waypoint..." in console(waypoint)
    wait_for(lambda: not any(running(pid) for pid in pids), 30, "every process to stop")
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(waypoint.url + "/", timeout=2)
