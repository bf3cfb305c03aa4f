"""celery beat for newsflow: one `crawl.source` entry per enabled, scheduled source.

    celery -A workers.beat beat -s DATA_DIR/celerybeat-schedule    # `newsflow up` starts this

The schedule is read from the sources file (NEWSFLOW_CRAWL_SOURCES_FILE) when beat starts:
restart beat after changing a schedule (the crawl itself re-reads the file at every run).
Cron expressions are in UTC (Celery's default timezone).

Exactly one beat may send per deployment, or every crawl would run twice. Each beat takes the
Redis lock `{prefix}beat:lock` before its first tick and renews it every 20 s; a second beat
(started by mistake, or a standby on another machine) waits for it, and takes over within a
minute after the first stops or dies. A beat that loses its lock exits at once.
"""

from __future__ import annotations

import atexit
import os
import socket
import threading
import time
from typing import Any

from celery.schedules import crontab, schedule
from celery.signals import beat_init

from config.defaults import Settings
from newsflow.sources.config import Source, SourcesFileError, load_sources, sources_path
from newsflow.state import connect
from tasks import topology
from workers.app import app
from workers.logging import get_logger
from workers.settings import get_settings

log = get_logger("newsflow.beat")
LOCK_TTL_S = 60
RENEW_EVERY_S = 20
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def celery_schedule(src: Source) -> Any:
    assert src.schedule is not None
    if src.schedule.every is not None:
        return schedule(run_every=src.schedule.every)
    assert src.schedule.cron is not None
    minute, hour, day, month, weekday = src.schedule.cron
    try:
        return crontab(minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday)
    except ValueError as exc:
        raise SourcesFileError(f"source {src.name}: schedule {src.schedule.describe()!r}: {exc}") from None


def build_schedule(sources: list[Source], sources_file: str) -> dict[str, dict[str, Any]]:
    """Celery's `beat_schedule`: `crawl:<name>` -> crawl.source(name, sources_file) on the crawl queue."""
    out: dict[str, dict[str, Any]] = {}
    for src in sources:
        if not src.enabled or src.schedule is None:
            continue
        every = src.schedule.every.total_seconds() if src.schedule.every else 3600.0
        out[f"crawl:{src.name}"] = {
            "task": topology.CRAWL_TASK,
            "schedule": celery_schedule(src),
            "args": (src.name, sources_file),
            # A tick nobody picked up before the next one is stale: drop it rather than pile up.
            "options": {"queue": topology.CRAWL_QUEUE, "expires": max(1.0, min(every, 3600.0))},
        }
    return out


def load_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    path = sources_path(settings)
    return build_schedule(load_sources(path, settings), str(path.resolve()))


class BeatLock:
    """The deployment-wide "I am the beat" lock in Redis."""

    def __init__(self, settings: Settings) -> None:
        self.r = connect(settings.state_url)
        self.key = f"{settings.key_prefix}beat:lock"
        self.token = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()

    def acquire(self, poll_s: float = 5.0) -> None:
        """Block until this process holds the lock."""
        said = False
        while not self.r.set(self.key, self.token, nx=True, ex=LOCK_TTL_S):
            if not said:
                holder = self.r.get(self.key)
                log.warning("beat_standby", holder=holder.decode() if isinstance(holder, bytes) else holder)
                said = True
            time.sleep(poll_s)
        log.info("beat_lock_acquired", token=self.token)
        threading.Thread(target=self._renew, name="beat-lock", daemon=True).start()
        atexit.register(self.release)

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            try:
                if not self.r.eval(_RENEW, 1, self.key, self.token, LOCK_TTL_S):
                    log.error("beat_lock_lost", detail="another beat holds the lock now; exiting")
                    os._exit(3)
            except Exception as exc:  # Redis away: keep trying until the TTL would have expired
                log.warning("beat_lock_renew_failed", error=str(exc))

    def release(self) -> None:
        self._stop.set()
        atexit.unregister(self.release)
        try:
            self.r.eval(_RELEASE, 1, self.key, self.token)
        except Exception as exc:
            log.warning("beat_lock_release_failed", error=str(exc))


_settings = get_settings()
app.conf.beat_schedule = load_schedule(_settings)
# Resume articles whose message a killed worker took with it (newsflow/reconcile.py).
app.conf.beat_schedule["maintenance:reconcile"] = {
    "task": topology.RECONCILE_TASK,
    "schedule": float(_settings.reconcile_interval_s),
    "options": {"queue": topology.CRAWL_QUEUE, "expires": float(_settings.reconcile_interval_s)},
}
# Beat wakes at least this often, so a short `@every` schedule is kept.
app.conf.beat_max_loop_interval = 5


def _on_beat_init(sender: Any = None, **kwargs: Any) -> None:
    BeatLock(_settings).acquire()
    log.info("beat_schedule", entries=sorted(app.conf.beat_schedule))


beat_init.connect(_on_beat_init, weak=False)

__all__ = ["BeatLock", "app", "build_schedule", "load_schedule"]
