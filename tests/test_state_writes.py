"""A stage's writes go to Redis all or none (newsflow.state.State.pipeline): a full Redis must not
take half of them, e.g. free the raw HTML without storing the document made from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from config.defaults import Settings
from newsflow.metrics import CounterBuffer
from newsflow.state import State
from tests.conftest import need
from workers.runtime import PrivateRedis, find_redis_server, free_port


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    try:
        find_redis_server()
    except Exception:
        need(False, "no redis-server to start")
    server = PrivateRedis(free_port(), tmp_path / "redis")
    server.start()
    try:
        yield redis.Redis.from_url(server.url)
    finally:
        server.stop()


def test_a_full_redis_takes_none_of_a_stage_s_writes(full_redis: redis.Redis) -> None:
    state = State(full_redis, Settings())
    key = state.put_blob("a1", "<html><p>" + "words " * 500 + "</p></html>")
    full_redis.config_set("maxmemory", 1)  # every write is refused from now on (noeviction)
    pipe = state.pipeline()
    state.put_doc("a1", {"id": "a1", "body": "text"}, pipe)
    state.delete_blob(key, pipe)
    state.record("a1", "http://example.test/a1", "cleaned", "clean", pipe=pipe)
    with pytest.raises(redis.exceptions.OutOfMemoryError):  # the stage retries it (redis_full)
        pipe.execute()
    full_redis.config_set("maxmemory", 0)
    assert state.get_blob(key) is not None  # the input is still there for the retry
    assert state.get_doc("a1") is None
    assert state.ledger("a1") is None


def test_a_full_redis_takes_none_of_a_guarded_write_either(full_redis: redis.Redis) -> None:
    # The guarded write (the stale-copy check and the writes in one script) must be all or none too:
    # a script Redis lets start would keep the writes made before the one refused.
    state = State(full_redis, Settings())
    key = state.put_blob("a2", "<html><p>" + "words " * 500 + "</p></html>")
    state.record("a2", "http://example.test/a2", "fetched", "fetch")
    full_redis.config_set("maxmemory", 1)
    pipe = state.pipeline()
    state.delete_blob(key, pipe)
    state.put_doc("a2", {"id": "a2", "body": "text"}, pipe)
    state.record("a2", "http://example.test/a2", "cleaned", "clean", pipe=pipe)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        state.commit_unless_beyond(pipe, "a2", "clean")
    full_redis.config_set("maxmemory", 0)
    assert state.get_blob(key) is not None and state.get_doc("a2") is None
    entry = state.ledger("a2")
    assert entry is not None and entry.state == "fetched"


def test_counts_a_full_redis_refuses_are_dropped_not_retried_forever(full_redis: redis.Redis) -> None:
    buf = CounterBuffer(full_redis, flush_every_s=60)
    buf.hincrby("t:h", "a", 2)
    full_redis.config_set("maxmemory", 1)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        buf.flush()
    full_redis.config_set("maxmemory", 0)
    buf.hincrby("t:h", "a", 1)
    buf.flush()
    assert int(full_redis.hget("t:h", "a") or 0) == 1  # the refused 2 are gone, not counted twice later
