"""Sending article messages to a stage's queue through a Celery app.

Every producer — `newsflow ingest`, crawls, the stage runner forwarding, reconcile and replay —
sends through `send`, so what a message looks like on the wire is decided in one place
(`newsflow.pipeline.Message.to_wire`) and every send is routed by the stage table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celery import Celery

from newsflow.pipeline import FIRST, Message, Stage
from newsflow.queues import priority_lists


def send(
    app: Celery,
    to: Stage,
    message: Message,
    *,
    producer: Any = None,
    countdown: float | None = None,
    retries: int | None = None,
) -> None:
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
        # What Flower shows for the message. Celery's own repr of the payload (saferepr) costs
        # ~0.2 ms per message; the id and URL say which article it is.
        argsrepr=message.describe(),
        kwargsrepr="{}",
        ignore_result=True,  # no result backend: spares Celery a look at it on every send
        **options,
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
