"""Memory of the serving processes, and a 1 GB machine shown.

For each configuration, in the same run: the action server and the Rasa server
started as `make run` starts them, their resident memory (VmRSS, and the peak
VmHWM) once ready and after a load of recognised questions in every language,
the TensorFlow libraries mapped into the Rasa server, and where the Rasa
server's memory goes (/proc/<pid>/smaps, grouped by what is mapped).

- ``waypoint``: as it ships (plugins/lean.py on);
- ``waypoint, lean off``: WAYPOINT_LEAN=0 (Rasa imports every default component);
- ``stock Rasa``: the stock `rasa init` pipeline (bench/stock_config.yml, DIET)
  trained by bench.serving, with Rasa's own `rasa run`, when its model exists.

Then the 1 GB deployment (deploy/README.md, "A 1 GB machine"): both processes
inside one memory cgroup limited to 1 GiB (cgroup v1 or v2, as root), ten users
at once without pause: answered, latency, the cgroup's peak and OOM kills.

    .venv/bin/python -m bench.memory
"""

from __future__ import annotations

import asyncio
import collections
import os
import pathlib
import re
import statistics
import tempfile
import time
from typing import Dict, List, Tuple

from bench.common import LANGUAGES, ROOT, write_report
from tests.servers import ActionServer, RasaServer, recognised_questions

STOCK = ROOT / "bench" / "out" / "stock-full.tar.gz"
LOAD_MESSAGES = 240
CGROUP_LIMIT = 1024**3


def status(pid: int) -> Tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def tensorflow_libraries(pid: int) -> int:
    paths = {
        line.split()[-1]
        for line in pathlib.Path(f"/proc/{pid}/maps").read_text().splitlines()
        if "tensorflow" in line and "/" in line
    }
    return len(paths)


def smaps_breakdown(pid: int, top: int = 8) -> List[Tuple[str, float]]:
    """Resident MB by what is mapped: the Python heap and anonymous memory, and
    shared libraries grouped by the package they come from."""
    groups: Dict[str, float] = collections.Counter()
    current = "anonymous"
    for line in pathlib.Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            parts = line.split()
            path = parts[5] if len(parts) > 5 else ""
            if not path:
                current = "anonymous (Python objects, arrays)"
            elif path.startswith("["):
                current = path
            else:
                match = re.search(r"site-packages/([^/]+)", path)
                current = f"site-packages/{match.group(1)}" if match else pathlib.Path(path).name
        elif line.startswith("Rss:"):
            groups[current] += int(line.split()[1]) / 1024
    return sorted(groups.items(), key=lambda item: -item[1])[:top]


async def load(url: str, messages: List[str], users: int) -> Tuple[List[float], int]:
    import aiohttp

    latencies: List[float] = []
    answered = 0
    queue = list(messages)

    async def user(session, index: int) -> None:
        nonlocal answered
        sender = f"mem-{index}-{os.urandom(3).hex()}"
        while queue:
            text = queue.pop()
            started = time.monotonic()
            async with session.post(
                url + "/webhooks/rest/webhook",
                json={"sender": sender, "message": text},
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response:
                body = await response.json(content_type=None)
            latencies.append(time.monotonic() - started)
            answered += bool(body)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(user(session, i) for i in range(users)))
    return latencies, answered


def questions(server: RasaServer) -> List[str]:
    from content.loader import get_content

    pairs = recognised_questions(server, get_content(), LANGUAGES, per_language=12)
    flat = [text for lang in pairs for text, _ in pairs[lang]]
    return (flat * (LOAD_MESSAGES // max(1, len(flat)) + 1))[:LOAD_MESSAGES]


class Cgroup:
    """A memory cgroup (v2 if mounted as the unified hierarchy, else v1)."""

    def __init__(self, limit: int) -> None:
        name = f"waypoint-bench-{os.getpid()}"
        v2 = pathlib.Path("/sys/fs/cgroup/cgroup.controllers")
        if v2.exists() and "memory" in v2.read_text():
            self.path, self.v2 = pathlib.Path("/sys/fs/cgroup") / name, True
        else:
            self.path, self.v2 = pathlib.Path("/sys/fs/cgroup/memory") / name, False
        self.path.mkdir()
        (self.path / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(str(limit))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def leave(self, pid: int) -> None:
        (self.path.parent / "cgroup.procs").write_text(str(pid))

    def members(self) -> int:
        return len((self.path / "cgroup.procs").read_text().split())

    def peak_mb(self) -> float:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        path = self.path / name
        return int(path.read_text()) / 1024**2 if path.exists() else float("nan")

    def oom_kills(self) -> int:
        if self.v2:
            events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
            return int(events.get("oom_kill", 0))
        text = (self.path / "memory.oom_control").read_text()
        match = re.search(r"oom_kill (\d+)", text)
        return int(match.group(1)) if match else 0

    def remove(self) -> None:
        parent = self.path.parent / "cgroup.procs"
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                parent.write_text(pid)
            except OSError:
                pass
        try:
            self.path.rmdir()
        except OSError:
            pass


def measure(
    label: str, env: Dict[str, str], model: pathlib.Path = ROOT / "models" / "waypoint.tar.gz", stock: bool = False
) -> Dict:
    var = pathlib.Path(tempfile.mkdtemp(prefix="memory-"))
    actions = ActionServer(var / "actions", env).start()
    rasa = RasaServer(var / "rasa", ROOT / "endpoints.yml", actions, model=model, env=env)
    if stock:
        rasa.command = lambda: [
            ".venv/bin/rasa",
            "run",
            "--model",
            str(model),
            "--interface",
            "127.0.0.1",  # type: ignore[method-assign]
            "--port",
            str(rasa.port),
            "--endpoints",
            str(ROOT / "endpoints.yml"),
            "--enable-api",
            "--auth-token",
            rasa.token,
        ]
    started = time.monotonic()
    rasa.start()
    startup = time.monotonic() - started
    try:
        at_start = {"rasa": status(rasa.pid), "actions": status(actions.pid)}
        latencies, answered = asyncio.run(load(rasa.url, questions(rasa), users=4))
        after = {"rasa": status(rasa.pid), "actions": status(actions.pid)}
        return {
            "label": label,
            "startup": startup,
            "start": at_start,
            "after": after,
            "tf": tensorflow_libraries(rasa.pid),
            "smaps": smaps_breakdown(rasa.pid),
            "answered": answered,
            "sent": len(latencies),
        }
    finally:
        rasa.stop()
        actions.stop()


def one_gigabyte(env: Dict[str, str]) -> Dict:
    """Both servers started inside the cgroup (this process joins it while it
    starts them, so everything they ever allocate is charged to it, then leaves)."""
    var = pathlib.Path(tempfile.mkdtemp(prefix="memory-1gb-"))
    group = Cgroup(CGROUP_LIMIT)
    try:
        group.add(os.getpid())
        try:
            actions = ActionServer(var / "actions", env).start()
            rasa = RasaServer(var / "rasa", ROOT / "endpoints.yml", actions, env=env).start()
        finally:
            group.leave(os.getpid())
        try:
            texts = questions(rasa) + questions(rasa)
            latencies, answered = asyncio.run(load(rasa.url, texts, users=10))
            ordered = sorted(latencies)
            return {
                "sent": len(latencies),
                "answered": answered,
                "p50": 1000 * statistics.median(ordered),
                "p95": 1000 * ordered[int(0.95 * len(ordered)) - 1],
                "peak": group.peak_mb(),
                "oom": group.oom_kills(),
                "members": group.members(),
                "rasa": status(rasa.pid),
                "actions": status(actions.pid),
            }
        finally:
            rasa.stop()
            actions.stop()
    finally:
        group.remove()


def main() -> None:
    base = {"WAYPOINT_LEAN": "1"}
    runs = [measure("waypoint", base), measure("waypoint, lean off", {"WAYPOINT_LEAN": "0"})]
    if STOCK.exists():
        runs.append(
            measure("stock Rasa", {"WAYPOINT_LEAN": "0", "WAYPOINT_RASA_SPEEDUPS": "0"}, model=STOCK, stock=True)
        )
    rows = []
    for r in runs:
        rows.append(
            f"| {r['label']} | {r['start']['rasa'][0]:.0f} | **{r['after']['rasa'][0]:.0f}** | "
            f"{r['after']['rasa'][1]:.0f} | {r['start']['actions'][0]:.0f} | {r['after']['actions'][0]:.0f} | "
            f"**{r['after']['rasa'][0] + r['after']['actions'][0]:.0f}** | {r['tf']} | {r['startup']:.1f} s | "
            f"{r['answered']}/{r['sent']} |"
        )
    shipped = runs[0]
    body = [
        f"Resident memory in MB (VmRSS; peak VmHWM), once ready and after {LOAD_MESSAGES} recognised questions in every",
        "language from 4 users, each configuration started on its own in the same run. Aims (issue): the Rasa server",
        "at most 450 MB after load, both processes at most 700 MB, start-up no slower than 5 s.",
        "",
        "| configuration | Rasa at start | Rasa after load | Rasa peak | action server at start | action server after load |"
        " both after load | TensorFlow libraries mapped | start-up | answered |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        ""
        if STOCK.exists()
        else "(stock Rasa's model is not trained here: `python -m bench.serving --retrain-stock`.)",
        "",
        "## Where the Rasa server's memory goes (as shipped, after load)",
        "",
        "| mapped | resident MB |",
        "|---|---|",
        *[f"| {name} | {mb:.0f} |" for name, mb in shipped["smaps"]],
    ]
    try:
        gb = one_gigabyte(base)
        body += [
            "",
            "## A 1 GB machine",
            "",
            "Both processes in one memory cgroup limited to 1 GiB (deploy/README.md has the settings), ten users",
            "at once without pause:",
            "",
            "| messages | answered | p50 | p95 | cgroup peak | OOM kills | processes in the cgroup | Rasa after | "
            "action server after |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {gb['sent']} | {gb['answered']} | {gb['p50']:.0f} ms | {gb['p95']:.0f} ms | {gb['peak']:.0f} MB | "
            f"{gb['oom']} | {gb['members']} | {gb['rasa'][0]:.0f} MB | {gb['actions'][0]:.0f} MB |",
            "",
            "The cgroup's peak counts everything the two servers (and their worker processes) ever held,",
            "page cache of the files they read included; VmRSS is each process now.",
        ]
    except (OSError, PermissionError) as error:
        body += ["", f"## A 1 GB machine: not measured here (a memory cgroup needs root: {type(error).__name__})"]
    write_report(
        "memory", "Memory of the serving processes, and a 1 GB machine", ".venv/bin/python -m bench.memory", body
    )


if __name__ == "__main__":
    main()
