"""`newsflow.dispatch.send` on a real Redis of the test's own: the message it publishes is the one
Celery's `send_task` publishes (its per-send cost is what it saves, not what it writes), and its
producer, kept per thread, rides out a connection Redis dropped.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from newsflow import dispatch
from newsflow.pipeline import Message, stage
from tasks.celeryconfig import celery_config
from tests.conftest import start_private_redis, suite_settings

pytestmark = pytest.mark.integration

TO = stage("clean")
# What differs between two sends of one message: the task id and what is made of it, the time.
PER_SEND = {"id", "root_id", "eta", "delivery_tag", "correlation_id"}
# `send_task` also copies argsrepr and kwargsrepr into the message's properties; Celery's worker
# reads them from the headers only (celery.worker.request.Request), so `send` leaves them out.
UNREAD = {"argsrepr", "kwargsrepr"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Celery, redis.Redis]]:
    from workers.runtime import free_port

    server = start_private_redis(free_port(), tmp_path / "redis")
    app = Celery("dispatch-test", set_as_current=False)
    app.conf.update(celery_config(suite_settings(redis_url=server.url)))
    client = redis.Redis.from_url(server.url)
    try:
        yield app, client
    finally:
        client.close()
        app.close()
        server.stop()


def _message() -> Message:
    msg = Message.new("https://news.example/a/1", "ab" * 16, source="wire")
    return msg.forward(blob="nf:blob:x", fetch={"status": 200, "final_url": "https://news.example/a/1"})


def _popped(r: redis.Redis) -> dict[str, Any]:
    raw = r.rpop(TO.queue)
    assert isinstance(raw, bytes), "nothing was published"
    envelope: dict[str, Any] = json.loads(raw)
    envelope["body"] = json.loads(base64.b64decode(envelope["body"]))
    return envelope


def _without(d: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: (_without(v, keys) if isinstance(v, dict) else v) for k, v in d.items() if k not in keys}


@pytest.mark.parametrize("options", [{}, {"countdown": 30.0, "retries": 2}])
def test_send_publishes_what_send_task_publishes(broker: tuple[Celery, redis.Redis], options: dict[str, Any]) -> None:
    app, r = broker
    msg = _message()
    dispatch._send_task(app, TO, msg, None, options.get("countdown"), options.get("retries"))
    celery_made = _popped(r)
    dispatch.send(app, TO, msg, **options)
    ours = _popped(r)
    celery_made["properties"] = _without(celery_made["properties"], UNREAD)
    assert _without(ours, PER_SEND) == _without(celery_made, PER_SEND)
    assert ours["headers"]["argsrepr"] == msg.describe()
    assert ours["body"][0] == [msg.to_wire()]
    assert ours["headers"]["root_id"] == ours["headers"]["id"]  # sent from outside a task: its own root
    assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": TO.queue}
    if options:
        assert ours["headers"]["eta"] and ours["headers"]["retries"] == 2


def test_the_thread_producer_reconnects_after_redis_dropped_it(broker: tuple[Celery, redis.Redis]) -> None:
    app, r = broker
    msg = _message()
    dispatch.send(app, TO, msg)
    held = dispatch._held.producer
    killed = r.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1  # the producer's connection among them
    for _ in range(3):
        dispatch.send(app, TO, msg)  # kombu's publish retry reconnects; nothing raised, nothing lost
    assert dispatch._held.producer is held
    assert r.llen(TO.queue) == 4


def test_a_forked_child_or_another_app_gets_a_producer_of_its_own(
    broker: tuple[Celery, redis.Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _ = broker
    first = dispatch._thread_producer(app)
    assert dispatch._thread_producer(app) is first
    monkeypatch.setattr("newsflow.dispatch.os.getpid", lambda: -1)  # what a forked child sees: another pid
    assert dispatch._thread_producer(app) is not first
