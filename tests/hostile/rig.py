"""A private pipeline for the fault, hostile and security suites: its own redis-server (append-only,
optionally with a password or TLS), its own index dir, real `celery worker` processes, and the tools
to hurt them (SIGKILL a pool child, a whole worker, Redis itself) and to count what came out.

Everything runs on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

from config.defaults import Settings
from config.settings import load_settings
from newsflow.pipeline import TERMINAL_STATES
from newsflow.queues import UNACKED_INDEX_KEY, UNACKED_KEY
from newsflow.reconcile import reconcile
from newsflow.state import connect
from newsflow.stores import Stores
from tasks.celeryconfig import celery_config
from tests.hostile.origin import FaultyOrigin
from workers import client
from workers.runtime import Deployment, PrivateRedis, WorkerSpec, free_port, ping_workers


class RedisProc(PrivateRedis):
    """The deployment's private redis-server, plus what tests need: a password, TLS only (no plain
    port), and `kill()` (SIGKILL; `start()` again reloads the append-only file)."""

    def __init__(
        self, data_dir: Path, port: int | None = None, password: str = "", tls: dict[str, str] | None = None
    ) -> None:
        super().__init__(port or free_port(), data_dir)
        self.password = password
        self.tls = tls  # {"cert": ..., "key": ..., "ca": ...}

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={self.tls['ca']}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        cmd = super().command()
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.tls:
            cmd += [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"],
                "--tls-ca-cert-file", self.tls["ca"], "--tls-auth-clients", "no",
            ]  # fmt: skip
        return cmd

    def start(self, timeout_s: float = 15.0) -> None:
        super().start(timeout_s)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


class PrivateDeployment(Deployment):
    """A `Deployment` that pings through the rig's Celery client and retries a failed ping until its
    deadline (test_faults restarts Redis under it)."""

    control_app: Celery | None = None

    def wait_ready(self, timeout_s: float) -> None:
        assert self.control_app is not None
        ping_workers(self.control_app, self.node_names, timeout_s, self.check_started, retry_on=(Exception,))


def make_layout(settings: Settings) -> list[WorkerSpec]:
    """Prefork for the CPU-bound stages, whose child kills the suite exercises (solo: its last test)."""
    return [
        WorkerSpec("fetch", "threads", settings.fetch_concurrency),
        WorkerSpec("clean", "prefork", settings.worker_concurrency or 2),
        WorkerSpec("enrich", "prefork", settings.worker_concurrency or 2),
        WorkerSpec("index", "threads", settings.index_batch_size),
    ]


def origin_only_env(origin_port: int) -> dict[str, str]:
    """Only the test origin is reachable, with per-host politeness and robots.txt lifted for it so
    a suite stays short; no crawl beat; INFO logs (the suites read the workers' log)."""
    return {
        "NEWSFLOW_FETCH_ALLOW_PRIVATE": "0",
        "NEWSFLOW_FETCH_ALLOW_HOSTS": f"127.0.0.1:{origin_port}",
        "NEWSFLOW_POLITE_HOST_RATES": f"127.0.0.1:{origin_port}=10000,127.0.0.1=10000",
        "NEWSFLOW_POLITE_OBEY_ROBOTS": "0",
        "NEWSFLOW_CRAWL_BEAT": "0",
        "NEWSFLOW_LOG_LEVEL": "INFO",
    }


@contextlib.contextmanager
def bench_origin() -> Iterator[FaultyOrigin]:
    """The benchmark pages under many distinct URLs (tests/hostile/origin.py), served while the block runs."""
    # Imported here, not at the top: importing the conftest makes the test suite's settings this
    # process's, and tests/multihost_tools.py imports this module outside pytest, on another host.
    from tests.conftest import BENCH_DIR, SEED_HTML, fixtures_available, need

    need(fixtures_available(), "benchmark fixtures missing")
    with FaultyOrigin(BENCH_DIR / "html", SEED_HTML) as server:
        yield server


def short_delivery_env(visibility_timeout_s: int) -> dict[str, str]:
    """The delivery settings of every suite that hurts a deployment (faults, Sentinel, several hosts).

    A short visibility timeout, so a lost worker's messages come back within the test, with every
    time limit and retry countdown below it; an article silent for 3 visibility timeouts is resumed
    (its message was lost, not late).
    """
    return {
        "NEWSFLOW_VISIBILITY_TIMEOUT_S": str(visibility_timeout_s),
        "NEWSFLOW_RECONCILE_AFTER_S": str(3 * visibility_timeout_s),
        "NEWSFLOW_TASK_TIME_LIMIT_S": "8",
        "NEWSFLOW_CLEAN_TIME_LIMIT_S": "6",
        "NEWSFLOW_FETCH_TOTAL_TIMEOUT_S": "4",
        "NEWSFLOW_FETCH_READ_TIMEOUT_S": "3",
        "NEWSFLOW_FETCH_CONNECT_TIMEOUT_S": "2",
        "NEWSFLOW_MAX_RETRIES": "8",
        "NEWSFLOW_RETRY_BACKOFF_BASE_S": "0.5",
        "NEWSFLOW_RETRY_BACKOFF_MAX_S": "3",
    }


@dataclass
class Counts:
    submitted: int
    indexed: int
    dead: int
    pending: int
    in_index: int  # documents of this batch found in the index
    distinct_in_index: int
    dead_reasons: Counter[str]
    dead_letters: int  # dead ones with a dead-letter record carrying a reason

    def line(self, label: str) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.dead_reasons.items())) or "-"
        dup = self.in_index / self.distinct_in_index if self.distinct_in_index else 1.0
        return (
            f"[{label}] submitted={self.submitted} indexed={self.indexed} dead={self.dead} "
            f"pending={self.pending} indexed+dead={self.indexed + self.dead} "
            f"index_docs={self.in_index} distinct_ids={self.distinct_in_index} docs_per_id={dup:.3f} "
            f"dead_reasons: {reasons}"
        )


# How often the rig, like `newsflow up`, sweeps for articles whose message was lost.
RECONCILE_EVERY_S = 5.0


class Rig:
    """One private pipeline: redis, settings, workers, a Celery client and the ledger."""

    def __init__(
        self, root: Path, env: dict[str, str], redis_proc: RedisProc | None = None, state_redis: RedisProc | None = None
    ) -> None:
        self.root = root
        self.redis = redis_proc or RedisProc(root / "redis")
        self.state_redis = state_redis  # a separate state Redis (NEWSFLOW_STATE_REDIS_URL), if any
        self.env = env
        self.extra_deployments: list[PrivateDeployment] = []
        self.log_path = root / "workers.log"
        self.resumed: list[Any] = []

    def start(self) -> Rig:
        self.redis.start()
        if self.state_redis is not None:
            self.state_redis.start()
        environ = {**os.environ, **self.env}
        environ["NEWSFLOW_REDIS_URL"] = self.redis.url
        environ["NEWSFLOW_STATE_REDIS_URL"] = self.state_redis.url if self.state_redis is not None else ""
        environ["NEWSFLOW_DATA_DIR"] = str(self.root / "data")
        self.settings = load_settings(environ)
        self.app = Celery("newsflow-test-client")
        self.app.conf.update(celery_config(self.settings))
        self.stores = Stores.from_settings(self.settings)
        self.state = self.stores.state
        self.deployment = self._deploy(make_layout(self.settings))
        return self

    def _deploy(self, layout: list[WorkerSpec]) -> PrivateDeployment:
        dep = PrivateDeployment(self.settings, layout, log_path=self.log_path)
        dep.control_app = self.app
        try:
            dep.start(timeout_s=90)
        except BaseException:
            dep.stop()
            raise
        return dep

    def stop(self) -> None:
        for dep in [*self.extra_deployments, getattr(self, "deployment", None)]:
            if dep is not None:
                dep.private_redis = None
                dep.stop(timeout_s=15)
        with contextlib.suppress(Exception):
            self.app.close()
        self.redis.stop()
        if self.state_redis is not None:
            self.state_redis.stop()

    def __enter__(self) -> Rig:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- workers --------------------------------------------------------------------------------
    def worker_proc(self, queue: str) -> subprocess.Popen[bytes]:
        """The live main process of the (latest) worker for `queue`."""
        for dep in [*reversed(self.extra_deployments), self.deployment]:
            for proc, spec in zip(dep.procs, dep.layout, strict=True):
                if queue in spec.queues and proc.poll() is None:
                    return proc
        raise LookupError(f"no live {queue} worker")

    def replace_worker(self, queue: str) -> None:
        """Start a fresh worker for `queue`, as an operator (or a supervisor) would."""
        spec = next(s for s in make_layout(self.settings) if s.queue == queue)
        self.replace_worker_spec(spec)

    def replace_worker_spec(self, spec: WorkerSpec) -> None:
        self.extra_deployments.append(self._deploy([spec]))

    def replace_exited(self) -> list[str]:
        """What `newsflow up` does between sweeps: a worker that exited gets a replacement."""
        replaced = []
        for queue in ("fetch", "clean", "enrich", "index"):
            try:
                self.worker_proc(queue)
            except LookupError:
                self.replace_worker(queue)
                replaced.append(queue)
        return replaced

    # --- submitting and waiting ------------------------------------------------------------------
    def submit(self, urls: list[str]) -> list[client.Submitted]:
        submitted, rejected = client.submit(self.app, self.stores, urls)
        assert not rejected, rejected
        return submitted

    def wait(
        self, ids: Iterable[str], timeout_s: float, since: float = 0.0, stall_s: float | None = None
    ) -> dict[str, str]:
        """Poll the ledger until each id is terminal; Redis outages are waited out, not fatal.

        With `stall_s`, give up early once no article has finished for that long. Like `newsflow up`,
        the rig replaces exited workers and runs the reconciler every few seconds, so an article whose
        message a killed worker took with it is resumed (after NEWSFLOW_RECONCILE_AFTER_S of silence).
        """
        todo = set(ids)
        states: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        last_progress, last_done = time.monotonic(), 0
        next_sweep = time.monotonic() + RECONCILE_EVERY_S
        while todo and time.monotonic() < deadline:
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + RECONCILE_EVERY_S
                for queue in self.replace_exited():
                    print(f"supervisor: the {queue} worker had exited; started a new one")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    for r in reconcile(
                        self.app, self.state, self.settings.reconcile_after_s, max_resumes=self.settings.max_retries
                    ):
                        self.resumed.append(r)
                        print(f"reconciler resumed {r.article_id} ({r.state} -> {r.stage}, idle {r.idle_s} s)")
            if len(states) != last_done:
                last_progress, last_done = time.monotonic(), len(states)
            elif stall_s is not None and time.monotonic() - last_progress > stall_s:
                break
            try:
                batch = sorted(todo)
                for aid, entry in zip(batch, self.state.ledgers(batch), strict=True):
                    if entry and entry.state in TERMINAL_STATES and entry.updated_at >= since:
                        states[aid] = entry.state
                        todo.discard(aid)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            time.sleep(0.5)
        return states

    def count_states(self, ids: list[str]) -> Counter[str]:
        return Counter(e.state if e else "missing" for e in self.state.ledgers(ids))

    # --- accounting --------------------------------------------------------------------------------
    def index_id_counts(self) -> Counter[str]:
        """How many live documents the index holds per article id (a read-only reader)."""
        from newsflow.search import iter_sources

        if not Path(self.settings.index_dir).exists():
            return Counter()
        return Counter(str(doc["id"]) for doc in iter_sources(self.settings.index_dir))

    def account(self, ids: list[str]) -> Counts:
        entries = self.state.ledgers(ids)
        index_counts = self.index_id_counts()
        indexed = [e for e in entries if e and e.state == "indexed"]
        dead = [e for e in entries if e and e.state == "dead"]
        pending = len(ids) - len(indexed) - len(dead)
        batch = set(ids)
        in_index = sum(n for aid, n in index_counts.items() if aid in batch)
        distinct = sum(1 for aid in index_counts if aid in batch)
        reasons: Counter[str] = Counter(e.reason or "(none)" for e in dead)
        with_letter = 0
        for e in dead:
            letter = self.state.dead_letter_record(e.article_id)
            if letter and letter.get("reason"):
                with_letter += 1
        return Counts(len(ids), len(indexed), len(dead), pending, in_index, distinct, reasons, with_letter)

    def diagnose_pending(self, ids: list[str]) -> list[str]:
        """For each non-terminal article: where it stopped, and whether any message still carries it.

        An article whose ledger stopped mid-pipeline, whose document is still parked, and that no
        queue or unacked entry mentions, was lost by the broker between BRPOP and kombu's unacked
        bookkeeping (a worker SIGKILLed in that window).
        """
        r = connect(self.redis.url)  # the broker's own lists: what messages still carry
        carried: dict[str, str] = {}
        for queue in ("fetch", "clean", "enrich", "index"):
            for raw in r.lrange(queue, 0, -1):
                carried.update((aid, f"queued in {queue}") for aid in ids if aid.encode() in raw)
        now = time.time()
        for tag, raw in r.hgetall(UNACKED_KEY).items():
            score = r.zscore(UNACKED_INDEX_KEY, tag)
            age = f"{now - score:.0f} s ago" if score is not None else "no index entry"
            carried.update((aid, f"unacked since {age}") for aid in ids if aid.encode() in raw)
        ttl = r.pttl(kombu_redis.Channel.unacked_mutex_key)  # the sweep's lock: held long, a sweeper died
        lock = "free" if ttl < 0 else f"held, {ttl / 1000:.0f} s left"
        out = [f"kombu's restore lock: {lock}"] if carried else []
        for entry in self.state.ledgers(ids):
            if entry is None or entry.state in TERMINAL_STATES:
                continue
            aid = entry.article_id
            has_blob = self.state.has_blob(self.state.blob_key(aid))
            parked = "doc" if self.state.has_doc(aid) else "blob" if has_blob else "-"
            where = (
                f"a message still carries it ({carried[aid]})"
                if aid in carried
                else "NO message carries it (lost by the broker)"
            )
            out.append(f"{aid} stopped at {entry.state} ({entry.stage}), parked: {parked}; {where}")
        return out

    def check_invariants(self, ids: list[str], label: str) -> Counts:
        """Every article indexed exactly once or dead-lettered with a reason; nothing else."""
        counts = self.account(ids)
        print(counts.line(label))
        assert counts.pending == 0, counts.line(label)
        assert counts.indexed + counts.dead == counts.submitted, counts.line(label)
        assert counts.distinct_in_index == counts.indexed, counts.line(label)
        assert counts.in_index == counts.distinct_in_index, f"duplicates in the index: {counts.line(label)}"
        assert counts.dead_letters == counts.dead, f"dead without a dead-letter reason: {counts.line(label)}"
        assert "(none)" not in counts.dead_reasons, counts.line(label)
        # The ledger's "indexed" must mean "in the index", and "dead" must mean "not in it".
        index_counts = self.index_id_counts()
        for entry in self.state.ledgers(ids):
            assert entry is not None
            assert (index_counts.get(entry.article_id, 0) == 1) == (entry.state == "indexed"), entry
        return counts


# --- process tools --------------------------------------------------------------------------------
def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[0]


def busy_child(main_pid: int, timeout_s: float = 20.0) -> int | None:
    """A pool child that is running (state R) right now: it is in the middle of a task."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in children(main_pid):
            if proc_state(pid) == "R":
                return pid
        time.sleep(0.01)
    return None


def kill_whole_worker(proc: subprocess.Popen[bytes]) -> list[int]:
    """SIGKILL a worker's main process, then whatever pool children it leaves behind (a lost machine)."""
    kids = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    for pid in kids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return kids


def active_task(app: Celery, pid: int, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The task a pool child `pid` is inside right now, as its worker reports it (`inspect active`,
    answered by the worker's main process, so it works while the child itself is stopped)."""
    replies = app.control.inspect(timeout=timeout_s).active() or {}
    for requests in replies.values():
        for request in requests or []:
            if request.get("worker_pid") == pid:
                return dict(request)
    return None


@contextlib.contextmanager
def frozen(pids: Iterable[int]) -> Iterator[None]:
    """Processes the test started are resumed (SIGCONT) on the way out, whatever happens: a stopped
    pool child must not outlive the test and hang its worker's shutdown."""
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def temp_root(name: str) -> Iterator[Path]:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=f"newsflow-{name}-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def log_events(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of the workers (other lines, e.g. tracebacks, are skipped)."""
    import json

    events = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events
