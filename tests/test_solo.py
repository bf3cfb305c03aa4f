"""The solo pool's guard (tasks/solo.py): soft and hard time limits, and the marker a dead process leaves."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from config.defaults import Settings
from tasks.solo import SoloGuard, _recover, orphaned_tasks, stuck_at

ROOT = Path(__file__).resolve().parents[1]


def test_soft_limit_interrupts_the_task(tmp_path: Path) -> None:
    guard = SoloGuard()
    previous = signal.getsignal(signal.SIGALRM)
    try:
        guard.activate(Settings(data_dir=str(tmp_path)), "clean-test@host")
        started = time.monotonic()
        guard.begin({"stage": "clean", "tag": "t1"}, 30, 0.3)
        try:
            with pytest.raises(SoftTimeLimitExceeded):
                time.sleep(5)
        finally:
            guard.end()
        assert time.monotonic() - started < 2
        # The timers are disarmed after the task: nothing fires later.
        guard.begin({"stage": "clean", "tag": "t2"}, 0.3, 0.3)
        guard.end()
        time.sleep(0.5)
        assert guard.marker is not None
        assert json.loads(guard.marker.read_text())["tag"] == "t2"  # the last task, padded over the first
    finally:
        guard.close()
        signal.signal(signal.SIGALRM, previous)


def test_hard_limit_ends_a_process_stuck_in_c_code(tmp_path: Path) -> None:
    """A regular expression that backtracks forever holds the GIL: only the C watchdog can stop it."""
    script = textwrap.dedent(
        f"""
        import re, sys
        sys.path.insert(0, {str(ROOT)!r})
        from config.defaults import Settings
        from tasks.solo import SoloGuard
        guard = SoloGuard()
        guard.activate(Settings(data_dir={str(tmp_path)!r}), "clean-test@host")
        payload = {{"v": 1, "id": "abc", "url": "http://example.test/a"}}
        guard.begin({{"stage": "clean", "tag": "tag-1", "payload": payload}}, 1.0, None)
        re.match(r"(a+)+$", "a" * 64 + "b")
        print("not reached")
        """
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert proc.returncode == -signal.SIGPROF, proc.stderr
    assert "not reached" not in proc.stdout
    orphans = orphaned_tasks(tmp_path / "run")
    assert [(o.note["stage"], o.note["tag"], o.note["payload"]["id"]) for o in orphans] == [("clean", "tag-1", "abc")]
    # The stuck task's traceback, left beside the marker for the worker that recovers the message.
    assert "most recent call first" in orphans[0].limit, proc.stderr
    assert stuck_at(orphans[0].limit).endswith("in match")  # the innermost frame: re.match
    assert orphaned_tasks(tmp_path / "run") == []  # we hold its lock: nobody else claims it meanwhile
    orphans[0].release()  # recovery failed: it stays for the next worker
    again = orphaned_tasks(tmp_path / "run")
    assert len(again) == 1
    again[0].done()
    assert orphaned_tasks(tmp_path / "run") == []
    assert list((tmp_path / "run").iterdir()) == []


def test_markers_of_live_or_idle_processes_are_left_alone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    live = run / "clean_x-1-aaaa.task"  # a live process holds its marker's lock (pid reuse cannot fool it)
    live.write_text(json.dumps({"stage": "clean", "tag": "t"}))
    fd = os.open(live, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    idle = run / "clean_y-2-bbbb.task"
    idle.write_text("")  # died between tasks: nothing to hand back
    try:
        assert orphaned_tasks(run) == []
        assert live.exists() and not idle.exists()
    finally:
        os.close(fd)
    assert [o.note["tag"] for o in orphaned_tasks(run)] == ["t"]  # its process is gone now


@pytest.mark.integration
def test_solo_layout_end_to_end(redis_url: str, origin: Any, ground_truth: dict[str, Any], tmp_path: Path) -> None:
    """NEWSFLOW_CPU_WORKERS=per-stage with NEWSFLOW_CPU_POOL=solo: one solo process per core for
    clean and one for enrich, ingesting real pages; each process notes its tasks in a marker and
    removes it on a warm shutdown. (The shared layout, `newsflow up`'s default, is the one every
    other integration test runs on.)"""
    from celery import Celery

    from config.settings import load_settings
    from newsflow.state import connect
    from newsflow.stores import Stores
    from tasks.celeryconfig import celery_config
    from tests.conftest import TEST_ENV
    from workers import client
    from workers.runtime import Deployment, default_layout

    own_db = redis_url.rsplit("/", 1)[0] + "/7"  # its own database: the session deployment keeps its queues
    settings = load_settings(
        {**os.environ, **TEST_ENV, "NEWSFLOW_REDIS_URL": own_db, "NEWSFLOW_DATA_DIR": str(tmp_path),
         "NEWSFLOW_CPU_WORKERS": "per-stage", "NEWSFLOW_CPU_POOL": "solo", "NEWSFLOW_WORKER_CONCURRENCY": "2"}
    )  # fmt: skip
    layout = default_layout(settings)
    assert [(s.queue, s.pool, s.instance) for s in layout if s.queue in ("clean", "enrich")] == [
        ("clean", "solo", 0), ("clean", "solo", 1), ("enrich", "solo", 0), ("enrich", "solo", 1)
    ]  # fmt: skip
    connect(settings.state_url).flushdb()
    stores = Stores.from_settings(settings)
    state = stores.state
    app = Celery("solo-test-client")
    app.conf.update(celery_config(settings))
    urls = [f"{origin.base_url}/bench/{page_id}.html" for page_id in sorted(ground_truth)[:12]]
    run_dir = tmp_path / "run"
    with Deployment(settings, layout, log_path=tmp_path / "workers.log"):
        assert len(list(run_dir.glob("*.task"))) == 4  # one marker per solo process
        submitted, rejected = client.submit(app, stores, urls)
        assert not rejected
        outcomes = client.wait(state, submitted, 120)
    assert [o.state for o in outcomes].count("indexed") >= len(urls) - 1, outcomes  # one page says noindex
    assert list(run_dir.glob("*.task")) == []  # warm shutdown removed them
    app.close()


class _Unacked:
    """The broker's unacked record of one delivery, as `_recover` reads and settles it."""

    unacked_index_key = "unacked_index"

    def __init__(self, delivered_at: float) -> None:
        self.delivered_at: float | None = delivered_at
        self.restored: list[str] = []
        self.channel = self
        self.client = self

    def zscore(self, key: str, tag: str) -> float | None:
        return self.delivered_at

    def ack(self, tag: str) -> None:
        self.delivered_at = None

    def restore_by_tag(self, tag: str, leftmost: bool = False) -> None:
        self.restored.append(tag)


class _Ledger:
    def __init__(self) -> None:
        self.dead: list[tuple[str, str, str]] = []
        self.attempts = 0

    def dead_letter(self, aid: str, url: str, stage: str, reason: str, detail: str, payload: Any, **_: Any) -> None:
        self.dead.append((aid, reason, detail))

    def count_attempt(self, stage: str, aid: str) -> int:
        self.attempts += 1
        return self.attempts


def test_a_process_ended_by_its_hard_limit_has_its_message_dead_lettered_not_handed_back() -> None:
    started = time.time()
    note = {"stage": "clean", "tag": "t1", "pid": 42, "started": started, "payload": {"id": "abc", "url": "u"}}
    limit = 'Current thread 0x1 (most recent call first):\n  File "/x/lxml/parse.py", line 9 in parse\n'
    qos, state = _Unacked(started), _Ledger()
    assert _recover(qos, state, Settings(), note, "w", limit) == "abc:dead"
    detail = 'the process ran past its hard time limit (pid 42) in "/x/lxml/parse.py", line 9 in parse'
    assert state.dead == [("abc", "time_limit", detail)]
    assert qos.delivered_at is None and qos.restored == [] and state.attempts == 0
    # Killed any other way (SIGKILL, the OOM killer): handed back, counted towards poison.
    qos, state = _Unacked(started), _Ledger()
    assert _recover(qos, state, Settings(), note, "w", "") == "abc:redelivered"
    assert qos.restored == ["t1"] and state.dead == [] and state.attempts == 1
