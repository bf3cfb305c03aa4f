"""Bulk takes and grouped acks (tasks/transport.py) on a real Redis, through kombu's own consumer;
and the transport's answers to a publish on a closed channel and to a queue length asked of a full Redis.

After a BRPOP, a channel with free prefetch slots takes that many more messages in one script that
also records them unacked; `acks_grouped` sends a batch's acks in one round trip. What must hold:
order kept, every taken message recorded unacked in kombu's own format (so a restore brings it back),
garbage still quarantined, a prefetch of one untouched, and a full Redis never pops without recording.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Producer, Queue

from tasks.transport import _TAKE_RECORDED, acks_grouped, quarantine_key
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


def test_one_brpop_delivers_up_to_the_free_prefetch_slots_in_order(broker: tuple[str, redis.Redis]) -> None:
    url, r = broker
    publish(url, list(range(25)))
    taker = Taker(url, prefetch=10)
    try:
        assert taker.turn() == 10  # one BRPOP + nine taken with it
        assert [m.payload for m in taker.got] == list(range(10))
        # Each is recorded unacked, in kombu's format [message, exchange, routing key].
        records = {k.decode(): json.loads(v) for k, v in r.hgetall(UNACKED).items()}
        assert set(records) == {m.delivery_tag for m in taker.got} and r.zcard(UNACKED_INDEX) == 10
        assert all(rec[2] == QUEUE and rec[0]["properties"]["delivery_tag"] == tag for tag, rec in records.items())
        with acks_grouped():  # ten acks, one round trip
            calls = r.info("commandstats").get("cmdstat_hdel", {}).get("calls", 0)
            for m in taker.got:
                m.ack()
            assert r.hlen(UNACKED) == 10  # not sent yet
        assert r.hlen(UNACKED) == 0 and r.zcard(UNACKED_INDEX) == 0
        assert r.info("commandstats")["cmdstat_hdel"]["calls"] == calls + 1
        while len(taker.got) < 25:  # the rest, still in order
            taker.turn()
            for m in taker.got:
                if not m.acknowledged:
                    m.ack()
        assert [m.payload for m in taker.got] == list(range(25))
        assert r.hlen(UNACKED) == 0
    finally:
        taker.close()


def test_taken_messages_come_back_when_their_consumer_goes(broker: tuple[str, redis.Redis]) -> None:
    """The records the script writes are kombu's: closing the channel restores every held message."""
    url, r = broker
    publish(url, list(range(6)))
    taker = Taker(url, prefetch=8)
    assert taker.turn() == 6
    taker.close()  # unacked: kombu's restore_unacked puts them back
    assert r.llen(QUEUE) == 6 and r.hlen(UNACKED) == 0
    again = Taker(url, prefetch=8)
    try:
        assert again.turn() == 6
        assert sorted(m.payload for m in again.got) == list(range(6))
        assert all(m.delivery_info.get("redelivered") for m in again.got)
    finally:
        again.close()


def test_a_prefetch_of_one_takes_one_at_a_time(broker: tuple[str, redis.Redis]) -> None:
    url, r = broker
    publish(url, [1, 2, 3])
    taker = Taker(url, prefetch=1)
    try:
        assert taker.turn() == 1
        assert r.llen(QUEUE) == 2
        assert "cmdstat_evalsha" not in r.info("commandstats") and "cmdstat_eval" not in r.info("commandstats")
    finally:
        taker.close()


def test_garbage_among_taken_messages_is_set_aside(broker: tuple[str, redis.Redis]) -> None:
    url, r = broker
    publish(url, ["first"])
    # Not JSON, and JSON with a tag that is still no envelope (headers a list): both quarantined,
    # neither left in the unacked set; the good ones around them are delivered.
    r.lpush(QUEUE, b"not json", json.dumps({"body": "x", "headers": [], "properties": {"delivery_tag": "bad"}}))
    publish(url, ["last"])
    taker = Taker(url, prefetch=10)
    try:
        assert taker.turn() == 2
        assert [m.payload for m in taker.got] == ["first", "last"]
        assert r.hlen(UNACKED) == 2 and not r.hexists(UNACKED, "bad")
        reasons = [json.loads(x)["reason"] for x in r.lrange(quarantine_key(), 0, -1)]
        assert len(reasons) == 2 and any("not JSON" in x for x in reasons) and any("headers" in x for x in reasons)
    finally:
        taker.close()


def test_a_full_redis_refuses_the_take_before_popping(broker: tuple[str, redis.Redis]) -> None:
    """Redis 7 refuses a flagged script up front when full: nothing is popped without its record."""
    url, r = broker
    publish(url, list(range(5)))
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            r.register_script(_TAKE_RECORDED)(keys=[QUEUE, UNACKED, UNACKED_INDEX], args=[5, 0])
        assert r.llen(QUEUE) == 5 and r.hlen(UNACKED) == 0
    finally:
        r.config_set("maxmemory", 0)


# --- the same transport's answers to a broken channel and a full Redis on publish ----------------------
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
