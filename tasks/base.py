"""What every stage task shares: payload checks, logging, the ledger, and the message's fate.

A stage handler is `handler(ctx, payload) -> next_payload | None`. Its exceptions decide:
- `TransientError` (and Redis/connection errors): retry with exponential backoff and jitter,
  capped below the broker's visibility timeout; after `max_retries`, dead-letter.
- `PermanentError`: dead-letter now with its reason.
- `SoftTimeLimitExceeded`: dead-letter with reason `time_limit`.
- anything else: dead-letter with reason `internal_error` (a bug, made visible and replayable).
One bad article never stops a worker: nothing escapes `run_stage` but Celery's own Retry.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Task, signals
from celery.exceptions import Retry, SoftTimeLimitExceeded

from config.defaults import Settings
from newsflow import metrics
from newsflow.errors import InputGone, PermanentError, TransientError
from newsflow.state import DONE_STATE, STATES, State
from tasks import topology
from workers.logging import get_logger
from workers.settings import get_settings
from workers.solo import guard

log = get_logger("newsflow.stage")
Payload = dict[str, Any]


@dataclass(frozen=True)
class StageContext:
    stage: str
    settings: Settings
    state: State
    worker: str
    task_id: str


Handler = Callable[[StageContext, Payload], Payload | None]


@functools.cache
def shared_state() -> State:
    """One Redis client (and its pool) per worker process."""
    return State.from_settings(get_settings())


@functools.cache
def shared_counters() -> metrics.CounterBuffer:
    """The worker process's metric counters, flushed to Redis about once a second."""
    return metrics.CounterBuffer(shared_state().r, get_settings().metrics_flush_s)


@signals.worker_process_shutdown.connect  # a prefork child exiting (recycled after N tasks)
@signals.worker_shutdown.connect  # a solo or threads worker's warm shutdown
def _flush_counters(**_: Any) -> None:
    """Write what the process still holds before it goes: recycled children must not lose counts."""
    if shared_counters.cache_info().currsize:
        _quietly(shared_counters().flush)


def backoff_s(attempt: int, settings: Settings, retry_after_s: float | None = None) -> float:
    """Exponential backoff with full jitter, never beyond half the visibility timeout."""
    cap = min(settings.retry_backoff_max_s, settings.visibility_timeout_s / 2)
    if retry_after_s is not None:
        return min(cap, max(0.0, retry_after_s) + random.uniform(0, 1))
    ceiling = min(cap, settings.retry_backoff_base_s * (2**attempt))
    return random.uniform(ceiling / 2, ceiling)


def check_payload(payload: Any) -> Payload:
    if not isinstance(payload, dict) or payload.get("v") != topology.PAYLOAD_VERSION:
        version = payload.get("v") if isinstance(payload, dict) else type(payload).__name__
        raise PermanentError("bad_payload", f"expected payload version {topology.PAYLOAD_VERSION}, got {version!r}")
    if not isinstance(payload.get("id"), str) or not isinstance(payload.get("url"), str):
        raise PermanentError("bad_payload", "payload lacks id or url")
    return payload


class StageTask(Task):  # type: ignore[misc]
    """Base class of the four stage tasks."""

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

    def context(self) -> StageContext:
        return StageContext(
            stage=self.stage,
            settings=get_settings(),
            state=shared_state(),
            worker=str(self.request.hostname or ""),
            task_id=str(self.request.id or ""),
        )

    def run_stage(self, payload: Any, handler: Handler) -> str:
        started = time.perf_counter()
        outcome = "retry"  # the only thing `_run_stage` lets escape is Celery's Retry
        # On the solo pool (clean, enrich) the guard enforces the hard time limit and notes the running
        # message, so that one whose process dies is handed back (workers/solo.py); elsewhere a no-op.
        # kombu's delivery tag (the key of the unacked message in Redis) travels in the properties.
        tag = (getattr(self.request, "properties", None) or {}).get("delivery_tag")
        note = {"stage": self.stage, "tag": tag, "payload": payload}
        hard_s = self.time_limit or self.app.conf.task_time_limit
        try:
            with guard.running(note, hard_s):
                outcome = self._run_stage(payload, handler, started, hard_s)
            return outcome
        finally:
            self._observe(payload, outcome, started)
            guard.after_task()

    def _run_stage(self, payload: Any, handler: Handler, started: float, hard_s: float | None = None) -> str:
        ctx = self.context()
        raw_id = payload.get("id", "") if isinstance(payload, dict) else ""
        raw_url = payload.get("url", "") if isinstance(payload, dict) else ""
        bound = log.bind(article_id=raw_id, url=raw_url, stage=self.stage, task_id=ctx.task_id)
        try:
            checked = check_payload(payload)
            if int(self.request.retries or 0) > ctx.settings.max_retries:
                # Only worker-lost retries get here (transient ones stop at max_retries): the process
                # died on this article every time. A poison pill: dead-letter it, do not loop forever.
                raise PermanentError("worker_lost", f"a worker process died on it {self.request.retries} times")
            # Solo pool only: the soft limit, or the hard one on the wall clock (that one counts CPU).
            with guard.soft_limit(self.soft_time_limit or hard_s):
                nxt = handler(ctx, checked)
            if nxt is not None:
                self.forward(nxt)
            outcome = "ok" if nxt is not None or self.stage == topology.ORDER[-1] else "skipped"
            bound.info("stage_done", outcome=outcome, duration_ms=_ms(started))
            return outcome
        except Retry:
            raise
        except InputGone as exc:
            outcome = self._input_gone(ctx, checked, exc)
            bound.info("stage_done", outcome=outcome, reason=exc.reason, duration_ms=_ms(started))
            return outcome
        except TransientError as exc:
            return self._transient(ctx, payload, exc, bound, started)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            return self._transient(ctx, payload, TransientError("redis_unavailable", str(exc)), bound, started)
        except redis.exceptions.OutOfMemoryError as exc:  # maxmemory with noeviction: wait for room
            return self._transient(ctx, payload, TransientError("redis_full", str(exc)), bound, started)
        except PermanentError as exc:
            self._dead(ctx, payload, exc.reason, exc.detail)
            bound.warning("stage_done", outcome="dead", reason=exc.reason, detail=exc.detail, duration_ms=_ms(started))
            return "dead"
        except SoftTimeLimitExceeded:
            # Raised from a signal handler, maybe between two replies of a pipeline: a connection
            # put back with unread replies would hand them to the next command. Start afresh.
            ctx.state.r.connection_pool.disconnect()
            self._dead(ctx, payload, "time_limit", "the stage ran past its soft time limit")
            bound.warning("stage_done", outcome="dead", reason="time_limit", duration_ms=_ms(started))
            return "dead"
        except Exception as exc:
            self._dead(ctx, payload, "internal_error", f"{type(exc).__name__}: {exc}")
            bound.exception("stage_done", outcome="dead", reason="internal_error", duration_ms=_ms(started))
            return "dead"

    def _input_gone(self, ctx: StageContext, payload: Payload, exc: InputGone) -> str:
        """Skip work already done; otherwise start the article over at fetch, once; then dead-letter."""
        entry = ctx.state.ledger(payload["id"])
        done = entry is not None and entry.state in STATES and entry.state != "dead"
        if done and STATES.index(entry.state) >= STATES.index(DONE_STATE[self.stage]):  # type: ignore[union-attr]
            return "skipped"  # a redelivery of work already done; its input was cleaned up
        if payload.get("refetched"):
            raise PermanentError(exc.reason, f"{exc.detail}, and again after fetching the page anew")
        first = topology.FIRST_STAGE
        restart = {k: v for k, v in payload.items() if k in ("v", "id", "url", "source", "hints", "submitted_at")}
        restart.update(refetched=True, enqueued_at=round(time.time(), 3))
        ctx.state.record(payload["id"], payload["url"], "discovered", self.stage, reason=f"{exc.reason}_refetch")
        self.app.send_task(topology.task_name(first), args=(restart,), queue=topology.queue_of(first))
        return "refetch"

    def _transient(self, ctx: StageContext, payload: Any, exc: TransientError, bound: Any, started: float) -> str:
        attempt = int(self.request.retries or 0)
        if attempt >= ctx.settings.max_retries:
            self._dead(ctx, payload, exc.reason, f"gave up after {attempt + 1} attempts: {exc.detail}")
            bound.warning(
                "stage_done", outcome="dead", reason=exc.reason, attempts=attempt + 1, duration_ms=_ms(started)
            )
            return "dead"
        countdown = backoff_s(attempt, ctx.settings, exc.retry_after_s)
        metrics.count_retried(shared_counters(), ctx.state.p, self.stage, exc.reason)
        bound.info(
            "stage_done",
            outcome="retry",
            reason=exc.reason,
            attempt=attempt + 1,
            countdown_s=round(countdown, 2),
            duration_ms=_ms(started),
        )
        raise self.retry(args=(payload,), countdown=countdown, max_retries=ctx.settings.max_retries)

    def _dead(self, ctx: StageContext, payload: Any, reason: str, detail: str) -> None:
        body = payload if isinstance(payload, dict) else {"raw": repr(payload)[:500]}
        aid = str(body.get("id") or "unknown")
        try:
            ctx.state.dead_letter(aid, str(body.get("url") or ""), self.stage, reason, detail, body, worker=ctx.worker)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Without Redis the dead letter cannot be written: retry the message instead of losing it.
            raise self.retry(
                args=(payload,), countdown=backoff_s(int(self.request.retries or 0), ctx.settings)
            ) from exc

    def forward(self, payload: Payload) -> None:
        nxt = topology.next_stage(self.stage)
        if nxt is None:
            return
        # `enqueued_at` lets `newsflow status` tell how long the oldest message of a queue has waited.
        payload = {**payload, "enqueued_at": round(time.time(), 3)}
        self.app.send_task(
            topology.task_name(nxt),
            args=(payload,),
            queue=topology.queue_of(nxt),
            # What Flower shows for the message. Celery's own repr of the payload (saferepr) costs
            # ~0.2 ms per message; the id and URL say which article it is.
            argsrepr=f"({payload['id']} {payload['url'][:200]})",
            kwargsrepr="{}",
            ignore_result=True,  # no result backend: spares Celery a look at it on every send
        )

    def _observe(self, payload: Any, outcome: str, started: float) -> None:
        """Metrics and per-source counters (newsflow/metrics.py); never changes the message's fate.

        They are summed in this process and written about once a second (`metrics_flush_s`).
        """
        state, sink = shared_state(), shared_counters()
        metrics.observe_stage(sink, state.p, self.stage, outcome, time.perf_counter() - started)
        body = payload if isinstance(payload, dict) else {}
        source = body.get("source") if isinstance(body.get("source"), str) else ""
        if self.stage == topology.FIRST_STAGE and not self.request.retries and source:
            state.count_source(source, "discovered", sink)
        if outcome == "skipped" and source:
            state.count_source(source, "skipped", sink)
        if self.stage == topology.ORDER[-1] and outcome == "ok":
            # The last stage returns only once its batch is committed: this is the indexed moment.
            if source:
                state.count_source(source, "indexed", sink)
            submitted = body.get("submitted_at")
            if isinstance(submitted, int | float):
                metrics.observe_lag(sink, state.p, max(0.0, time.time() - submitted))
        _quietly(sink.maybe_flush)


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    """Counting must not decide a message's fate: a Redis hiccup here is logged and forgotten."""
    try:
        fn(*args)
    except redis.RedisError as exc:
        log.warning("metrics_not_recorded", error=str(exc), what=getattr(fn, "__name__", "?"))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
