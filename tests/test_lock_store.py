"""deploy/endpoints.scale.yml builds the atomic Redis lock store with Rasa's
settings (the behaviour under concurrency is tested against a real Redis in
tests/test_scaleout.py)."""

from rasa.core.lock_store import LockStore, RedisLockStore
from rasa.core.utils import read_endpoints_from_path

from plugins.lock_store import AtomicRedisLockStore
from tests.servers import ROOT


def test_the_scale_out_endpoints_build_the_atomic_redis_lock_store(monkeypatch):
    for key, value in {
        "WAYPOINT_ACTIONS_URL": "http://127.0.0.1:1/webhook",
        "WAYPOINT_ACTIONS_TOKEN": "t",
        "WAYPOINT_PG_HOST": "127.0.0.1",
        "WAYPOINT_PG_PORT": "5432",
        "WAYPOINT_PG_DB": "waypoint",
        "WAYPOINT_PG_USER": "waypoint",
        "WAYPOINT_PG_PASSWORD": "p",
        "WAYPOINT_REDIS_HOST": "127.0.0.1",
        "WAYPOINT_REDIS_PORT": "6390",
        "WAYPOINT_REDIS_PASSWORD": "secret",
    }.items():
        monkeypatch.setenv(key, value)
    endpoints = read_endpoints_from_path(str(ROOT / "deploy" / "endpoints.scale.yml"))
    store = LockStore.create(endpoints.lock_store)  # no connection is made until a lock is taken
    assert isinstance(store, AtomicRedisLockStore) and isinstance(store, RedisLockStore)
    connection = store.red.connection_pool.connection_kwargs
    assert (connection["host"], connection["port"], connection["password"], connection["db"]) == (
        "127.0.0.1",
        6390,
        "secret",
        0,
    )
    assert store.key_prefix == "waypoint:lock:"
    assert endpoints.tracker_store.type == "plugins.tracker_store.WaypointSQLTrackerStore"
    assert endpoints.tracker_store.kwargs["dialect"] == "postgresql"
    assert endpoints.action.url == "http://127.0.0.1:1/webhook"


def test_an_unreachable_redis_locks_in_memory_and_answers(caplog):
    """Redis down: the message is handled under a lock in this server's memory
    (said once in the log), never refused."""
    import asyncio

    from tests.servers import free_port

    store = AtomicRedisLockStore(host="127.0.0.1", port=free_port(), socket_timeout=1)  # nothing listens there

    async def two_turns() -> list:
        served = []
        for _ in range(2):
            async with store.lock("someone") as lock:
                served.append(lock.conversation_id)
        return served

    assert asyncio.run(two_turns()) == ["someone", "someone"]
    assert caplog.text.count("Redis unreachable") == 1
