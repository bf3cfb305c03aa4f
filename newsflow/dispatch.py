"""Sending article messages to a stage's queue through a Celery app.

Every producer — `newsflow ingest`, crawls, the stage runner forwarding, reconcile and replay —
sends through `send`, so what a message looks like on the wire is decided in one place
(`newsflow.pipeline.Message.to_wire`) and every send is routed by the stage table.

A stage forwards every article it finishes, so a send is on every hop's path. `Celery.send_task`
costs ~0.3 ms of CPU per message (measured: bench/publish.py): a producer taken from and given back
to the pool, the router, task options looked up in the registry, the configuration read a dozen
times. `send` does what of it a stage message needs: the same Celery task message (protocol 2,
built by Celery's own `as_task_v2`), to the stage's queue through the anonymous direct exchange
(where `send_task` puts it too), published by kombu with the app's publish retry policy (it
reconnects a dropped connection and revives the producer), over a producer each thread keeps.
Task-sent events (`task_send_sent_event`, off unless task events are on) are Celery's to send:
with them on, `send` goes through `send_task`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any
from uuid import uuid4

from celery import Celery

from newsflow.pipeline import FIRST, Message, Stage
from newsflow.queues import priority_lists

# kombu's delivery mode for messages the broker must keep (Redis keeps every message anyway).
_PERSISTENT = 2


def send(
    app: Celery,
    to: Stage,
    message: Message,
    *,
    producer: Any = None,
    countdown: float | None = None,
    retries: int | None = None,
) -> None:
    """Publish `message` to stage `to`'s queue (after `countdown` seconds; `retries` so far)."""
    if app.conf.task_send_sent_event:
        _send_task(app, to, message, producer, countdown, retries)
        return
    task_id = str(uuid4())
    root_id, parent_id = _lineage(app)
    headers, properties, body, _ = app.amqp.as_task_v2(
        task_id,
        to.task,
        args=(message.to_wire(),),
        countdown=max(0.0, countdown) if countdown is not None else None,
        retries=retries or 0,
        reply_to=app.thread_oid,
        root_id=root_id or task_id,
        parent_id=parent_id,
        ignore_result=True,  # no result backend
        # What Flower shows for the message. Celery's own repr of the payload (saferepr) costs
        # ~0.2 ms per message; the id and URL say which article it is.
        argsrepr=message.describe(),
        kwargsrepr="{}",
    )
    held = producer if producer is not None else _thread_producer(app)
    held.publish(
        body,
        exchange="",  # the anonymous direct exchange: the routing key is the queue
        routing_key=to.queue,
        serializer="json",
        retry=True,
        retry_policy=app.conf.task_publish_retry_policy,
        delivery_mode=_PERSISTENT,
        headers=headers,
        **properties,
    )


def send_first(app: Celery, messages: Iterable[Message]) -> int:
    """Enqueue new articles for the first stage over one producer; returns how many."""
    n = 0
    with app.producer_or_acquire() as producer:
        for msg in messages:
            send(app, FIRST, msg, producer=producer)
            n += 1
    return n


def queue_depth(app: Celery, queue: str) -> int:
    """Messages waiting in `queue` on the Redis broker (kombu keeps priorities in sibling lists)."""
    with app.connection_for_read() as conn:
        client = conn.default_channel.client
        pipe = client.pipeline(transaction=False)
        for name in priority_lists(queue):
            pipe.llen(name)
        return int(sum(pipe.execute()))


def _lineage(app: Celery) -> tuple[str | None, str | None]:
    """The task that sends (root and parent ids), as `send_task` links them for Flower."""
    parent = app.current_worker_task
    if parent is None:
        return None, None
    request = parent.request
    return (request.root_id or request.id), request.id


class _Held(threading.local):
    """A producer per thread (kombu producers are not thread-safe), on its own broker connection,
    made on first use; a forked child makes its own (the parent's socket is not its to use)."""

    pid = 0
    app: Celery | None = None
    producer: Any = None


_held = _Held()


def _thread_producer(app: Celery) -> Any:
    h = _held
    if h.producer is None or h.pid != os.getpid() or h.app is not app:
        h.producer = app.amqp.Producer(app.connection_for_write(), auto_declare=False)
        h.pid, h.app = os.getpid(), app
    return h.producer


def _send_task(
    app: Celery, to: Stage, message: Message, producer: Any, countdown: float | None, retries: int | None
) -> None:
    """The same message through Celery's `send_task` (which also sends the task-sent event)."""
    options: dict[str, Any] = {}
    if producer is not None:
        options["producer"] = producer
    if countdown is not None:
        options["countdown"] = max(0.0, countdown)
    if retries:
        options["retries"] = retries
    app.send_task(
        to.task,
        args=(message.to_wire(),),
        queue=to.queue,
        argsrepr=message.describe(),
        kwargsrepr="{}",
        ignore_result=True,
        **options,
    )
