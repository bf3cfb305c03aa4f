"""Pipeline benchmark: the Celery pipeline against its physical limit on this machine (issue #9).

Run from the project root:
    .venv/bin/python bench/pipeline.py                 # full run, 2,000 pages
    .venv/bin/python bench/pipeline.py --pages 300     # quick run
    .venv/bin/python bench/pipeline.py --soak 10000    # memory growth check over 10,000 articles

What it measures, side by side in one run (timings on a shared machine are noisy; ratios are what
count):
1. the limit: fetch_page, build_doc (extract_article), enrich_article + assign_cluster and
   SearchIndex.upsert_batch called in a plain loop, in one process per core, no broker;
2. the pipeline: `Deployment(settings, default_layout(settings))`, as `newsflow up` starts it, with a
   fresh data dir, ingesting the same pages;
3. the ratio, per-task broker overhead, Redis memory per queued article, message sizes, resident
   memory per worker process, and 1 → 2 processes per CPU-bound stage.
The pages (121 extraction-benchmark fixtures and the seed) are served from memory on 127.0.0.1 under
distinct URLs; beyond the first round each copy carries its number in the title, so it is a distinct
article. Redis is a private redis-server on a free port, flushed between phases.
It prints a table, writes a PNG chart (throughput per stage over time, from the ledger's trace
timestamps) and, with --json, the raw figures.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
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
    switches,
    sys_s,
    tree_anon,
    tree_cpu_s,
    tree_rss,
    vary,
)

from newsflow.pipeline import STAGES as CONTRACT_STAGES  # noqa: E402 - the contract only, no settings

# From the pipeline's contract: the stages in order, and the ledger state each leaves an article in.
STAGES = tuple(s.name for s in CONTRACT_STAGES)
DONE_STATE = {s.name: s.done_state for s in CONTRACT_STAGES}
STATE_OF = {state: name for name, state in DONE_STATE.items()}
MB = 1024 * 1024


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}  (load {loadavg()})", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- rounds (--repeat) ----------------------------------------------------------------------------------
def variant_settings(spec: str, settings: Any) -> tuple[str, dict[str, Any]]:
    """`NAME:FIELD=VALUE[,FIELD=VALUE]` -> the variant's name and the settings it changes."""
    from config.settings import load_settings

    name, _, assigns = spec.partition(":")
    env = {"NEWSFLOW_" + k.strip().upper(): v for k, _, v in (a.partition("=") for a in assigns.split(","))}
    overrides = dataclasses.asdict(load_settings({**os.environ, **env}))
    return name, {k: v for k, v in overrides.items() if getattr(settings, k) != v and k != "data_dir"}


def _cpu_per_article(run: dict[str, Any], done: int) -> float:
    return 1000 * (run["cpu_s"] + run["redis_cpu_s"]) / max(1, done)


def by_process_ms(run: dict[str, Any]) -> dict[str, float]:
    """CPU ms per indexed article of each worker process and of redis-server, in one pipeline run."""
    n = max(1, run["indexed"])
    return {
        **{k: 1000 * v / n for k, v in run.get("cpu_by_worker", {}).items()},
        "redis": 1000 * run["redis_cpu_s"] / n,
    }


def round_figures(before: dict[str, Any], after: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    """One round's ratios: the pipeline and each variant against the mean of the limit runs around them."""
    lim_rate = (before["rate"] + after["rate"]) / 2
    lim_cpu = (_cpu_per_article(before, before["ok"]) + _cpu_per_article(after, after["ok"])) / 2
    out: dict[str, Any] = {"limit_cpu_ms": lim_cpu, "limit_rate": lim_rate}
    runs = {"pipeline": res["pipeline"], **res.get("variants", {})}
    for name, run in runs.items():
        cpu = _cpu_per_article(run, run["indexed"])
        out[name] = {
            "cpu_ms": cpu,
            "cpu_ratio": lim_cpu / cpu,
            "rate_ratio": run["rate"] / lim_rate,
            "added_per_task_ms": (cpu - lim_cpu) / 4,
            # The same in units of the loop's work: comparable between VMs of different speed.
            "added_per_task_share": (cpu - lim_cpu) / 4 / lim_cpu,
            # Where a round's CPU went, to tell a noisy round's cause from the code's cost.
            "by_process_ms": by_process_ms(run),
            # Exact where CPU timings on a shared machine are not (each includes the bench's polling).
            **redis_per_article(run),
        }
    return out


def redis_per_article(run: dict[str, Any]) -> dict[str, float]:
    """Redis socket reads (~ round trips) and commands per indexed article, where the run counted them."""
    n, out = max(1, run["indexed"]), {}
    if run.get("redis_reads"):
        out["redis_reads"] = run["redis_reads"] / n
    if run.get("redis_commands"):
        out["redis_commands"] = sum(run["redis_commands"].values()) / n
    return out


def rounds_report(rounds: list[dict[str, Any]]) -> str:
    """Each run's figures per round and their medians."""
    names = [k for k in rounds[0] if isinstance(rounds[0][k], dict)]
    lines = [f"over {len(rounds)} rounds (median, then each round):"]
    limits = [r["limit_cpu_ms"] for r in rounds]
    lines.append(
        f"  limit CPU/article     {statistics.median(limits):.1f} ms  ({', '.join(f'{x:.1f}' for x in limits)})"
    )
    for name in names:
        for key, label, fmt in (
            ("cpu_ratio", "CPU ratio", "{:.2f}"),
            ("added_per_task_ms", "added CPU per task", "{:.2f} ms"),
            ("added_per_task_share", "added per task/loop", "{:.1%}"),
            ("rate_ratio", "throughput ratio", "{:.2f}"),
            ("cpu_ms", "CPU/article", "{:.1f} ms"),
            ("redis_reads", "Redis reads/article", "{:.1f}"),
            ("redis_commands", "Redis cmds/article", "{:.0f}"),
        ):
            xs = [r[name][key] for r in rounds if key in r.get(name, {})]
            if not xs:
                continue
            each = ", ".join(fmt.format(x) for x in xs)
            lines.append(f"  {name:14s} {label:20s} {fmt.format(statistics.median(xs))}  ({each})")
        for i, r in enumerate(rounds, 1):
            if name in r and r[name].get("by_process_ms"):
                parts = ", ".join(f"{k} {v:.1f}" for k, v in r[name]["by_process_ms"].items() if v >= 0.05)
                lines.append(f"  {name:14s} round {i} CPU by process, ms/article: {parts}")
    return "\n".join(lines)


# --- other work on the machine (--background-load) ---------------------------------------------------
def _burn(duty: float) -> None:  # pragma: no cover - runs in a child process
    """Keep `duty` of one core busy: spin, then sleep, in 20 ms periods."""
    period = 0.02
    while True:
        end = time.perf_counter() + period * duty
        while time.perf_counter() < end:
            pass
        time.sleep(period * (1 - duty))


@contextlib.contextmanager
def background_load(cores: float) -> Iterator[None]:
    """Processes taking `cores` of CPU for as long as the block runs (a loaded machine, reproducibly)."""
    ctx = mp.get_context("fork")
    shares = [1.0] * int(cores) + ([cores - int(cores)] if cores - int(cores) > 0.01 else [])
    procs = [ctx.Process(target=_burn, args=(share,), daemon=True) for share in shares]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
            p.join(5)


# --- the limit: the same functions in a plain loop ------------------------------------------------
def _limit_child(
    urls: list[str], index_dir: str, barrier: Any, out: Any, batch_size: int
) -> None:  # pragma: no cover - runs in a child process
    from config.settings import get_settings
    from newsflow.enrich import assign_cluster, enrich_article
    from newsflow.enrich import warm_up as warm_up_enrich
    from newsflow.errors import PermanentError, TransientError
    from newsflow.fetcher import fetch_page, make_session
    from newsflow.pipeline import Message
    from newsflow.search import SearchIndex
    from newsflow.state import connect
    from newsflow.urls import article_id
    from tasks.clean import build_doc
    from tasks.clean import warm_up as warm_up_clean

    s = get_settings()
    session, r, index = make_session(s), connect(s.state_url), SearchIndex(index_dir)
    warm_up_clean()  # as the workers warm up before their first message
    warm_up_enrich()
    events: list[tuple[str, float]] = []
    spent: dict[str, float] = defaultdict(float)
    ok = dead = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        t = time.process_time()
        index.upsert_batch(batch, s.index_writer_heap_bytes)
        spent["index"] += time.process_time() - t
        now = time.time()
        events.extend(("index", now) for _ in batch)
        batch.clear()

    barrier.wait()
    cpu0, t0, sys0 = time.process_time(), time.time(), os.times().system
    use0 = resource.getrusage(resource.RUSAGE_SELF)
    for url in urls:
        aid = article_id(url)
        try:
            t = time.process_time()
            res = fetch_page(url, s, session)
            t1 = time.process_time()
            events.append(("fetch", time.time()))
            msg = Message.new(url, aid).forward(blob="-", fetch={"final_url": res.final_url, "status": res.status})
            doc = build_doc(msg, res.html, s.clean_max_html_bytes, s.clean_min_body_chars)
            t2 = time.process_time()
            events.append(("clean", time.time()))
            doc.update(enrich_article(doc))
            doc["cluster_id"] = assign_cluster(r, s.key_prefix, aid, doc.get("body") or "")
            t3 = time.process_time()
            events.append(("enrich", time.time()))
            spent["fetch"] += t1 - t
            spent["clean"] += t2 - t1
            spent["enrich"] += t3 - t2
        except (PermanentError, TransientError):
            dead += 1
            continue
        batch.append(doc)
        ok += 1
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    out.put(
        {
            "ok": ok,
            "dead": dead,
            "t0": t0,
            "t1": time.time(),
            "cpu_s": time.process_time() - cpu0,
            "sys_s": os.times().system - sys0,
            "switches": _switches_since(use0),
            "events": events,
            "spent": dict(spent),
        }
    )


def _switches_since(before: Any) -> tuple[int, int]:  # pragma: no cover - runs in a child process
    now = resource.getrusage(resource.RUSAGE_SELF)
    return now.ru_nvcsw - before.ru_nvcsw, now.ru_nivcsw - before.ru_nivcsw


def run_limit(urls: list[str], procs: int, work: Path, batch_size: int, redis_pid: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(procs + 1), ctx.Queue()
    children = [
        ctx.Process(
            target=_limit_child, args=(urls[i::procs], str(work / f"limit-index-{i}"), barrier, out, batch_size)
        )
        for i in range(procs)
    ]
    for c in children:
        c.start()
    barrier.wait(120)
    redis_cpu0, started = cpu_s(redis_pid), time.time()
    parts = [out.get(timeout=3600) for _ in children]
    redis_cpu = cpu_s(redis_pid) - redis_cpu0
    for c in children:
        c.join(30)
    t0, t1 = min(p["t0"] for p in parts), max(p["t1"] for p in parts)
    ok = sum(p["ok"] for p in parts)
    spent: dict[str, float] = defaultdict(float)
    for p in parts:
        for k, v in p["spent"].items():
            spent[k] += v
    events = [e for p in parts for e in p["events"]]
    return {
        "procs": procs,
        "ok": ok,
        "dead": sum(p["dead"] for p in parts),
        "wall_s": t1 - t0,
        "rate": ok / (t1 - t0),
        "cpu_s": sum(p["cpu_s"] for p in parts),
        "sys_s": sum(p["sys_s"] for p in parts),
        "switches": [sum(p["switches"][i] for p in parts) for i in (0, 1)],
        "redis_cpu_s": redis_cpu,
        "stage_ms": {k: 1000 * v / max(1, ok) for k, v in spent.items()},
        "events": [(stage, t - started) for stage, t in events],
    }


# --- the pipeline: the default deployment --------------------------------------------------------------
class PipelineRun:
    """One deployment, fed `urls`, watched until every article is indexed or dead."""

    def __init__(self, settings: Any, urls: list[str], work: Path, redis_pid: int, label: str) -> None:
        from newsflow.state import connect
        from newsflow.stores import Stores

        self.settings, self.urls, self.work, self.redis_pid, self.label = settings, urls, work, redis_pid, label
        self.stores = Stores.from_settings(settings)
        self.state = self.stores.state
        self.r = connect(settings.state_url)  # the instrument's own client: queue lists, INFO, sizes
        self.samples: list[dict[str, Any]] = []
        self.msg_sizes: dict[str, list[int]] = defaultdict(list)

    def done_count(self) -> int:
        """indexed + dead so far, from the ledger's hourly counters (cheap to poll)."""
        counts = self.state.transitions_hours(2 if time.gmtime(self.t0).tm_hour != time.gmtime().tm_hour else 1)
        return counts["indexed"] + counts["dead"]

    def sample(self) -> None:
        pipe = self.r.pipeline(transaction=False)
        for q in STAGES:
            pipe.llen(q)
            pipe.lrange(q, 0, 2)
        res = pipe.execute()
        depth = {}
        for i, q in enumerate(STAGES):
            depth[q] = res[2 * i]
            self.msg_sizes[q].extend(len(m) for m in res[2 * i + 1])
        rss = {name: sum(tree_rss(p.pid).values()) for name, p in zip(self.names(), self.dep.procs, strict=True)}
        anon = {name: tree_anon(p.pid) for name, p in zip(self.names(), self.dep.procs, strict=True)}
        self.samples.append(
            {"t": time.time() - self.t0, "depth": depth, "rss": rss, "anon": anon, "done": self.done_count()}
        )

    def names(self) -> list[str]:
        """A label per worker process: its queue(s), numbered when several consume the same."""
        queues = [spec.queue for spec in self.dep.layout]
        return [q if queues.count(q) == 1 else f"{q}#{queues[:i].count(q) + 1}" for i, q in enumerate(queues)]

    def profilers(self, out_dir: Path | None) -> list[Any]:
        """py-spy on every worker process tree (raw collapsed stacks), if asked for and installed."""
        import subprocess

        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if out_dir is None or not Path(spy).exists():
            return []
        out_dir.mkdir(parents=True, exist_ok=True)
        return [
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "-p",
                    str(p.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--gil",  # only the thread holding the GIL: CPU in Python, not waits
                    "-r",
                    "50",
                    "-f",
                    "raw",
                    "-o",
                    str(out_dir / f"{self.label}-{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, p in zip(self.names(), self.dep.procs, strict=True)
        ]

    def run(self, timeout_s: float, layout: list[Any] | None = None, profile: Path | None = None) -> dict[str, Any]:
        from workers.app import app
        from workers.client import submit
        from workers.runtime import Deployment, default_layout

        log_path = self.work / f"{self.label}-workers.log"
        self.dep = Deployment(self.settings, layout or default_layout(self.settings), log_path=log_path)
        self.dep.start()
        try:
            time.sleep(1.0)  # let prefork children finish booting before the clock starts
            roots = [p.pid for p in self.dep.procs]
            cpu_each0 = [tree_cpu_s(p) for p in roots]
            sys0 = sum(sys_s(p) for p in roots)
            switches0 = [switches(p) for p in roots]
            redis_cpu0 = cpu_s(self.redis_pid)
            self.r.config_resetstat()  # INFO commandstats from here on: commands per article
            spies = self.profilers(profile)
            self.t0 = time.time()
            sampler = Sampler(self.sample, 0.5)
            sampler.start()
            submitted, _ = submit(app, self.stores, self.urls)
            submit_s = time.time() - self.t0
            deadline = time.monotonic() + timeout_s
            n = len({s.article_id for s in submitted})
            while (done := self.done_count()) < n and time.monotonic() < deadline and self.dep.alive():
                time.sleep(0.25)
            t1 = time.time()
            for spy in spies:
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                spy.wait(30)
            sampler.stop()
            self.sample()
            cpu_each = [tree_cpu_s(p) - c0 for p, c0 in zip(roots, cpu_each0, strict=True)]
            cpu = sum(cpu_each)
            system = sum(sys_s(p) for p in roots) - sys0
            after = [switches(p) for p in roots]
            switched = [[now[i] - was[i] for i in (0, 1)] for now, was in zip(after, switches0, strict=True)]
            cpu_by_worker = dict(zip(self.names(), cpu_each, strict=True))
            redis_cpu = cpu_s(self.redis_pid) - redis_cpu0
            # Socket reads by the server: about one per request (a pipeline or a MULTI block sent at
            # once is one; a large value, such as a page's HTML, can take a few).
            reads = int(self.r.info("stats").get("total_reads_processed", 0))
            stats = self.r.info("commandstats")
            commands = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
            command_us = {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in stats.items()}
            rss = {name: tree_rss(p.pid) for name, p in zip(self.names(), self.dep.procs, strict=True)}
            workers = [(spec.queue, spec.pool, spec.concurrency) for spec in self.dep.layout]
        finally:
            self.dep.stop()
        ids = [s.article_id for s in submitted]
        events, outcomes = self.traces(ids)
        handler_ms, handler_cpu_ms = handler_times(log_path, ("duration_ms", "cpu_ms"))
        return {
            "label": self.label,
            "layout": workers,
            "n": n,
            "done": done,
            "indexed": outcomes.get("indexed", 0),
            "dead": outcomes.get("dead", 0),
            "wall_s": t1 - self.t0,
            "submit_s": submit_s,
            "rate": outcomes.get("indexed", 0) / (t1 - self.t0),
            "cpu_s": cpu,
            "redis_cpu_s": redis_cpu,
            "sys_s": system,
            "switches": [sum(x[i] for x in switched) for i in (0, 1)],
            "switches_by_worker": dict(zip(self.names(), switched, strict=True)),
            "cpu_by_worker": cpu_by_worker,
            "redis_commands": commands,
            "redis_command_us": command_us,
            "redis_reads": reads,
            "rss": rss,
            "samples": self.samples,
            "msg_sizes": {q: v for q, v in self.msg_sizes.items() if v},
            "doc_bytes": self.doc_sizes(ids),
            "handler_ms": handler_ms,
            "handler_cpu_ms": handler_cpu_ms,
            "events": [(st, t - self.t0) for st, t in events],
        }

    def traces(self, ids: list[str]) -> tuple[list[tuple[str, float]], dict[str, int]]:
        events: list[tuple[str, float]] = []
        outcomes: dict[str, int] = defaultdict(int)
        for aid in ids:
            trace = self.state.trace(aid)  # oldest first
            for ev in trace:
                if ev["t"] >= self.t0 - 1 and ev["state"] in STATE_OF:
                    events.append((STATE_OF[ev["state"]], ev["t"]))
            outcomes[trace[-1]["state"] if trace else "missing"] += 1
        return events, outcomes

    def doc_sizes(self, ids: list[str]) -> list[int]:
        pipe = self.r.pipeline(transaction=False)
        for aid in ids[:2000]:
            pipe.strlen(f"{self.settings.key_prefix}doc:{aid}")
        return [n for n in pipe.execute() if n]


def handler_times(log_path: Path, fields: tuple[str, ...]) -> list[dict[str, list[float]]]:
    """Each of `fields` (duration_ms, cpu_ms) of every `stage_done` line in the workers' JSON log,
    by stage: one read of the log for all of them."""
    out: list[dict[str, list[float]]] = [defaultdict(list) for _ in fields]
    if not log_path.exists():
        return out
    for line in log_path.read_text(errors="replace").splitlines():
        if '"stage_done"' not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        for by_stage, name in zip(out, fields, strict=True):
            if name in rec:
                by_stage[rec.get("stage", "?")].append(float(rec[name]))
    return out


# --- alternative worker layouts, to compare with default_layout side by side ---------------------------
def _split_prefork(settings: Any) -> list[Any]:
    """The layout before issue #9: one prefork pool per CPU-bound stage, task events on."""
    from workers.runtime import WorkerSpec

    cpu = settings.worker_concurrency or os.cpu_count() or 1
    return [
        WorkerSpec("fetch", "threads", settings.fetch_concurrency, ("-E",)),
        WorkerSpec("clean", "prefork", cpu, ("-E",)),
        WorkerSpec("enrich", "prefork", cpu, ("-E",)),
        WorkerSpec("index", "threads", settings.index_batch_size, ("-E",)),
    ]


def _solo_combined(settings: Any) -> list[Any]:
    """One solo worker per core consuming both clean and enrich: the default layout's `cpu` workers
    (kept so round two's first-part commands still run), without the crawl worker."""
    from workers.runtime import fetch_spec, index_spec, shared_cpu_spec

    cpu = settings.worker_concurrency or os.cpu_count() or 1
    return [fetch_spec(settings), *[shared_cpu_spec(instance=i) for i in range(cpu)], index_spec(settings)]


def _prefork_combined(settings: Any) -> list[Any]:
    """One prefork pool (a child per core) consuming both clean and enrich."""
    from workers.runtime import WorkerSpec

    cpu = settings.worker_concurrency or os.cpu_count() or 1
    return [
        WorkerSpec("fetch", "threads", settings.fetch_concurrency),
        WorkerSpec("clean,enrich", "prefork", cpu),
        WorkerSpec("index", "threads", settings.index_batch_size),
    ]


LAYOUTS = {
    "split-prefork-events": _split_prefork,
    "solo-combined": _solo_combined,
    "prefork-combined": _prefork_combined,
}


# --- queue memory, with no workers -------------------------------------------------------------------
def measure_queue(urls: list[str], settings: Any, sources: list[str]) -> dict[str, Any]:
    """Redis memory and message size per article queued for fetch, before any worker runs."""
    from newsflow.dispatch import send_first
    from newsflow.pipeline import FIRST, Message
    from newsflow.state import connect
    from newsflow.stores import Stores
    from newsflow.urls import article_id
    from workers.app import app
    from workers.client import submit

    r = connect(settings.state_url)
    r.flushall()
    before = int(r.info("memory")["used_memory"])
    queue = FIRST.queue
    send_first(app, (Message.new(url, article_id(url)) for url in urls))
    after_queue = int(r.info("memory")["used_memory"])
    queued = r.lrange(queue, 0, -1)
    sizes = [len(m) for m in queued]
    r.flushall()
    before_submit = int(r.info("memory")["used_memory"])
    stores = Stores(r, settings)
    state = stores.state
    submit(app, stores, urls)
    after_submit = int(r.info("memory")["used_memory"])
    r.flushall()
    # Claim-check blobs as the fetch stage stores them (State.put_blob), one per distinct page.
    blob_bytes = [int(r.strlen(state.put_blob(f"b{i}", vary(src, i)))) for i, src in enumerate(sources)]
    r.flushall()
    n = len(urls)
    return {
        "n": n,
        "queue_bytes_per_article": (after_queue - before) / n,
        "submit_bytes_per_article": (after_submit - before_submit) / n,
        "fetch_msg_bytes": statistics.mean(sizes),
        "blob_bytes": blob_bytes,
        "sample_message": queued[0].decode("utf-8", "replace") if queued else None,
    }


# --- report ----------------------------------------------------------------------------------------------
def summarize(res: dict[str, Any], sources: list[str], cores: int) -> str:
    lim, pipe = dict(res["limit"]), res["pipeline"]
    if "limit_after" in res:  # the mean of the runs before and after the pipeline
        after = res["limit_after"]
        for k in ("rate", "cpu_s", "redis_cpu_s", "wall_s"):
            lim[k] = (lim[k] + after[k]) / 2
        lim["stage_ms"] = {k: (v + after["stage_ms"].get(k, v)) / 2 for k, v in lim["stage_ms"].items()}
    n_tasks = 4 * pipe["indexed"]
    ratio = pipe["rate"] / lim["rate"]
    lim_cpu_ms, pipe_cpu_ms = _cpu_per_article(lim, lim["ok"]), _cpu_per_article(pipe, pipe["indexed"])
    cpu_ratio = lim_cpu_ms / pipe_cpu_ms
    wall_ov = (cores / pipe["rate"] - cores / lim["rate"]) / 4 * 1000
    cpu_ov = ((pipe["cpu_s"] + pipe["redis_cpu_s"]) - (lim["cpu_s"] + lim["redis_cpu_s"])) / max(1, n_tasks) * 1000
    blob = res["queue"]["blob_bytes"]
    rows: list[tuple[str, str]] = [
        (
            "machine",
            f"{cores} cores, load at start {res['load_start']}, at end {res['load_end']}"
            + (
                f"; background load {res['background_load']:g} cores during every phase"
                if res.get("background_load")
                else "; no background load"
            ),
        ),
        ("pages", f"{pipe['n']} ({pipe['indexed']} indexed, {pipe['dead']} dead); limit ok {lim['ok']}"),
        (
            "limit",
            f"{lim['rate']:.1f} articles/s ({lim['procs']} processes, {lim['wall_s']:.1f} s)"
            + (
                f"; runs before/after: {res['limit']['rate']:.1f} / {res['limit_after']['rate']:.1f}"
                if "limit_after" in res
                else ""
            ),
        ),
        ("pipeline", f"{pipe['rate']:.1f} articles/s ({pipe['wall_s']:.1f} s; submit took {pipe['submit_s']:.1f} s)"),
        ("ratio pipeline/limit", f"{ratio:.2f}  (goal >= 0.80)"),
        # CPU per article is far less sensitive to other load on the machine than throughput is.
        ("ratio by CPU/article", f"{cpu_ratio:.2f}  (limit CPU per article / pipeline CPU per article)"),
        ("broker overhead, wall", f"{wall_ov:.2f} core-ms per task (goal <= 2)"),
        (
            "broker overhead, CPU",
            f"{cpu_ov:.2f} CPU-ms per task (workers + redis, minus the limit's; "
            f"{cpu_ov / max(1e-9, lim_cpu_ms):.1%} "
            "of the limit's CPU per article)",
        ),
        (
            "CPU per article",
            f"limit {lim_cpu_ms:.1f} ms, pipeline {pipe_cpu_ms:.1f} ms",
        ),
    ]
    rows.append(("  CPU by process", ", ".join(f"{k} {v:.1f}" for k, v in by_process_ms(pipe).items()) + " ms/article"))
    if "switches" in pipe and "switches" in lim:
        n_lim, n_pipe = max(1, lim["ok"]), max(1, pipe["indexed"])
        by = ", ".join(
            f"{name} {v / n_pipe:.0f}+{i / n_pipe:.0f}" for name, (v, i) in pipe.get("switches_by_worker", {}).items()
        )
        rows.append(
            (
                "  context switches",
                f"limit {lim['switches'][0] / n_lim:.0f} voluntary + {lim['switches'][1] / n_lim:.0f} involuntary "
                f"per article, workers {pipe['switches'][0] / n_pipe:.0f} + {pipe['switches'][1] / n_pipe:.0f} ({by})",
            )
        )
    if "sys_s" in pipe and "sys_s" in lim:
        rows.append(
            (
                "  kernel (system) CPU",
                f"limit {1000 * lim['sys_s'] / max(1, lim['ok']):.1f} ms/article "
                f"({100 * lim['sys_s'] / max(1e-9, lim['cpu_s']):.0f}% of its CPU), workers "
                f"{1000 * pipe['sys_s'] / max(1, pipe['indexed']):.1f} ms/article "
                f"({100 * pipe['sys_s'] / max(1e-9, pipe['cpu_s']):.0f}%)",
            )
        )
    cmds = pipe.get("redis_commands", {})
    if cmds:
        top = sorted(cmds.items(), key=lambda kv: -kv[1])[:8]
        n = max(1, pipe["indexed"])
        rows.append(
            (
                "  Redis commands",
                f"{sum(cmds.values()) / n:.0f} per article ("
                + ", ".join(f"{k} {v / n:.1f}" for k, v in top)
                + "; includes the benchmark's own polling)",
            )
        )
    if pipe.get("redis_reads"):
        rows.append(
            (
                "  Redis socket reads",
                f"{pipe['redis_reads'] / max(1, pipe['indexed']):.0f} per article (~ round trips: a pipelined batch "
                "is one, a large value a few; includes the benchmark's own polling)",
            )
        )
    spent = pipe.get("redis_command_us", {})
    if spent:
        n = max(1, pipe["indexed"])
        top = sorted(spent.items(), key=lambda kv: -kv[1])[:8]
        rows.append(
            (
                "  Redis command time",
                f"{sum(spent.values()) / n / 1000:.2f} ms per article in commands, the rest is I/O ("
                + ", ".join(f"{k} {v / n / 1000:.2f}" for k, v in top)
                + ")",
            )
        )
    for st in STAGES:
        h, cpu = pipe["handler_ms"].get(st, []), pipe.get("handler_cpu_ms", {}).get(st, [])
        rows.append(
            (
                f"  {st}",
                f"pure {lim['stage_ms'].get(st, float('nan')):6.2f} CPU-ms/article | in the worker's handler "
                f"{sum(cpu) / max(1, pipe['n']):6.2f} CPU-ms/article | handler median "
                f"{pct(h, 0.5):6.2f} p95 {pct(h, 0.95):7.2f} ms",
            )
        )
    q = res["queue"]
    rows.append(
        (
            "Redis per queued article",
            f"{q['queue_bytes_per_article']:.0f} B queue only; "
            f"{q['submit_bytes_per_article']:.0f} B with the ledger (submit)",
        )
    )
    sizes = {"fetch": [int(q["fetch_msg_bytes"])], **pipe["msg_sizes"]}
    rows.append(
        (
            "message size",
            ", ".join(f"{k} {statistics.mean(v):.0f} B" for k, v in sizes.items() if v) + " (goal <= 2048)",
        )
    )
    doc = pipe["doc_bytes"]
    rows.append(
        (
            "claim-check blobs",
            f"raw HTML zstd-1 median {pct(blob, 0.5) / 1024:.1f} kB (max {max(blob) / 1024:.0f} kB); "
            f"doc JSON zstd-3 median {pct(doc, 0.5) / 1024:.1f} kB",
        )
    )
    for queue, procs in pipe["rss"].items():
        rows.append((f"RSS {queue}", ", ".join(f"{v / MB:.0f}" for v in procs.values()) + " MB"))
    if "scale" in res:
        sc = res["scale"]
        rows.append(
            (
                "scaling limit 1→2 procs",
                f"{sc['limit1']['rate']:.1f} → {lim['rate']:.1f} articles/s "
                f"(x{lim['rate'] / sc['limit1']['rate']:.2f})",
            )
        )
        rows.append(
            (
                "scaling pipeline 1→2",
                f"{sc['pipeline1']['rate']:.1f} → {pipe['rate']:.1f} articles/s "
                f"(x{pipe['rate'] / sc['pipeline1']['rate']:.2f})",
            )
        )

        def busy(run: dict[str, Any], done: int) -> str:
            cpu = run["cpu_s"] + run["redis_cpu_s"]
            return f"{cpu / run['wall_s']:.2f} cores busy, {1000 * cpu / max(1, done):.1f} CPU-ms/article"

        # Why the two gain differently: one process per stage already runs four stages side by side.
        rows.append(
            (
                "  cores used 1 / 2 procs",
                f"limit {busy(sc['limit1'], sc['limit1']['ok'])} / {busy(lim, lim['ok'])}; "
                f"pipeline {busy(sc['pipeline1'], sc['pipeline1']['indexed'])} / {busy(pipe, pipe['indexed'])}",
            )
        )
    lim_rate = lim["rate"]
    for name, run in res.get("variants", {}).items():
        cpu_article = _cpu_per_article(run, run["indexed"])
        rows.append(
            (
                f"variant {name}",
                f"{run['rate']:.1f} articles/s, ratio {run['rate'] / lim_rate:.2f}, "
                f"CPU/article {cpu_article:.1f} ms (CPU ratio {lim_cpu_ms / cpu_article:.2f}, "
                f"{(cpu_article - lim_cpu_ms) / 4:.2f} ms added per task); "
                + ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in redis_per_article(run).items())
                + " per article; CPU by process, ms/article: "
                + ", ".join(f"{k} {v:.1f}" for k, v in by_process_ms(run).items() if v >= 0.05),
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _rate_series(events: list[tuple[str, float]], stage: str) -> tuple[list[int], list[float]]:
    """Completions of `stage` per second, as a 3-second running mean."""
    ts = [t for s, t in events if s == stage]
    if not ts:
        return [], []
    bins = int(max(ts)) + 2
    counts = [0] * bins
    for t in ts:
        counts[max(0, int(t))] += 1
    return list(range(bins)), [sum(counts[max(0, i - 2) : i + 1]) / min(3, i + 1) for i in range(bins)]


def chart(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pipe, lim = res["pipeline"], res["limit"]
    fig, axes = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    ax = axes[0]
    runs = [("before", lim)] + ([("after", res["limit_after"])] if "limit_after" in res else [])
    for (when, run), style in zip(runs, ("-", "--"), strict=False):
        for st in ("fetch", "index"):
            ax.plot(*_rate_series(run["events"], st), style, label=f"{st} ({when}: {run['rate']:.1f}/s)")
    ax.set_title("limit: plain loop, one process per core, run before and after the pipeline")
    ax = axes[1]
    for st in STAGES:
        ax.plot(*_rate_series(pipe["events"], st), label=st)
    ax.set_title(f"pipeline (default `newsflow up` layout): {pipe['rate']:.1f} articles/s")
    for ax in axes[:2]:
        ax.set_ylabel("articles/s (3 s mean)")
        ax.legend(loc="upper right", fontsize="small")
        ax.grid(alpha=0.3)
    ax = axes[2]
    ts = [s["t"] for s in pipe["samples"]]
    for q in STAGES:
        ax.plot(ts, [s["depth"][q] for s in pipe["samples"]], label=q)
    ax.set_title("pipeline queue depth (messages waiting)")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("messages")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    lim_rate = (lim["rate"] + res.get("limit_after", lim)["rate"]) / 2
    fig.suptitle(
        f"newsflow pipeline vs limit, {pipe['n']} pages, ratio {pipe['rate'] / lim_rate:.2f} "
        f"({res['date']}, load {res['load_start']} → {res.get('load_end', '?')})"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- soak ----------------------------------------------------------------------------------------------------
def soak_report(run: dict[str, Any], warm_fraction: float = 0.1) -> tuple[bool, str]:
    """Private memory (RssAnon) of each worker's process tree at the end vs after warm-up (<= +10%).

    Plain RSS is shown too; it also counts file pages mapped in (the index writer maps its growing
    segment files), which are not the process's memory to leak.
    """
    samples = run["samples"]
    warm = next((s for s in samples if s["done"] >= warm_fraction * run["n"]), samples[0])
    end = samples[-1]
    ok, lines = True, []
    for queue, start in warm["anon"].items():
        final = end["anon"][queue]
        growth = final / max(1, start) - 1
        ok = ok and growth <= 0.10
        lines.append(
            f"  {queue:7s} private RSS after warm-up {start / MB:6.1f} MB, at end {final / MB:6.1f} MB ({growth:+.1%});"
            f"  RSS {warm['rss'][queue] / MB:6.1f} -> {end['rss'][queue] / MB:6.1f} MB"
        )
    head = (
        f"soak: {run['indexed']} indexed, {run['dead']} dead in {run['wall_s']:.0f} s "
        f"({run['rate']:.1f} articles/s); warm-up point at {warm['done']} done, t={warm['t']:.0f} s"
    )
    verdict = "PASS (<= 10%)" if ok else "FAIL (> 10%)"
    return ok, "\n".join([head, *lines, "  private memory growth check: " + verdict])


# --- main ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=2000, help="articles to ingest (default 2000)")
    ap.add_argument("--soak", type=int, metavar="N", help="only the pipeline, N articles, check RSS growth")
    ap.add_argument("--no-scale", action="store_true", help="skip the 1-process-per-stage runs")
    ap.add_argument("--scale-pages", type=int, default=500, help="articles for the 1-process runs (default 500)")
    ap.add_argument("--chart", type=Path, default=ROOT / "docs" / "img" / "pipeline-throughput.png")
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    ap.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, indexes)")
    ap.add_argument("--profile", type=Path, metavar="DIR", help="py-spy every worker during pipeline runs (raw stacks)")
    ap.add_argument(
        "--layout-variant",
        action="append",
        default=[],
        choices=sorted(LAYOUTS),
        help="also run the pipeline with this worker layout; repeatable",
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:FIELD=VALUE[,FIELD=VALUE]",
        help="also run the pipeline with these settings (e.g. events:worker_task_events=1); repeatable",
    )
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for a pipeline run")
    ap.add_argument(
        "--warmup-pages",
        type=int,
        default=150,
        metavar="N",
        help="an uncounted pipeline run of N pages first (the first run on a fresh machine is slower; 0: none)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="N rounds of limit, pipeline (and variants), limit; medians over the rounds (a shared machine drifts)",
    )
    ap.add_argument(
        "--background-load",
        type=float,
        default=0.0,
        metavar="CORES",
        help="other work on the machine during every phase: busy processes taking this many cores (e.g. 0.5)",
    )
    args = ap.parse_args(argv)

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="newsflow-bench-"))
    port = free_port()
    # Before any newsflow import: the benchmark's own process talks to the private Redis.
    os.environ.update(private_env(f"redis://127.0.0.1:{port}/0", work / "data"))
    from config.settings import get_settings, load_settings
    from newsflow.state import connect
    from workers.runtime import PrivateRedis

    settings = get_settings()
    redis = PrivateRedis(port, work / "redis")
    redis.start()
    assert redis.proc is not None
    r = connect(settings.state_url)
    sources = load_sources(args.fixtures)
    res: dict[str, Any] = {
        "cores": cores,
        "load_start": loadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    status = 0
    try:
        with Origin(sources) as origin, background_load(args.background_load):
            res["background_load"] = args.background_load

            def pipeline(n: int, label: str, layout: Any = None, **overrides: Any) -> dict[str, Any]:
                r.flushall()
                s = load_settings(data_dir=str(work / label), **overrides)
                log(f"pipeline '{label}': {n} pages")
                run = PipelineRun(s, [origin.url(i) for i in range(n)], work, redis.proc.pid, label)
                out = run.run(args.timeout, layout=layout(s) if layout else None, profile=args.profile)
                log(f"pipeline '{label}': {out['rate']:.1f} articles/s, {out['indexed']} indexed, {out['dead']} dead")
                return out

            def limit(n: int, procs: int) -> dict[str, Any]:
                r.flushall()
                log(f"limit: {n} pages, {procs} processes")
                out = run_limit(
                    [origin.url(i) for i in range(n)], procs, work, settings.index_batch_size, redis.proc.pid
                )
                log(f"limit: {out['rate']:.1f} articles/s")
                return out

            if args.soak:
                run = pipeline(args.soak, "soak")
                ok, text = soak_report(run)
                res["soak"] = {k: v for k, v in run.items() if k != "events"}
                print(text)
                status = 0 if ok else 1
            else:
                log("queue memory and message size, no workers")
                res["queue"] = measure_queue([origin.url(i) for i in range(min(args.pages, 2000))], settings, sources)
                if args.warmup_pages:
                    # The first deployment on a fresh machine pays one-time costs (the page cache of
                    # every library and model file, Redis growing its allocation): not counted.
                    pipeline(min(args.warmup_pages, args.pages), "warm-up")
                res["limit"] = limit(args.pages, cores)
                res["pipeline"] = pipeline(args.pages, "pipeline")
                # The load of a shared machine drifts: bracket the pipeline by a second limit run.
                res["limit_after"] = limit(args.pages, cores)
                if not args.no_scale and cores > 1:
                    m = min(args.pages, args.scale_pages)
                    res["scale"] = {"limit1": limit(m, 1), "pipeline1": pipeline(m, "pipeline-1", worker_concurrency=1)}
                res["variants"] = {}
                for name in args.layout_variant:
                    res["variants"][name] = pipeline(args.pages, name, layout=LAYOUTS[name])
                for spec in args.variant:
                    name, changed = variant_settings(spec, settings)
                    res["variants"][name] = pipeline(args.pages, name, **changed)
                # More rounds (--repeat): limit, the pipeline and each variant, limit again, in turn, so
                # a shared machine's drift hits all of them; medians say what holds across rounds.
                rounds = [round_figures(res["limit"], res["limit_after"], res)]
                for i in range(2, args.repeat + 1):
                    extra: dict[str, Any] = {"limit": limit(args.pages, cores), "variants": {}}
                    extra["pipeline"] = pipeline(args.pages, f"pipeline-r{i}")
                    for name in args.layout_variant:
                        extra["variants"][name] = pipeline(args.pages, f"{name}-r{i}", layout=LAYOUTS[name])
                    for spec in args.variant:
                        name, changed = variant_settings(spec, settings)
                        extra["variants"][name] = pipeline(args.pages, f"{name}-r{i}", **changed)
                    extra["limit_after"] = limit(args.pages, cores)
                    rounds.append(round_figures(extra["limit"], extra["limit_after"], extra))
                res["rounds"] = rounds
                res["load_end"] = loadavg()
                print(summarize(res, sources, cores))
                if len(rounds) > 1:
                    print(rounds_report(rounds))
                chart(res, args.chart)
                print(f"chart: {args.chart}")
    finally:
        redis.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work dir kept: {work}", file=sys.stderr)
    res.setdefault("load_end", loadavg())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1, default=str))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
