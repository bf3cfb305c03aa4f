"""`tasks.transport.Orphans`: what a worker held when its broker connection broke, and what it
does with each message on the next connection (the decision logic; the real run is
tests/test_redis_restart_held.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.worker import state

from tasks.transport import Orphans


class RecordingQoS:
    """Stands in for a live channel's QoS: records restores and acks; can refuse like a down Redis."""

    def __init__(self, refuse: bool = False) -> None:
        self.restored: list[str] = []
        self.acked: list[str] = []
        self.refuse = refuse

    def restore_by_tag(self, tag: str, leftmost: bool = False) -> None:
        if self.refuse:
            raise redis.ConnectionError("Redis is loading")
        assert leftmost  # it was delivered before anything still waiting: head of the queue
        self.restored.append(tag)

    def _remove_from_indices(self, tag: str) -> Any:
        return SimpleNamespace(execute=lambda: self.acked.append(tag))


class Request:  # what Celery keeps of a running task: its message's delivery tag
    def __init__(self, tag: str) -> None:
        self.message = SimpleNamespace(delivery_tag=tag)


@pytest.fixture()
def orphans() -> Orphans:
    o = Orphans()
    o.SETTLE_EVERY_S = 0.0
    return o


def test_held_but_not_running_is_restored_running_is_left_alone(orphans: Orphans) -> None:
    running = Request("running")
    state.active_requests.add(running)
    try:
        orphans.use("buffered")  # a batched stage's buffer holds it
        orphans.broke(["countdown", "prefetched", "running", "buffered"])
        qos = RecordingQoS()
        orphans.settle(qos)  # type: ignore[arg-type]
        assert sorted(qos.restored) == ["countdown", "prefetched"]
        assert orphans.held == {"running", "buffered"} and orphans.pending()
        # The running task ends: its ack, made while the connection was gone, is made now.
        orphans.settled("running", requeue=False)
        orphans.release("buffered")
        orphans.settled("buffered", requeue=True)  # the batch asked for a requeue
        orphans.settle(qos)  # type: ignore[arg-type]
        assert qos.acked == ["running"] and qos.restored[-1] == "buffered"
        assert not orphans.pending()
    finally:
        state.active_requests.discard(running)


def test_a_refusing_redis_keeps_everything_for_the_next_try(orphans: Orphans) -> None:
    orphans.broke(["a", "b"])
    orphans.settled("c", requeue=False)
    orphans.settle(RecordingQoS(refuse=True))  # type: ignore[arg-type]
    assert orphans.held == {"a", "b"} and orphans.done == {"c": False}
    qos = RecordingQoS()
    orphans.settle(qos)  # type: ignore[arg-type]
    assert sorted(qos.restored) == ["a", "b"] and qos.acked == ["c"] and not orphans.pending()


def test_settling_is_rate_limited() -> None:
    o = Orphans()
    o.broke(["a"])
    first, second = RecordingQoS(), RecordingQoS()
    o.settle(first)  # type: ignore[arg-type]
    o.broke(["b"])
    o.settle(second)  # type: ignore[arg-type]  # within SETTLE_EVERY_S: the event loop's next ticks
    assert first.restored == ["a"] and second.restored == []
