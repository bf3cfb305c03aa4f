"""What every stage task shares: the message check, logging, the ledger, and the message's fate.

A stage handler is `handler(ctx, message) -> next message | None`. Its exceptions decide:
- `TransientError` (and Redis/connection errors): retry with exponential backoff and jitter,
  capped below the broker's visibility timeout; after `max_retries`, dead-letter. Waiting for
  newsflow's own infrastructure (INFRA_REASONS: its Redis gone, full or stalled) is not the
  article's failure: such retries are counted apart (`Message.waits`, their own backoff) and do
  not use up `max_retries`, so a long outage of the state Redis does not dead-letter the backlog.
- `PermanentError` (a malformed message is one, `bad_payload`): dead-letter now with its reason.
- `InputGone`: skip work already done, else fetch the page anew once, else dead-letter
  (`newsflow.pipeline.on_lost_input`).
- `SoftTimeLimitExceeded`: dead-letter with reason `time_limit` when the stage spent the time
  computing (a pathological page); retry as `stalled` when it spent it waiting (a frozen Redis, a
  stalled disk: under STALLED_CPU_SHARE of the time was CPU), as any transient error.
- anything else: dead-letter with reason `internal_error` (a bug, made visible and replayable).
One bad article never stops a worker: nothing escapes `run_stage` but Celery's own Retry.

`run_stage` is plain code over small ports (the stores, an `Outbox` to send and retry), so every
branch is unit-tested without Celery (tests/test_stage_runner.py); `StageTask` adapts it to Celery.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import redis
from celery import Task, signals
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from kombu.exceptions import OperationalError

from config.defaults import Settings
from config.settings import get_settings
from newsflow import metrics
from newsflow.dispatch import send
from newsflow.errors import InputGone, PermanentError, TransientError
from newsflow.logs import get_logger
from newsflow.pipeline import FIRST, LAST, Input, Message, Stage, next_stage, on_lost_input, stage
from newsflow.stores import Stores
from tasks.celeryconfig import soft_limit_s
from tasks.transport import CannotCarry, ack_commands, captured_publish, redis_full, settled
from tasks.watchdog import soft_limit

log = get_logger("newsflow.stage")


@dataclass(frozen=True)
class Along:
    """A forward and an ack to be written by the stage's commit (`commit`): raw Redis commands on
    the broker's keys, and what to note once they are written."""

    commands: Sequence[Sequence[Any]]
    done: Callable[[], None]


class Carrier(Protocol):
    """Gives the commands that put `message` on stage `to`'s queue and settle the delivery being
    run, for the stage's commit to write with its own; None where they cannot go together (the
    broker is not the state's Redis)."""

    def along(self, to: Stage, message: Message) -> Along | None: ...


@dataclass(frozen=True)
class StageContext:
    stage: Stage
    settings: Settings
    stores: Stores
    worker: str
    task_id: str
    carrier: Carrier | None = None  # None: the forward is sent after the commit, as its own publish

    @property
    def state(self) -> Any:  # newsflow.state.State (or the in-memory stand-in in unit tests)
        return self.stores.state


Handler = Callable[[StageContext, Message], Message | None]


class Outbox(Protocol):
    """Where a stage's messages go: the next stage, a fresh start, or a retry of this one."""

    def send(self, to: Stage, message: Message) -> None:
        """Publish `message` to `to`'s queue, unless this outbox already carried it in the stage's
        commit (`Carrier.along`)."""
        ...

    def retry(self, payload: Any, countdown: float, counted: bool = True) -> NoReturn:
        """Send `payload` to this stage again after `countdown`; `counted`: as one more of the
        article's retries (towards max_retries), else with the retry count unchanged."""
        ...


_stores: Stores | None = None
_stores_made = threading.Lock()  # a threads pool's workers must share one set (one pool, one counter buffer)


def process_stores() -> Stores:
    """This process's stores over one Redis connection pool, made on first use."""
    global _stores
    if _stores is None:
        with _stores_made:
            if _stores is None:
                _stores = Stores.from_settings(get_settings())
    return _stores


@signals.worker_process_shutdown.connect  # a prefork child exiting (recycled after N tasks)
@signals.worker_shutdown.connect  # a solo or threads worker's warm shutdown
def _flush_counters(**_: Any) -> None:
    """Write what the process still holds before it goes: recycled children must not lose counts."""
    if _stores is not None and "counters" in vars(_stores):
        _quietly(_stores.counters.flush)


def backoff_s(attempt: int, settings: Settings, retry_after_s: float | None = None) -> float:
    """Exponential backoff with full jitter, never beyond half the visibility timeout."""
    cap = min(settings.retry_backoff_max_s, settings.visibility_timeout_s / 2)
    if retry_after_s is not None:
        return min(cap, max(0.0, retry_after_s) + random.uniform(0, 1))
    ceiling = min(cap, settings.retry_backoff_base_s * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)


def run_stage(
    ctx: StageContext,
    payload: Any,
    handler: Handler,
    attempt: int,
    outbox: Outbox,
    started: float | None = None,
    cpu_before_s: float = 0.0,
) -> str:
    """Run one message through `handler` and give it its fate; returns the outcome for metrics:
    ok, skipped, refetch, dead, superseded (or raises Celery's Retry). `started` (perf_counter) is
    when the message's work began, for its logged duration (a batched stage: when it was received);
    `cpu_before_s`, CPU this thread already spent on it (a batched stage: its share of the batch's commit)."""
    started = time.perf_counter() if started is None else started
    clock = _Clock(started, time.thread_time() - cpu_before_s)
    raw_id = payload.get("id", "") if isinstance(payload, dict) else ""
    raw_url = payload.get("url", "") if isinstance(payload, dict) else ""
    bound = log.bind(article_id=raw_id, url=raw_url, stage=ctx.stage.name, task_id=ctx.task_id)
    try:
        message = Message.from_wire(payload)
        if attempt > ctx.settings.max_retries:
            # Only worker-lost retries and redeliveries get here (transient errors stop at
            # max_retries): the article killed or outlived its worker every time. A poison pill:
            # dead-letter it, do not loop forever.
            raise PermanentError("poison", f"started {attempt + 1} times without finishing (its worker died or hung)")
        nxt = handler(ctx, message)
        after = next_stage(ctx.stage.name)
        if nxt is not None and after is not None:
            outbox.send(after, nxt)
        outcome = "ok" if nxt is not None or ctx.stage == LAST else "skipped"
        bound.info("stage_done", outcome=outcome, **clock.spent())
        return outcome
    except Retry:
        raise
    except InputGone as exc:
        try:
            outcome = _input_gone(ctx, message, exc, outbox)
        except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.OutOfMemoryError) as err:
            # Redis went away (or filled up) meanwhile: retry
            why = "redis_full" if isinstance(err, redis.exceptions.OutOfMemoryError) else "redis_unavailable"
            unavailable = TransientError(why, str(err))
            return _transient(ctx, payload, unavailable, attempt, outbox, bound, clock)
        bound.info("stage_done", outcome=outcome, reason=exc.reason, **clock.spent())
        return outcome
    except TransientError as exc:
        return _transient(ctx, payload, exc, attempt, outbox, bound, clock)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return _transient(ctx, payload, TransientError("redis_unavailable", str(exc)), attempt, outbox, bound, clock)
    except redis.exceptions.OutOfMemoryError as exc:  # maxmemory with noeviction: wait for room
        return _transient(ctx, payload, TransientError("redis_full", str(exc)), attempt, outbox, bound, clock)
    except OperationalError as exc:  # kombu's wrapping of a publish that failed (Redis full or gone)
        reason = "redis_full" if redis_full(exc) else "redis_unavailable"
        return _transient(ctx, payload, TransientError(reason, str(exc)), attempt, outbox, bound, clock)
    except PermanentError as exc:
        outcome = _dead(ctx, payload, exc.reason, exc.detail, attempt, outbox)
        bound.warning("stage_done", outcome=outcome, reason=exc.reason, detail=exc.detail, **clock.spent())
        return outcome
    except SoftTimeLimitExceeded:
        # Raised from a signal handler, maybe between two replies of a pipeline: a connection
        # put back with unread replies would hand them to the next command. Start afresh.
        ctx.stores.reset_connections()
        waited, cpu = clock.waited_s(), clock.cpu_s()
        if ctx.stage.input is not Input.NONE and stalled(waited, cpu):  # not waiting on an origin
            detail = f"past its soft time limit after {waited:.1f} s, {cpu:.1f} s of it CPU: it waited"
            return _transient(ctx, payload, TransientError("stalled", detail), attempt, outbox, bound, clock)
        outcome = _dead(ctx, payload, "time_limit", "the stage ran past its soft time limit", attempt, outbox)
        bound.warning("stage_done", outcome=outcome, reason="time_limit", **clock.spent())
        return outcome
    except Exception as exc:
        outcome = _dead(ctx, payload, "internal_error", f"{type(exc).__name__}: {exc}", attempt, outbox)
        bound.exception("stage_done", outcome=outcome, reason="internal_error", **clock.spent())
        return outcome


# A stage past its soft time limit that spent less than this share of the time on the CPU was
# waiting, not computing: on Redis frozen past its socket timeout, a stalled disk, a paused host.
# That is the infrastructure's trouble, retried like any; a page that keeps the CPU busy that long
# is the page's, and dead-lettered `time_limit` (a poison pill for every worker that takes it).
# The first stage's input is the web (Input.NONE): its waiting is on the origin (a page trickling
# in byte by byte), the page's trouble too.
STALLED_CPU_SHARE = 0.5


def stalled(waited_s: float, cpu_s: float) -> bool:
    return waited_s > 0 and cpu_s < STALLED_CPU_SHARE * waited_s


def _input_gone(ctx: StageContext, message: Message, exc: InputGone, outbox: Outbox) -> str:
    entry = ctx.state.ledger(message.id)
    fate = on_lost_input(ctx.stage.name, entry.state if entry else None, message)
    if fate == "skip":
        return "skipped"  # a redelivery of work already done; its input was cleaned up
    if fate == "dead":
        detail = f"{exc.detail}, and again after fetching the page anew"
        return _dead(ctx, message.to_wire(), exc.reason, detail, 0, outbox)
    again = message.refetch()
    ctx.state.record(message.id, message.url, "discovered", ctx.stage.name, reason=f"{exc.reason}_refetch")
    outbox.send(FIRST, again)
    return "refetch"


# Transient reasons that are newsflow's own infrastructure, not the article: retried without using
# up the article's retries, up to INFRA_WAITS_MAX times per stage (with the backoff capped at
# retry_backoff_max_s, hours), after which they count like any other. With Redis itself in trouble
# (REDIS_TROUBLE) the retry is not noted for `newsflow trace` either: the note would need Redis.
# `index_unavailable`: another writer holds the index's lock (an index worker of an `up` killed with
# SIGKILL, still finishing): that writer's doing, not the article's.
REDIS_TROUBLE = frozenset({"redis_unavailable", "redis_full"})
INFRA_REASONS = REDIS_TROUBLE | {"stalled", "index_unavailable"}
INFRA_WAITS_MAX = 48


def _waits_left(payload: Any) -> int | None:
    """The message's infrastructure waits so far while it may wait once more, else None (not a
    readable message, or its waits are used up)."""
    try:
        waits = Message.from_wire(payload).waits
    except PermanentError:
        return None
    return waits if waits < INFRA_WAITS_MAX else None


def _transient(
    ctx: StageContext, payload: Any, exc: TransientError, attempt: int, outbox: Outbox, bound: Any, clock: _Clock
) -> str:
    waits = _waits_left(payload) if exc.reason in INFRA_REASONS else None
    if waits is None and attempt >= ctx.settings.max_retries:
        detail = f"gave up after {attempt + 1} attempts: {exc.detail}"
        outcome = _dead(ctx, payload, exc.reason, detail, attempt, outbox)
        bound.warning("stage_done", outcome=outcome, reason=exc.reason, attempts=attempt + 1, **clock.spent())
        return outcome
    if waits is None:  # one more of the article's retries
        countdown, shown, again, extra = backoff_s(attempt, ctx.settings, exc.retry_after_s), attempt + 1, payload, {}
    else:  # a wait for the infrastructure: the article's count stays
        countdown, shown = backoff_s(waits, ctx.settings), attempt
        again, extra = {**payload, "waits": waits + 1}, {"waits": waits + 1}
    metrics.count_retried(ctx.stores.counters, ctx.settings.key_prefix, ctx.stage.name, exc.reason)
    _note_retry(ctx, payload, exc, shown, countdown)
    bound.info(
        "stage_done",
        outcome="retry",
        reason=exc.reason,
        attempt=shown,
        **extra,
        countdown_s=round(countdown, 2),
        **clock.spent(),
    )
    outbox.retry(again, countdown, counted=waits is None)


def _note_retry(ctx: StageContext, payload: Any, exc: TransientError, attempt: int, countdown: float) -> None:
    """The retry, for `newsflow trace` (State.note_retry). Only a parsed article's; and a Redis that
    cannot take the note (the reason of many a retry) costs the note, never the retry."""
    aid = payload.get("id") if isinstance(payload, dict) else None
    if not isinstance(aid, str) or exc.reason in REDIS_TROUBLE:
        return
    try:
        ctx.state.note_retry(aid, ctx.stage.name, exc.reason, exc.detail, attempt, countdown, ctx.worker)
    except redis.RedisError as err:
        log.warning("retry_not_noted", article_id=aid, error=str(err)[:200])


def _dead(ctx: StageContext, payload: Any, reason: str, detail: str, attempt: int, outbox: Outbox) -> str:
    """Dead-letter the article ("dead"), unless a later delivery already took it past this stage
    ("superseded": this one is a stale duplicate, e.g. from a worker frozen past the visibility
    timeout, and its late failure must not move the ledger backwards)."""
    body = payload if isinstance(payload, dict) else {"raw": repr(payload)[:500]}
    aid = str(body.get("id") or "unknown")
    try:
        # The state check and the dead letter are one atomic write (State.commit_unless_beyond):
        # a later delivery finishing between a separate read and write would be overwritten.
        written = ctx.state.dead_letter(
            aid,
            str(body.get("url") or ""),
            ctx.stage.name,
            reason,
            detail,
            body,
            worker=ctx.worker,
            unless_beyond=isinstance(body.get("id"), str),
        )
        if not written:
            log.warning("dead_letter_superseded", article_id=aid, stage=ctx.stage.name, reason=reason)
            return "superseded"
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.OutOfMemoryError):
        # Without Redis (or without room in it) the dead letter cannot be written: retry the
        # message instead of losing it, as a wait (the article keeps its count: once Redis is
        # back it gets its own verdict again, not `poison`).
        waits = _waits_left(payload)
        if waits is not None:
            outbox.retry({**body, "waits": waits + 1}, backoff_s(waits, ctx.settings), counted=False)
        outbox.retry(payload, backoff_s(attempt, ctx.settings))
    return "dead"


class StageTask(Task):  # type: ignore[misc]
    """Base class of the four stage tasks: a Celery adapter over `run_stage`."""

    abstract = True
    stage: str = ""
    # Celery's own backoff is not used: `backoff_s` decides countdowns.
    max_retries = None

    @property
    def default_retry_delay(self) -> float:
        """Countdown Celery uses when a pool child died mid-task (task_retry_on_worker_lost).

        Its default, 180 s, outlasts a short visibility timeout: the delayed message would be
        redelivered while still held. Stay under it, like every other countdown.
        """
        return backoff_s(1, get_settings())

    def context(self, carrier: Carrier | None = None) -> StageContext:
        return StageContext(
            stage=stage(self.stage),
            settings=get_settings(),
            stores=process_stores(),
            worker=str(self.request.hostname or ""),
            task_id=str(self.request.id or ""),
            carrier=carrier,
        )

    def run_stage(self, payload: Any, handler: Handler) -> str:
        started, cpu_started = time.perf_counter(), time.thread_time()
        outcome = "retry"  # the only thing `run_stage` lets escape is Celery's Retry
        outbox = _CeleryOutbox(self)
        ctx = self.context(outbox)
        try:
            # On the threads pool (fetch, index) Celery enforces no time limit: the watchdog does.
            with soft_limit(soft_limit_s(self.stage, ctx.settings), self.stage):
                outcome = run_stage(ctx, payload, handler, self._attempt(payload), outbox)
            return outcome
        except SoftTimeLimitExceeded:
            # The watchdog fired outside the runner's own handler (as the task began or ended):
            # the message still gets a fate, never a bare failure that acks it unrecorded.
            detail = "the stage ran past its soft time limit"
            outcome = _dead(ctx, payload, "time_limit", detail, 0, outbox)
            return outcome
        finally:
            self._observe(payload, outcome, started, time.thread_time() - cpu_started)

    def _attempt(self, payload: Any) -> int:
        redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
        return attempt_of(self.stage, payload, int(self.request.retries or 0), redelivered)

    def _observe(self, payload: Any, outcome: str, started: float, cpu_s: float) -> None:
        observe(process_stores(), self.stage, payload, outcome, started, int(self.request.retries or 0), cpu_s)


def attempt_of(stage_name: str, payload: Any, retries: int, redelivered: bool) -> int:
    """Which start of this stage a message is. Celery counts retries (and worker-lost retries); a
    message the broker handed back (its worker was SIGKILLed or hung past the visibility timeout)
    carries `redelivered` and is counted in Redis, across workers and hosts."""
    if redelivered and isinstance(payload, dict) and isinstance(payload.get("id"), str):
        try:
            return max(retries, process_stores().state.count_attempt(stage_name, payload["id"]))
        except redis.RedisError as exc:  # not counted this time; the message still runs
            log.warning("attempt_not_counted", article_id=payload["id"], error=str(exc))
    return retries


def observe(
    stores: Stores, stage_name: str, payload: Any, outcome: str, started: float, retries: int, cpu_s: float = 0.0
) -> None:
    """Metrics and per-source counters of one message (newsflow/metrics.py); never changes its fate.
    `cpu_s`: the CPU its task took in this thread.

    They are summed in this process and written about once a second (`metrics_flush_s`).
    """
    state, sink, prefix = stores.state, stores.counters, stores.settings.key_prefix
    metrics.observe_stage(sink, prefix, stage_name, outcome, time.perf_counter() - started, cpu_s)
    body = payload if isinstance(payload, dict) else {}
    source = body.get("source") if isinstance(body.get("source"), str) else ""
    if stage_name == FIRST.name and not retries and source:
        state.count_source(source, "discovered", sink)
    if outcome == "skipped" and source:
        state.count_source(source, "skipped", sink)
    if stage_name == LAST.name and outcome == "ok":
        # The last stage returns only once its batch is committed: this is the indexed moment.
        if source:
            state.count_source(source, "indexed", sink)
        submitted = body.get("submitted_at")
        if isinstance(submitted, int | float):
            metrics.observe_lag(sink, prefix, max(0.0, time.time() - submitted))
    _quietly(sink.maybe_flush)


def superseded(ctx: StageContext, message: Message, now: str | None) -> Message | None:
    """A stale copy of a message (its worker was frozen past the visibility timeout, and a
    redelivered copy took the article further): do nothing, so the ledger never moves backwards
    and the article is not sent round again. Stages read the ledger state with their input."""
    log.warning("stage_superseded", article_id=message.id, stage=ctx.stage.name, now=now)
    return None  # nothing for the next stage


def commit(ctx: StageContext, pipe: Any, msg: Message, forward: Message) -> Message | None:
    """Write the stage's result queued in `pipe` and return `forward`, the next stage's message;
    unless a later delivery took the article further meanwhile (a stale copy that read its input
    before freezing): then nothing is written (`superseded`). The check and the writes are one
    atomic step (State.commit_unless_beyond).

    Where the broker is the state's Redis, the same step puts `forward` on the next stage's queue
    and acknowledges this delivery: no moment where the result is written and its message not yet
    sent, and two round trips fewer per hop (the publish, the ack)."""
    after = next_stage(ctx.stage.name)
    along = ctx.carrier.along(after, forward) if ctx.carrier is not None and after is not None else None
    now = ctx.state.commit_unless_beyond(pipe, msg.id, ctx.stage.name, also=along.commands if along else ())
    if now is not None:
        return superseded(ctx, msg, now)
    if along is not None:
        along.done()
    return forward


def stage_task(name: str) -> dict[str, Any]:
    """The `app.task` options of stage `name`'s task: its wire name from the stage table, the base."""
    return {"name": stage(name).task, "base": StageTask, "bind": True, "stage": name}


class _CeleryOutbox:
    def __init__(self, task: StageTask) -> None:
        self.task = task
        self.carried: Message | None = None  # the forward the stage's commit wrote

    def along(self, to: Stage, message: Message) -> Along | None:
        task = self.task
        tag = delivery_tag(task.request)
        if not tag or not carries(get_settings(), task.app.conf):
            return None
        try:
            with captured_publish() as pushes:
                send(task.app, to, message)
        except CannotCarry:
            return None
        if len(pushes) != 1:
            return None  # nothing was captured, so nothing was sent: the runner sends it
        commands = (pushes[0].push_command(), *ack_commands(pushes[0].channel, tag))

        def done() -> None:
            self.carried = message
            settled.add(tag)

        return Along(commands, done)

    def _wait(self, payload: Any, countdown: float) -> NoReturn:
        task, request = self.task, self.task.request
        again = Message.from_wire(payload)
        resend(task.app, stage(task.stage), again, countdown, int(request.retries or 0), str(request.id or ""))

    def send(self, to: Stage, message: Message) -> None:
        if message is self.carried:
            return
        send(self.task.app, to, message)

    def retry(self, payload: Any, countdown: float, counted: bool = True) -> NoReturn:
        if not counted:
            self._wait(payload, countdown)
        try:
            raise self.task.retry(args=(payload,), countdown=countdown, max_retries=get_settings().max_retries)
        except Reject as exc:
            raise requeue_unpublished(exc, str(self.task.request.id or "")) from exc
        except self.task.MaxRetriesExceededError as exc:
            # Only `_dead` retries past max_retries: its dead letter could not be written (Redis
            # gone or full). A failure here would be acked and the article lost: requeue it; a
            # later run dead-letters it once Redis takes writes again (maybe as `poison`: see
            # "Known limits" in docs/reliability.md).
            log.warning("dead_letter_not_written", task_id=str(self.task.request.id or ""), requeued=True)
            raise Reject(exc, requeue=True) from exc


def delivery_tag(request: Any) -> str | None:
    """The broker's tag of the delivery a task runs: kombu's message properties, which Celery hands
    the task's request whole (its `delivery_info` keeps only exchange, routing key, priority and
    redelivered). None outside a worker's delivery (a task called directly, a prefork child's copy
    is still the message's)."""
    tag = (getattr(request, "properties", None) or {}).get("delivery_tag")
    return str(tag) if tag else None


def carries(settings: Settings, conf: Any) -> bool:
    """Whether a stage's commit carries its forward and ack (`commit_carries`): only where the broker
    is the state's Redis (one server, one database), and no task-sent event is due (Celery sends
    those with its own publish)."""
    return settings.commit_carries and settings.state_url == settings.redis_url and not conf.task_send_sent_event


def resend(app: Any, to: Stage, message: Message, countdown: float, retries: int, task_id: str) -> NoReturn:
    """Send `message` to stage `to` again after `countdown` as its try number `retries`, and end this
    delivery as a retry (Celery acks it); a publish Redis refuses requeues the original instead."""
    try:
        send(app, to, message, countdown=countdown, retries=retries)
    except (OperationalError, redis.RedisError) as exc:  # Redis full or gone
        log.warning("retry_not_published", task_id=task_id, error=str(exc)[:300], requeued=True)
        raise Reject(exc, requeue=True) from exc
    raise Retry(f"retry in {countdown:.1f} s", when=countdown)


def requeue_unpublished(exc: Reject, task_id: str = "") -> Reject:
    """What to raise when Celery's `retry` could not publish the retry message (a full Redis
    refuses the LPUSH; a Redis gone refuses everything). Celery then raises `Reject(requeue=False)`,
    and with late acks the original is acked: the article was dropped, for the reconciler to find
    much later. Requeue the original instead: back to its queue now, or, when Redis cannot take even
    that, left in the unacked set for the visibility timeout to bring back (tasks/transport.py).
    Either way it returns marked `redelivered`, which counts towards `poison` like any other."""
    if exc.requeue:
        return exc
    log.warning("retry_not_published", task_id=task_id, error=str(exc.reason)[:300], requeued=True)
    return Reject(exc.reason, requeue=True)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    """Counting must not decide a message's fate: a Redis hiccup here is logged and forgotten."""
    try:
        fn(*args)
    except redis.RedisError as exc:
        log.warning("metrics_not_recorded", error=str(exc), what=getattr(fn, "__name__", "?"))


@dataclass(frozen=True)
class _Clock:
    """When a message's work began, in wall time and in this thread's CPU time."""

    started: float
    cpu_started: float

    def waited_s(self) -> float:
        return time.perf_counter() - self.started

    def cpu_s(self) -> float:
        return time.thread_time() - self.cpu_started

    def spent(self) -> dict[str, float]:
        """The `stage_done` line's duration_ms and cpu_ms: CPU beside wall time shows where a stage
        waits (Redis, an origin) and what its pure function costs in the worker (bench/pipeline.py)."""
        return {"duration_ms": round(self.waited_s() * 1000, 2), "cpu_ms": round(self.cpu_s() * 1000, 2)}
