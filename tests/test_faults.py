"""Fault injection: nothing is lost, nothing is indexed twice (issue #8).

Real redis-server (append-only, on its own port), real `celery worker` processes, real HTTP from a
local origin. Each test pushes its own batch of FAULT_BATCH (default 500) distinct article URLs and
hurts the deployment in the middle of it; at the end every article must be indexed exactly once or
dead-lettered with a reason, and the counts must add up:

    indexed + dead == submitted,  index docs per id == 1,  ledger "indexed" <=> in the index.

The counts of each fault are printed (run with -s to see them live; they are also printed at the end).
Slow: run it as its own CI step:  .venv/bin/pytest -m slow -s tests/test_faults.py
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.transport import redis as kombu_redis

from newsflow.state import connect
from tasks.celeryconfig import celery_config
from tests.hostile.origin import FaultyOrigin
from tests.hostile.rig import (
    Counts,
    Rig,
    active_task,
    bench_origin,
    busy_child,
    children,
    frozen,
    kill_whole_worker,
    log_events,
    origin_only_env,
    short_delivery_env,
    temp_root,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BATCH = int(os.environ.get("NEWSFLOW_FAULT_BATCH", "500"))
VISIBILITY_TIMEOUT_S = 10
RUN_TIMEOUT_S = 300.0
# Reasons a page earns by its content, whatever the weather: the same page gets the same one in
# a run without faults. Infrastructure faults must not add any other reason.
CONTENT_REASONS = {"noindex", "no_article", "not_html", "too_large", "duplicate"}
RESULTS: dict[str, Counts] = {}


def fault_env(origin_port: int) -> dict[str, str]:
    return {
        **short_delivery_env(VISIBILITY_TIMEOUT_S),
        **origin_only_env(origin_port),
        "NEWSFLOW_WORKER_CONCURRENCY": "2",
        "NEWSFLOW_FETCH_CONCURRENCY": "8",
        "NEWSFLOW_INDEX_BATCH_SIZE": "32",
        "NEWSFLOW_INDEX_BATCH_MAX_WAIT_S": "0.5",
    }


@pytest.fixture(scope="module")
def origin() -> Iterator[FaultyOrigin]:
    with bench_origin() as server:
        yield server


@pytest.fixture(scope="module")
def rig(origin: FaultyOrigin) -> Iterator[Rig]:
    with temp_root("faults") as root, Rig(root, fault_env(origin.port)) as r:
        yield r
        _print_summary()


def _print_summary() -> None:
    print("\n=== fault injection: end-of-run counts ===")
    for label, counts in RESULTS.items():
        print(counts.line(label))


class Batch:
    def __init__(self, rig: Rig, origin: FaultyOrigin, label: str) -> None:
        self.rig, self.label = rig, label
        self.urls = origin.urls(label, BATCH)
        started = time.time()
        self.ids = [s.article_id for s in rig.submit(self.urls)]
        self.since = started - 1
        self.t0 = time.monotonic()

    def wait_terminal(self, fraction: float, timeout_s: float = 120.0) -> None:
        """Block until `fraction` of the batch is indexed or dead: the fault lands mid-run."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = self.rig.count_states(self.ids)
            if states["indexed"] + states["dead"] >= fraction * len(self.ids):
                return
            time.sleep(0.2)
        pytest.fail(f"{self.label}: {fraction:.0%} of the batch not done within {timeout_s} s")

    def finish(self, allowed_reasons: set[str] = CONTENT_REASONS) -> Counts:
        # Stalled for 6 visibility timeouts: whatever is missing now is not coming back.
        done = self.rig.wait(self.ids, RUN_TIMEOUT_S, self.since, stall_s=6 * VISIBILITY_TIMEOUT_S)
        elapsed = time.monotonic() - self.t0
        counts = self.rig.account(self.ids)
        RESULTS[self.label] = counts
        print(f"\n{counts.line(self.label)} ({elapsed:.0f} s)")
        stuck = self.rig.diagnose_pending(self.ids)
        for line in stuck:
            print(f"{self.label}: {line}")
        lost = len(self.ids) - len(done)
        assert lost == 0, f"{lost} articles never reached indexed or dead: {stuck}"
        self.rig.check_invariants(self.ids, self.label)
        unexpected = set(counts.dead_reasons) - allowed_reasons
        letters = [self.rig.state.dead_letter_record(aid) for aid in self.ids] if unexpected else []
        details = [
            {k: letter.get(k) for k in ("stage", "reason", "detail", "worker")}
            for letter in letters
            if letter and letter.get("reason") in unexpected
        ]
        assert not unexpected, f"the fault cost articles: {counts.line(self.label)}: {details[:5]}"
        self.check_same_page_same_fate(allowed_reasons)
        return counts

    def check_same_page_same_fate(self, allowed_reasons: set[str]) -> None:
        """Every URL of one benchmark page ends the same way: no article is hurt by the fault."""
        by_page: dict[str, Counter[str]] = {}
        for url, entry in zip(self.urls, self.rig.state.ledgers(self.ids), strict=True):
            assert entry is not None
            fate = entry.state if entry.state == "indexed" else entry.reason
            if fate in allowed_reasons - CONTENT_REASONS:
                continue  # an origin fault's own casualty (dead-lettered with its reason)
            by_page.setdefault(Path(url).name, Counter())[fate] += 1
        mixed = {page: fates for page, fates in by_page.items() if len(fates) > 1}
        assert not mixed, f"same page, different fates: {mixed}"


def test_sigkill_pool_child_mid_task(rig: Rig, origin: FaultyOrigin) -> None:
    """Prefork children of clean and enrich die in the middle of a task; their messages are redelivered."""
    batch = Batch(rig, origin, "pool-child-sigkill")
    killed: list[int] = []
    for fraction, queue in ((0.1, "clean"), (0.2, "enrich"), (0.35, "clean"), (0.5, "enrich")):
        batch.wait_terminal(fraction)
        main = rig.worker_proc(queue)
        child = busy_child(main.pid)
        assert child is not None, f"no busy {queue} pool child to kill"
        os.kill(child, signal.SIGKILL)
        killed.append(child)
    batch.finish()
    # The worker main processes survived and replaced their children.
    for queue in ("clean", "enrich"):
        main = rig.worker_proc(queue)
        assert main.poll() is None
        assert not set(children(main.pid)) & set(killed)
    assert len(killed) == 4


def test_sigkill_whole_worker_then_replacement(rig: Rig, origin: FaultyOrigin) -> None:
    """A whole enrich worker (main and children) is SIGKILLed; its unacked messages come back after
    the visibility timeout and a replacement worker finishes them."""
    batch = Batch(rig, origin, "worker-sigkill")
    batch.wait_terminal(0.15)
    victim = rig.worker_proc("enrich")
    kill_whole_worker(victim)
    killed_at = time.monotonic()
    time.sleep(1.0)
    rig.replace_worker("enrich")
    batch.finish()
    print(f"worker-sigkill: batch finished {time.monotonic() - killed_at:.0f} s after the kill")


def supervise(rig: Rig, seconds: float) -> list[str]:
    """Act as the process supervisor (systemd Restart=always): replace any worker that exited."""
    replaced: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        replaced += rig.replace_exited()
        time.sleep(0.5)
    return replaced


def test_redis_restart_mid_run(rig: Rig, origin: FaultyOrigin) -> None:
    """redis-server is SIGKILLed mid-run and restarted from its append-only file 3 s later.

    Workers reconnect by themselves, and put back what they held and will not run on their next
    connection (tasks.transport.Orphans; tests/test_redis_restart_held.py checks that with an
    hour-long visibility timeout). A worker that exits anyway is restarted by the supervisor, and
    its messages, still in Redis's unacked set, come back after the visibility timeout.
    """
    batch = Batch(rig, origin, "redis-restart")
    batch.wait_terminal(0.25)
    rig.redis.kill()
    time.sleep(3.0)
    rig.redis.start()
    replaced = supervise(rig, 15.0)
    print(f"redis-restart: workers that died and were replaced by the supervisor: {replaced or 'none'}")
    batch.finish()
    for queue in ("fetch", "clean", "enrich", "index"):
        assert rig.worker_proc(queue).poll() is None


def test_redis_frozen_mid_run(rig: Rig, origin: FaultyOrigin) -> None:
    """redis-server stops answering for 15 s (SIGSTOP: a stalled host, a paused VM, a fork that
    takes too long), longer than the state client's 10 s socket timeout. Commands time out in
    every stage at once; nothing may be lost or dead-lettered for it, and no worker may exit."""
    pids = {q: rig.worker_proc(q).pid for q in ("fetch", "clean", "enrich", "index")}
    batch = Batch(rig, origin, "redis-frozen")
    batch.wait_terminal(0.25)
    assert rig.redis.proc is not None
    rig.redis.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(15.0)
    finally:
        rig.redis.proc.send_signal(signal.SIGCONT)
    batch.finish()
    retried = Counter(
        str(e.get("reason"))
        for e in log_events(rig.log_path)
        if e.get("event") == "stage_done" and e.get("outcome") == "retry" and "redis-frozen" in str(e.get("url"))
    )
    print(f"redis-frozen: retries by reason: {dict(retried)}")
    exited = {q: pid for q, pid in pids.items() if rig.worker_proc(q).pid != pid}
    assert not exited, f"workers exited while Redis was frozen: {exited}"


def writer_holding_a_batch(rig: Rig, batch: Batch) -> int:
    """Wait (past 20 % of the batch) for a moment when articles are enriched but not yet indexed:
    the index writer holds them, awaiting a commit. How many it holds."""
    batch.wait_terminal(0.2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and rig.count_states(batch.ids)["enriched"] < 3:
        time.sleep(0.02)
    return rig.count_states(batch.ids)["enriched"]


def test_index_writer_killed_between_batch_and_commit(rig: Rig, origin: FaultyOrigin) -> None:
    """The single index writer is SIGKILLed while it holds an uncommitted batch; a new writer takes over."""
    batch = Batch(rig, origin, "index-writer-sigkill")
    held = writer_holding_a_batch(rig, batch)
    kill_whole_worker(rig.worker_proc("index"))
    print(f"index-writer-sigkill: killed with {held} articles enriched and awaiting commit")
    time.sleep(1.0)
    rig.replace_worker("index")
    batch.finish()
    assert held >= 1


def test_worker_killed_holding_the_restore_lock(rig: Rig, origin: FaultyOrigin) -> None:
    """The index writer is SIGKILLed inside a sweep for expired unacked messages, holding the lock
    all workers share for it (kombu's `unacked_mutex`). The lock is left to run out; until it does,
    no worker sweeps, and the writer's messages wait in the unacked set (the reconciler leaves
    carried articles alone). With kombu's default it lived 300 s, past this suite's stall limit:
    the fault suite met it about once in three index-writer kills."""
    batch = Batch(rig, origin, "restore-lock-sigkill")
    held = writer_holding_a_batch(rig, batch)
    victim = rig.worker_proc("index")
    os.kill(victim.pid, signal.SIGSTOP)  # no sweep of its own may take the lock back meanwhile
    # What a sweeper killed between acquiring and releasing leaves: the lock with the expiry the
    # workers ask for (as redis-py's Lock writes it: a token, a TTL).
    expire_s = celery_config(rig.settings)["broker_transport_options"].get(
        "unacked_mutex_expire", kombu_redis.Channel.unacked_mutex_expire
    )
    connect(rig.redis.url).set(kombu_redis.Channel.unacked_mutex_key, "dead-sweeper", px=int(expire_s * 1000))
    kill_whole_worker(victim)
    print(f"restore-lock-sigkill: killed with {held} articles enriched, restore lock left for {expire_s} s")
    rig.replace_worker("index")
    batch.finish()
    assert held >= 1


def test_origin_slow_timeouts_500_429(rig: Rig, origin: FaultyOrigin) -> None:
    """While the batch is being fetched, the origin is slow, then hangs past the read timeout, then
    answers 500, then 429 (Retry-After: 1), 3 s each; retries with backoff must outlast it."""
    batch = Batch(rig, origin, "origin-trouble")
    before = origin.faulted
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and origin.requests < 20:
        time.sleep(0.05)  # fetching has begun: the trouble lands mid-fetch
    for kind in ("slow", "hang", "http_500", "http_429"):
        origin.misbehave(kind, 3.0)
        time.sleep(3.0)
    faulted = origin.faulted - before
    # An article whose retries ran out would be dead with the fault's reason (allowed, and counted).
    counts = batch.finish(CONTENT_REASONS | {"timeout", "http_500", "http_429", "connection_error"})
    retries = Counter(
        str(e.get("reason"))
        for e in log_events(rig.log_path)
        if e.get("event") == "stage_done" and e.get("outcome") == "retry" and "origin-trouble" in str(e.get("url"))
    )
    print(f"origin-trouble: {faulted} requests met the faulty origin; retries by reason: {dict(retries)}")
    assert faulted >= 20
    assert sum(retries.values()) >= 20
    assert counts.indexed >= 0.9 * len(batch.ids)


@dataclass
class Frozen:
    """A pool child stopped (SIGSTOP) inside a task: which task, which article, since when."""

    queue: str
    pid: int
    task_id: str
    article_id: str
    at: float  # time.monotonic() of the SIGSTOP
    resumed_after_s: float = 0.0
    ledger_at_resume: str = ""


def freeze_child_in_task(rig: Rig, queue: str, stopped: list[int], timeout_s: float = 40.0) -> Frozen:
    """SIGSTOP a prefork child of `queue`'s worker while it is inside a task, as its worker reports
    (`inspect active`, answered by the worker's main process). A child caught between two tasks is
    resumed at once and another moment is tried. The pid is added to `stopped` while it is stopped."""
    main = rig.worker_proc(queue)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        child = busy_child(main.pid, timeout_s=5.0)
        if child is None:
            continue
        os.kill(child, signal.SIGSTOP)
        at = time.monotonic()
        stopped.append(child)
        request = active_task(rig.app, child)
        if request is not None and request.get("args"):
            payload = request["args"][0]
            return Frozen(queue, child, str(request["id"]), str(payload["id"]), at)
        stopped.remove(child)
        os.kill(child, signal.SIGCONT)
    pytest.fail(f"no {queue} pool child caught inside a task within {timeout_s} s")


def redeliveries(rig: Rig, ids: list[str]) -> dict[str, Counter[str]]:
    """Per stage, how many times each article's message was redelivered by the broker (the stage
    runner counts a `redelivered` start in Redis, `State.count_attempt`; poison after max_retries)."""
    r = connect(rig.redis.url)
    out: dict[str, Counter[str]] = {}
    for queue in ("fetch", "clean", "enrich", "index"):
        keys = [f"{rig.settings.key_prefix}attempts:{queue}:{aid}" for aid in ids]
        out[queue] = Counter({aid: int(n) for aid, n in zip(ids, r.mget(keys), strict=True) if n is not None})
    return out


def task_outcomes(rig: Rig, task_id: str) -> list[str]:
    """The outcomes the stage runner logged for one Celery task id (a redelivered copy keeps the id)."""
    return [
        str(e.get("outcome"))
        for e in log_events(rig.log_path)
        if e.get("event") == "stage_done" and e.get("task_id") == task_id
    ]


def test_worker_frozen_past_visibility_timeout(rig: Rig, origin: FaultyOrigin) -> None:
    """A clean and an enrich pool child are SIGSTOPped inside a task (a VM pause, a swap storm, a
    debugger) and kept stopped past the broker's visibility timeout: Redis hands their messages to
    the other child, which finishes the articles. Then they are SIGCONTed and their stale copies run
    to the end late: the clean one meets its soft time limit (it ran out while stopped, off the CPU:
    retried as `stalled`, and the retry finds the article done), the enrich one completes. Neither
    may move the ledger backwards for good: no article in the index ends `dead`, none is indexed
    twice, and no stale failure is dead-lettered for an article a later delivery already took
    further (`dead_letter_superseded`)."""
    batch = Batch(rig, origin, "frozen-worker")
    batch.wait_terminal(0.15)
    stopped: list[int] = []
    # Clean's soft limit (6 s) runs out while it is stopped; its hard limit (16 s, a SIGKILL that
    # reaches a stopped process too) must not: the clean child is resumed by VT + 3 s. Enrich's
    # limits (30 s, 40 s) leave room to wait for the other delivery to reach the index.
    hold_max_s = {"clean": VISIBILITY_TIMEOUT_S + 3.0, "enrich": VISIBILITY_TIMEOUT_S + 15.0}
    with frozen(stopped):
        # Enrich first: its tasks are short, and they stop coming once the batch's clean backlog
        # runs dry; clean, the slowest stage, is busy until the end.
        victims = [freeze_child_in_task(rig, queue, stopped) for queue in ("enrich", "clean")]
        for f in victims:
            print(f"frozen-worker: stopped {f.queue} child {f.pid} inside task {f.task_id} (article {f.article_id})")
        waiting = list(victims)
        while waiting:
            time.sleep(0.1)
            for f in list(waiting):
                held_s = time.monotonic() - f.at
                if held_s < VISIBILITY_TIMEOUT_S + 1.0:
                    continue  # past the visibility timeout first, whatever happens meanwhile
                entry = rig.state.ledger(f.article_id)
                again = redeliveries(rig, [f.article_id])[f.queue][f.article_id]
                finished = again >= 1 and entry is not None and entry.state in ("indexed", "dead")
                if finished or held_s >= hold_max_s[f.queue]:
                    f.ledger_at_resume = entry.state if entry else "-"
                    f.resumed_after_s = held_s
                    os.kill(f.pid, signal.SIGCONT)
                    stopped.remove(f.pid)
                    waiting.remove(f)
                    print(
                        f"frozen-worker: resumed {f.queue} child {f.pid} after {held_s:.1f} s; the other "
                        f"delivery had started {again}x, ledger then: {f.ledger_at_resume}"
                    )
    # The stale copies finish after the batch may already look done: a late success records its
    # stage again and sends the article on once more. Let both copies of each task end first.
    deadline = time.monotonic() + 60.0
    while not all(len(task_outcomes(rig, f.task_id)) >= 2 for f in victims):
        assert time.monotonic() < deadline, {f.task_id: task_outcomes(rig, f.task_id) for f in victims}
        time.sleep(0.5)
    batch.finish()

    ids = set(batch.ids)
    events = [e for e in log_events(rig.log_path) if e.get("article_id") in ids]
    superseded = [e for e in events if e.get("event") == "dead_letter_superseded"]
    time_limit = [e for e in events if e.get("event") == "stage_done" and e.get("reason") == "time_limit"]
    starts = redeliveries(rig, batch.ids)
    traces = {aid: [str(t.get("state")) for t in rig.state.trace(aid)] for aid in batch.ids}
    final = {e.article_id: e.state for e in rig.state.ledgers(batch.ids) if e is not None}
    # Dead at some point, indexed in the end: a stale failure moved the ledger backwards for a while.
    dead_then_indexed = [aid for aid, t in traces.items() if "dead" in t and final.get(aid) == "indexed"]
    # Indexed, then an earlier stage recorded again: a stale copy that succeeded late redid the rest.
    redone = [aid for aid, t in traces.items() if "indexed" in t and t.index("indexed") < len(t) - 1]
    counts = RESULTS[batch.label]
    print(
        f"frozen-worker: dead_letter_superseded={len(superseded)} stage_done time_limit={len(time_limit)} "
        f"redelivered (articles/starts) "
        + ", ".join(f"{q}={len(c)}/{sum(c.values())}" for q, c in starts.items())
        + f"; poison={counts.dead_reasons.get('poison', 0)}; dead then indexed={len(dead_then_indexed)}"
        + f"; indexed then redone by a stale copy={len(redone)}"
    )
    for f in victims:
        trace = " > ".join(
            f"{t.get('state')}" + (f"({t.get('reason')})" if t.get("reason") else "")
            for t in rig.state.trace(f.article_id)
        )
        done = task_outcomes(rig, f.task_id)
        print(f"frozen-worker: {f.queue} article {f.article_id}: outcomes of its task {done}; ledger trace: {trace}")
        # The broker gave its message to another process while it was stopped, and both copies ran to the end.
        assert starts[f.queue][f.article_id] >= 1, f"{f.queue} message of {f.article_id} was never redelivered"
        assert len(done) >= 2, f"{f.queue} task {f.task_id}: expected the stale and the redelivered copy, got {done}"
        if f.ledger_at_resume in ("enriched", "indexed"):
            # Another delivery had taken it past this stage: a late failure of the stale copy (clean's
            # soft time limit ran out while it was stopped) is superseded, never a dead letter.
            assert "dead" not in done, f"stale {f.queue} copy of {f.article_id} ({f.ledger_at_resume}): {done}"
    # The defect this scenario targets: a stale duplicate dead-lettering (time_limit) an indexed article.
    in_index = rig.index_id_counts()
    dead_in_index = [aid for aid in batch.ids if in_index.get(aid) and final.get(aid) == "dead"]
    assert not dead_in_index, f"indexed articles left dead in the ledger: {dead_in_index}"


REDIS_FULL_HOLD_S = 15.0
BALLAST_PREFIX = "test:ballast:"


def fill_redis(r: redis.Redis, ballast: list[str], chunk: int) -> int:
    """Write ballast keys of `chunk` bytes until the test's private Redis refuses writes (OOM under
    its maxmemory, noeviction); returns how many were written. Bounded: at most 4096 keys a call."""
    written = 0
    for _ in range(4096):
        key = f"{BALLAST_PREFIX}{len(ballast)}"
        try:
            r.set(key, b"x" * chunk)
        except redis.exceptions.OutOfMemoryError:
            return written
        ballast.append(key)
        written += 1
    return written


def hold_redis_full(r: redis.Redis, hold_s: float) -> dict[str, Any]:
    """Make the test's OWN redis-server full (never another: `r` is the rig's private instance):
    maxmemory just above what it uses, noeviction, then ballast until writes fail with OOM. For
    `hold_s` the ballast is topped up whenever acks or deletes free a little room, so Redis stays
    full the whole time; then the ballast goes and the limit is lifted, whatever happened."""
    before = r.config_get("maxmemory")["maxmemory"], r.config_get("maxmemory-policy")["maxmemory-policy"]
    ballast: list[str] = []
    stats: dict[str, Any] = {}
    try:
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", used + 2 * 1024 * 1024)
        fill_redis(r, ballast, 64 * 1024)
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            fill_redis(r, ballast, 1024)  # whatever room an ack or a delete freed, take it
            time.sleep(0.05)
    finally:
        stats["used_memory_full"] = int(r.info("memory")["used_memory"])
        for i in range(0, len(ballast), 500):
            r.delete(*ballast[i : i + 500])
        r.config_set("maxmemory", before[0])
        r.config_set("maxmemory-policy", before[1])
        stats["ballast_keys"] = len(ballast)
    return stats


def _json_line(line: str) -> list[dict[str, Any]]:
    try:
        return [json.loads(line)]
    except ValueError:
        return []


def test_redis_full(rig: Rig, origin: FaultyOrigin) -> None:
    """The private Redis fills up (maxmemory, noeviction) for 15 s in the middle of a batch: every
    write (a ledger transition, a retry's or the next stage's message, kombu's unacked record of a
    message it just popped) fails with OOM, while reads, pops and deletes still work. Then room
    comes back. Nothing may be dropped (no `Reject(requeue=False)` of a message whose retry could
    not be published), no worker may exit, and recovery must not multiply messages (the reconciler
    must not resend articles whose messages are merely late)."""
    r = connect(rig.redis.url)
    pids = {q: rig.worker_proc(q).pid for q in ("fetch", "clean", "enrich", "index")}
    log_offset = rig.log_path.stat().st_size
    resumed_before = len(rig.resumed)
    batch = Batch(rig, origin, "redis-full")
    batch.wait_terminal(0.2)
    t_full = time.monotonic()
    stats = hold_redis_full(r, REDIS_FULL_HOLD_S)
    print(f"redis-full: Redis full for {time.monotonic() - t_full:.1f} s ({stats})")
    batch.finish()

    ids = set(batch.ids)
    with rig.log_path.open("rb") as f:
        f.seek(log_offset)
        lines = f.read().decode("utf-8", "replace").splitlines()
    run_events = [e for line in lines if line.startswith("{") for e in _json_line(line)]
    events = [e for e in run_events if e.get("article_id") in ids]
    oom = [e for e in events if e.get("event") == "stage_done" and e.get("reason") == "redis_full"]
    # Messages whose retry could not be published, rejected without requeue: dropped (the 72).
    dropped = [e for e in run_events if "reject requeue=False" in str(e.get("event"))]
    crashed = [e for e in run_events if "Unrecoverable error" in str(e.get("event"))]
    requeued = [e for e in run_events if "reject requeue=True" in str(e.get("event"))]
    exited = {q: pid for q, pid in pids.items() if rig.worker_proc(q).pid != pid}
    resumes = Counter(x.article_id for x in rig.resumed[resumed_before:] if x.article_id in ids)
    # A stage that finished (anything but a retry) more than once for one article: a duplicate message.
    finished = Counter(
        (e.get("article_id"), e.get("stage"))
        for e in events
        if e.get("event") == "stage_done" and e.get("outcome") != "retry"
    )
    duplicates = sum(n - 1 for n in finished.values() if n > 1)
    transport = Counter(str(e.get("event")) for e in run_events if e.get("logger") == "newsflow.transport")
    print(
        f"redis-full: stage retries redis_full={len(oom)} requeued (requeue=True)={len(requeued)} "
        f"dropped (requeue=False)={len(dropped)} "
        f"worker crashes={len(crashed)} workers replaced={sorted(exited) or 'none'} "
        f"reconciler resumes={sum(resumes.values())} (articles {len(resumes)}, max per article "
        f"{max(resumes.values(), default=0)}) duplicate stage completions={duplicates} "
        f"transport events={dict(transport)}"
    )
    assert oom or requeued or transport, "the fault did not land: nothing met a full Redis"
    assert not dropped, [e.get("event") for e in dropped[:3]]
    assert not crashed, [e.get("event") for e in crashed[:3]]
    assert not exited, f"workers exited under a full Redis: {exited}"
    # Recovery must not multiply messages: the reconciler waits out a full Redis and resends only
    # articles no message carries (none here: nothing was lost), and the stages finish each article
    # once, give or take a redelivery.
    assert max(resumes.values(), default=0) <= 1, f"the reconciler resent articles repeatedly: {resumes.most_common(5)}"
    assert sum(resumes.values()) <= 0.02 * len(batch.ids), f"the reconciler resent {sum(resumes.values())} articles"
    assert duplicates <= 0.02 * len(batch.ids), f"{duplicates} duplicate stage completions"


def _solo_marker(run_dir: Path, pid: int, timeout_s: float = 30) -> Path:
    """The marker file of solo process `pid` ({node}-{pid}-{unique}.task), once its worker has started."""
    deadline = time.monotonic() + timeout_s
    while not (found := sorted(run_dir.glob(f"*-{pid}-*.task"))):
        assert time.monotonic() < deadline, f"solo worker {pid} wrote no marker in {run_dir}"
        time.sleep(0.05)
    assert len(found) == 1, found
    return found[0]


def test_sigkill_solo_worker_mid_task(rig: Rig, origin: FaultyOrigin) -> None:
    """A `cpu` worker (one solo process taking clean and enrich, as `newsflow up` runs them) dies
    mid-task three times (SIGKILL: what the hard time limit and the OOM killer do too). Each
    replacement finds the dead process's marker and hands its message back at once instead of after
    the visibility timeout; nothing is lost or indexed twice.

    Runs last: it swaps the rig's prefork clean worker for shared solo ones."""
    from workers.runtime import shared_cpu_spec

    prefork = rig.worker_proc("clean")
    rig.replace_worker_spec(shared_cpu_spec())
    prefork.send_signal(signal.SIGTERM)  # warm shutdown: from now on only solo workers consume clean
    prefork.wait(30)
    run_dir = Path(rig.settings.data_dir) / "run"
    batch = Batch(rig, origin, "solo-sigkill")
    for fraction in (0.1, 0.3, 0.5):
        batch.wait_terminal(fraction)
        victim = rig.worker_proc("clean")
        # The marker holds the task the process started last: kill right after a new one starts.
        marker, deadline = _solo_marker(run_dir, victim.pid), time.monotonic() + 20
        before = marker.read_text()
        while marker.read_text() in (before, ""):
            assert time.monotonic() < deadline, "the cpu worker started no task"
            time.sleep(0.002)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        rig.replace_worker_spec(shared_cpu_spec())  # the supervisor's restart
    batch.finish()
    handed_back = [e for e in log_events(rig.log_path) if e.get("event") == "orphan_redelivered"]
    assert len(handed_back) >= 3, handed_back
