"""Scale-out: two Rasa servers and an action server sharing a real PostgreSQL
tracker store and a real Redis lock store (deploy/endpoints.scale.yml), the
topology of deploy/docker-compose.yml without Docker.

The messages of each conversation go alternately to both servers (what the
balancer does); conversations run concurrently. Nothing may be lost,
duplicated or answered out of order: every reply answers its own message, and
the tracker in PostgreSQL holds every user message once, in the order sent.
Then, through deploy/nginx.conf itself (the Rasa servers also reach the action
server through it), one server is killed mid-conversation and the other
carries on."""
from __future__ import annotations

import concurrent.futures
import signal
import threading
import time
from typing import Dict, List, Tuple

import pytest

from content.loader import data_dir, load_content
from tests.servers import (ROOT, ActionServer, BalancedClient, Balancer, RasaServer,
                           recognised_questions)

pytestmark = pytest.mark.slow

LANGUAGES = ("en", "id", "ms", "vi", "th")
ENDPOINTS = ROOT / "deploy" / "endpoints.scale.yml"


@pytest.fixture(scope="module")
def topology(services, tmp_path_factory):
    """An action server, two Rasa servers and deploy/nginx.conf in front of
    both (public side) and of the action server (the Rasa servers call their
    actions through it), as in deploy/docker-compose.yml."""
    var = tmp_path_factory.mktemp("scaleout")
    env = dict(services.env)
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
    found = recognised_questions(cluster[0], content, LANGUAGES, per_language=10)
    for lang, pairs in found.items():
        assert len(pairs) >= 8, f"too few recognisable questions in {lang}"
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


def check_conversation(services, content, sender: str, lang: str, sent: List[Tuple[str, str]],
                       replies: List[List[Dict]]) -> None:
    """Each reply answers its message; PostgreSQL holds each message once, in order."""
    intro = content.messages["intro"][lang]
    assert len(replies) == len(sent)
    for index, ((_, topic), reply) in enumerate(zip(sent, replies)):
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
    Rasa 3.6's own RedisLockStore fails this (channels/lock_store.py)."""
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
                        time.sleep(0.003)
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


def test_telegram_update_ids_are_shared_by_the_servers_through_redis(services):
    """A retried update that the balancer gives to the other server is still a duplicate."""
    from channels.telegram_channel import RecentIds, SharedRecentIds

    env = {k: v for k, v in services.env.items() if k.startswith("WAYPOINT_REDIS_")}
    first, second = (SharedRecentIds.from_env("12345:secret", env) for _ in range(2))
    assert isinstance(first, SharedRecentIds)
    assert first.seen(501) is False and second.seen(501) is True and first.seen(501) is True
    assert second.seen(502) is False and first.seen(502) is True
    assert "secret" not in first.namespace
    # another bot's ids are its own
    assert SharedRecentIds.from_env("999:other", env).seen(501) is False
    # without Redis settings: memory only; with Redis down: memory only, no error
    assert type(SharedRecentIds.from_env("12345:secret", {})) is RecentIds
    down = SharedRecentIds.from_env("12345:secret", {**env, "WAYPOINT_REDIS_PORT": "1"})
    assert down.seen(503) is False and down.seen(503) is True


def test_both_servers_use_postgres_and_redis(cluster, services):
    import redis

    cluster[0].say("probe-postgres", "hello")
    assert [e["event"] for e in events_in_postgres(services, "probe-postgres")].count("user") == 1
    client = redis.Redis(host="127.0.0.1", port=int(services.env["WAYPOINT_REDIS_PORT"]),
                         password=services.env["WAYPOINT_REDIS_PASSWORD"])
    before = client.info("commandstats").get("cmdstat_set", {}).get("calls", 0)
    for server in cluster:
        server.say("probe-redis", "hello")
    assert client.info("commandstats").get("cmdstat_set", {}).get("calls", 0) > before  # tickets and locks


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
    for (sender, lang, pairs), replies in zip(plans, results):
        check_conversation(services, content, sender, lang, pairs, replies)


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

        def send(index: int, text: str) -> None:
            barrier.wait()
            replies[index] = cluster[index].say(sender, text)

        threads = [threading.Thread(target=send, args=(0, text_a)), threading.Thread(target=send, args=(1, text_b))]
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
        first_turn = events[:[i for i, e in enumerate(events) if e["event"] == "user"][1]]
        assert [e["text"] for e in first_turn if e["event"] == "bot" and e.get("text") == intro] == [intro]
        assert topics_set(first_turn) == [order[0][1]]


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
