"""Pipeline metrics kept in Redis, and a Prometheus collector that reads them.

Why Redis and not each worker's memory: workers are many processes (prefork children, several
machines, restarts), and Prometheus' client keeps counters per process. Every worker instead adds to
a few small hashes in the state Redis (summed in memory, one pipelined round trip per second); `newsflow metrics` serves
them, together with queue depths and ages read from the broker, on one HTTP endpoint. The counters
survive worker restarts and stay monotonic, as Prometheus counters must.

Keys (under the state prefix, all bounded by stages x outcomes/reasons x buckets, so no TTL):
- `metrics:stage:{stage}`  hash: `n|{outcome}` tasks run per outcome (ok, skipped, retry, dead),
                           `dur_sum`, `dur_count`, `dur|{le}` duration histogram (non-cumulative),
                           `cpu_sum`: CPU seconds its tasks took in their worker thread
- `metrics:failed`         hash: `{stage}|{reason}` -> dead letters written
- `metrics:retried`        hash: `{stage}|{reason}` -> retries scheduled
- `metrics:lag`            hash: `sum`, `count`, `b|{le}`: submit-to-indexed seconds
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from newsflow import queues
from newsflow.drift import SHARES, DriftStore

OUTCOMES = ("ok", "skipped", "retry", "dead")
# Stage durations: fetches and parses take milliseconds to tens of seconds.
DURATION_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# Submit-to-indexed lag: seconds when idle, hours when a backlog builds up.
LAG_BUCKETS_S: tuple[float, ...] = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
REASON_MAX = 64


def _le(value: float, buckets: Sequence[float]) -> str:
    """The label of the smallest bucket holding `value` ('+Inf' past the last)."""
    i = bisect.bisect_left(buckets, value)
    return "+Inf" if i == len(buckets) else repr(float(buckets[i]))


class CounterSink(Protocol):
    """Where counters go: a Redis pipeline (written when it executes) or a `CounterBuffer`."""

    def hincrby(self, name: str, key: str, amount: int = 1) -> Any: ...

    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> Any: ...


class CounterBuffer:
    """Counter increments summed in memory and written in one pipelined round trip per interval.

    A task used to spend up to four round trips on counters; a worker now spends one per
    `flush_every_s` (and a timer thread flushes what an idle worker still holds), so metrics reach
    Redis at most that much later. A failed flush keeps the sums for the next one; a process that
    dies loses at most one interval of counts, never an article.
    """

    def __init__(self, client: redis.Redis, flush_every_s: float = 1.0) -> None:
        self.client, self.flush_every_s = client, max(0.05, flush_every_s)
        self._ints: dict[tuple[str, str], int] = {}
        self._floats: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._timer: threading.Thread | None = None

    def hincrby(self, name: str, key: str, amount: int = 1) -> None:
        with self._lock:
            self._ints[(name, key)] = self._ints.get((name, key), 0) + amount
        self._ensure_timer()

    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> None:
        with self._lock:
            self._floats[(name, key)] = self._floats.get((name, key), 0.0) + amount
        self._ensure_timer()

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered, all or none; if Redis was unreachable put it back and re-raise.

        A refused write (e.g. maxmemory) drops the sums: retrying them every second could not help.
        """
        with self._lock:
            ints, floats, self._ints, self._floats = self._ints, self._floats, {}, {}
            self._last = time.monotonic()
        if not ints and not floats:
            return
        pipe = self.client.pipeline(transaction=True)
        for (name, key), n in ints.items():
            pipe.hincrby(name, key, n)
        for (name, key), x in floats.items():
            pipe.hincrbyfloat(name, key, x)
        try:
            pipe.execute()
        except redis.ResponseError:
            raise
        except redis.RedisError:
            with self._lock:
                for k, n in ints.items():
                    self._ints[k] = self._ints.get(k, 0) + n
                for k, x in floats.items():
                    self._floats[k] = self._floats.get(k, 0.0) + x
            raise

    def _ensure_timer(self) -> None:
        # Started lazily, in the process that counts (a thread does not survive fork()).
        if self._timer is None or not self._timer.is_alive():
            self._timer = threading.Thread(target=self._run, name="newsflow-metrics-flush", daemon=True)
            self._timer.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_every_s)
            with contextlib.suppress(redis.RedisError):  # kept for the next attempt; tasks log Redis trouble
                self.flush()


def observe_stage(
    sink: CounterSink, prefix: str, stage: str, outcome: str, duration_s: float, cpu_s: float = 0.0
) -> None:
    key = f"{prefix}metrics:stage:{stage}"
    sink.hincrby(key, f"n|{outcome}", 1)
    sink.hincrbyfloat(key, "dur_sum", duration_s)
    sink.hincrbyfloat(key, "cpu_sum", cpu_s)
    sink.hincrby(key, "dur_count", 1)
    sink.hincrby(key, f"dur|{_le(duration_s, DURATION_BUCKETS_S)}", 1)


def observe_lag(sink: CounterSink, prefix: str, lag_s: float) -> None:
    key = f"{prefix}metrics:lag"
    sink.hincrbyfloat(key, "sum", lag_s)
    sink.hincrby(key, "count", 1)
    sink.hincrby(key, f"b|{_le(lag_s, LAG_BUCKETS_S)}", 1)


def count_failed(r: redis.Redis, prefix: str, stage: str, reason: str) -> None:
    r.hincrby(f"{prefix}metrics:failed", f"{stage}|{reason[:REASON_MAX]}", 1)


def count_retried(sink: CounterSink, prefix: str, stage: str, reason: str) -> None:
    sink.hincrby(f"{prefix}metrics:retried", f"{stage}|{reason[:REASON_MAX]}", 1)


# --- reading ---------------------------------------------------------------------------------------
def _hash(r: redis.Redis, key: str) -> dict[str, float]:
    raw: dict[bytes, bytes] = r.hgetall(key)  # type: ignore[assignment]
    return {k.decode(): float(v) for k, v in raw.items()}


def stage_counts(r: redis.Redis, prefix: str, stages: Sequence[str]) -> dict[str, dict[str, int]]:
    """Tasks run per stage and outcome since the counters began."""
    out: dict[str, dict[str, int]] = {}
    for stage in stages:
        h = _hash(r, f"{prefix}metrics:stage:{stage}")
        out[stage] = {o: int(h.get(f"n|{o}", 0)) for o in OUTCOMES}
    return out


def stage_costs(r: redis.Redis, prefix: str, stages: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Mean wall and CPU milliseconds per task run, per stage, since the counters began (None: no runs)."""
    out: dict[str, dict[str, float | None]] = {}
    for stage in stages:
        h = _hash(r, f"{prefix}metrics:stage:{stage}")
        n = h.get("dur_count", 0.0)
        out[stage] = {
            "ms_per_task": round(1000 * h.get("dur_sum", 0.0) / n, 2) if n else None,
            # None where only workers older than the CPU counter ran (their runs have no CPU figure).
            "cpu_ms_per_task": round(1000 * h["cpu_sum"] / n, 2) if n and "cpu_sum" in h else None,
        }
    return out


def _buckets(h: dict[str, float], field_prefix: str, bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs, as Prometheus histograms want them."""
    out, total = [], 0.0
    for bound in [*(repr(float(b)) for b in bounds), "+Inf"]:
        total += h.get(f"{field_prefix}|{bound}", 0.0)
        out.append((bound, total))
    return out


def _pairs(h: dict[str, float]) -> Iterator[tuple[str, str, float]]:
    for field, value in sorted(h.items()):
        stage, _, reason = field.partition("|")
        yield stage, reason, value


class PipelineCollector(Collector):
    """Reads the counters above, the broker's queues and Redis memory on every scrape."""

    def __init__(
        self, state_redis: redis.Redis, broker_redis: redis.Redis, prefix: str, stages: Sequence[str],
        queue_names: Sequence[str], drift: DriftStore | None = None,
    ) -> None:  # fmt: skip
        self.drift = drift
        self.state = state_redis
        self.broker = broker_redis
        self.prefix = prefix
        self.stages = list(stages)
        self.queue_names = list(queue_names)

    def collect(self) -> Iterator[Any]:
        started = time.perf_counter()
        up = GaugeMetricFamily("newsflow_redis_up", "1 if the exporter could read Redis on this scrape")
        try:
            yield from self._stage_metrics()
            yield from self._queue_metrics()
            yield from self._redis_metrics()
            yield from self._drift_metrics()
            up.add_metric([], 1)
        except redis.RedisError:
            up.add_metric([], 0)
        yield up
        took = GaugeMetricFamily("newsflow_scrape_duration_seconds", "Time the exporter took to read Redis")
        took.add_metric([], time.perf_counter() - started)
        yield took

    def _stage_metrics(self) -> Iterator[Any]:
        p = self.prefix
        processed = CounterMetricFamily(
            "newsflow_stage_processed",
            "Stage task runs by outcome (ok, skipped, retry, dead)",
            labels=["stage", "outcome"],
        )
        duration = HistogramMetricFamily("newsflow_stage_duration_seconds", "Stage task run time", labels=["stage"])
        cpu = CounterMetricFamily(
            "newsflow_stage_cpu_seconds",
            "CPU time of the stage's tasks in their worker thread (per article: divide by processed)",
            labels=["stage"],
        )
        for stage in self.stages:
            h = _hash(self.state, f"{p}metrics:stage:{stage}")
            for outcome in OUTCOMES:
                processed.add_metric([stage, outcome], h.get(f"n|{outcome}", 0.0))
            duration.add_metric([stage], _buckets(h, "dur", DURATION_BUCKETS_S), h.get("dur_sum", 0.0))
            cpu.add_metric([stage], h.get("cpu_sum", 0.0))
        yield processed
        yield duration
        yield cpu
        failed = CounterMetricFamily(
            "newsflow_stage_failed", "Articles dead-lettered, by stage and reason", labels=["stage", "reason"]
        )
        for stage, reason, value in _pairs(_hash(self.state, f"{p}metrics:failed")):
            failed.add_metric([stage, reason], value)
        yield failed
        retried = CounterMetricFamily(
            "newsflow_stage_retried", "Retries scheduled after transient errors, by stage and reason",
            labels=["stage", "reason"],
        )  # fmt: skip
        for stage, reason, value in _pairs(_hash(self.state, f"{p}metrics:retried")):
            retried.add_metric([stage, reason], value)
        yield retried
        lag_h = _hash(self.state, f"{p}metrics:lag")
        lag = HistogramMetricFamily(
            "newsflow_publish_to_indexed_seconds", "From submit (or crawl) to committed in the index"
        )
        lag.add_metric([], _buckets(lag_h, "b", LAG_BUCKETS_S), lag_h.get("sum", 0.0))
        yield lag
        sources = CounterMetricFamily(
            "newsflow_source_articles", "Articles per source by state (discovered, indexed, skipped, dead)",
            labels=["source", "state"],
        )  # fmt: skip
        for field, value in sorted(_hash(self.state, f"{p}sources").items()):
            source, _, state = field.rpartition("|")
            sources.add_metric([source, state], value)
        yield sources

    def _queue_metrics(self) -> Iterator[Any]:
        infos = queues.inspect_queues(self.broker, self.queue_names)
        depth = GaugeMetricFamily("newsflow_queue_depth", "Messages waiting in the queue", labels=["queue"])
        age = GaugeMetricFamily(
            "newsflow_queue_oldest_age_seconds", "Age of the oldest waiting message (0 if empty)", labels=["queue"]
        )
        unacked = GaugeMetricFamily(
            "newsflow_queue_unacked", "Messages delivered to a worker and not yet acknowledged", labels=["queue"]
        )
        scheduled = GaugeMetricFamily(
            "newsflow_queue_scheduled", "Unacked messages waiting for a retry countdown (eta)", labels=["queue"]
        )
        for q in infos:
            depth.add_metric([q.queue], q.depth)
            age.add_metric([q.queue], q.oldest_age_s or 0.0)
            unacked.add_metric([q.queue], q.unacked)
            scheduled.add_metric([q.queue], q.scheduled)
        yield from (depth, age, unacked, scheduled)

    def _redis_metrics(self) -> Iterator[Any]:
        info: dict[str, Any] = self.broker.info("memory")
        used = GaugeMetricFamily("newsflow_broker_used_memory_bytes", "Broker Redis used_memory")
        used.add_metric([], float(info.get("used_memory", 0)))
        cap = GaugeMetricFamily("newsflow_broker_maxmemory_bytes", "Broker Redis maxmemory (0 = unlimited)")
        cap.add_metric([], float(info.get("maxmemory", 0)))
        yield used
        yield cap

    def _drift_metrics(self) -> Iterator[Any]:
        if self.drift is None:
            return
        flagged = GaugeMetricFamily(
            "newsflow_drift_flagged", "1 if the source's extraction moved from its baseline (status --drift)",
            labels=["source"],
        )  # fmt: skip
        share = GaugeMetricFamily(
            "newsflow_drift_share", "Share of the source's newest articles with a problem, and of its baseline",
            labels=["source", "metric", "sample"],
        )  # fmt: skip
        body = GaugeMetricFamily(
            "newsflow_drift_median_body_chars", "Median body length of the source's articles",
            labels=["source", "sample"],
        )  # fmt: skip
        for report in self.drift.reports():
            flagged.add_metric([report.key], 1.0 if report.flagged else 0.0)
            for sample, rates in (("window", report.window), ("baseline", report.baseline)):
                if rates is None:
                    continue
                for name in SHARES:
                    share.add_metric([report.key, name, sample], getattr(rates, name))
                body.add_metric([report.key, sample], rates.median_body)
        yield from (flagged, share, body)
