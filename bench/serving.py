"""Serving: latency and throughput through the REST channel with the action
server, latency against conversation length, start-up, memory, training time,
and a load test of interleaved conversations on two servers sharing PostgreSQL
and Redis; side by side in the same run with stock Rasa (bench/stock_config.yml
trained on the same data, domain and rules, Rasa's own REST channel and SQL
tracker store).

    .venv/bin/python -m bench.serving               # trains the stock model if missing
    .venv/bin/python -m bench.serving --quick       # fewer messages: a smoke run
    .venv/bin/python -m bench.serving --retrain-stock

Everything listens on 127.0.0.1 only; PostgreSQL and Redis come from
scripts/ensure-services.sh. With py-spy on PATH (or WAYPOINT_PYSPY=/path/to/py-spy)
the Waypoint server is profiled during the 10-user run. Wall-clock numbers
depend on the machine and on whatever else runs on it: compare the ratios,
measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import pathlib
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bench.common import LANGUAGES, ROOT, write_report
from content.nlu_files import sample
from tests.servers import ActionServer, Balancer, RasaServer, Services, recognised_questions

STOCK_DIR = ROOT / "bench" / "out"
STOCK = STOCK_DIR / "stock-full.tar.gz"
OURS = ROOT / "models" / "waypoint.tar.gz"
STOCK_ENDPOINTS = """action_endpoint:
  url: ${WAYPOINT_ACTIONS_URL}
  token: ${WAYPOINT_ACTIONS_TOKEN}
tracker_store:
  type: SQL
  dialect: sqlite
  db: ${WAYPOINT_TRACKER_DB}
"""
LEVELS = (1, 10, 50)


# -- small helpers ------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered))) - 1))]


def median_ms(values: Sequence[float]) -> float:
    return 1000 * statistics.median(values) if values else float("nan")


def peak_rss_mb(pid: Optional[int]) -> Tuple[float, float]:
    """(peak, current) resident memory of a process, from /proc (MB)."""
    fields = {}
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    except OSError:
        return float("nan"), float("nan")
    kb = lambda key: float(fields.get(key, "0 kB").split()[0])  # noqa: E731
    return kb("VmHWM") / 1024, kb("VmRSS") / 1024


def pyspy() -> Optional[str]:
    return os.environ.get("WAYPOINT_PYSPY") or shutil.which("py-spy")


def train(out: pathlib.Path, name: str, config: str) -> float:
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "rasa"),
            "train",
            "--config",
            config,
            "--out",
            str(out),
            "--fixed-model-name",
            name,
            "--force",
        ],
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.monotonic() - started


# -- the client ---------------------------------------------------------------


class Client:
    """REST channel client (aiohttp), one connection pool per server."""

    def __init__(self, session, url: str):
        self.session, self.url = session, url + "/webhooks/rest/webhook"

    async def say(self, sender: str, text: str) -> Tuple[float, Optional[list]]:
        started = time.perf_counter()
        try:
            async with self.session.post(self.url, json={"sender": sender, "message": text}) as response:
                body = await response.json(content_type=None) if response.status == 200 else None
        except Exception:  # noqa: BLE001 - counted as a lost message
            body = None
        return time.perf_counter() - started, body


async def closed_loop(urls: List[str], users: int, per_user: int, scripts: List[List[str]], tag: str) -> Dict:
    """`users` simulated people, each sending its next message as soon as the
    previous one is answered; a new conversation every len(script) messages;
    with several servers, each message to the next server in turn."""
    import aiohttp

    latencies: List[float] = []
    failed = 0

    async def person(session, index: int) -> None:
        nonlocal failed
        clients, script = [Client(session, url) for url in urls], scripts[index % len(scripts)]
        for n in range(per_user):
            client = clients[(index + n) % len(clients)]
            seconds, body = await client.say(f"{tag}-u{index}-c{n // len(script)}", script[n % len(script)])
            latencies.append(seconds)
            failed += body is None

    connector = aiohttp.TCPConnector(limit=users + 5)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(person(session, i) for i in range(users)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "wall": wall, "failed": failed}


async def one_conversation(
    url: str, sender: str, messages: List[str], control: Optional[str] = None, control_from: int = 0
) -> Tuple[List[float], List[float]]:
    """Turn latencies of one long conversation; from turn `control_from` on, each
    turn is followed by a turn of a fresh conversation `control` (same moment,
    same load: the drift-free baseline)."""
    import aiohttp

    long_turns: List[float] = []
    fresh_turns: List[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        client = Client(session, url)
        for n, text in enumerate(messages):
            seconds, _ = await client.say(sender, text)
            long_turns.append(seconds)
            if control and n >= control_from:
                seconds, _ = await client.say(control, messages[n - control_from])
                fresh_turns.append(seconds)
    return long_turns, fresh_turns


# -- the tracker store alone -----------------------------------------------------


def store_turns(services: Optional[Services], turns: int) -> List[str]:
    """One turn's tracker load and save, in this process (no server): Rasa's
    SQLTrackerStore against Waypoint's, at the start of a conversation and
    after `turns` turns. Rasa's stores are measured first, then plugins/speedups.py
    is installed in this process (as plugins.launch does at server start) for
    Waypoint's."""
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, BotUttered, SessionStarted, SlotSet, UserUttered

    domain = Domain.load(str(ROOT / "domain.yml"))
    folder = pathlib.Path(tempfile.mkdtemp(prefix="waypoint-store-"))
    variants = [
        ("Rasa's SQLTrackerStore, SQLite", "rasa", "sqlite"),
        ("Rasa's SQLTrackerStore, PostgreSQL", "rasa", "pg"),
        ("Waypoint's store, SQLite", "waypoint", "sqlite"),
        ("Waypoint's store, PostgreSQL", "waypoint", "pg"),
    ]
    rows = []
    for label, kind, db in variants:
        if db == "pg" and not services:
            continue
        if db == "sqlite":
            settings = {"dialect": "sqlite", "db": str(folder / f"{kind}.db")}
        else:
            e = services.env
            settings = {
                "dialect": "postgresql",
                "host": e["WAYPOINT_PG_HOST"],
                "port": e["WAYPOINT_PG_PORT"],
                "db": e["WAYPOINT_PG_DB"],
                "username": e["WAYPOINT_PG_USER"],
                "password": e["WAYPOINT_PG_PASSWORD"],
            }
        if kind == "rasa":
            from rasa.core.tracker_store import SQLTrackerStore as cls
        else:
            from plugins import speedups
            from plugins.tracker_store import WaypointSQLTrackerStore as cls

            speedups.install()
        store = cls(domain, **settings)
        sender = f"store-bench-{kind}-{db}-{os.getpid()}"

        async def run(store: Any = store, sender: str = sender) -> List[float]:
            seconds = []
            tracker = await store.get_or_create_tracker(sender, append_action_listen=False)
            for event in (ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen")):
                tracker.update(event, domain)
            await store.save(tracker)
            for n in range(turns):
                started = time.perf_counter()
                tracker = await store.retrieve(sender)
                for event in (
                    UserUttered(f"message {n}", {"name": "greet", "confidence": 1.0}),
                    SlotSet("language", "en"),
                    ActionExecuted("action_answer_topic"),
                    BotUttered("an answer"),
                    SlotSet("topic", "protect.documents"),
                    ActionExecuted("action_listen"),
                ):
                    tracker.update(event, domain)
                await store.save(tracker)
                seconds.append(time.perf_counter() - started)
            return seconds

        seconds = asyncio.run(run())
        rows.append(
            f"| {label} | {median_ms(seconds[:20]):.1f} | {median_ms(seconds[-20:]):.1f} | "
            f"{pct(seconds[-20:], 95):.1f} | **{statistics.median(seconds[-20:]) / statistics.median(seconds[:20]):.1f}** |"
        )
    shutil.rmtree(folder, ignore_errors=True)
    return rows


# -- the run ------------------------------------------------------------------


class Run:
    def __init__(self, args):
        self.args = args
        self.var = pathlib.Path(tempfile.mkdtemp(prefix="waypoint-bench-"))
        self.services: Optional[Services] = None
        self.actions: Optional[ActionServer] = None
        self.servers: Dict[str, RasaServer] = {}
        self.notes: List[str] = []
        self.first_messages: Dict[str, Dict[str, float]] = {}
        self.balancer: Optional[Balancer] = None

    def start(self) -> None:
        from content.loader import get_content

        self.content = get_content()
        try:
            self.services = Services().start()
        except Exception as error:  # noqa: BLE001 - the PostgreSQL rows are then left out
            self.notes.append(f"PostgreSQL/Redis not started ({type(error).__name__}); their rows are missing.")
            self.services = None
        env = dict(self.services.env) if self.services else {}
        env["LOG_LEVEL"] = "WARNING"
        self.actions = ActionServer(self.var / "actions", env).start()
        whole = self.var / "endpoints.whole.yml"
        whole.write_text(re.sub(r"(?m)^(\s+history_turns:).*$", r"\1 0", (ROOT / "endpoints.yml").read_text()))
        stock_endpoints = self.var / "endpoints.stock.yml"
        stock_endpoints.write_text(STOCK_ENDPOINTS)
        stock_credentials = self.var / "credentials.stock.yml"
        stock_credentials.write_text("rest:\n")
        plan = [
            ("waypoint", ROOT / "endpoints.yml", OURS, ROOT / "credentials.yml"),
            ("stock", stock_endpoints, STOCK, stock_credentials),
            ("waypoint-whole", whole, OURS, ROOT / "credentials.yml"),
            ("waypoint-nofix", ROOT / "endpoints.yml", OURS, ROOT / "credentials.yml"),
        ]
        if self.args.without_stock:
            plan = [entry for entry in plan if entry[0] != "stock"]
            self.notes.append(
                "Stock Rasa left out of this run (--without-stock): no comparison. The last run beside stock Rasa "
                "(five languages, before the crisis and conversation work) is this report at commit 66d3baa: "
                "Waypoint 5.1x stock's throughput at 10 users then."
            )
        if self.services:
            scale = ROOT / "deploy" / "endpoints.scale.yml"
            plan[1:1] = [
                ("waypoint-pg", scale, OURS, ROOT / "credentials.yml"),
                ("waypoint-pg-2", scale, OURS, ROOT / "credentials.yml"),
            ]
        for name, endpoints, model, credentials in plan:  # one at a time: start-up is measured alone
            extra = {"WAYPOINT_RASA_SPEEDUPS": "0"} if name == "waypoint-nofix" else {}
            # The embedded-defaults servers run as `make run` does: no Redis settings
            # (with them, the hand-off relay and Telegram share state through Redis).
            own = (
                env
                if endpoints == ROOT / "deploy" / "endpoints.scale.yml"
                else {k: v for k, v in env.items() if not k.startswith("WAYPOINT_REDIS_")}
            )
            self.servers[name] = RasaServer(
                self.var / name, endpoints, self.actions, model=model, credentials=credentials, env={**own, **extra}
            ).start()
            self.first_messages[name] = asyncio.run(self.first_message_per_language(self.servers[name].url))
        if "waypoint-pg-2" in self.servers:
            try:  # deploy/nginx.conf in front of the two PostgreSQL servers
                self.balancer = Balancer(
                    self.var / "nginx",
                    [self.servers[n].port for n in ("waypoint-pg", "waypoint-pg-2")],
                    [self.actions.port],
                ).start()
            except Exception as error:  # noqa: BLE001 - then the client alternates between them itself
                self.notes.append(
                    f"nginx not started ({type(error).__name__}): the client alternated between the two servers itself."
                )

    FIRST_INTENT = "ask_protect_documents"  # "my boss took my passport", as each language's data asks it

    async def first_message_per_language(self, url: str) -> Dict[str, float]:
        """Seconds for the first message in each language after the server
        started (a new conversation each): parts loaded on first use show here."""
        import aiohttp

        seconds = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            client = Client(session, url)
            for lang in LANGUAGES:
                seconds[lang], _ = await client.say(f"first-{lang}", sample(lang, self.FIRST_INTENT) or lang)
        return seconds

    def urls(self, name: str) -> List[str]:
        """Where a name's messages go: the balancer for the pair when it runs."""
        if name == "waypoint-2x" and self.balancer:
            return [self.balancer.url]
        return [server.url for server in self.group(name)]

    def group(self, name: str) -> List[RasaServer]:
        """The servers a name stands for: one, or both PostgreSQL servers."""
        if name == "waypoint-2x":
            return (
                [self.servers[n] for n in ("waypoint-pg", "waypoint-pg-2") if n in self.servers][:2]
                if "waypoint-pg-2" in self.servers
                else []
            )
        return [self.servers[name]] if name in self.servers else []

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self.balancer:
            self.balancer.stop()
        if self.actions:
            self.actions.stop()
        if self.services:
            self.services.stop()
        shutil.rmtree(self.var, ignore_errors=True)

    # conversations: per language a greeting, topic questions, thanks, goodbye
    def scripts(self) -> List[List[str]]:
        questions = recognised_questions(self.servers["waypoint"], self.content, LANGUAGES, per_language=10)
        self.questions = questions
        return [
            [sample(lang, "greet") or lang]
            + [text for text, _ in questions[lang][:3]]
            + [sample(lang, "thank") or lang]
            + [questions[lang][3][0]]
            for lang in LANGUAGES
            if len(questions[lang]) >= 4
        ]

    def throughput(self, scripts: List[List[str]]) -> Tuple[List[str], Dict]:
        total = 30 if self.args.quick else 150
        rounds = 1 if self.args.quick else 2
        names = [n for n in ("waypoint", "waypoint-pg", "waypoint-2x", "waypoint-nofix", "stock") if self.group(n)]
        results: Dict[Tuple[str, int], Dict] = collections.defaultdict(
            lambda: {"latencies": [], "wall": 0.0, "failed": 0}
        )
        for name in names:  # warm-up: every language on every server (see first_messages)
            asyncio.run(closed_loop(self.urls(name), len(scripts), len(scripts[0]), scripts, f"warm-{name}"))
        profile = None
        for r in range(rounds):
            for level in LEVELS:
                order = names if r % 2 == 0 else list(reversed(names))
                for name in order:
                    if name == "waypoint-nofix" and level == 50:
                        continue  # the ablation at 1 and 10 users is enough
                    per_user = max(len(scripts[0]), total // level)
                    if name == "waypoint" and level == 10 and r == 0:
                        profile = self.start_profile(self.servers[name])
                    outcome = asyncio.run(
                        closed_loop(self.urls(name), level, per_user, scripts, f"tp{r}-{name}-{level}")
                    )
                    if profile:
                        self.stop_profile(profile)
                        profile = None
                    slot = results[(name, level)]
                    slot["latencies"] += outcome["latencies"]
                    slot["wall"] += outcome["wall"]
                    slot["failed"] += outcome["failed"]
        label = {
            "waypoint": "Waypoint (SQLite)",
            "waypoint-pg": "Waypoint (PostgreSQL + Redis)",
            "waypoint-2x": "Waypoint, 2 servers behind nginx (PostgreSQL + Redis)",
            "waypoint-nofix": "Waypoint (SQLite) without plugins/speedups.py",
            "stock": "stock Rasa",
        }
        rows = []
        for level in LEVELS:
            stock = results.get(("stock", level))
            stock_tp = len(stock["latencies"]) / stock["wall"] if stock and stock["wall"] else float("nan")
            for name in names:
                if (name, level) not in results:
                    continue
                res = results[(name, level)]
                tp = len(res["latencies"]) / res["wall"] if res["wall"] else float("nan")
                rows.append(
                    f"| {level} | {label[name]} | {len(res['latencies'])} | {median_ms(res['latencies']):.0f} | "
                    f"{pct(res['latencies'], 95):.0f} | {tp:.1f} | "
                    f"{'' if name == 'stock' else ('n/a' if stock_tp != stock_tp else f'{tp / stock_tp:.2f}x')} | {res['failed']} |"
                )
        return rows, results

    def length(self) -> List[str]:
        turns = 100 if self.args.quick else 300
        script = [text for pairs in (self.questions["en"],) for text, _ in pairs] + ["hello", "thank you", "ok"]
        messages = [script[n % len(script)] for n in range(turns)]
        rows = []
        label = {
            "waypoint": "Waypoint, SQLite (last 10 turns loaded)",
            "waypoint-pg": "Waypoint, PostgreSQL (last 10 turns loaded)",
            "waypoint-whole": "Waypoint, SQLite, whole session loaded (`history_turns: 0`)",
            "stock": "stock Rasa (SQL tracker store, SQLite)",
        }
        for name in ("waypoint", "waypoint-pg", "waypoint-whole", "stock"):
            if name not in self.servers:
                continue
            long_turns, fresh = asyncio.run(
                one_conversation(
                    self.servers[name].url,
                    f"len-{name}",
                    messages,
                    control=f"len-{name}-fresh",
                    control_from=turns - 20,
                )
            )
            first, last = long_turns[:20], long_turns[-20:]
            self.turns = turns
            paired = statistics.median(
                a / b for a, b in zip(last, fresh, strict=False)
            )  # each turn against the one right after
            rows.append(
                f"| {label[name]} | {median_ms(first):.0f} | {median_ms(last):.0f} | {pct(last, 95):.0f} | "
                f"**{statistics.median(last) / statistics.median(first):.2f}** | {median_ms(fresh):.0f} | "
                f"**{paired:.2f}** |"
            )
        return rows

    def load_test(self) -> List[str]:
        """Interleaved conversations, each message to the next server in turn,
        each reply checked against its message, the stored order checked."""
        rows = []
        targets = [("one server, SQLite", [self.servers["waypoint"]], [self.servers["waypoint"].url], None)]
        if self.group("waypoint-2x"):
            way = "through nginx" if self.balancer else "alternately"
            targets.append(
                (f"two servers ({way}), PostgreSQL + Redis", self.group("waypoint-2x"), self.urls("waypoint-2x"), "pg")
            )
        conversations = 10 if self.args.quick else 40
        length = 8
        for label, servers, urls, store in targets:
            outcome = asyncio.run(self.interleaved(urls, conversations, length, label))
            stored = self.stored_order(servers[0], store, outcome["sent"])
            rows.append(
                f"| {label} | {conversations} | {outcome['messages']} | {outcome['answered']} | "
                f"{outcome['matching']} | {stored['in_order']} / {conversations} | {stored['duplicated']} | "
                f"{outcome['lost']} | {median_ms(outcome['latencies']):.0f} | {pct(outcome['latencies'], 95):.0f} |"
            )
        return rows

    async def interleaved(self, urls: List[str], conversations: int, length: int, label: str) -> Dict:
        import aiohttp

        rng = random.Random(8)
        intro = self.content.messages["intro"]
        plans = []
        for c in range(conversations):
            lang = LANGUAGES[c % len(LANGUAGES)]
            pairs = self.questions[lang]
            plans.append((f"load-{label[:3]}-{c}", lang, [pairs[(c + k) % len(pairs)] for k in range(length)]))
        sent: Dict[str, List[str]] = {}
        stats = collections.Counter()
        latencies: List[float] = []

        async def conversation(session, index: int, sender: str, lang: str, pairs) -> None:
            sent[sender] = []
            for k, (text, topic) in enumerate(pairs):
                await asyncio.sleep(rng.uniform(0, 0.05))
                client = Client(session, urls[(index + k) % len(urls)])
                seconds, body = await client.say(sender, text)
                latencies.append(seconds)
                stats["messages"] += 1
                if body is None:
                    stats["lost"] += 1
                    continue
                sent[sender].append(text)
                stats["answered"] += 1
                words = "\n".join(b.get("text") or "" for b in body)
                answer = self.content.guides[topic].text(lang, "survivor")[:40]
                stats["matching"] += answer in words and ((intro[lang] in words) == (k == 0))

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            await asyncio.gather(*(conversation(session, i, *plan) for i, plan in enumerate(plans)))
        return {
            "messages": stats["messages"],
            "answered": stats["answered"],
            "matching": stats["matching"],
            "lost": stats["lost"],
            "latencies": latencies,
            "sent": sent,
        }

    def stored_order(self, server: RasaServer, store: Optional[str], sent: Dict[str, List[str]]) -> Dict[str, int]:
        """Every conversation's user messages as stored, against what was sent."""
        result = collections.Counter()
        for sender, texts in sent.items():
            if store == "pg":
                import json

                import psycopg2

                with psycopg2.connect(self.services.pg_url()) as connection, connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT data FROM events WHERE sender_id = %s AND type_name = 'user' ORDER BY id", (sender,)
                    )
                    stored = [json.loads(row[0])["text"] for row in cursor.fetchall()]
            else:
                events = server.tracker(sender)["events"]
                stored = [e["text"] for e in events if e["event"] == "user"]
            result["in_order"] += stored == texts
            result["duplicated"] += len(stored) - len(set(stored)) if len(set(texts)) == len(texts) else 0
        return result

    # -- profile ---------------------------------------------------------------
    def start_profile(self, server: RasaServer):
        tool = pyspy()
        if not tool:
            return None
        out = self.var / "profile.txt"
        process = subprocess.Popen(
            [tool, "record", "-p", str(server.pid), "-o", str(out), "-f", "raw", "--rate", "200"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        return process, out

    def stop_profile(self, profile) -> None:
        process, out = profile
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        self.profile_file = out if out.exists() else None


PROFILE_PARTS = [
    ("the REST channel and Sanic (outside Rasa's message handling)", None),
    ("NLU: language, tokens, intent (`parse_message`)", "parse_message (rasa/core/processor.py"),
    ("  of which language identification (`LanguageScorer.identify`)", "identify (components/language.py"),
    ("  of which tokens (`MultilingualTokenizer.tokenize`)", "tokenize (components/nlu.py"),
    ("  of which the intent (`IntentModel.rank`)", "rank (components/intents.py"),
    ("  of which the emergency lexicons (`emergency.detect`)", "detect (components/emergency.py"),
    ("tracker load (`tracker_store.retrieve`)", "retrieve (rasa/core/tracker_store.py"),
    ("tracker save (`save_tracker`)", "save_tracker (rasa/core/processor.py"),
    (
        "next-action prediction, RulePolicy (`_predict_next_with_tracker`)",
        "_predict_next_with_tracker (rasa/core/processor.py",
    ),
    ("custom action calls, all (`RemoteAction.run`)", "run (rasa/core/actions/action.py"),
    ("  of which the HTTP request and JSON (`EndpointConfig.request`)", "request (rasa/utils/endpoints.py"),
    ("  of which validating the response (`_validate_action_result`)", "_validate_action_result ("),
    ("  of which `action_validate_slot_mappings` (every message)", "run_action_extract_slots (rasa/core/processor.py"),
    ("event objects from JSON (`deserialise_events`)", "deserialise_events (rasa/shared/core/events.py"),
]


def profile_rows(path: Optional[pathlib.Path]) -> List[str]:
    if not path:
        return ["(no profile: py-spy not found; `pip install py-spy` in any virtualenv and set WAYPOINT_PYSPY)"]
    inclusive, total, handling = collections.Counter(), 0, 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        total += n
        frames = set(stack.split(";"))
        handling += n * any(f.startswith("handle_message (rasa/core/agent.py") for f in frames)
        for _, key in PROFILE_PARTS:
            if key and any(f.startswith(key) for f in frames):
                inclusive[key] += n
    rows = [f"| {total - handling} | {100 * (total - handling) / total:.0f}% | {PROFILE_PARTS[0][0]} |"]
    for label, key in PROFILE_PARTS[1:]:
        rows.append(f"| {inclusive[key]} | {100 * inclusive[key] / total:.0f}% | {label} |")
    return rows


ANALYSIS = """## Why stock Rasa slows down as a conversation grows, and what Waypoint changed

On every message Rasa 3.6 reloads the conversation's whole session from the tracker store (one SQL row per
event, JSON-decoded, turned back into event objects and replayed), has the policy build a state for every
turn of it (two or three predictions per message: the reply, then listen), and sends the whole session as
JSON to the action server for every custom action (here two calls per message, three on a session's first:
`action_validate_slot_mappings`, then the answer or `action_intro`), which parses it again. All of that grows
with the number of events; nothing in it needs more than the last two turns here (every rule spans at most
one action, one intent and the next action; no slot influences the conversation). The tracker store
table above shows the reload alone growing tenfold over 300 turns.

- `plugins/tracker_store.py`: the SQL tracker store loads only the last 10 user turns of the session
  (`history_turns`, endpoints.yml) plus the session's start and, from before them, the latest event that set
  each slot (and any reset, restart, loop or pause): the tracker is the same as a session that began 10 turns
  ago with the same slots. Saving inserts exactly the events added since the load (it remembers how many it
  loaded), not Rasa's count of stored rows. Every event is still stored; the HTTP API's full tracker
  (`/conversations/<id>/tracker`) still reads the whole conversation. Tested against the whole-session tracker
  with random conversations (tests/test_tracker_window.py). Effect: the rows 'last 10 turns loaded' against
  'whole session loaded' above.
- `plugins/speedups.py`: three costs Rasa pays on every message whatever its length. Each action server
  response is checked with `jsonschema.validate`, which first checks the schema itself against the draft
  2020-12 metaschema: that was more than half of the Rasa server's CPU in a py-spy profile; now the schema is
  checked once and the same validator reused (same errors). Every event loaded is matched to its class by
  walking all Event subclasses; the class is now remembered per type name. And every action call opened and
  closed its own HTTP session and TCP connection; connections to the action server are now kept alive
  (0.6 -> 0.25 ms of client CPU a call, measured alone). Effect: the row 'without plugins/speedups.py'
  above (`WAYPOINT_RASA_SPEEDUPS=0`).
- The NLU pipeline (components/): langdetect (1-3 ms a message) is asked only when it could change the
  answer, i.e. when the character statistics and marker words leave another language within reach of the
  most langdetect can add (same answer on every held-out message, tests/test_nlu_components.py); the intent
  model's coefficients are stored column-major and its probabilities computed directly (identical numbers;
  parse 10.4 -> 5.8 ms); langdetect's profiles, the Thai and Vietnamese segmenters and the action server's
  search indexes are loaded at start, so the first Thai message of a server's life no longer waits 0.9 s
  (the 'first messages' column). Parse time per message is now about 6 ms.
- SQLite (the default store): one connection kept open instead of one per query, and a write-ahead log
  synced at checkpoints instead of at every commit (a crash of the server loses nothing; a power cut can
  lose the last turns); checkpointed at once after a deletion so that `secure_delete` still overwrites a
  forgotten conversation in the file. A turn's load and save fell from about 9 ms to under 3 ms.
- `plugins/lock_store.py`: Rasa 3.6's Redis lock store loses a ticket when two servers take one for the
  same conversation at the same moment, and both then handle that conversation at once (the load test and
  tests/test_scaleout.py check this); the same store with each change of a lock in one Redis transaction.

## Where the time goes now, and on bigger machines

A message costs the Rasa server a fixed amount of CPU, whatever the conversation's length: the NLU
pipeline (profile above), the tracker's load and save, two or three policy predictions, and two HTTP
calls to the action server. One Rasa server is one Python process running one event loop: it uses one
core, and while it works on one message the others wait, so in a closed loop latency is roughly the number
of users divided by the throughput (the 10- and 50-user rows: with no think time, 10 users at 55 messages
a second means a median near 180 ms), whatever is optimised below the event loop. Since the run beside
stock Rasa (five languages), a message costs about 1.7 times as much CPU: eight languages' crisis lexicons
and signals (3,151 patterns, about 12 ms if every one ran on a message; most stop at once) and places are
read on every message, in both servers, and the dialogue module reads each turn in context. On these two cores
the Rasa server shares the CPU with the action server, PostgreSQL and this benchmark's client. On a bigger
machine, run one Rasa server per core behind the balancer (deploy/): throughput grows with the number of
servers, and latency at a given number of users falls with it, until the shared PostgreSQL (one commit per
message) or the action servers become the limit; then give PostgreSQL its own machine and add action
servers. A faster core lowers the single-user latency itself. Memory is about 0.4 GB per Rasa server (Rasa,
the model and the content; TensorFlow is never imported: bench/reports/memory.md) and 0.15 GB per action
server, so memory is no longer what limits the number of servers on a machine: its cores are.
""".splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    parser.add_argument("--retrain-stock", action="store_true")
    parser.add_argument("--without-stock", action="store_true", help="leave stock Rasa out (no comparison)")
    parser.add_argument("--skip-training", action="store_true", help="do not time a training of Waypoint's model")
    args = parser.parse_args()

    stock_train = None
    if not args.without_stock and (not STOCK.exists() or args.retrain_stock):
        print("training the stock model (bench/stock_config.yml), once...", file=sys.stderr)
        stock_train = train(STOCK_DIR, "stock-full", "bench/stock_config.yml")
    ours_train = None
    if not args.skip_training:
        with tempfile.TemporaryDirectory() as out:
            ours_train = train(pathlib.Path(out), "waypoint-timing", "config.yml")

    run = Run(args)
    try:
        run.start()
        store_rows = store_turns(run.services, 100 if args.quick else 300)
        scripts = run.scripts()
        tp_rows, _ = run.throughput(scripts)
        length_rows = run.length()
        load_rows = run.load_test()
        memory = {name: peak_rss_mb(server.pid) for name, server in run.servers.items()}
        memory["actions"] = peak_rss_mb(run.actions.pid)
        ready = {name: server.ready_seconds for name, server in run.servers.items()}
        ready["actions"] = run.actions.ready_seconds
        profile = profile_rows(getattr(run, "profile_file", None))
    finally:
        run.stop()

    names = {
        "waypoint": "Rasa server, Waypoint (SQLite)",
        "waypoint-pg": "Rasa server, Waypoint (PostgreSQL + Redis)",
        "waypoint-pg-2": "second Rasa server, Waypoint (PostgreSQL + Redis)",
        "waypoint-whole": "Rasa server, Waypoint (whole session loaded)",
        "stock": "Rasa server, stock Rasa",
        "waypoint-nofix": "Rasa server, Waypoint without the Rasa fixes",
        "actions": "action server (shared by all)",
    }

    def first(n: str) -> str:
        seconds = run.first_messages.get(n)
        if not seconds:
            return ""
        slowest = max(seconds, key=seconds.get)
        return f"{1000 * seconds[slowest]:.0f} ({slowest}); median of the five {1000 * statistics.median(seconds.values()):.0f}"

    resources = [
        f"| {names.get(n, n)} | {ready[n]:.1f} | {first(n)} | {memory[n][0]:.0f} | {memory[n][1]:.0f} |" for n in ready
    ]
    per_user = (
        "30 messages per level"
        if args.quick
        else "150 messages per level and round, 2 rounds (order reversed in the second)"
    )
    body = [
        "Closed loop: each simulated user sends its next message as soon as the previous one is answered",
        f"(no think time: the worst case for a given number of users); {per_user}; conversations of",
        "6 messages (greeting, topic questions, thanks) in the five languages; REST channel, action server,",
        "tracker store, all on this machine. Latency is what the client sees, in ms.",
        "",
        "## Latency and throughput",
        "",
        "| users | server | messages | median | p95 | messages/s | throughput vs stock | failed |",
        "|---|---|---|---|---|---|---|---|",
        *tp_rows,
        "",
        "## Latency against conversation length",
        "",
        f"One conversation, turns 1-20 against turns {run.turns - 19}-{run.turns} (medians, ms). The first ratio compares",
        "them; the second compares each of the last 20 turns with the turn of a fresh conversation (its turns 1-20)",
        "sent right after it (median of the 20 ratios), so that the machine's changing load does not count.",
        "",
        f"| server | turns 1-20 | turns {run.turns - 19}-{run.turns} | p95 of those | ratio | fresh conversation, "
        "same moment | paired ratio |",
        "|---|---|---|---|---|---|---|",
        *length_rows,
        "",
        "The same, for the tracker store alone: one turn's load and save, in one process, no server (ms).",
        "",
        f"| store | turns 1-20 | turns {run.turns - 19}-{run.turns} | p95 of those | ratio |",
        "|---|---|---|---|---|",
        *store_rows,
        "",
        "## Load test: interleaved conversations",
        "",
        "Conversations at once, in the five languages, each message (a topic question the model recognises) sent",
        "after a random pause of 0-50 ms, to the balancer (deploy/nginx.conf on loopback, least connections) for the",
        "two servers. 'Matching': the reply is the answer to that",
        "message's topic, in the conversation's language, with the introduction on the first reply only.",
        "'In order': the stored user messages of the conversation are exactly those sent, in the order sent.",
        "",
        "| servers | conversations | messages | answered | matching | in order | duplicated | lost | median | p95 |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *load_rows,
        "",
        "## Start-up, memory, training",
        "",
        "'First messages': right after start, one message in each language (new conversations); the slowest, in ms.",
        "",
        "| process | start to ready (s) | first messages | peak memory (MB) | memory at the end (MB) |",
        "|---|---|---|---|---|",
        *resources,
        "",
        (
            f"Training Waypoint's model (`rasa train`, config.yml, no cache): {ours_train:.0f} s in this run."
            if ours_train
            else "Training not timed in this run (--skip-training)."
        ),
        (
            f"Training the stock model (bench/stock_config.yml, same data): {stock_train:.0f} s in this run."
            if stock_train
            else "Stock model from an earlier run of this command (`--retrain-stock` to retrain and time it)."
        ),
        "",
        "## Where the Rasa server's time goes (Waypoint, 10 users)",
        "",
        "py-spy samples of the Waypoint Rasa process during the 10-user run (on-CPU, inclusive: a part",
        "includes what it calls, so the rows overlap).",
        "",
        "| samples | share | part |",
        "|---|---|---|",
        *profile,
        "",
        *ANALYSIS,
        *([""] + run.notes if run.notes else []),
    ]
    flags = [f for f, on in (("--quick", args.quick), ("--without-stock", args.without_stock)) if on]
    command = " ".join([".venv/bin/python -m bench.serving", *flags])
    write_report("serving-quick" if args.quick else "serving", "Serving: latency, throughput, scale-out", command, body)


if __name__ == "__main__":
    main()
