"""Grouped acks, a publish on a closed channel and a queue length asked of a full Redis
(tasks/transport.py), on a real Redis of the test's own, through kombu's own consumer and producer.

The index stage settles a batch inside `acks_grouped`: its acks reach Redis in one round trip. A
producer holding a channel that was closed under it must reconnect (kombu 5.7 raised AttributeError,
which the stage took for a bug), and kombu's read of a queue's length must not need a MULTI (a full
Redis refuses one whole).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Producer, Queue

from tasks.transport import acks_grouped
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


def test_acks_in_a_group_reach_redis_in_one_round_trip(broker: tuple[str, redis.Redis]) -> None:
    url, r = broker
    publish(url, list(range(10)))
    taker = Taker(url, prefetch=10)
    try:
        while len(taker.got) < 10:
            taker.turn()
        assert [m.payload for m in taker.got] == list(range(10))
        assert r.hlen(UNACKED) == 10 and r.zcard(UNACKED_INDEX) == 10
        calls = r.info("commandstats").get("cmdstat_hdel", {}).get("calls", 0)
        with acks_grouped():
            for m in taker.got:
                m.ack()
            assert r.hlen(UNACKED) == 10  # not sent yet
            assert taker.channel.qos.can_consume()  # but no longer held by this consumer
        assert r.hlen(UNACKED) == 0 and r.zcard(UNACKED_INDEX) == 0
        assert r.info("commandstats")["cmdstat_hdel"]["calls"] == calls + 1
    finally:
        taker.close()


def test_acks_outside_a_group_go_one_by_one(broker: tuple[str, redis.Redis]) -> None:
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
