"""A stage's forward and its ack, carried in the stage's own commit (tasks.base.commit), on a real
Redis of the test's own: the next stage's message is the one `send` publishes, it is written with the
stage's result or not at all, and the delivery's unacked record goes with them, so the ack Celery
makes afterwards costs no round trip.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from celery.app.task import Context
from celery.worker.request import Request
from kombu import Connection, Consumer, Queue

from newsflow import dispatch
from newsflow.pipeline import Message, stage
from newsflow.stores import Stores
from tasks.base import StageContext, _CeleryOutbox, carries, commit, delivery_tag
from tasks.celeryconfig import celery_config
from tasks.transport import settled
from tests.conftest import start_private_redis, suite_settings
from tests.test_dispatch import PER_SEND
from tests.test_transport_acks import UNACKED, UNACKED_INDEX, hdel_calls

pytestmark = pytest.mark.integration

CLEAN, ENRICH = stage("clean"), stage("enrich")


def _no_op(payload: Any) -> None:
    """The clean task's stand-in: only its name matters to the request Celery builds."""


class Lane:
    """A Celery app, the state stores and a kombu consumer of the clean queue, all on one Redis."""

    def __init__(self, url: str) -> None:
        self.settings = suite_settings(redis_url=url, state_redis_url="")
        self.app = Celery("carry-test", set_as_current=False)
        self.app.conf.update(celery_config(self.settings))
        self.r = redis.Redis.from_url(url)
        self.stores = Stores(redis.Redis.from_url(url), self.settings)
        self.conn = Connection(url, transport="tasks.transport:Transport")
        self.got: list[Any] = []
        consumer = Consumer(self.conn.channel(), queues=[Queue(CLEAN.queue, routing_key=CLEAN.queue)], accept=["json"])
        consumer.register_callback(lambda body, message: self.got.append(message))
        consumer.consume()

    def delivered(self, msg: Message) -> Any:
        """`msg` sent to the clean queue and taken by the consumer: a delivery with an unacked record."""
        dispatch.send(self.app, CLEAN, msg)
        self.conn.drain_events(timeout=5)
        (delivery,) = self.got
        assert self.r.hexists(UNACKED, delivery.delivery_tag)
        return delivery

    def outbox(self, delivery: Any) -> _CeleryOutbox:
        """The clean task's outbox while it runs `delivery`: its request made by Celery's own worker
        code from the message (celery.worker.request.Request, then the tracer's Context)."""
        if CLEAN.task not in self.app.tasks:
            self.app.task(name=CLEAN.task)(_no_op)
        request = Context(Request(delivery, app=self.app).request_dict)
        return _CeleryOutbox(SimpleNamespace(app=self.app, request=request, stage=CLEAN.name))  # type: ignore[arg-type]

    def ctx(self, outbox: _CeleryOutbox) -> StageContext:
        return StageContext(CLEAN, self.settings, self.stores, "w@h", "t", carrier=outbox)

    def popped(self, queue: str) -> dict[str, Any] | None:
        raw = self.r.rpop(queue)
        if raw is None:
            return None
        envelope: dict[str, Any] = json.loads(raw)
        envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
        return envelope

    def close(self) -> None:
        self.conn.release()
        self.r.close()
        self.app.close()


@pytest.fixture
def lane(tmp_path: Path) -> Iterator[Lane]:
    from workers.runtime import free_port

    server = start_private_redis(free_port(), tmp_path / "redis")
    made = Lane(server.url)
    try:
        yield made
    finally:
        made.close()
        server.stop()


def _without(d: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: (_without(v, keys) if isinstance(v, dict) else v) for k, v in d.items() if k not in keys}


def _article(n: int = 1) -> Message:
    return Message.new(f"https://news.example/a/{n}", f"{n:032x}").forward(blob="nf:blob:x", fetch={"status": 200})


def _cleaned(lane: Lane, msg: Message) -> Any:
    """The clean stage's writes for `msg`, queued as its handler queues them."""
    pipe = lane.stores.state.pipeline()
    lane.stores.state.put_doc(msg.id, {"id": msg.id, "body": "text"}, pipe)
    lane.stores.state.record(msg.id, msg.url, "cleaned", CLEAN.name, worker="w@h", pipe=pipe)
    return pipe


def test_the_commit_carries_the_forward_and_the_ack(lane: Lane) -> None:
    msg = _article()
    delivery = lane.delivered(msg)
    outbox = lane.outbox(delivery)
    forward = msg.forward()

    assert commit(lane.ctx(outbox), _cleaned(lane, msg), msg, forward) is forward
    assert lane.stores.state.ledger(msg.id).state == "cleaned"
    carried = lane.popped(ENRICH.queue)
    assert lane.r.llen(ENRICH.queue) == 0
    # The delivery's unacked record went with the commit.
    assert not lane.r.hexists(UNACKED, delivery.delivery_tag)
    assert lane.r.zscore(UNACKED_INDEX, delivery.delivery_tag) is None

    # The message carried is the one `send` publishes.
    dispatch.send(lane.app, ENRICH, forward)
    sent = lane.popped(ENRICH.queue)
    assert carried is not None and sent is not None
    assert _without(carried, PER_SEND) == _without(sent, PER_SEND)
    assert carried["body"][0] == [forward.to_wire()]

    # The runner's send of the forward finds it carried; Celery's ack writes nothing.
    outbox.send(ENRICH, forward)
    assert lane.r.llen(ENRICH.queue) == 0
    calls = hdel_calls(lane.r)
    delivery.ack()
    assert hdel_calls(lane.r) == calls
    assert not settled.take(delivery.delivery_tag)  # taken by that ack


def test_a_stale_delivery_carries_nothing(lane: Lane) -> None:
    """A later delivery took the article further: neither the result nor the forward nor the ack is
    written, and Celery's ack of the stale copy is an ordinary one."""
    msg = _article(2)
    delivery = lane.delivered(msg)
    lane.stores.state.record(msg.id, msg.url, "indexed", "index")
    outbox = lane.outbox(delivery)

    assert commit(lane.ctx(outbox), _cleaned(lane, msg), msg, msg.forward()) is None
    assert lane.stores.state.ledger(msg.id).state == "indexed"
    assert lane.r.llen(ENRICH.queue) == 0
    assert lane.r.hexists(UNACKED, delivery.delivery_tag)
    calls = hdel_calls(lane.r)
    delivery.ack()
    assert hdel_calls(lane.r) == calls + 1
    assert not lane.r.hexists(UNACKED, delivery.delivery_tag)


def test_without_a_carrier_the_forward_is_left_to_the_runner(lane: Lane) -> None:
    msg = _article(3)
    delivery = lane.delivered(msg)
    ctx = StageContext(CLEAN, lane.settings, lane.stores, "w@h", "t")
    forward = msg.forward()
    assert commit(ctx, _cleaned(lane, msg), msg, forward) is forward
    assert lane.r.llen(ENRICH.queue) == 0
    assert lane.r.hexists(UNACKED, delivery.delivery_tag)


def test_the_delivery_tag_is_read_from_what_celery_gives_the_task(lane: Lane) -> None:
    """Celery's request keeps the message's properties whole; its `delivery_info` has no tag."""
    delivery = lane.delivered(_article(4))
    request = lane.outbox(delivery).task.request
    assert "delivery_tag" not in request.delivery_info
    assert delivery_tag(request) == delivery.delivery_tag
    assert delivery_tag(Context({})) is None  # a task called directly


def test_nothing_is_carried_unless_the_broker_is_the_state_redis() -> None:
    same = suite_settings(redis_url="redis://127.0.0.1:6379/0", state_redis_url="")
    other = suite_settings(redis_url="redis://127.0.0.1:6379/0", state_redis_url="redis://127.0.0.1:6379/1")
    conf = SimpleNamespace(task_send_sent_event=False)
    assert carries(same, conf)
    assert not carries(other, conf)
    # Celery sends task-sent events with its own publish (Flower's `enable_events` turns them on).
    assert not carries(same, SimpleNamespace(task_send_sent_event=True))
    assert not carries(suite_settings(redis_url="redis://127.0.0.1:6379/0", commit_carries=False), conf)
