"""A full Redis (maxmemory, noeviction; issue #14): nothing dropped, no worker stopped, no message
multiplied. The decision logic here; the whole pipeline under a full Redis in tests/test_faults.py
(`test_redis_full`).

Redis is only ever filled on a redis-server of the test's own (`private_redis`), never a shared one.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.exceptions import MaxRetriesExceededError, Reject
from kombu.exceptions import OperationalError

from config.defaults import Settings
from newsflow.errors import PermanentError
from newsflow.pipeline import Message, stage
from newsflow.queues import Room
from newsflow.reconcile import carried_ids, silence_restarted_at
from newsflow.testing import MemoryState, MemoryStores, Retried
from newsflow.testing import RecordingOutbox as Outbox
from tasks.base import StageContext, _CeleryOutbox, requeue_unpublished, run_stage
from tasks.transport import redis_full
from tests.conftest import start_private_redis

SETTINGS = Settings(max_retries=2, retry_backoff_base_s=1.0, retry_backoff_max_s=30.0, visibility_timeout_s=40)
OOM = redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")


def _wrapped_oom() -> OperationalError:
    """What a publish to a full Redis raises: kombu's OperationalError over redis-py's OOM."""
    try:
        try:
            raise OOM
        except redis.RedisError as exc:
            raise OperationalError(str(exc)) from exc
    except OperationalError as outer:
        return outer


# --- telling a full Redis from other trouble -------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "full"),
    [
        (OOM, True),
        (_wrapped_oom(), True),
        (redis.ResponseError(f"Command # 1 (ZREM unacked_index x) of pipeline caused error: {OOM}"), True),
        (redis.ConnectionError("gone"), False),
        (redis.ResponseError("WRONGTYPE"), False),
        (OperationalError("connection refused"), False),
    ],
)
def test_what_is_a_full_redis(exc: BaseException, full: bool) -> None:
    assert redis_full(exc) is full


# --- the stage runner ------------------------------------------------------------------------------
def _msg() -> Message:
    return Message.new("https://news.example/a", "a" * 32, source="wire")


def _run(handler: Any, attempt: int = 0, state: MemoryState | None = None) -> tuple[str, MemoryStores]:
    stores = MemoryStores(settings=SETTINGS, state=state or MemoryState(settings=SETTINGS))
    ctx = StageContext(stage("clean"), SETTINGS, stores, "w1@host", "task-1")  # type: ignore[arg-type]
    return run_stage(ctx, _msg().to_wire(), handler, attempt, Outbox()), stores


def test_a_publish_refused_by_a_full_redis_is_a_redis_full_retry_not_a_bug() -> None:
    def send_refused(ctx: Any, m: Message) -> None:
        raise _wrapped_oom()  # the next stage's message could not be published

    with pytest.raises(Retried) as info:
        _run(send_refused)
    assert not info.value.counted  # waiting for room is not the article's failure
    with pytest.raises(Retried):
        _run(send_refused, attempt=SETTINGS.max_retries)


class FullState(MemoryState):
    """Reads work, the dead letter (a write) is refused: Redis is full."""

    def dead_letter(self, *args: Any, **kwargs: Any) -> bool:
        raise OOM


def test_a_dead_letter_refused_by_a_full_redis_is_retried_not_lost() -> None:
    def gone(ctx: Any, m: Message) -> None:
        raise PermanentError("http_404", "not found")

    with pytest.raises(Retried):  # escaping run_stage, it would be acked as a failure: lost
        _run(gone, state=FullState(settings=SETTINGS))


# --- the Celery outbox: a retry that cannot be published ---------------------------------------------
class FakeTask:
    MaxRetriesExceededError = MaxRetriesExceededError

    def __init__(self, raises: BaseException) -> None:
        self.raises = raises
        self.request = SimpleNamespace(id="task-1")

    def retry(self, **_: Any) -> Any:
        raise self.raises


def test_a_retry_that_cannot_be_published_requeues_the_original() -> None:
    # Celery's own answer, Reject(requeue=False), would ack the message: the article dropped.
    outbox = _CeleryOutbox(FakeTask(Reject(_wrapped_oom(), requeue=False)))  # type: ignore[arg-type]
    with pytest.raises(Reject) as caught:
        outbox.retry({"id": "a"}, 1.0)
    assert caught.value.requeue is True


def test_a_retry_past_max_retries_from_the_dead_letter_path_requeues_too() -> None:
    outbox = _CeleryOutbox(FakeTask(MaxRetriesExceededError("too many")))  # type: ignore[arg-type]
    with pytest.raises(Reject) as caught:
        outbox.retry({"id": "a"}, 1.0)
    assert caught.value.requeue is True


def test_a_requeue_is_kept_as_it_is() -> None:
    already = Reject("x", requeue=True)
    assert requeue_unpublished(already) is already
    assert requeue_unpublished(Reject("x", requeue=False)).requeue is True


# --- the reconciler's clock -----------------------------------------------------------------------
def test_no_full_spell_no_wait() -> None:
    last, remember = silence_restarted_at({"state": Room(False, 0), "broker": Room(False, 0)}, {}, 100.0)
    assert last is None and remember == {"state_oom": "0", "broker_oom": "0"}


def test_a_full_redis_restarts_the_silence_now() -> None:
    last, remember = silence_restarted_at({"broker": Room(True, 3)}, {"broker_oom": "3"}, 100.0)
    assert last == 100.0 and remember["full_at"] == "100.0"


def test_writes_refused_since_the_last_sweep_restart_it_too() -> None:
    # Full between two sweeps, room again by the second: still seen, by the refusals it counted.
    last, _ = silence_restarted_at({"broker": Room(False, 12)}, {"broker_oom": "3", "full_at": "10.0"}, 100.0)
    assert last == 100.0


def test_no_new_refusals_keep_the_last_full_time() -> None:
    last, remember = silence_restarted_at({"broker": Room(False, 12)}, {"broker_oom": "12", "full_at": "10.0"}, 100.0)
    assert last == 10.0 and "full_at" not in remember


def test_refusals_before_the_first_sweep_count() -> None:
    last, _ = silence_restarted_at({"state": Room(False, 5)}, {}, 100.0)
    assert last == 100.0


def test_a_restarted_redis_counts_from_zero_again() -> None:
    last, remember = silence_restarted_at({"state": Room(False, 1)}, {"state_oom": "40"}, 100.0)
    assert last is None and remember == {"state_oom": "1"}


# --- the reconciler: late or lost? -----------------------------------------------------------------
def _envelope(article_id: str) -> bytes:
    """A kombu message as it sits in a queue list, carrying one stage payload."""
    body = base64.b64encode(json.dumps([[{"id": article_id}], {}, {}]).encode()).decode()
    return json.dumps({"body": body, "headers": {}, "properties": {"body_encoding": "base64"}}).encode()


class FakeBroker:
    def __init__(self, lists: dict[str, list[bytes]], unacked: dict[bytes, bytes]) -> None:
        self.lists, self.unacked = lists, unacked

    def llen(self, name: str) -> int:
        return len(self.lists.get(name, []))

    def lrange(self, name: str, start: int, end: int) -> list[bytes]:
        return self.lists.get(name, [])[start : end + 1]

    def hscan_iter(self, name: str, count: int = 10) -> Iterator[tuple[bytes, bytes]]:
        assert name == "unacked"
        yield from self.unacked.items()


def test_an_article_a_message_still_carries_is_late_not_lost() -> None:
    broker = FakeBroker(
        {"clean": [_envelope("queued"), b"garbage"], "enrich\x06\x163": [_envelope("prio")]},
        {b"tag": json.dumps([json.loads(_envelope("running")), "", "index"]).encode()},
    )
    wanted = ["queued", "prio", "running", "lost"]
    assert carried_ids(broker, wanted) == {"queued", "prio", "running"}
    assert carried_ids(broker, wanted, max_entries=2) is None  # too deep a backlog to read: unknown


# --- the transport on a real, full redis-server of the test's own --------------------------------------
@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    from workers.runtime import free_port

    server = start_private_redis(free_port(), tmp_path / "redis")
    client = redis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def _fill(r: redis.Redis) -> list[str]:
    """Make this private server full: maxmemory just above its use, then ballast until OOM."""
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", int(r.info("memory")["used_memory"]) + 512 * 1024)
    keys: list[str] = []
    for size in (16 * 1024, 1024, 64, 1):  # big pieces first, then whatever room is left
        for _ in range(10_000):
            key = f"ballast:{len(keys)}"
            try:
                r.set(key, b"x" * size)
            except redis.exceptions.OutOfMemoryError:
                break
            keys.append(key)
        else:
            pytest.fail("the private Redis never filled up")
    return keys


def _free(r: redis.Redis, keys: list[str]) -> None:
    r.delete(*keys)
    r.config_set("maxmemory", 0)


@pytest.mark.integration
def test_the_transport_acks_requeues_and_consumes_through_a_full_redis(private_redis: redis.Redis) -> None:
    from kombu import Connection, Exchange, Queue

    url = private_redis.connection_pool.connection_kwargs
    conn = Connection(
        f"redis://127.0.0.1:{url['port']}/0",
        transport="tasks.transport:Transport",
        transport_options={"visibility_timeout": 3600},
    )
    with conn:
        channel = conn.channel()
        queue = Queue("full-test", Exchange("full-test"), "full-test", channel=channel)
        queue.declare()
        producer = conn.Producer(channel)
        for n in range(3):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="full-test", serializer="json")
        first, second = queue.get(no_ack=False), queue.get(no_ack=False)
        assert first is not None and second is not None
        ballast = _fill(private_redis)
        try:
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                private_redis.lpush("proof", b"x")  # it is full
            first.ack()  # stock kombu's MULTI was refused here: "Unrecoverable error" in a worker
            assert not private_redis.hexists("unacked", first.delivery_tag)
            second.reject(requeue=True)  # cannot go back to the queue now: stays unacked, not lost
            assert private_redis.hexists("unacked", second.delivery_tag)
            # A message popped now cannot be recorded as unacked: the consumer holds it until room.
            got: list[Any] = []
            consumer = threading.Thread(target=lambda: got.append(queue.get(no_ack=False)), daemon=True)
            consumer.start()
            time.sleep(1.0)
            assert consumer.is_alive() and not got
        finally:
            _free(private_redis, ballast)
        consumer.join(10)
        assert got and got[0] is not None and got[0].payload == {"n": 2}
        assert private_redis.hexists("unacked", got[0].delivery_tag)
        assert private_redis.hexists("unacked", second.delivery_tag)  # for the visibility timeout


@pytest.mark.integration
def test_a_message_popped_into_a_full_redis_is_parked_then_delivered(private_redis: redis.Redis) -> None:
    """The worker's path (BRPOP in the event loop): the popped message cannot be recorded as
    unacked, so it is parked, not delivered and not lost, and the channel pops nothing more; once
    there is room it is recorded and delivered. The loop never blocks meanwhile."""
    import socket

    from kombu import Connection, Consumer, Exchange, Queue

    port = private_redis.connection_pool.connection_kwargs["port"]
    conn = Connection(f"redis://127.0.0.1:{port}/0", transport="tasks.transport:Transport")
    got: list[Any] = []
    with conn:
        channel = conn.channel()
        queue = Queue("parked-test", Exchange("parked-test"), "parked-test", channel=channel)
        queue.declare()
        for n in range(2):
            conn.Producer(channel).publish({"n": n}, exchange=queue.exchange, routing_key="parked-test")
        with Consumer(channel, [queue], callbacks=[lambda body, message: got.append(message)], accept=["json"]):
            ballast = _fill(private_redis)
            try:
                started = time.monotonic()
                with pytest.raises(socket.timeout):
                    conn.drain_events(timeout=1.5)
                assert time.monotonic() - started < 5  # the loop went on; it did not wait for room
                assert got == [] and len(channel.parked) == 1
                assert private_redis.llen("parked-test") == 1  # the other one was not popped
                assert private_redis.hlen("unacked") == 0
            finally:
                _free(private_redis, ballast)
            deadline = time.monotonic() + 10
            while len(got) < 1 and time.monotonic() < deadline:
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=0.5)
            assert [m.payload for m in got][:1] == [{"n": 0}] and channel.parked == []
            assert private_redis.hexists("unacked", got[0].delivery_tag)
            for m in got:
                m.ack()
