"""Scale-out: two Rasa servers and an action server sharing a real PostgreSQL
tracker store and a real Redis lock store (deploy/endpoints.scale.yml), the
topology of deploy/docker-compose.yml without Docker.

The messages of each conversation go alternately to both servers (what the
balancer does); conversations run concurrently. Nothing may be lost,
duplicated or answered out of order: every reply answers its own message, and
the tracker in PostgreSQL holds every user message once, in the order sent.
Then, through deploy/nginx.conf itself (the Rasa servers also reach the action
server through it), one server is killed mid-conversation and the other
carries on; one is killed during a short load and no acknowledged message is
lost. PostgreSQL stopped mid-conversation: every message still gets a reply,
and the conversation goes on when it is back. Redis stopped mid-conversation:
locks and the hand-off queues fall back to the server's memory, replies go on."""

from __future__ import annotations

import concurrent.futures
import glob
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Tuple

import pytest

from content.loader import data_dir, load_content
from tests.servers import ROOT, ActionServer, BalancedClient, Balancer, RasaServer, recognised_questions

pytestmark = pytest.mark.services  # and `model` where the Rasa servers run

LANGUAGES = ("en", "id", "ms", "vi", "th")
ENDPOINTS = ROOT / "deploy" / "endpoints.scale.yml"


@pytest.fixture(scope="module")
def topology(services, tmp_path_factory):
    """An action server, two Rasa servers and deploy/nginx.conf in front of
    both (public side) and of the action server (the Rasa servers call their
    actions through it), as in deploy/docker-compose.yml."""
    var = tmp_path_factory.mktemp("scaleout")
    env = {**services.env, "TICKET_LOCK_LIFETIME": "20"}  # as deploy/docker-compose.yml sets it
    actions = ActionServer(var / "actions", env).start()
    servers = [RasaServer(var / f"rasa{i}", ENDPOINTS, actions, env=env) for i in range(2)]
    balancer = Balancer(var / "nginx", [server.port for server in servers], [actions.port])
    try:
        balancer.start()
        for server in servers:
            server.env["WAYPOINT_ACTIONS_URL"] = balancer.actions_webhook
            server.start()
        yield servers, balancer
    finally:
        for server in servers:
            server.stop()
        balancer.stop()
        actions.stop()


@pytest.fixture(scope="module")
def cluster(topology) -> List[RasaServer]:
    return topology[0]


@pytest.fixture(scope="module")
def content():
    return load_content(data_dir())  # what the action server loads (WAYPOINT_DATA_DIR or data/)


@pytest.fixture(scope="module")
def questions(cluster, content) -> Dict[str, List[Tuple[str, str]]]:
    """Per language, (message, topic) pairs the model recognises (see
    tests/servers.recognised_questions), so that a reply can be matched to its message."""
    from content.lexicons import crisis_kind, signal

    found = recognised_questions(cluster[0], content, LANGUAGES, per_language=12)
    for lang, pairs in found.items():
        # A question that also describes danger ("... and beat us if no target")
        # is answered with the emergency numbers first (actions/dialogue.py, rule 1),
        # and one that says who is asking ("I'm a police officer ...") turns the
        # conversation's answers into practitioners' ones: neither can be matched
        # to its topic's survivor answer.
        found[lang] = [
            (text, topic)
            for text, topic in pairs
            if not crisis_kind(text)
            and not signal(text, "practitioner_role", lang)
            and not signal(text, "reporter", lang)
        ]
        assert len(found[lang]) >= 8, f"too few recognisable questions in {lang}"
    return found


def answer_of(content, topic: str, lang: str) -> str:
    return content.guides[topic].text(lang, "survivor")[:40]


def texts(replies: List[Dict]) -> str:
    return "\n".join(r.get("text") or "" for r in replies)


def events_in_postgres(services, sender: str) -> List[Dict]:
    import json

    import psycopg2

    with psycopg2.connect(services.pg_url()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT data FROM events WHERE sender_id = %s ORDER BY id", (sender,))
        return [json.loads(row[0]) for row in cursor.fetchall()]


def user_messages(events: List[Dict]) -> List[str]:
    return [e["text"] for e in events if e["event"] == "user"]


def topics_set(events: List[Dict]) -> List[str]:
    return [e["value"] for e in events if e["event"] == "slot" and e["name"] == "topic" and e["value"]]


def check_conversation(
    services, content, sender: str, lang: str, sent: List[Tuple[str, str]], replies: List[List[Dict]]
) -> None:
    """Each reply answers its message; PostgreSQL holds each message once, in order."""
    intro = content.messages["intro"][lang]
    assert len(replies) == len(sent)
    for index, ((_, topic), reply) in enumerate(zip(sent, replies, strict=True)):
        assert answer_of(content, topic, lang) in texts(reply), f"{sender}: reply {index} does not answer {topic}"
        assert (intro in texts(reply)) == (index == 0), f"{sender}: the introduction belongs to the first reply only"
    events = events_in_postgres(services, sender)
    assert user_messages(events) == [text for text, _ in sent]
    assert topics_set(events) == [topic for _, topic in sent]
    assert sum(1 for e in events if e["event"] == "session_started") == 1


def test_the_redis_lock_excludes_across_processes(services):
    """Four lock store clients (as four servers would hold) take the lock of one
    conversation ten times each and, inside it, increment a counter the
    unsafe way (read, wait, write): no increment may be lost and no ticket may
    go missing (a lost ticket ends in a LockError, a dropped message).
    Rasa 3.6's own RedisLockStore fails this (plugins/lock_store.py)."""
    import asyncio

    import redis

    from plugins.lock_store import AtomicRedisLockStore

    port, password = int(services.env["WAYPOINT_REDIS_PORT"]), services.env["WAYPOINT_REDIS_PASSWORD"]
    client = redis.Redis(host="127.0.0.1", port=port, password=password)
    client.set("test-counter", 0)
    errors: List[str] = []

    def worker() -> None:
        store = AtomicRedisLockStore(host="127.0.0.1", port=port, password=password, db=0, key_prefix="locktest")

        async def run() -> None:
            for _ in range(10):
                try:
                    async with store.lock("one-conversation", wait_time_in_seconds=0.005):
                        value = int(client.get("test-counter"))
                        time.sleep(0.003)  # noqa: ASYNC251 - blocking on purpose: the unsafe way
                        client.set("test-counter", value + 1)
                except Exception as error:  # noqa: BLE001 - counted and reported
                    errors.append(type(error).__name__)

        asyncio.run(run())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert int(client.get("test-counter")) == 40
    assert client.keys("locktest:*") == []  # the last one out deleted the lock


def test_telegram_update_ids_are_shared_by_the_servers_through_postgres(services):
    """A retried update that the balancer gives to the other server is still a
    duplicate: the channels' state (channels/state.py) lives in the shared
    PostgreSQL, beside the tracker store. Without it: this server's memory, no error."""
    from channels.state import ChannelState

    url = services.pg_url().replace("postgresql://", "postgresql+psycopg2://")
    first, second = ChannelState(url, b"secret"), ChannelState(url, b"secret")
    try:
        assert first.seen("telegram", "bot1:501") is False
        assert second.seen("telegram", "bot1:501") is True and first.seen("telegram", "bot1:501") is True
        assert second.seen("telegram", "bot1:502") is False and first.seen("telegram", "bot1:502") is True
        assert first.seen("telegram", "bot2:501") is False  # another bot's ids are its own
        down = ChannelState(url.rsplit(":", 1)[0] + ":1/waypoint", b"secret")
        assert down.seen("telegram", "bot1:503") is False and down.seen("telegram", "bot1:503") is True
        down.close()
    finally:
        first.close()
        second.close()


def fresh_database(services, name: str) -> str:
    """A new, empty database in the shared PostgreSQL: its SQLAlchemy URL."""
    import psycopg2

    connection = psycopg2.connect(services.pg_url().rsplit("/", 1)[0] + "/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    return services.pg_url().rsplit("/", 1)[0] + "/" + name


def test_servers_starting_together_on_a_new_database_create_their_tables_without_error(services):
    """A new deployment: the first messages reach both Rasa servers at the same
    moment, and each creates the hand-off tables and the channels' tables in
    the shared PostgreSQL (handoff/repository.py, channels/state.py) on first
    use. PostgreSQL's CREATE TABLE is not safe against a concurrent one
    ("duplicate key value violates unique constraint pg_type_typname_nsp_index"):
    seen as an HTTP 500 from the REST channel (channels/rest.py calls
    base.relay_for() outside its error handling)."""
    from channels.state import ChannelState
    from handoff.repository import SQLRepository

    failures: List[str] = []
    for attempt in range(4):
        url = fresh_database(services, f"waypoint_race_{attempt}")
        barrier = threading.Barrier(4)
        made: List[Any] = []

        def create(kind: str, url: str, attempt: int, barrier: threading.Barrier, made: List[Any]) -> None:
            barrier.wait()
            try:
                made.append(SQLRepository(url) if kind == "handoff" else ChannelState(url, b"secret"))
            except Exception as error:  # noqa: BLE001 - collected and reported
                failures.append(f"attempt {attempt}, {kind}: {type(error).__name__}: {str(error).splitlines()[0]}")

        threads = [
            threading.Thread(target=create, args=(kind, url, attempt, barrier, made))
            for kind in ("handoff", "handoff", "state", "state")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for item in made:
            item.close()
    assert not failures, failures


@pytest.mark.model
def test_both_servers_use_postgres_and_redis(cluster, services):
    import redis

    cluster[0].say("probe-postgres", "hello")
    assert [e["event"] for e in events_in_postgres(services, "probe-postgres")].count("user") == 1
    client = redis.Redis(
        host="127.0.0.1",
        port=int(services.env["WAYPOINT_REDIS_PORT"]),
        password=services.env["WAYPOINT_REDIS_PASSWORD"],
    )
    before = client.info("commandstats").get("cmdstat_set", {}).get("calls", 0)
    for server in cluster:
        server.say("probe-redis", "hello")
    assert client.info("commandstats").get("cmdstat_set", {}).get("calls", 0) > before  # tickets and locks


@pytest.mark.model
def test_interleaved_conversations_alternate_servers(cluster, services, content, questions):
    """Ten conversations at once, two per language, each message to the other
    server than the one before."""
    plans = []
    for lang in LANGUAGES:
        for n in range(2):
            pairs = questions[lang]
            shift = 3 * n
            plans.append((f"scale-{lang}-{n}", lang, (pairs[shift:] + pairs[:shift])[:6]))

    def run(index: int, sender: str, pairs: List[Tuple[str, str]]) -> List[List[Dict]]:
        return [cluster[(index + k) % 2].say(sender, text) for k, (text, _) in enumerate(pairs)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(plans)) as pool:
        futures = [pool.submit(run, i, sender, pairs) for i, (sender, _, pairs) in enumerate(plans)]
        results = [future.result(timeout=600) for future in futures]
    for (sender, lang, pairs), replies in zip(plans, results, strict=True):
        check_conversation(services, content, sender, lang, pairs, replies)


@pytest.mark.model
def test_simultaneous_messages_of_one_conversation_are_taken_in_turn(cluster, services, content, questions):
    """Two messages of one new conversation reach both servers at the same
    moment. The Redis lock lets one turn run at a time, in the order the
    messages arrived: the turn that ran second sees the first one (the
    introduction is said once, by the first), and PostgreSQL holds the two
    turns one after the other, not interleaved. Without the shared lock both
    turns run at once and both say the introduction."""
    (text_a, topic_a), (text_b, topic_b) = questions["en"][0], questions["en"][1]
    assert topic_a != topic_b
    intro = content.messages["intro"]["en"]
    for attempt in range(5):
        sender = f"scale-burst-{attempt}"
        replies: Dict[int, List[Dict]] = {}
        barrier = threading.Barrier(2)

        def send(
            index: int, text: str, sender: str, barrier: threading.Barrier, replies: Dict[int, List[Dict]]
        ) -> None:
            barrier.wait()
            replies[index] = cluster[index].say(sender, text)

        threads = [
            threading.Thread(target=send, args=(index, text, sender, barrier, replies))
            for index, text in ((0, text_a), (1, text_b))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert set(replies) == {0, 1}
        assert answer_of(content, topic_a, "en") in texts(replies[0])
        assert answer_of(content, topic_b, "en") in texts(replies[1])
        with_intro = [index for index in (0, 1) if intro in texts(replies[index])]
        assert len(with_intro) == 1, f"attempt {attempt}: the introduction was said {len(with_intro)} times"
        order = [(text_a, topic_a), (text_b, topic_b)]
        if with_intro == [1]:
            order.reverse()
        events = events_in_postgres(services, sender)
        assert user_messages(events) == [text for text, _ in order]
        assert topics_set(events) == [topic for _, topic in order]
        first_turn = events[: [i for i, e in enumerate(events) if e["event"] == "user"][1]]
        assert [e["text"] for e in first_turn if e["event"] == "bot" and e.get("text") == intro] == [intro]
        assert topics_set(first_turn) == [order[0][1]]


# -- the shared stores stop and come back -----------------------------------------------------------
# (scripts/ensure-services.sh starts and deletes them as a whole; these stop and
# start one of them in place, with the same data, port and password.)


def pg_ctl(services, *args: str, timeout: float = 120) -> None:
    binary = shutil.which("pg_ctl") or sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    data = os.path.join(services.directory, "pg", "data")
    subprocess.run(
        ["runuser", "-u", "postgres", "--", binary, "-D", data, *args], check=True, capture_output=True, timeout=timeout
    )


def stop_postgres(services) -> None:
    pg_ctl(services, "-m", "fast", "-w", "-t", "60", "stop")


def start_postgres(services) -> None:
    folder, port = services.directory, services.env["WAYPOINT_PG_PORT"]
    pg_ctl(
        services,
        "-l",
        os.path.join(folder, "pg", "postgres.log"),
        "-w",
        "-t",
        "60",
        "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}/pg-socket -c max_connections=200 -c fsync=on",
        "start",
    )


def redis_cli(services, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDISCLI_AUTH": services.env["WAYPOINT_REDIS_PASSWORD"]}
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", services.env["WAYPOINT_REDIS_PORT"], *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def stop_redis(services) -> None:
    redis_cli(services, "shutdown", "nosave")
    deadline = time.monotonic() + 30
    while redis_cli(services, "ping").stdout.strip() == "PONG":
        assert time.monotonic() < deadline, "Redis did not stop"
        time.sleep(0.1)


def start_redis(services) -> None:
    subprocess.run(
        ["redis-server", os.path.join(services.directory, "redis.conf")], check=True, capture_output=True, timeout=30
    )
    deadline = time.monotonic() + 30
    while redis_cli(services, "ping").stdout.strip() != "PONG":
        assert time.monotonic() < deadline, "Redis did not start again"
        time.sleep(0.1)


def post_message(url: str, sender: str, text: str, timeout: float = 120) -> Tuple[int, Any]:
    """(status, JSON body) of one REST message; an HTTP error status is returned, not raised."""
    request = urllib.request.Request(
        url + "/webhooks/rest/webhook",
        method="POST",
        data=json.dumps({"sender": sender, "message": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, None
    except (urllib.error.URLError, OSError) as error:  # reset, refused, timed out
        return 0, str(error)


def never_empty(status: int, replies: Any) -> None:
    assert status == 200, (status, replies)
    assert replies and all((r.get("text") or "").strip() for r in replies if not r.get("buttons")), replies
    assert texts(replies).strip(), "an empty reply"


def ensure_running(server: RasaServer) -> None:
    if not server.alive():
        server.start()


@pytest.mark.model
def test_postgres_stops_mid_conversation_and_comes_back(cluster, services, content, questions):
    """While PostgreSQL is down every message is answered (never an empty reply,
    never an error status); when it is back, the conversation goes on where it
    was: its language, no second introduction, the messages before and after
    stored in order."""
    for server in cluster:
        ensure_running(server)
    sender, lang = "scale-pg-outage", "en"
    pairs = questions[lang][:6]
    before, during, after = pairs[:2], pairs[2:4], pairs[4:]
    for k, (text, topic) in enumerate(before):
        replies = cluster[k % 2].say(sender, text)
        assert answer_of(content, topic, lang) in texts(replies)
    stop_postgres(services)
    try:
        for k, (text, _) in enumerate(during):
            status, replies = post_message(cluster[k % 2].url, sender, text)
            never_empty(status, replies)
    finally:
        start_postgres(services)
    for k, (text, topic) in enumerate(after):
        replies = cluster[k % 2].say(sender, text)
        assert answer_of(content, topic, lang) in texts(replies), f"after PostgreSQL came back: {texts(replies)[:200]}"
        assert content.messages["intro"][lang] not in texts(replies), "a second introduction"
    events = events_in_postgres(services, sender)
    stored = user_messages(events)
    assert [m for m in stored if m not in [t for t, _ in during]] == [t for t, _ in before + after]
    assert sum(1 for e in events if e["event"] == "session_started") == 1
    assert cluster[0].tracker(sender)["slots"]["language"] == lang


@pytest.mark.model
def test_redis_stops_mid_conversation_and_replies_go_on(cluster, services, content, questions):
    """Redis holds only the conversation locks and the web chat's hand-off
    queues; while it is down both fall back to each server's memory and the
    conversation is answered as usual, on both servers; when it is back,
    nothing is different."""
    from handoff.queues import from_settings

    for server in cluster:
        ensure_running(server)
    sender, lang = "scale-redis-outage", "vi"
    pairs = questions[lang][:6]
    for k, (text, topic) in enumerate(pairs[:2]):
        assert answer_of(content, topic, lang) in texts(cluster[k % 2].say(sender, text))
    stop_redis(services)
    try:
        for k, (text, topic) in enumerate(pairs[2:4]):
            status, replies = post_message(cluster[k % 2].url, sender, text, timeout=60)
            never_empty(status, replies)
            assert answer_of(content, topic, lang) in texts(replies), (
                f"Redis down, server {k % 2}: {texts(replies)[:200]}"
            )
        queues = from_settings(dict(services.env))  # the hand-off queues: memory while Redis is down
        queues.push("web-redis-outage", [{"text": "a counsellor's words"}])
        assert queues.take("web-redis-outage") == [{"text": "a counsellor's words"}]
    finally:
        start_redis(services)
    for k, (text, topic) in enumerate(pairs[4:]):
        assert answer_of(content, topic, lang) in texts(cluster[k % 2].say(sender, text))
    assert user_messages(events_in_postgres(services, sender)) == [text for text, _ in pairs]


@pytest.mark.model
def test_a_server_killed_during_a_short_load_loses_no_acknowledged_message(topology, services, content, questions):
    """Six conversations at once through the balancer, 24 messages each (eight
    questions, three times); after the first 30 answers one Rasa server is killed. A message that got its
    answer (HTTP 200) is acknowledged: every acknowledged message is stored in
    PostgreSQL, once, in the order sent, and its reply answers it. A message
    that was not acknowledged (an error status, a reset connection) may or may
    not have been stored."""
    servers, balancer = topology
    for server in servers:
        ensure_running(server)
    plans = [
        (f"scale-load-{lang}-{n}", lang, ((questions[lang][n * 3 :] + questions[lang][: n * 3])[:8]) * 3)
        for lang in ("en", "id", "th")
        for n in range(2)
    ]
    results: Dict[str, List[Tuple[str, str, int, Any]]] = {sender: [] for sender, _, _ in plans}
    started = threading.Event()

    def run(sender: str, pairs: List[Tuple[str, str]]) -> None:
        for text, topic in pairs:
            status, replies = post_message(balancer.url, sender, text)
            results[sender].append((text, topic, status, replies))
            started.set()

    killed_at = None
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(plans)) as pool:
            futures = [pool.submit(run, sender, pairs) for sender, _, pairs in plans]
            started.wait(120)
            deadline = time.monotonic() + 120
            while sum(len(r) for r in results.values()) < 30 and time.monotonic() < deadline:
                time.sleep(0.01)
            servers[1].stop(signal.SIGKILL)
            killed_at = sum(len(r) for r in results.values())
            for future in futures:
                future.result(timeout=900)
        assert 0 < killed_at < sum(len(p) for _, _, p in plans), "the server was not killed during the load"
        lost: List[str] = []
        for sender, lang, _ in plans:
            acknowledged = [(text, topic, replies) for text, topic, status, replies in results[sender] if status == 200]
            for _, topic, replies in acknowledged:
                assert answer_of(content, topic, lang) in texts(replies), f"{sender}: a reply does not answer {topic}"
            stored = user_messages(events_in_postgres(services, sender))
            position = 0  # stored must be the messages sent, in order, less some unacknowledged ones
            for index, (text, _, status, _) in enumerate(results[sender]):
                if position < len(stored) and stored[position] == text:
                    position += 1
                elif status == 200:
                    lost.append(f"{sender}: message {index}")
            assert position == len(stored), f"{sender}: stored twice or out of order: {stored[position:]}"
        assert not lost, f"acknowledged but not stored: {lost}"
        refused = {sender: [(t, s) for t, _, s, _ in results[sender] if s != 200] for sender, _, _ in plans}
        print(
            f"\nkilled after {killed_at} answers; not acknowledged: {sum(len(v) for v in refused.values())} {refused}"
        )
        # The other server carries on: the messages in flight on the killed server
        # and those waiting for a lock it held may go unanswered (measured: 5 of 144,
        # at most 2 in one conversation); after that every conversation is answered.
        assert all(status == 200 for sender in results for _, _, status, _ in results[sender][-8:]), refused
    finally:
        ensure_running(servers[1])
        time.sleep(11)  # nginx's fail_timeout (deploy/nginx.conf): both servers back in its rotation


@pytest.mark.model
def test_one_server_stops_mid_conversation_and_the_other_carries_on(topology, services, content, questions):
    """Three conversations through the balancer (deploy/nginx.conf); halfway,
    one Rasa server is killed. nginx passes the messages that meet the dead
    server on to the other (a refused connection never reached Rasa, so
    nothing is answered twice), and the conversations carry on where they
    were: same language, no second introduction, every message stored once."""
    servers, balancer = topology
    client = BalancedClient(balancer, servers[0].token)
    plans = [(f"scale-stop-{lang}", lang, questions[lang][:8]) for lang in ("en", "vi", "ms")]
    replies: Dict[str, List[List[Dict]]] = {sender: [] for sender, _, _ in plans}
    for step in range(8):
        if step == 4:
            servers[1].stop(signal.SIGKILL)
            assert not servers[1].alive()
        for sender, _, pairs in plans:
            replies[sender].append(client.say(sender, pairs[step][0]))
    for sender, lang, pairs in plans:
        check_conversation(services, content, sender, lang, pairs, replies[sender])
        slots = servers[0].tracker(sender)["slots"]
        assert slots["language"] == lang and slots["topic"] == pairs[-1][1]
    # messages did meet the dead server, and nginx passed them on
    assert "Connection refused" in balancer.log.read_text(errors="replace")
