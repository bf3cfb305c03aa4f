"""newsflow.metrics.CounterBuffer against a real Redis: sums in memory, one write per interval."""

from __future__ import annotations

import time

import pytest
import redis

from newsflow.metrics import CounterBuffer, observe_stage, stage_costs


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    r = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/6")
    r.flushdb()
    return r


def test_counts_are_summed_and_written_once(client: redis.Redis) -> None:
    buf = CounterBuffer(client, flush_every_s=60)  # the timer will not fire during the test
    for _ in range(5):
        observe_stage(buf, "t:", "clean", "ok", 0.02, 0.015)
    assert client.hgetall("t:metrics:stage:clean") == {}  # nothing written yet
    buf.maybe_flush()  # not due
    assert client.hgetall("t:metrics:stage:clean") == {}
    buf.flush()
    got = {k.decode(): float(v) for k, v in client.hgetall("t:metrics:stage:clean").items()}
    assert got["n|ok"] == 5 and got["dur_count"] == 5
    assert got["dur_sum"] == pytest.approx(0.1)
    assert got["cpu_sum"] == pytest.approx(0.075)
    assert got["dur|0.025"] == 5


def test_the_timer_flushes_an_idle_worker(client: redis.Redis) -> None:
    buf = CounterBuffer(client, flush_every_s=0.2)
    buf.hincrby("t:sources", "feed|indexed", 2)
    deadline = time.monotonic() + 5
    while client.hget("t:sources", "feed|indexed") is None:
        assert time.monotonic() < deadline, "the idle flush never came"
        time.sleep(0.05)
    assert int(client.hget("t:sources", "feed|indexed") or 0) == 2


def test_a_failed_flush_keeps_the_counts(client: redis.Redis) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)  # nothing listens there
    buf = CounterBuffer(dead, flush_every_s=60)
    buf.hincrby("t:h", "a", 3)
    buf.hincrbyfloat("t:h", "b", 1.5)
    with pytest.raises(redis.ConnectionError):
        buf.flush()
    buf.client = client  # Redis is back
    buf.hincrby("t:h", "a", 1)
    buf.flush()
    assert int(client.hget("t:h", "a") or 0) == 4
    assert float(client.hget("t:h", "b") or 0) == 1.5


def test_stage_costs_are_means_per_task_and_none_without_runs(client: redis.Redis) -> None:
    buf = CounterBuffer(client, flush_every_s=60)
    for _ in range(4):
        observe_stage(buf, "t:", "clean", "ok", 0.05, 0.02)
    buf.flush()
    client.hset("t:metrics:stage:fetch", mapping={"n|ok": 2, "dur_sum": 0.2, "dur_count": 2})  # older workers
    costs = stage_costs(client, "t:", ["fetch", "clean", "index"])
    assert costs["clean"] == {"ms_per_task": 50.0, "cpu_ms_per_task": 20.0}
    assert costs["fetch"] == {"ms_per_task": 100.0, "cpu_ms_per_task": None}
    assert costs["index"] == {"ms_per_task": None, "cpu_ms_per_task": None}
