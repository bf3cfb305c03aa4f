"""A stage consumed as a batch: one commit and one pool-free pass per batch, one ack per message.

The index stage's work is per batch (one commit to the single index writer), but Celery's default
path costs each message a `Request`, a pool job, a trace and a thread parked until its batch is
committed: several times the index stage's own CPU per article. Here the task's execution strategy
(`Task.Strategy`, the hook Celery calls for every message it receives, as celery-batches does) only
buffers the message in the stage's `Batcher`; the batcher's thread commits the batch and then gives
every message its fate through the same `run_stage` as any other stage (ok, retry with backoff,
dead letter with its reason), and acknowledges it. Nothing is acked before its batch is durable.

What each message keeps of Celery's path: late acks (the worker's prefetch bounds the messages held,
so a batch is at most the prefetch count), ETA (a retry's countdown waits in the consumer's timer, as
stock Celery does), `retries` and `redelivered` (the poison count), per-task soft time limit (the
watchdog, around the commit), and the task events Flower follows (received, started, succeeded,
retried; while events are on). What it does not: `inspect active` lists no buffered message (they
are consumed, not running), and a warm shutdown does not wait for a batch being gathered: those
messages go back to the queue with the rest of what the worker held unacked (the index upsert is
idempotent by article id).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from celery.utils.time import maybe_iso8601
from kombu.utils.imports import symbol_by_name

from config.settings import get_settings
from newsflow.batcher import Batcher, Item
from newsflow.dispatch import send
from newsflow.errors import PermanentError, TransientError
from newsflow.logs import get_logger
from newsflow.pipeline import Message, Stage, stage
from tasks.base import StageContext, attempt_of, observe, process_stores, resend, run_stage, stalled
from tasks.celeryconfig import soft_limit_s
from tasks.transport import orphans
from tasks.watchdog import soft_limit

log = get_logger("newsflow.batch")


@dataclass(eq=False)
class Delivery(Item):
    """One received message of a batched stage: its payload and how to settle it with the broker."""

    payload: Any = None
    task_id: str = ""
    retries: int = 0
    redelivered: bool = False
    ack: Callable[..., Any] | None = None
    reject: Callable[..., Any] | None = None
    errors: tuple[type[BaseException], ...] = field(default_factory=tuple)
    received: float = field(default_factory=time.perf_counter)
    attempt: int = 0
    message: Message | None = None
    events: TaskEvents | None = None
    delivery_tag: str = ""
    cpu_s: float = 0.0  # its share of its batch's commit, in this thread's CPU time (the log's cpu_ms)


class TaskEvents:
    """The task events Celery's own request sends (received, started, succeeded, retried), for
    Flower, which follows tasks by them. Sent only while the worker's events are on (Flower turns
    them on at run time, so this is checked at every send); a failed send never decides a fate."""

    def __init__(self, dispatcher: Any, task: Any) -> None:
        self.dispatcher, self.task = dispatcher, task

    def send(self, kind: str, uuid: str, **fields: Any) -> None:
        d = self.dispatcher
        if d is None or not d.enabled or not getattr(self.task, "send_events", True) or not uuid:
            return
        try:
            d.send(kind, uuid=uuid, **fields)
        except Exception as exc:  # events are for watching, not for the message's fate
            log.warning("task_event_not_sent", kind=kind, error=str(exc)[:200])


# The commit function of a batched stage: the parsed deliveries in, each one's `error` set (or not).
CommitFn = Callable[[Sequence[Item]], None]


class BatchStage:
    """A stage's batcher and the fates of its messages, in one process (the stage's one writer)."""

    def __init__(self, stage_name: str, commit: CommitFn, hostname: str) -> None:
        s = get_settings()
        self.stage: Stage = stage(stage_name)
        self.commit = commit
        self.hostname = hostname
        self.app: Any = None  # the worker's Celery app, for retries (set by the strategy)
        self.batcher = Batcher(self._run, s.index_batch_size, s.index_batch_max_wait_s, s.index_batch_idle_s)

    def receive(self, delivery: Delivery) -> None:
        self.batcher.put(delivery)

    # --- the batcher's thread -----------------------------------------------------------------
    def _run(self, items: Sequence[Item]) -> None:
        deliveries = [d for d in items if isinstance(d, Delivery)]
        settings, stores = get_settings(), process_stores()
        try:
            self._commit_batch(deliveries, settings)
        except BaseException as exc:  # a bug here must not leave the batch's messages without a fate
            log.exception("batch_failed", size=len(deliveries))
            for d in deliveries:
                d.error = d.error or exc
        # Each ack is a callback of the consumer's event loop, which writes the acks of one turn
        # together (tasks/transport.py): a batch settled here in one go is one round trip.
        for d in deliveries:
            self._settle(d, stores, settings)

    def _commit_batch(self, deliveries: Sequence[Delivery], settings: Any) -> None:
        """Commit the deliveries that can be (parseable, not poison); run_stage gives the others theirs."""
        wanted = []
        for d in deliveries:
            d.attempt = self._attempt(d)
            try:
                d.message = Message.from_wire(d.payload)
            except Exception:  # run_stage dead-letters it `bad_payload`
                continue
            if d.attempt <= settings.max_retries:  # else run_stage dead-letters it `poison`
                d.article_id, d.url = d.message.id, d.message.url
                wanted.append(d)
        for d in wanted:
            if d.events is not None:
                d.events.send("task-started", d.task_id)  # the dispatcher adds hostname and pid
        if not wanted:
            return
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            with soft_limit(soft_limit_s(self.stage.name, settings), self.stage.name):
                self.commit(wanted)
        except BaseException as exc:  # every message of the batch meets its batch's error
            if isinstance(exc, SoftTimeLimitExceeded):
                exc = _past_limit(time.perf_counter() - started, time.thread_time() - cpu_started)
            for d in wanted:
                d.error = d.error or exc
        finally:
            share = (time.thread_time() - cpu_started) / len(wanted)
            for d in wanted:
                d.cpu_s = share

    def _attempt(self, d: Delivery) -> int:
        return attempt_of(self.stage.name, d.payload, d.retries, d.redelivered)

    def _settle(self, d: Delivery, stores: Any, settings: Any) -> None:
        ctx = StageContext(stage=self.stage, settings=settings, stores=stores, worker=self.hostname, task_id=d.task_id)

        def reported(ctx: StageContext, message: Message) -> Message | None:
            if d.error is not None:
                raise d.error
            return None  # the last stage: nothing to forward

        outcome = "retry"
        try:
            outcome = run_stage(
                ctx, d.payload, reported, d.attempt, _Outbox(self, d), started=d.received, cpu_before_s=d.cpu_s
            )
            _settle_with(d.ack, d)
            if d.events is not None:  # as Celery reports a task that returned: its result is the outcome
                d.events.send("task-succeeded", d.task_id, result=repr(outcome), runtime=_since(d.received))
        except Retry as exc:  # a retry message was published: this one is done
            _settle_with(d.ack, d)
            if d.events is not None:
                d.events.send("task-retried", d.task_id, exception=repr(exc), traceback="")
        except Reject as exc:  # the retry could not be published: back to the queue (or unacked)
            _settle_with(d.reject, d, requeue=bool(exc.requeue))
        except Exception:  # never leave a message unsettled, never stop the thread
            log.exception("batch_settle_failed", task_id=d.task_id)
            _settle_with(d.reject, d, requeue=True)
        finally:
            observe(stores, self.stage.name, d.payload, outcome, d.received, d.retries, d.cpu_s)


def _past_limit(waited_s: float, cpu_s: float) -> Exception:
    """A commit past its soft time limit, judged here where its time was spent (the batch's
    messages are settled later, by run_stage in this thread): waited, a retry; computed, dead."""
    detail = f"the commit ran past its soft time limit ({waited_s:.1f} s, {cpu_s:.1f} s of it CPU)"
    if stalled(waited_s, cpu_s):
        return TransientError("stalled", detail)
    return PermanentError("time_limit", detail)


def _settle_with(fn: Callable[..., Any] | None, d: Delivery, **options: Any) -> None:
    try:
        if fn is not None:
            fn(log_for_kombu, d.errors, **options)
    finally:
        orphans.release(d.delivery_tag)


class _KombuLog:
    """`Message.ack_log_error` logs through a stdlib-style logger: route it to ours."""

    def critical(self, msg: str, *args: Any, **_: Any) -> None:
        log.critical("broker_settle_failed", detail=(msg % args)[:500])


log_for_kombu = _KombuLog()


class _Outbox:
    """run_stage's ports for one batched message: retries go out as a new message with a countdown."""

    def __init__(self, owner: BatchStage, d: Delivery) -> None:
        self.owner, self.d = owner, d

    def send(self, to: Stage, message: Message) -> None:
        send(self.owner.app, to, message)

    def retry(self, payload: Any, countdown: float, counted: bool = True) -> NoReturn:
        d = self.d
        if d.message is None:  # unparseable and its dead letter unwritable: keep it in the broker
            raise Reject("dead letter not written", requeue=True)
        # A wait for the infrastructure (not counted): the payload carries it, the count stays.
        again, retries = (d.message, d.attempt + 1) if counted else (Message.from_wire(payload), d.attempt)
        resend(self.owner.app, self.owner.stage, again, countdown, retries, d.task_id)


# --- the strategy: what Celery's consumer calls for each message of the task ---------------------------
_stages: dict[str, BatchStage] = {}
_made = threading.Lock()


def batch_stage(stage_name: str, commit: CommitFn, hostname: str) -> BatchStage:
    with _made:
        if stage_name not in _stages:
            _stages[stage_name] = BatchStage(stage_name, commit, hostname)
        return _stages[stage_name]


def strategy(task: Any, app: Any, consumer: Any, **_: Any) -> Callable[..., None]:
    """`Task.Strategy` of a batched stage task (the task names its `stage` and `commit_batch`)."""
    commit: CommitFn = symbol_by_name(task.batch_commit)  # type: ignore[no-untyped-call]
    owner = batch_stage(task.stage, commit, consumer.hostname)
    owner.app = app
    errors = tuple(consumer.connection_errors)
    events = TaskEvents(getattr(consumer, "event_dispatcher", None), task)

    def on_message(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **__: Any) -> None:
        # Runs in the consumer's event loop: anything escaping here would stop the whole worker.
        try:
            headers = message.headers or {}
            delivery = Delivery(
                article_id="",
                url="",
                payload=_payload(message),
                task_id=str(headers.get("id") or ""),
                retries=_int(headers.get("retries")),
                redelivered=bool((message.delivery_info or {}).get("redelivered")),
                ack=ack,
                reject=reject,
                errors=errors,
                events=events,
                delivery_tag=str(message.delivery_tag or ""),
            )
            orphans.use(delivery.delivery_tag)  # held here until settled, across a broken connection
            eta = _eta(headers.get("eta"))
            events.send(
                "task-received", delivery.task_id, name=task.name, args=str(headers.get("argsrepr") or ""),
                kwargs="{}", retries=delivery.retries, eta=headers.get("eta"), root_id=headers.get("root_id"),
                parent_id=headers.get("parent_id"),
            )  # fmt: skip
        except Exception:
            log.exception("batch_receive_failed")
            delivery, eta = Delivery(article_id="", url="", ack=ack, reject=reject, errors=errors), None
        if eta is not None and eta > time.time():
            _hold_until(consumer, eta, owner, delivery)
        else:
            owner.receive(delivery)

    return on_message


def _hold_until(consumer: Any, eta: float, owner: BatchStage, delivery: Delivery) -> None:
    """A retry's countdown: held in the consumer's timer (as stock Celery holds ETA tasks), and not
    counted against the prefetch meanwhile, so it does not stall the messages behind it."""
    consumer.qos.increment_eventually()

    def due() -> None:
        consumer.qos.decrement_eventually()
        owner.receive(delivery)

    consumer.timer.call_after(max(0.0, eta - time.time()), due, priority=6)  # the timer keeps monotonic time


def _payload(message: Any) -> Any:
    """The task's one argument (protocol 2 body: [args, kwargs, embed]); None if it is not there."""
    try:
        args = message.decode()[0]
        return args[0] if args else None
    except Exception:  # a malformed body is the stage runner's `bad_payload`
        return None


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 6)


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def _eta(value: Any) -> float | None:
    if not value:
        return None
    try:
        return float(maybe_iso8601(value).timestamp())
    except (TypeError, ValueError, AttributeError):
        return None
