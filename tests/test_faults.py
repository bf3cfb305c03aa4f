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

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BENCH_DIR, SEED_HTML, fixtures_available, need
from tests.hostile.origin import FaultyOrigin
from tests.hostile.rig import Counts, Rig, busy_child, children, kill_whole_worker, log_events, temp_root

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
        # Short visibility timeout so a lost worker's messages come back within the test; every
        # time limit and retry countdown below stays under it.
        "NEWSFLOW_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
        # Resume an article silent for 3 visibility timeouts: its message was lost, not late.
        "NEWSFLOW_RECONCILE_AFTER_S": str(3 * VISIBILITY_TIMEOUT_S),
        "NEWSFLOW_TASK_TIME_LIMIT_S": "8",
        "NEWSFLOW_CLEAN_TIME_LIMIT_S": "6",
        "NEWSFLOW_FETCH_TOTAL_TIMEOUT_S": "4",
        "NEWSFLOW_FETCH_READ_TIMEOUT_S": "3",
        "NEWSFLOW_FETCH_CONNECT_TIMEOUT_S": "2",
        "NEWSFLOW_MAX_RETRIES": "8",
        "NEWSFLOW_RETRY_BACKOFF_BASE_S": "0.5",
        "NEWSFLOW_RETRY_BACKOFF_MAX_S": "3",
        # Only the origin is reachable; per-host politeness is lifted for it so the suite stays short.
        "NEWSFLOW_FETCH_ALLOW_PRIVATE": "0",
        "NEWSFLOW_FETCH_ALLOW_HOSTS": f"127.0.0.1:{origin_port}",
        "NEWSFLOW_POLITE_HOST_RATES": f"127.0.0.1:{origin_port}=10000,127.0.0.1=10000",
        "NEWSFLOW_POLITE_OBEY_ROBOTS": "0",
        "NEWSFLOW_WORKER_CONCURRENCY": "2",
        "NEWSFLOW_FETCH_CONCURRENCY": "8",
        "NEWSFLOW_INDEX_BATCH_SIZE": "32",
        "NEWSFLOW_INDEX_BATCH_MAX_WAIT_S": "0.5",
        "NEWSFLOW_CRAWL_BEAT": "0",
        "NEWSFLOW_LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="module")
def origin() -> Iterator[FaultyOrigin]:
    need(fixtures_available(), "benchmark fixtures missing")
    with FaultyOrigin(BENCH_DIR / "html", SEED_HTML) as server:
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
        assert not unexpected, f"the fault cost articles: {counts.line(self.label)}"
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

    Workers reconnect by themselves; one holding unacked messages may die in kombu's channel close
    (an AttributeError in restore_unacked_once, kombu 5.7): a supervisor restarts it, and its
    messages, still in Redis's unacked set, come back after the visibility timeout.
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


def test_index_writer_killed_between_batch_and_commit(rig: Rig, origin: FaultyOrigin) -> None:
    """The single index writer is SIGKILLed while it holds an uncommitted batch; a new writer takes over."""
    batch = Batch(rig, origin, "index-writer-sigkill")
    batch.wait_terminal(0.2)
    # Wait for a moment when articles are enriched but not yet indexed: the writer's threads hold them.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and rig.count_states(batch.ids)["enriched"] < 3:
        time.sleep(0.02)
    held = rig.count_states(batch.ids)["enriched"]
    kill_whole_worker(rig.worker_proc("index"))
    print(f"index-writer-sigkill: killed with {held} articles enriched and awaiting commit")
    time.sleep(1.0)
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


def _solo_marker(run_dir: Path, pid: int, timeout_s: float = 30) -> Path:
    """The marker file of solo process `pid` ({node}-{pid}-{unique}.task), once its worker has started."""
    deadline = time.monotonic() + timeout_s
    while not (found := sorted(run_dir.glob(f"*-{pid}-*.task"))):
        assert time.monotonic() < deadline, f"solo worker {pid} wrote no marker in {run_dir}"
        time.sleep(0.05)
    assert len(found) == 1, found
    return found[0]


def test_sigkill_solo_worker_mid_task(rig: Rig, origin: FaultyOrigin) -> None:
    """A solo clean worker (NEWSFLOW_CPU_POOL=solo) dies mid-task three times (SIGKILL: what the hard time
    limit and the OOM killer do too). Each replacement finds the dead process's marker and hands its
    message back at once instead of after the visibility timeout; nothing is lost or indexed twice.

    Runs last: it swaps the rig's prefork clean worker for solo ones."""
    from workers.runtime import WorkerSpec

    prefork = rig.worker_proc("clean")
    rig.replace_worker_spec(WorkerSpec("clean", "solo", 1))
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
            assert time.monotonic() < deadline, "the solo clean worker started no task"
            time.sleep(0.002)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        rig.replace_worker_spec(WorkerSpec("clean", "solo", 1))  # the supervisor's restart
    batch.finish()
    handed_back = [e for e in log_events(rig.log_path) if e.get("event") == "orphan_redelivered"]
    assert len(handed_back) >= 3, handed_back
