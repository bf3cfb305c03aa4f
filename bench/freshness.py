"""Freshness benchmark: submit-to-searchable latency while the pipeline runs at half its maximum rate.

Run from the project root:
    .venv/bin/python bench/freshness.py                           # burst of 400, then 60 s at half its rate
    .venv/bin/python bench/freshness.py --burst 150 --seconds 20  # quick run
    .venv/bin/python bench/freshness.py --max-rate 30 --json out.json
    .venv/bin/python bench/freshness.py --set index_batch_idle_s=0.05   # a commit-policy variant
    NEWSFLOW_INDEX_BATCH_MAX_WAIT_S=1 .venv/bin/python bench/freshness.py   # the same, by environment

Goal measured: "freshness — submit-to-searchable latency, p50 and p95, while the pipeline runs at half
its maximum rate: p95 <= 3 s".

Setup as bench/pipeline.py's (whose machinery it imports): a private redis-server on a free port, the
fixture pages served from memory by bench/_common.Origin under distinct URLs, per-host politeness
lifted (NEWSFLOW_POLITE_HOST_RATE_PER_S=1000000), `Deployment(settings, default_layout(settings))`
with a fresh data dir per phase, articles put in with `workers.client.submit`.

Two phases, each on its own fresh deployment:
1. burst: --burst articles submitted at once. Its indexed/s (indexed articles / last `indexed` time
   minus the first submit) is the maximum rate, unless --max-rate gives it. Its latencies are the
   contrast: a full queue, every article waits for the ones before it.
2. steady: --fraction x the maximum rate for --seconds, one `submit` call per --tick (the articles
   due by then, new URLs each time). Latencies count articles submitted after --warmup seconds.

Latency of an article = the `t` of the `indexed` event in its ledger trace (`State.trace`; the index
stage records it right after the tantivy commit of the article's batch, tasks/index.py commit_batch)
minus the time `submit` took for it (`Submitted.submitted_at`, this process's clock; the workers run
on the same machine and clock). "Searchable" is checked as users see it: a thread of this process
opens the index read-only (`open_index(settings, create=False)`, as `newsflow show`/the API do) and
polls `get(article_id)` for every --probe-every-th article, noting when each first appears; at the
end the index's document count (and the total of an empty `search`, which lists everything) is
compared with the ledger's indexed count, and the sampled articles are looked up again by URL.

Where the time goes, per article: for fetch, clean and enrich the queue wait (previous ledger event
to the handler's start, which is its `stage_done` log line's time minus its duration_ms) and the work
(handler start to this stage's ledger event); for index, the wait for the last article of its batch
to arrive (arrival = its `enriched` time: the index worker prefetches a batch's worth of messages),
then the rest: the batcher's close (index_batch_idle_s after the last arrival, newsflow/batcher.py),
the commit and the ledger write. The commit alone is estimated per batch from the batcher's rule
(full at index_batch_size, or idle_s after the last arrival, or max_wait_s after it opened). Nothing
logs batch sizes: batches are the articles whose `indexed` times lie within a few ms of each other
(one commit_batch records them in one loop).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DEFAULT_FIXTURES,
    Origin,
    Sampler,
    cpu_s,
    free_port,
    load_sources,
    loadavg,
    private_env,
    tree_cpu_s,
)

# DONE_STATE: the ledger state each stage records when done (the index stage's is the searchable moment).
from pipeline import DONE_STATE, LAYOUTS, STAGES, PipelineRun, log, pct  # noqa: E402

# One commit_batch records its articles one after the other: their `indexed` times (ms) lie within
# a few ms. Two commits are further apart than this (each takes a tantivy commit, tens of ms).
BATCH_GAP_S = 0.010
COMPONENTS = (
    "fetch.wait",
    "fetch.work",
    "clean.wait",
    "clean.work",
    "enrich.wait",
    "enrich.work",
    "index.fill",
    "index.close",
)
GOAL_P95_S = 3.0


# --- machine-wide CPU -------------------------------------------------------------------------------
def proc_stat() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat: the machine's load, others' too."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # guest time is counted in user already
    return total - idle, total


def code_state() -> str:
    """The commit measured, and the code files changed since it (read-only git queries)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD").strip() or "?"
    changed = [
        line[3:] for line in git("status", "--porcelain", "--", "newsflow", "tasks", "workers", "config").splitlines()
    ]
    return head + (f" + uncommitted changes in {', '.join(changed)}" if changed else " (clean)")


# --- the reader's view: is it searchable? ---------------------------------------------------------------
class Probe(threading.Thread):
    """Polls the index as a reader (another process than the writer) for sampled articles.

    `open_index(settings, create=False)` and `get(article_id)` are what `newsflow show` and the HTTP
    API use; every `get` reloads the reader to the latest commit.
    """

    def __init__(self, settings: Any, poll_s: float = 0.05, count_every_s: float = 0.5) -> None:
        super().__init__(daemon=True, name="freshness-probe")
        self.settings, self.poll_s, self.count_every_s = settings, poll_s, count_every_s
        self.pending: dict[str, float] = {}  # article id -> submitted at
        self.seen: dict[str, float] = {}  # article id -> first time a reader found it
        self.counts: list[tuple[float, int]] = []  # (time, documents in the index)
        self.polls = 0
        self.errors: Counter[str] = Counter()  # what went wrong while polling, and how often
        self.index: Any = None
        self._lock = threading.Lock()
        self._stop_evt = threading.Event()

    def watch(self, article_id: str, submitted_at: float) -> None:
        with self._lock:
            self.pending[article_id] = submitted_at

    def _open(self) -> bool:
        from newsflow.search import NoIndex, open_index

        if self.index is None:
            try:
                self.index = open_index(self.settings, create=False)
            except NoIndex:
                return False
            except Exception as exc:  # e.g. caught between the writer's meta.json and its schema file
                self.errors[f"open: {type(exc).__name__}: {str(exc)[:120]}"] += 1
                return False
        return True

    def run(self) -> None:
        last_count = 0.0
        while not self._stop_evt.wait(self.poll_s):
            if not self._open():
                continue
            with self._lock:
                ids = list(self.pending)
            for aid in ids:
                try:
                    found = self.index.get(aid) is not None
                except Exception as exc:  # counted and shown; the next poll tries again
                    self.errors[f"get: {type(exc).__name__}: {str(exc)[:120]}"] += 1
                    continue
                now = time.time()  # found by now at the latest (the previous poll is the earliest)
                if found:
                    with self._lock:
                        self.seen[aid] = now
                        self.pending.pop(aid, None)
            self.polls += 1
            if time.monotonic() - last_count >= self.count_every_s:
                last_count = time.monotonic()
                self.counts.append((time.time(), int(self.index.num_docs())))

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(10)
        if self._open():  # one last look: whatever is left pending after the run ended
            for aid in list(self.pending):
                if self.index.get(aid) is not None:
                    self.seen[aid] = time.time()
                    self.pending.pop(aid, None)
            self.counts.append((time.time(), int(self.index.num_docs())))

    def user_checks(self, urls: dict[str, str]) -> dict[str, Any]:
        """What a user would see at the end: `get(url)` of the sampled articles (`newsflow show URL`)
        and the total of an empty search without collapsing (`newsflow search "" --expand-clusters`)."""
        from newsflow.search import SearchRequest

        if not self._open():
            return {"by_url": 0, "by_url_tried": 0, "search_total": 0}
        found = 0
        for aid, url in urls.items():
            doc = self.index.get(url)
            found += doc is not None and doc.get("id") == aid
        total = self.index.search(SearchRequest(query="", limit=1, collapse=False)).total
        return {"by_url": found, "by_url_tried": len(urls), "search_total": int(total)}


# --- one phase on one deployment -----------------------------------------------------------------
@dataclass
class Feed:
    """What to submit: `urls`, all at once (rate None) or `rate` per second, one submit per tick."""

    label: str
    urls: list[str]
    rate: float | None = None
    tick_s: float = 0.1
    warmup_s: float = 0.0


class FreshnessRun(PipelineRun):
    """bench/pipeline.py's PipelineRun (stores, queue-depth sampler, worker names), fed over time."""

    def __init__(self, settings: Any, work: Path, redis_pid: int, origin_pid: int, feed: Feed) -> None:
        super().__init__(settings, feed.urls, work, redis_pid, feed.label)
        self.feed, self.origin_pid = feed, origin_pid

    def run_feed(self, timeout_s: float, probe_every: int, layout: Any = None) -> dict[str, Any]:
        from workers.app import app
        from workers.client import Submitted, submit
        from workers.runtime import Deployment, default_layout

        feed = self.feed
        log_path = self.work / f"{self.label}-workers.log"
        workers = layout(self.settings) if layout else default_layout(self.settings)
        self.dep = Deployment(self.settings, workers, log_path=log_path)
        self.dep.start()
        submitted: list[Submitted] = []
        url_of: dict[str, str] = {}
        try:
            time.sleep(1.0)  # let prefork children finish booting before the clock starts
            roots = [p.pid for p in self.dep.procs]
            cpu_each0 = [tree_cpu_s(p) for p in roots]
            redis0, origin0, own0 = cpu_s(self.redis_pid), cpu_s(self.origin_pid), time.process_time()
            stat0, load0 = proc_stat(), loadavg()
            probe = Probe(self.settings)
            probe.start()
            self.t0 = time.time()
            sampler = Sampler(self.sample, 0.5)
            sampler.start()

            def put(lo: int, hi: int) -> None:
                subs, rejected = submit(app, self.stores, feed.urls[lo:hi])
                if rejected:
                    raise RuntimeError(f"submit rejected {len(rejected)} URLs: {rejected[0]}")
                for k, s in enumerate(subs, lo):
                    if k % probe_every == 0:
                        probe.watch(s.article_id, s.submitted_at)
                        url_of[s.article_id] = s.url
                submitted.extend(subs)

            calls = 0
            if feed.rate is None:
                put(0, len(feed.urls))
                calls = 1
            else:
                sent, k = 0, 0
                while sent < len(feed.urls):
                    k += 1
                    due = min(len(feed.urls), int(feed.rate * (time.time() - self.t0)))
                    if due > sent:
                        put(sent, due)
                        sent, calls = due, calls + 1
                    time.sleep(max(0.0, self.t0 + k * feed.tick_s - time.time()))
            t_fed = time.time()
            n = len({s.article_id for s in submitted})
            deadline = time.monotonic() + timeout_s
            while (done := self.done_count()) < n and time.monotonic() < deadline and self.dep.alive():
                time.sleep(0.1)
            t1 = time.time()
            sampler.stop()
            probe.stop()
            self.sample()
            cpu_each = [tree_cpu_s(p) - c0 for p, c0 in zip(roots, cpu_each0, strict=True)]
            stat1 = proc_stat()
            cpu = {
                "workers_s": dict(zip(self.names(), cpu_each, strict=True)),
                "redis_s": cpu_s(self.redis_pid) - redis0,
                "origin_s": cpu_s(self.origin_pid) - origin0,
                "bench_s": time.process_time() - own0,
                "machine_busy": (stat1[0] - stat0[0]) / max(1.0, stat1[1] - stat0[1]),
                "load_start": load0,
                "load_end": loadavg(),
            }
            checks = probe.user_checks({a: url_of[a] for a in probe.seen})
            workers = [(spec.queue, spec.pool, spec.concurrency) for spec in self.dep.layout]
        finally:
            self.dep.stop()
        return {
            "label": self.label,
            "layout": workers,
            "offered": {"n": len(feed.urls), "rate": feed.rate, "submit_calls": calls, "fed_s": t_fed - self.t0},
            "n": n,
            "done": done,
            "wall_s": t1 - self.t0,
            "t0": self.t0,
            "cpu": cpu,
            "submitted": {s.article_id: s.submitted_at for s in submitted},
            "traces": {s.article_id: self.state.trace(s.article_id) for s in submitted},
            "stage_log": stage_log(log_path),
            "probe": {
                "watched": len(probe.seen) + len(probe.pending),
                "seen": probe.seen,
                "missing": sorted(probe.pending),
                "counts": probe.counts,
                "polls": probe.polls,
                "errors": dict(probe.errors),
                "poll_s": probe.poll_s,
                **checks,
            },
            "samples": self.samples,
        }


def stage_log(log_path: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """article id -> stage -> (handler start, handler end) from the workers' `stage_done` lines
    (outcome ok; the last one wins). End is the line's timestamp, start that minus duration_ms."""
    out: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    if not log_path.exists():
        return out
    for line in log_path.read_text(errors="replace").splitlines():
        if '"stage_done"' not in line:
            continue
        try:
            rec = json.loads(line)
            end = datetime.fromisoformat(rec["timestamp"]).timestamp()
            dur = float(rec["duration_ms"]) / 1000
        except (ValueError, KeyError, TypeError):
            continue
        if rec.get("outcome") == "ok" and rec.get("article_id"):
            out[rec["article_id"]][rec.get("stage", "?")] = (end - dur, end)
    return out


# --- analysis ------------------------------------------------------------------------------------------
def done_times(trace: list[dict[str, Any]], since: float) -> dict[str, float]:
    """Each stage's done time (its last such event after `since`), and `dead` if it died."""
    out: dict[str, float] = {}
    for ev in trace:
        if ev["t"] >= since - 0.01:
            out[ev["state"]] = float(ev["t"])
    return out


def group_batches(indexed: list[tuple[float, str]], gap_s: float = BATCH_GAP_S) -> list[list[tuple[float, str]]]:
    """Articles by commit: sorted `indexed` times, a new batch wherever two lie more than gap_s apart."""
    batches: list[list[tuple[float, str]]] = []
    for t, aid in sorted(indexed):
        if batches and t - batches[-1][-1][0] <= gap_s:
            batches[-1].append((t, aid))
        else:
            batches.append([(t, aid)])
    return batches


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": pct(values, 0.50),
        "p95": pct(values, 0.95),
        "p99": pct(values, 0.99),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
        "mean": sum(values) / len(values) if values else float("nan"),
    }


def analyse(run: dict[str, Any], settings: Any, warmup_s: float) -> dict[str, Any]:
    t0, submitted, traces, logs = run["t0"], run["submitted"], run["traces"], run["stage_log"]
    measured_from = t0 + warmup_s
    done: dict[str, dict[str, float]] = {aid: done_times(traces[aid], t_sub) for aid, t_sub in submitted.items()}
    indexed = {aid: d for aid, d in done.items() if "indexed" in d}
    dead = [aid for aid, d in done.items() if "dead" in d and "indexed" not in d]
    pending = [aid for aid in submitted if aid not in indexed and aid not in dead]
    measured = [aid for aid in indexed if submitted[aid] >= measured_from]
    latency = {aid: indexed[aid]["indexed"] - submitted[aid] for aid in measured}
    # the same, from the submit's own ledger event (`discovered`, recorded in the same call)
    from_ledger = [indexed[aid]["indexed"] - indexed[aid].get("discovered", math.nan) for aid in measured]

    # throughput: indexed events while articles were being fed (after warm-up)
    fed_until = t0 + run["offered"]["fed_s"]
    all_indexed_t = sorted(d["indexed"] for d in indexed.values())
    if run["offered"]["rate"] is None:  # burst: everything it indexed, from the first submit to the last commit
        first = min(submitted.values())
        span = (all_indexed_t[-1] - first) if all_indexed_t else math.nan
        achieved = len(all_indexed_t) / span if span and span > 0 else math.nan
    else:
        span = fed_until - measured_from
        achieved = sum(1 for t in all_indexed_t if measured_from <= t <= fed_until) / span if span > 0 else math.nan

    # batches: all of the phase's commits. An article joins the index stage when the enrich stage has
    # sent it on (its `enriched` time); the index worker prefetches a batch's worth of messages, so
    # its queue holds nothing for long (queue depth below) and the batcher sees it at once.
    batches = group_batches([(d["indexed"], aid) for aid, d in indexed.items()])
    size_limit, idle_s = settings.index_batch_size, settings.index_batch_idle_s
    max_wait_s = settings.index_batch_max_wait_s
    last_join: dict[str, float] = {}
    reasons: Counter[str] = Counter()
    commit_s: list[float] = []
    after_last: list[float] = []
    prev_end = 0.0
    for b in batches:
        end = b[0][0]
        joins = sorted(indexed[aid].get("enriched", math.nan) for _, aid in b)
        joins = [j for j in joins if not math.isnan(j)]
        if joins:
            # The batcher's rule (newsflow/batcher.py): a batch opens when the batcher is free and an
            # article waits; it closes when full, or idle_s after the last arrival, or max_wait_s
            # after it opened. The commit is what is left until the `indexed` time.
            opened = max(prev_end, joins[0])
            if len(b) >= size_limit:
                close, why = max(opened, joins[-1]), "full"
            elif max(opened, joins[-1]) + idle_s < opened + max_wait_s:
                close, why = max(opened, joins[-1]) + idle_s, "idle"
            else:
                close, why = opened + max_wait_s, "max_wait"
            reasons[why] += 1
            commit_s.append(max(0.0, end - close))
            after_last.append(end - joins[-1])
            for _, aid in b:
                last_join[aid] = joins[-1]
        prev_end = b[-1][0]
    sizes = [len(b) for b in batches]
    ends = [b[0][0] for b in batches]
    gaps = [b - a for a, b in itertools.pairwise(ends)]
    in_window = [len(b) for b in batches if b[0][0] >= measured_from]

    # per-stage components of each measured article's latency: for fetch, clean and enrich the queue
    # wait (previous ledger event to the handler's start) and the work (to this stage's ledger event);
    # for index the wait for later articles of its batch, then the rest (close, commit, ledger write).
    parts: dict[str, dict[str, float]] = {}
    for aid in measured:
        d, lg = indexed[aid], logs.get(aid, {})
        if not all(s in lg for s in STAGES[:3]) or not all(DONE_STATE[s] in d for s in STAGES) or aid not in last_join:
            continue
        prev, p = submitted[aid], {}
        for s in STAGES[:3]:
            start, t_done = lg[s][0], d[DONE_STATE[s]]
            p[f"{s}.wait"] = start - prev
            p[f"{s}.work"] = t_done - start
            prev = t_done
        p["index.fill"] = last_join[aid] - d["enriched"]
        p["index.close"] = d["indexed"] - last_join[aid]
        parts[aid] = p
    lat_sum = summary(list(latency.values()))
    tail = [aid for aid in parts if latency[aid] >= lat_sum["p95"]]
    mean_lat = sum(latency[a] for a in parts) / max(1, len(parts))
    breakdown = {
        c: {
            "mean": sum(p[c] for p in parts.values()) / max(1, len(parts)),
            "p95": pct([p[c] for p in parts.values()], 0.95),
            "share": (sum(p[c] for p in parts.values()) / max(1, len(parts))) / mean_lat if mean_lat else math.nan,
            "tail_mean": sum(parts[a][c] for a in tail) / max(1, len(tail)),
        }
        for c in COMPONENTS
    }

    # the reader's view
    pr = run["probe"]
    seen_minus_indexed = [pr["seen"][a] - indexed[a]["indexed"] for a in pr["seen"] if a in indexed]
    searchable_latency = [pr["seen"][a] - submitted[a] for a in pr["seen"] if submitted[a] >= measured_from]
    final_docs = pr["counts"][-1][1] if pr["counts"] else 0

    # queue depths while feeding, after warm-up
    depth: dict[str, list[int]] = defaultdict(list)
    for s in run["samples"]:
        if measured_from - t0 <= s["t"] <= run["offered"]["fed_s"]:
            for q, v in s["depth"].items():
                depth[q].append(v)
    cpu = run["cpu"]
    wall = run["wall_s"]
    return {
        "label": run["label"],
        "n": run["n"],
        "indexed": len(indexed),
        "dead": len(dead),
        "pending": len(pending),
        "measured": len(measured),
        "offered_rate": run["offered"]["rate"],
        "offered_n": run["offered"]["n"],
        "fed_s": run["offered"]["fed_s"],
        "submit_calls": run["offered"]["submit_calls"],
        "achieved_rate": achieved,
        "span_s": span,
        "wall_s": wall,
        "latency": lat_sum,
        "latency_from_discovered": summary([x for x in from_ledger if not math.isnan(x)]),
        "breakdown": breakdown,
        "breakdown_n": len(parts),
        "tail_n": len(tail),
        "batches": {
            "n": len(sizes),
            "sizes": summary([float(s) for s in sizes]),
            "sizes_in_window": summary([float(s) for s in in_window]),
            "histogram": histogram(in_window or sizes, size_limit),
            "interval_s": summary(gaps),
            "commit_s": summary(commit_s),
            "after_last_s": summary(after_last),
            "closed_by": dict(reasons),
            "commit_busy": sum(commit_s) / span if span and span > 0 else math.nan,
        },
        "probe": {
            "watched": pr["watched"],
            "seen": len(pr["seen"]),
            "missing": sum(1 for a in pr["missing"] if a in indexed),
            "missing_dead": sum(1 for a in pr["missing"] if a not in indexed),
            "polls": pr["polls"],
            "errors": pr["errors"],
            "poll_s": pr["poll_s"],
            "seen_minus_indexed_s": summary(seen_minus_indexed),
            "searchable_latency": summary(searchable_latency),
            "final_docs": final_docs,
            "doc_counts": len(pr["counts"]),
            "counts_grew": all(b[1] >= a[1] for a, b in itertools.pairwise(pr["counts"])),
            "by_url": pr["by_url"],
            "by_url_tried": pr["by_url_tried"],
            "search_total": pr["search_total"],
        },
        "queue_depth": {q: {"mean": sum(v) / len(v), "max": max(v)} for q, v in depth.items() if v},
        "cpu": {
            "workers_cores": {k: v / wall for k, v in cpu["workers_s"].items()},
            "workers_total_cores": sum(cpu["workers_s"].values()) / wall,
            "redis_cores": cpu["redis_s"] / wall,
            "origin_cores": cpu["origin_s"] / wall,
            "bench_cores": cpu["bench_s"] / wall,
            "machine_busy": cpu["machine_busy"],
            "workers_ms_per_article": 1000 * sum(cpu["workers_s"].values()) / max(1, len(indexed)),
            "load_start": cpu["load_start"],
            "load_end": cpu["load_end"],
        },
        "layout": run["layout"],
    }


def histogram(sizes: list[int], limit: int) -> dict[str, int]:
    edges = [(1, 1), (2, 4), (5, 16), (17, max(17, limit - 1)), (limit, limit)]
    out: dict[str, int] = {}
    for lo, hi in edges:
        if lo > hi:
            continue
        key = str(lo) if lo == hi else f"{lo}-{hi}"
        out[key] = sum(1 for s in sizes if lo <= s <= hi)
    return out


# --- report --------------------------------------------------------------------------------------------
def ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{1000 * x:.0f}"


def lat_line(s: dict[str, float]) -> str:
    return f"p50 {ms(s['p50'])}  p95 {ms(s['p95'])}  p99 {ms(s['p99'])}  max {ms(s['max'])} ms  (n {s['n']})"


def phase_rows(a: dict[str, Any], cores: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if a["offered_rate"] is None:
        offered = f"{a['offered_n']} articles in one submit call ({a['fed_s']:.2f} s)"
        achieved = f"{a['achieved_rate']:.1f} articles/s (indexed / first submit to last commit, {a['span_s']:.1f} s)"
    else:
        offered = (
            f"{a['offered_rate']:.2f} articles/s for {a['fed_s']:.1f} s ({a['offered_n']} articles, "
            f"{a['submit_calls']} submit calls)"
        )
        achieved = f"{a['achieved_rate']:.2f} articles/s (indexed while feeding, after warm-up)"
    rows += [
        ("offered", offered),
        ("achieved", achieved),
        (
            "articles",
            f"{a['indexed']} indexed, {a['dead']} dead, {a['pending']} not done; "
            f"{a['measured']} measured{'' if a['offered_rate'] is None else ' (submitted after warm-up)'}",
        ),
        ("latency submit→indexed", lat_line(a["latency"])),
        ("  from `discovered` event", lat_line(a["latency_from_discovered"])),
    ]
    pr = a["probe"]
    rows.append(
        (
            "  reader saw it (sample)",
            lat_line(pr["searchable_latency"]) + f"; {pr['seen']}/{pr['watched']} found in the whole phase",
        )
    )
    bd = a["breakdown"]
    rows.append(
        (
            "where the time goes",
            f"mean ms per article (share of mean latency) | p95 ms | mean in slowest 5% "
            f"({a['breakdown_n']} articles, {a['tail_n']} in the tail)",
        )
    )
    labels = {
        "wait": "queue wait",
        "work": "work",
        "fill": "wait for its batch's last article",
        "close": "after it: close, commit, ledger",
    }
    for c in COMPONENTS:
        stage, kind = c.split(".")
        b = bd[c]
        share = "-" if math.isnan(b["share"]) else f"{100 * b['share']:4.0f}%"
        rows.append(
            (
                f"  {stage:6s} {labels[kind]}",
                f"{ms(b['mean']):>6s} ({share}) | {ms(b['p95']):>6s} | {ms(b['tail_mean']):>6s}",
            )
        )
    bt = a["batches"]
    win = bt["sizes_in_window"] if bt["sizes_in_window"]["n"] else bt["sizes"]
    rows += [
        (
            "index commits",
            f"{bt['n']} batches; size p50 {win['p50']:.0f} mean {win['mean']:.1f} max {win['max']:.0f}"
            + (" (after warm-up)" if bt["sizes_in_window"]["n"] and a["offered_rate"] is not None else "")
            + "; sizes "
            + ", ".join(f"{k}: {v}" for k, v in bt["histogram"].items()),
        ),
        (
            "  timing",
            f"interval p50 {ms(bt['interval_s']['p50'])} ms; last arrival to `indexed` p50 "
            f"{ms(bt['after_last_s']['p50'])} p95 {ms(bt['after_last_s']['p95'])} ms; commit (est.) p50 "
            f"{ms(bt['commit_s']['p50'])} p95 {ms(bt['commit_s']['p95'])} ms (writer committing "
            f"{100 * bt['commit_busy']:.0f}% of the time); closed by (est.) "
            + ", ".join(f"{k} {v}" for k, v in sorted(bt["closed_by"].items())),
        ),
    ]
    if a["queue_depth"]:
        rows.append(
            (
                "queue depth",
                ", ".join(f"{q} mean {v['mean']:.1f} max {v['max']}" for q, v in a["queue_depth"].items()),
            )
        )
    cpu = a["cpu"]
    rows += [
        (
            "CPU",
            f"workers {cpu['workers_total_cores']:.2f} cores ("
            + ", ".join(f"{k} {v:.2f}" for k, v in cpu["workers_cores"].items())
            + f"), redis {cpu['redis_cores']:.2f}, origin {cpu['origin_cores']:.2f}, "
            f"this process {cpu['bench_cores']:.2f}; {cpu['workers_ms_per_article']:.0f} worker CPU-ms/article",
        ),
        (
            "  machine",
            f"{100 * cpu['machine_busy']:.0f}% of {cores} cores busy (/proc/stat, everyone's); "
            f"load {cpu['load_start']} → {cpu['load_end']}",
        ),
    ]
    return rows


def check_text(a: dict[str, Any]) -> str:
    pr = a["probe"]
    dev = pr["seen_minus_indexed_s"]
    return (
        f"{pr['seen']} of {pr['watched']} sampled articles found"
        + (f" ({pr['missing']} indexed ones never)" if pr["missing"] else "")
        + (f", {pr['missing_dead']} dead ones not, as expected" if pr["missing_dead"] else "")
        + f"; reader's first sight minus the ledger's `indexed` time: min {ms(dev['min'])} p50 {ms(dev['p50'])} "
        f"max {ms(dev['max'])} ms (the commit precedes the ledger write; the {1000 * pr['poll_s']:.0f} ms poll "
        f"comes after). At the end: {pr['final_docs']} documents in the index, an empty search's total "
        f"{pr['search_total']}, ledger {a['indexed']} indexed; the count never fell over {pr['doc_counts']} "
        f"readings: {pr['counts_grew']}; found again by URL (get(url)): {pr['by_url']} of {pr['by_url_tried']}."
        + (
            " Reader errors while polling (retried): " + "; ".join(f"{k} x{v}" for k, v in pr["errors"].items())
            if pr["errors"]
            else ""
        )
    )


def report(res: dict[str, Any]) -> str:
    s, cores = res["settings"], res["cores"]
    out = ["freshness: submit-to-searchable latency (goal: p95 <= 3 s at half the maximum rate)"]
    head: list[tuple[str, str]] = [
        ("date / machine", f"{res['date']}; {cores} cores; load at start {res['load_start']}"),
        ("code", res["code"]),
        (
            "commit policy",
            f"index_batch_size {s['index_batch_size']} (the index worker's concurrency), "
            f"index_batch_max_wait_s {s['index_batch_max_wait_s']}, index_batch_idle_s {s['index_batch_idle_s']}",
        ),
        (
            "layout",
            ", ".join(f"{q} {pool}x{c}" for q, pool, c in res["layout"])
            + (f"  (bench/pipeline.py layout '{res['layout_name']}')" if res.get("layout_name") else ""),
        ),
    ]
    if res.get("overrides"):
        head.append(("overrides", ", ".join(f"{k}={v}" for k, v in res["overrides"].items())))
    mr = res["max_rate"]
    head.append(("max rate", f"{mr['rate']:.1f} articles/s ({mr['how']})"))
    blocks = [("", head)]
    if "burst" in res:
        blocks.append((f"-- burst: full rate, {res['burst']['offered_n']} at once --", phase_rows(res["burst"], cores)))
    if "steady" in res:
        st = res["steady"]
        title = (
            f"-- steady: {res['fraction']:g} x max rate for {res['seconds']:g} s "
            f"(first {res['warmup_s']:g} s not measured) --"
        )
        blocks.append((title, phase_rows(st, cores)))
    width = max(len(k) for _, rows in blocks for k, _ in rows)
    for title, rows in blocks:
        if title:
            out.append(title)
        out += [f"{k.ljust(width)}  {v}" for k, v in rows]
    out.append("-- searchable check --")
    out.append(
        "A thread of this process opened the index read-only (open_index(settings, create=False), as "
        f"`newsflow show` and the API do) and polled get(article_id) every "
        f"{1000 * res['steady' if 'steady' in res else 'burst']['probe']['poll_s']:.0f} ms for every "
        f"{res['probe_every']}th article, noting when each first appeared."
    )
    for label in ("burst", "steady"):
        if label in res:
            out.append(f"{label}: " + check_text(res[label]))
    if "steady" in res:
        st = res["steady"]
        p95 = st["latency"]["p95"]
        verdict = "PASS" if p95 <= GOAL_P95_S else "FAIL"
        out.append(f"goal p95 <= {GOAL_P95_S:g} s at {res['fraction']:g} x max rate: {verdict} (p95 {p95:.2f} s)")
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-rate", type=float, metavar="R", help="the maximum rate, articles/s (default: measured)")
    ap.add_argument("--burst", type=int, default=400, help="articles in the saturating burst (default 400; 0: none)")
    ap.add_argument("--fraction", type=float, default=0.5, help="steady rate as a fraction of the max (default 0.5)")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the steady phase (default 60)")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds of the steady phase not measured (default 5)")
    ap.add_argument("--tick", type=float, default=0.1, help="seconds between submit calls (default 0.1)")
    ap.add_argument("--probe-every", type=int, default=10, help="reader-check every Nth article (default 10)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a setting for both phases, as NEWSFLOW_<FIELD> would (e.g. index_batch_idle_s=0.05); repeatable",
    )
    ap.add_argument("--layout", choices=sorted(LAYOUTS), help="a worker layout of bench/pipeline.py instead of default")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, indexes)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds to wait for a phase to drain (default 300)")
    args = ap.parse_args(argv)
    if args.max_rate is None and args.burst <= 0:
        ap.error("without --max-rate the burst measures it: --burst must be > 0")

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="newsflow-fresh-"))
    port = free_port()
    overrides = {k.strip(): v for k, _, v in (a.partition("=") for a in args.set)}
    # Before any newsflow import: this process talks to the private Redis (as bench/pipeline.py's main).
    os.environ.update(
        {
            **private_env(f"redis://127.0.0.1:{port}/0", work / "data"),
            **{"NEWSFLOW_" + k.upper(): v for k, v in overrides.items()},
        }
    )
    from config.settings import get_settings, load_settings
    from newsflow.state import connect
    from workers.runtime import PrivateRedis

    settings = get_settings()
    redis = PrivateRedis(port, work / "redis")
    redis.start()
    assert redis.proc is not None
    r = connect(settings.state_url)
    sources = load_sources(args.fixtures)
    layout = LAYOUTS[args.layout] if args.layout else None
    res: dict[str, Any] = {
        "cores": cores,
        "load_start": loadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "code": code_state(),
        "settings": {
            k: getattr(settings, k)
            for k in (
                "index_batch_size",
                "index_batch_max_wait_s",
                "index_batch_idle_s",
                "worker_concurrency",
                "cpu_pool",
                "fetch_concurrency",
            )
        },
        "overrides": overrides,
        "layout_name": args.layout,
        "fraction": args.fraction,
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "probe_every": args.probe_every,
    }
    raw: dict[str, Any] = {}
    try:
        with Origin(sources) as origin:

            def phase(feed: Feed) -> dict[str, Any]:
                r.flushall()
                s = load_settings(data_dir=str(work / feed.label))
                what = f"{len(feed.urls)} at once" if feed.rate is None else f"{feed.rate:.2f}/s"
                log(f"{feed.label}: {what}")
                assert redis.proc is not None
                run = FreshnessRun(s, work, redis.proc.pid, origin.proc.pid, feed)
                out = run.run_feed(args.timeout, args.probe_every, layout)
                raw[feed.label] = out
                a = analyse(out, s, feed.warmup_s)
                res["layout"] = out["layout"]
                log(
                    f"{feed.label}: {a['achieved_rate']:.1f} articles/s, latency p50 {a['latency']['p50']:.2f} "
                    f"p95 {a['latency']['p95']:.2f} s, {a['indexed']} indexed, {a['dead']} dead"
                )
                return a

            # Distinct articles throughout: every URL's number is past the raw fixtures, so each page
            # carries "(edition N)" in its title (bench/_common.vary).
            base = len(sources)
            if args.burst > 0:
                nums = list(range(base, base + args.burst))
                res["burst"] = phase(Feed("burst", [origin.url(i) for i in nums]))
            if args.max_rate is not None:
                res["max_rate"] = {"rate": args.max_rate, "how": "given with --max-rate"}
            else:
                b = res["burst"]
                res["max_rate"] = {
                    "rate": b["achieved_rate"],
                    "how": f"measured: burst of {b['offered_n']}, {b['indexed']} indexed in {b['span_s']:.1f} s",
                }
            rate = args.fraction * res["max_rate"]["rate"]
            n = max(1, math.ceil(rate * args.seconds))
            nums = list(range(1_000_000, 1_000_000 + n))
            feed = Feed("steady", [origin.url(i) for i in nums], rate, args.tick, args.warmup)
            res["steady"] = phase(feed)
    finally:
        redis.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work dir kept: {work}", file=sys.stderr)
    res["load_end"] = loadavg()
    print(report(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        full = {**res, "raw": {k: {kk: vv for kk, vv in v.items() if kk != "stage_log"} for k, v in raw.items()}}
        args.json.write_text(json.dumps(full, indent=1, default=str))
    status = 0
    if "steady" in res and not res["steady"]["latency"]["p95"] <= GOAL_P95_S:
        status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
