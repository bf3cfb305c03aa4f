"""What a solo-pool worker needs that prefork gives for free: time limits, worker-lost handling, recycling.

With `NEWSFLOW_CPU_POOL=solo` the CPU-bound stages run on Celery's solo pool: one process per
worker, no parent process and no pipe to a child (one process per container, as orchestrators
like it). Celery's solo pool enforces no time limits and has no parent to notice a dead child, so
this module does it:

- **soft time limit**: SIGALRM raises `SoftTimeLimitExceeded` in the task (the tasks run in the
  main thread), which dead-letters the article `time_limit` as under prefork;
- **hard time limit**: a CPU-time timer (ITIMER_PROF) whose signal the kernel delivers even while
  the task is stuck inside C code holding the GIL; it ends the process, after `faulthandler` wrote
  the stuck task's traceback beside its marker (the `.limit` note). It counts the task's CPU
  seconds: a task blocked in a system call does not burn them, and the soft limit (wall clock)
  interrupts it instead. One syscall per task; a `faulthandler` watchdog thread per task cost ~55 us
  and more under load. The soft limit is a Python signal handler, which runs only between two
  bytecodes: one long call into C (a parser on a pathological page) can outlast it, and the hard
  limit ends the process instead. Such a message is dead-lettered `time_limit` with the traceback's
  last frames by the next worker that starts, not handed back: a page that ran out of time once
  would run out of it again, and each try would cost a process;
- **worker lost**: before each task the process notes what it runs in a marker file. A process that
  died (hard limit, OOM kill, SIGKILL) leaves its marker, whose lock the kernel released; the next
  solo worker that starts on this data dir hands that message back to its queue at once (to the
  end of it, like any new message) if the broker still holds that delivery unacked
  (instead of after the visibility timeout), and dead-letters it `poison` once processes died
  on it more than `max_retries` times: a poison pill cannot loop forever;
- **recycling**: above `worker_max_memory_per_child_kb` of resident memory, the process asks itself
  for a warm shutdown and its supervisor (`newsflow up`, compose's restart policy, systemd) starts a
  fresh one, as prefork replaces a child that grew too big. Unlike prefork it does not also restart
  every `worker_max_tasks_per_child` tasks: a whole worker's restart (imports, models) costs seconds,
  and clean and enrich stayed flat over a 10,000-article soak (docs/benchmarks.md).
"""

from __future__ import annotations

import faulthandler
import fcntl
import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from config.defaults import Settings
from newsflow.logs import get_logger

log = get_logger("newsflow.solo")
_MARKER_SUFFIX = ".task"
# Beside a marker: the traceback faulthandler wrote when the hard time limit ended its process.
_LIMIT_SUFFIX = ".limit"
# How much of a limit note is read (faulthandler writes at most 100 frames of each thread).
_LIMIT_NOTE_BYTES = 64 * 1024
# How often (in tasks) a solo worker reads its own resident memory.
_MEMORY_CHECK_EVERY = 50


def _on_alarm(signum: int, frame: Any) -> None:
    raise SoftTimeLimitExceeded("soft time limit exceeded")


class SoloGuard:
    """Per-process state of a solo worker; inactive (every call a no-op) in any other pool."""

    def __init__(self) -> None:
        self.active = False
        self.marker: Path | None = None
        self._fd = -1
        self._last_len = 0
        self.done = 0
        self.recycling = False
        self.settings: Settings | None = None
        self._limit: Any = None

    def activate(self, settings: Settings, node: str) -> None:
        """Called once in the worker's main process when its pool is solo."""
        self.settings = settings
        run_dir = Path(settings.data_dir) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        # A unique name (a restarted container may get the same node name and pid), locked for the
        # life of this process: a marker whose lock can be taken belongs to a dead process.
        self.marker = run_dir / f"{_safe(node)}-{os.getpid()}-{uuid.uuid4().hex[:12]}{_MARKER_SUFFIX}"
        self._fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        signal.signal(signal.SIGALRM, _on_alarm)
        # Hard limit: the stuck task's traceback into the limit note (faulthandler writes it from C,
        # safe in a signal handler), then the signal's default action ends the process. The note
        # tells the worker that recovers the message why the process died (`limit_note`).
        self._limit = open(limit_note(self.marker), "w")  # noqa: SIM115 - open for the life of the process
        faulthandler.register(signal.SIGPROF, file=self._limit, all_threads=False, chain=True)
        self.active = True

    def begin(self, note: dict[str, Any], hard_s: float | None, soft_s: float | None) -> None:
        """A task starts: note it in the marker file, arm the hard (CPU) and soft (wall) limits.

        The marker is not cleared afterwards (a syscall per task saved): recovery hands a message
        back only if the broker still holds it unacked, which a finished task's message is not.
        """
        raw = json.dumps({**note, "pid": os.getpid(), "started": time.time()}).encode()
        try:
            os.pwrite(self._fd, raw.ljust(self._last_len), 0)  # blanks pad over a longer previous note
            self._last_len = len(raw)
        except OSError as exc:  # a full disk costs the hand-back of this task, never the task itself
            log.warning("solo_marker_not_written", error=str(exc))
        if hard_s:
            signal.setitimer(signal.ITIMER_PROF, hard_s)
        if soft_s:  # SoftTimeLimitExceeded in this (the main) thread after `soft_s` seconds
            signal.setitimer(signal.ITIMER_REAL, soft_s)

    def end(self) -> None:
        """The task is done: disarm both limits; recycle the process once it outgrew its memory
        limit, as prefork replaces such a child."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)
        if self.settings is None or self.recycling:
            return
        self.done += 1
        limit_kb = self.settings.worker_max_memory_per_child_kb
        if self.done % _MEMORY_CHECK_EVERY == 0 and _rss_kb() > limit_kb > 0:
            log.warning("solo_worker_recycling", tasks=self.done, rss_kb=_rss_kb(), limit_kb=limit_kb)
            self.recycling = True  # ask once
            os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown: this task is acked first

    def close(self) -> None:
        if self._limit is not None:
            with suppress(ValueError):  # faulthandler must not keep writing to a closed file
                faulthandler.unregister(signal.SIGPROF)
            self._limit.close()
            self._limit = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self.marker is not None:
            with suppress(FileNotFoundError):
                limit_note(self.marker).unlink()
            with suppress(FileNotFoundError):
                self.marker.unlink()


def limit_note(marker: Path) -> Path:
    """Where a solo process's hard time limit leaves the stuck task's traceback."""
    return marker.with_suffix(_LIMIT_SUFFIX)


@dataclass
class Orphan:
    """The note a dead process left, its marker locked by us until `done` or `release`.

    `limit` is the traceback faulthandler wrote when the hard time limit ended the process ("" when
    it died otherwise: SIGKILL, the OOM killer, a crash)."""

    path: Path
    fd: int
    note: dict[str, Any]
    limit: str = ""

    def done(self) -> None:
        with suppress(FileNotFoundError):
            limit_note(self.path).unlink()
        with suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self.fd)

    def release(self) -> None:
        """Leave the marker for the next worker that starts (recovery failed this time)."""
        os.close(self.fd)


def orphaned_tasks(run_dir: Path) -> list[Orphan]:
    """Markers of dead processes (their lock is free) that hold a note; empty or broken ones are removed."""
    found = []
    for path in sorted(run_dir.glob(f"*{_MARKER_SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # another worker just finished with it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # its process is alive (or another worker is recovering it right now)
        orphan = Orphan(path, fd, {})
        try:
            text = os.pread(fd, 1 << 20, 0).decode("utf-8", errors="replace")
            orphan.note = json.loads(text) if text.strip() else {}
        except (OSError, ValueError) as exc:
            log.warning("solo_marker_unreadable", path=str(path), error=str(exc))
        with suppress(OSError):
            orphan.limit = limit_note(path).read_bytes()[:_LIMIT_NOTE_BYTES].decode("utf-8", "replace")
        if orphan.note:
            found.append(orphan)
        else:
            orphan.done()  # it died between tasks, or before its first one
    return found


def stuck_at(traceback: str) -> str:
    """The innermost frame of a faulthandler traceback ('File "x.py", line 3 in f'), shortened."""
    for line in traceback.splitlines():
        line = line.strip()
        if line.startswith("File "):  # faulthandler lists the most recent call first
            return line[5:300]
    return "an unknown place"


def _rss_kb() -> int:
    with suppress(OSError, ValueError, IndexError):
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    return 0


def _safe(node: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in node)[:80]


guard = SoloGuard()


def recover_orphans(app: Any, settings: Settings, worker: str) -> list[str]:
    """Hand back (or, past `max_retries` deaths, dead-letter) what dead solo processes were running."""
    from newsflow.state import State

    orphans = orphaned_tasks(Path(settings.data_dir) / "run")
    if not orphans:
        return []
    state = State.from_settings(settings)
    outcomes = []
    with app.connection_for_write() as conn:
        qos = conn.default_channel.qos
        for orphan in orphans:
            try:
                outcomes.append(_recover(qos, state, settings, orphan.note, worker, orphan.limit))
                orphan.done()
            except Exception:  # one bad note or a Redis hiccup: the others still go, this one waits
                log.exception("orphan_recovery_failed", marker=str(orphan.path))
                orphan.release()
    return outcomes


def _recover(qos: Any, state: Any, settings: Settings, note: dict[str, Any], worker: str, limit: str = "") -> str:
    raw = note.get("payload")
    payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
    aid, url = str(payload.get("id") or "unknown"), str(payload.get("url") or "")
    stage, tag = str(note.get("stage") or "?"), note.get("tag")
    if not tag:
        log.warning("orphan_untagged", article_id=aid, url=url, stage=stage)
        return f"{aid}:untagged"
    delivered_at = qos.channel.client.zscore(qos.unacked_index_key, tag)
    if delivered_at is None:
        # Acked (the process finished it), or already handed back by the visibility sweep.
        log.info("orphan_already_acked", article_id=aid, url=url, stage=stage)
        return f"{aid}:done"
    if float(delivered_at) > float(note.get("started") or 0) + 1:
        # The tag survives a restore: this is a later delivery of the message, held by a live worker.
        log.info("orphan_redelivered_elsewhere", article_id=aid, url=url, stage=stage)
        return f"{aid}:elsewhere"
    if limit:
        # The hard time limit ended it: the same page would run out of time again. Dead-letter it now
        # with where it was stuck, instead of handing it back to kill another process.
        where = stuck_at(limit)
        detail = f"the process ran past its hard time limit (pid {note.get('pid')}) in {where}"
        state.dead_letter(aid, url, stage, "time_limit", detail, payload, worker=worker)
        qos.ack(tag)
        log.warning("orphan_dead_lettered", article_id=aid, url=url, stage=stage, reason="time_limit",
                    detail=detail, traceback=limit[-4000:])  # fmt: skip
        return f"{aid}:dead"
    deaths = state.count_attempt(stage, aid)
    ran_s = time.time() - float(note.get("started") or time.time())
    why = f"the process died after {ran_s:.0f} s (pid {note.get('pid')})"
    if deaths > settings.max_retries:
        detail = f"a worker process died on it {deaths} times; last: {why}"
        state.dead_letter(aid, url, stage, "poison", detail, payload, worker=worker)
        qos.ack(tag)
        log.warning("orphan_dead_lettered", article_id=aid, url=url, stage=stage, deaths=deaths, detail=detail)
        return f"{aid}:dead"
    qos.restore_by_tag(tag, leftmost=True)  # back to its queue now, not after the visibility timeout
    log.warning("orphan_redelivered", article_id=aid, url=url, stage=stage, deaths=deaths, detail=why)
    return f"{aid}:redelivered"


def install(settings_fn: Callable[[], Settings]) -> None:
    """Connect the guard to a worker's life cycle and to every stage task's run (signal handlers,
    so the stage runner knows nothing of pools); it activates only on the solo pool."""
    from celery import signals
    from celery.concurrency import get_implementation
    from celery.concurrency.solo import TaskPool as SoloPool

    def on_init(sender: Any, **_: Any) -> None:
        if get_implementation(sender.pool_cls) is SoloPool:
            guard.activate(settings_fn(), str(sender.hostname))
            # Only solo workers pay for the per-task handlers (prefork and threads pools never run them).
            signals.task_prerun.connect(on_prerun, weak=False)
            signals.task_postrun.connect(on_postrun, weak=False)

    def on_ready(sender: Any, **_: Any) -> None:
        if guard.active:
            try:
                recover_orphans(sender.app, settings_fn(), str(sender.hostname))
            except Exception:  # a broken marker or a Redis hiccup must not stop the worker starting
                log.exception("orphan_recovery_failed")

    def on_shutdown(**_: Any) -> None:
        guard.close()

    def on_prerun(task: Any = None, args: Any = (), **_: Any) -> None:
        if not guard.active or not getattr(task, "stage", None):
            return
        # kombu's delivery tag (the key of the unacked message in Redis) travels in the properties.
        tag = (getattr(task.request, "properties", None) or {}).get("delivery_tag")
        payload = args[0] if args else None
        hard_s = task.time_limit or task.app.conf.task_time_limit
        guard.begin({"stage": task.stage, "tag": tag, "payload": payload}, hard_s, task.soft_time_limit or hard_s)

    def on_postrun(task: Any = None, **_: Any) -> None:
        if guard.active and getattr(task, "stage", None):
            guard.end()

    signals.worker_init.connect(on_init, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
