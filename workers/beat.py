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
from config.settings import get_settings
from newsflow.logs import get_logger
from newsflow.pipeline import CRAWL_QUEUE, CRAWL_TASK, RECONCILE_TASK
from newsflow.sources.config import Source, SourcesFileError, load_sources, sources_path
from newsflow.stores import Stores
from workers.app import app

log = get_logger("newsflow.beat")
LOCK_TTL_S = 60
RENEW_EVERY_S = 20


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
            "task": CRAWL_TASK,
            "schedule": celery_schedule(src),
            "args": (src.name, sources_file),
            # A tick nobody picked up before the next one is stale: drop it rather than pile up.
            "options": {"queue": CRAWL_QUEUE, "expires": max(1.0, min(every, 3600.0))},
        }
    return out


def load_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    path = sources_path(settings)
    return build_schedule(load_sources(path, settings), str(path.resolve()))


class BeatLock:
    """The deployment-wide "I am the beat" lock in Redis (`newsflow.locks.Lock`, renewed by a thread)."""

    def __init__(self, settings: Settings) -> None:
        token = f"{socket.gethostname()}:{os.getpid()}"
        self.lock = Stores.from_settings(settings).lock("beat", LOCK_TTL_S, token)
        self._stop = threading.Event()

    @property
    def token(self) -> str:
        return self.lock.token

    @token.setter
    def token(self, value: str) -> None:
        self.lock.token = value

    def holder(self) -> str | None:
        return self.lock.holder()

    def acquire(self, poll_s: float = 5.0) -> None:
        """Block until this process holds the lock."""
        said = False
        while not self.lock.acquire():
            if not said:
                log.warning("beat_standby", holder=self.lock.holder())
                said = True
            time.sleep(poll_s)
        log.info("beat_lock_acquired", token=self.token)
        threading.Thread(target=self._renew, name="beat-lock", daemon=True).start()
        atexit.register(self.release)

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            try:
                if not self.lock.renew():
                    log.error("beat_lock_lost", detail="another beat holds the lock now; exiting")
                    os._exit(3)
            except Exception as exc:  # Redis away: keep trying until the TTL would have expired
                log.warning("beat_lock_renew_failed", error=str(exc))

    def release(self) -> None:
        self._stop.set()
        atexit.unregister(self.release)
        try:
            self.lock.release()
        except Exception as exc:
            log.warning("beat_lock_release_failed", error=str(exc))


def _install_schedule(sender: Any = None, **_: Any) -> None:
    """The schedule, read when the app configures itself (settings are read on first use, not at import)."""
    settings = get_settings()
    entries = load_schedule(settings)
    # Resume articles whose message a killed worker took with it (newsflow/reconcile.py).
    entries["maintenance:reconcile"] = {
        "task": RECONCILE_TASK,
        "schedule": float(settings.reconcile_interval_s),
        "options": {"queue": CRAWL_QUEUE, "expires": float(settings.reconcile_interval_s)},
    }
    app.conf.beat_schedule = entries
    # Beat wakes at least this often, so a short `@every` schedule is kept.
    app.conf.beat_max_loop_interval = 5


def _on_beat_init(sender: Any = None, **kwargs: Any) -> None:
    BeatLock(get_settings()).acquire()
    log.info("beat_schedule", entries=sorted(app.conf.beat_schedule))


if app.configured:
    _install_schedule()
else:
    app.on_after_configure.connect(_install_schedule, weak=False)
beat_init.connect(_on_beat_init, weak=False)

__all__ = ["BeatLock", "app", "build_schedule", "load_schedule"]
