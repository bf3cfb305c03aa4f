"""Grouped acks, a publish on a closed channel and a queue length asked of a full Redis
(tasks/transport.py), on a real Redis of the test's own, through kombu's own consumer and producer.

The acks of one turn of a worker's event loop (the index stage's whole batch) reach Redis in one
round trip. A producer holding a channel that was closed under it must reconnect (kombu 5.7 raised AttributeError,
which the stage took for a bug), and kombu's read of a queue's length must not need a MULTI (a full
Redis refuses one whole).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Producer, Queue
from kombu.asynchronous import Hub

from tests.conftest import start_private_redis

pytestmark = pytest.mark.integration

QUEUE = "bulk-test"
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"  # kombu's default key names


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[str, redis.Redis]]:
    """A redis-server of the test's own: its unacked set and command counts are this test's alone."""
    from workers.runtime import free_port

    server = start_private_redis(free_port(), tmp_path / "redis")
    client = redis.Redis.from_url(server.url)
    try:
        yield server.url, client
    finally:
        client.close()
        server.stop()


def publish(url: str, bodies: list[Any]) -> None:
    with Connection(url, transport="tasks.transport:Transport") as conn:
        producer = Producer(conn.channel(), routing_key=QUEUE, serializer="json")
        Queue(QUEUE, routing_key=QUEUE)(producer.channel).declare()
        for body in bodies:
            producer.publish(body, routing_key=QUEUE)


class Taker:
    """A kombu consumer over tasks.transport with a prefetch, as a Celery worker's consumer is."""

    def __init__(self, url: str, prefetch: int) -> None:
        self.conn = Connection(url, transport="tasks.transport:Transport")
        self.channel = self.conn.channel()
        self.channel.basic_qos(0, prefetch, False)
        self.got: list[Any] = []
        self.consumer = Consumer(self.channel, queues=[Queue(QUEUE, routing_key=QUEUE)], accept=["json"])
        self.consumer.register_callback(lambda body, message: self.got.append(message))
        self.consumer.consume()

    def turn(self) -> int:
        """One turn of the event loop (one BRPOP answered): how many messages it delivered."""
        before = len(self.got)
        self.conn.drain_events(timeout=5)
        return len(self.got) - before

    def close(self) -> None:
        self.conn.release()


def hdel_calls(r: redis.Redis) -> int:
    return int(r.info("commandstats").get("cmdstat_hdel", {}).get("calls", 0))


class Looped:
    """A kombu consumer over tasks.transport driven by kombu's event loop (`Hub`), as a Celery
    worker's is: registered from this thread, which is then the loop's."""

    def __init__(self, url: str, prefetch: int) -> None:
        self.hub = Hub()
        self.conn = Connection(url, transport="tasks.transport:Transport")
        self.got: list[Any] = []
        self.channel = self.conn.channel()
        self.channel.basic_qos(0, prefetch, False)
        self.consumer = Consumer(self.channel, queues=[Queue(QUEUE, routing_key=QUEUE)], accept=["json"])
        self.consumer.register_callback(lambda body, message: self.got.append(message))
        self.consumer.consume()
        self.conn.transport.register_with_event_loop(self.conn.connection, self.hub)

    def take(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.got) < n and time.monotonic() < deadline:
            self.hub.run_once()
        assert len(self.got) == n

    def close(self) -> None:
        self.hub.close()
        self.conn.release()


@pytest.fixture
def looped(broker: tuple[str, redis.Redis]) -> Iterator[tuple[Looped, redis.Redis]]:
    url, r = broker
    publish(url, list(range(10)))
    consumer = Looped(url, prefetch=10)
    try:
        consumer.take(10)
        assert r.hlen(UNACKED) == 10 and r.zcard(UNACKED_INDEX) == 10
        yield consumer, r
    finally:
        consumer.close()


def test_acks_of_one_turn_of_the_event_loop_reach_redis_in_one_round_trip(looped: tuple[Looped, redis.Redis]) -> None:
    """As a Celery worker acks: each ack a callback scheduled on the consumer's event loop from a
    pool thread (`call_soon_ack`); the index stage settles a whole batch that way at once."""
    consumer, r = looped
    assert sorted(m.payload for m in consumer.got) == list(range(10))
    calls = hdel_calls(r)
    pool_thread = threading.Thread(target=lambda: [consumer.hub.call_soon(m.ack) for m in consumer.got])
    pool_thread.start()
    pool_thread.join()
    assert r.hlen(UNACKED) == 10  # scheduled, not run yet
    consumer.hub.run_once()  # the turn runs the ten acks, then asks whether to consume (and writes them)
    assert r.hlen(UNACKED) == 0 and r.zcard(UNACKED_INDEX) == 0
    assert hdel_calls(r) == calls + 1
    assert consumer.channel.qos.can_consume()  # none is held by this consumer any more


def test_acks_of_the_last_turn_are_written_when_the_channel_closes(looped: tuple[Looped, redis.Redis]) -> None:
    """A warm shutdown runs the last acks and closes the channel with no turn in between; kombu
    restores what is still held only when something is, so the close itself writes them."""
    consumer, r = looped
    for m in consumer.got:
        m.ack()  # in the loop's thread: held for the turn's end
    assert r.hlen(UNACKED) == 10
    consumer.channel.close()
    assert r.hlen(UNACKED) == 0 and r.zcard(UNACKED_INDEX) == 0
    assert r.llen(QUEUE) == 0  # acked, not restored


def test_acks_after_the_consumer_is_cancelled_go_at_once(looped: tuple[Looped, redis.Redis]) -> None:
    """`celery control cancel_consumer` (a draining host): the loop no longer polls the channel,
    so it has no later turn for the acks of the tasks still running."""
    consumer, r = looped
    consumer.consumer.cancel()
    consumer.got[0].ack()
    assert r.hlen(UNACKED) == 9


def test_a_sweep_restores_only_what_is_still_expired(looped: tuple[Looped, redis.Redis]) -> None:
    """A sweep that stalled past its lock (another sweep meanwhile restored a message and a worker
    took it again) must not restore that worker's live copy: the age is checked again."""
    consumer, r = looped
    qos = consumer.channel.qos
    tag = str(consumer.got[0].delivery_tag)
    qos._sweep_ceil = time.time() - 60  # a sweep that looked a minute ago: recorded since, not expired
    qos.restore_by_tag(tag)
    assert r.llen(QUEUE) == 0 and r.hexists(UNACKED, tag)
    qos._sweep_ceil = time.time() + 1  # past the visibility timeout
    qos.restore_by_tag(tag)
    qos._sweep_ceil = None
    assert r.llen(QUEUE) == 1 and not r.hexists(UNACKED, tag) and r.zscore(UNACKED_INDEX, tag) is None


def test_acks_outside_an_event_loop_go_at_once(broker: tuple[str, redis.Redis]) -> None:
    """A consumer that runs no event loop (a script draining a queue) gets no later turn to write
    its acks in: each goes to Redis as it is made."""
    url, r = broker
    publish(url, [1, 2])
    taker = Taker(url, prefetch=2)
    try:
        while len(taker.got) < 2:
            taker.turn()
        taker.got[0].ack()
        assert r.hlen(UNACKED) == 1
        taker.got[1].ack()
        assert r.hlen(UNACKED) == 0
    finally:
        taker.close()


# --- a broken channel and a full Redis on publish ---------------------------------------------------
def test_a_publish_on_a_closed_channel_reconnects(broker: tuple[str, redis.Redis]) -> None:
    """A producer still holding a channel that was closed under it (its connection broke) publishes
    after kombu's retry reconnects: a connection error, not kombu 5.7's AttributeError, which the
    stage took for a bug (`internal_error`)."""
    url, r = broker
    with Connection(url, transport="tasks.transport:Transport") as conn:
        producer = Producer(conn, routing_key=QUEUE, serializer="json")
        Queue(QUEUE, routing_key=QUEUE)(producer.channel).declare()
        producer.channel.close()  # what a broken connection's cleanup does to it
        with pytest.raises(redis.exceptions.ConnectionError):
            producer.channel.basic_publish(producer.channel.prepare_message("x"), "", QUEUE)
        producer.publish({"n": 1}, routing_key=QUEUE, retry=True, retry_policy={"max_retries": 2, "interval_start": 0})
    assert r.llen(QUEUE) == 1


def test_a_queue_length_is_read_without_a_transaction(broker: tuple[str, redis.Redis]) -> None:
    """kombu reads a queue's length when a publish declares it; a full Redis refuses a MULTI whole,
    plain reads it answers."""
    url, r = broker
    publish(url, [1, 2])
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 1)
    try:
        with Connection(url, transport="tasks.transport:Transport") as conn:
            assert conn.default_channel._size(QUEUE) == 2
    finally:
        r.config_set("maxmemory", 0)


def test_a_sweep_restores_at_most_its_limit(broker: tuple[str, redis.Redis]) -> None:
    """The sweep runs in the worker's event loop: after an outage, restoring every expired message
    at once would stall the worker for as long (`unacked_restore_limit` bounds each sweep)."""
    from config.defaults import Settings
    from tasks.celeryconfig import RESTORE_PER_SWEEP, celery_config

    assert celery_config(Settings())["broker_transport_options"]["unacked_restore_limit"] == RESTORE_PER_SWEEP
    url, r = broker
    publish(url, list(range(30)))
    options = {"visibility_timeout": 1, "unacked_restore_limit": 10}
    conn = Connection(url, transport="tasks.transport:Transport", transport_options=options)
    try:
        channel = conn.channel()
        channel.basic_qos(0, 30, False)
        got: list[Any] = []
        consumer = Consumer(channel, queues=[Queue(QUEUE, routing_key=QUEUE)], accept=["json"])
        consumer.register_callback(lambda body, message: got.append(message))
        consumer.consume()
        deadline = time.monotonic() + 10
        while len(got) < 30 and time.monotonic() < deadline:
            conn.drain_events(timeout=5)
        time.sleep(1.2)  # every one of them past the visibility timeout
        channel.qos.restore_visible(num=channel.unacked_restore_limit, interval=1)
        assert r.llen(QUEUE) == 10 and r.hlen(UNACKED) == 20
        channel.qos.restore_visible(num=channel.unacked_restore_limit, interval=1)
        assert r.llen(QUEUE) == 20 and r.hlen(UNACKED) == 10
    finally:
        conn.release()
