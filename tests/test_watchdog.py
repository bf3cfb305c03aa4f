"""The soft time limit on the threads pool (tasks/watchdog.py), where Celery enforces none.

Unit tests of the watchdog on plain threads, then a real fetch worker (threads pool) whose page
trickles in under every per-read timeout: it is dead-lettered `time_limit` at its soft limit, long
before the fetch's own total deadline, and the worker goes on with the next page.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tasks.watchdog import Watchdog
from tests.conftest import TEST_ENV
from tests.hostile.server import HostileServer


def _in_thread(fn: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # what the thread met is the test's subject
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the watched thread never stopped"
    return out


def test_a_thread_past_its_limit_gets_soft_time_limit_exceeded() -> None:
    dog = Watchdog()

    def busy() -> float:
        started = time.monotonic()
        with dog.limit(0.3, "busy"):
            while time.monotonic() - started < 5:
                sum(range(1000))  # Python code: the exception arrives at the next instruction
        return time.monotonic() - started

    out = _in_thread(busy)
    assert isinstance(out.get("error"), SoftTimeLimitExceeded)


def test_a_thread_blocked_in_a_call_gets_it_when_the_call_returns() -> None:
    dog = Watchdog()

    def blocked() -> None:
        with dog.limit(0.2):
            time.sleep(0.6)  # one C call: not interrupted inside it
            time.sleep(5)  # ... but before the next one

    started = time.monotonic()
    out = _in_thread(blocked)
    assert isinstance(out.get("error"), SoftTimeLimitExceeded)
    assert time.monotonic() - started < 2


def test_a_thread_done_in_time_is_never_interrupted_later() -> None:
    dog = Watchdog()

    def quick_then_long() -> str:
        with dog.limit(0.2):
            time.sleep(0.01)
        time.sleep(0.5)  # past the old deadline, outside the block
        return "fine"

    assert _in_thread(quick_then_long) == {"result": "fine"}


def test_the_main_thread_and_a_zero_limit_are_not_watched() -> None:
    dog = Watchdog()
    with dog.limit(0.01):
        time.sleep(0.1)
    assert _in_thread(lambda: dog.limit(0).__enter__()).get("error") is None
    assert dog._thread is None  # nothing was ever watched: no watchdog thread either


@pytest.mark.integration
def test_a_fetch_worker_dead_letters_a_trickling_page_at_its_soft_limit(
    redis_url: str, origin: Any, ground_truth: dict[str, Any], tmp_path: Path
) -> None:
    from config.settings import load_settings
    from newsflow.state import connect
    from newsflow.stores import Stores
    from workers import client
    from workers.cli.ops import control_app
    from workers.runtime import Deployment, default_layout

    env = {
        **os.environ, **TEST_ENV,
        "NEWSFLOW_REDIS_URL": re.sub(r"/\d+$", "/6", redis_url),
        "NEWSFLOW_DATA_DIR": str(tmp_path / "data"),
        "NEWSFLOW_FETCH_TIME_LIMIT_S": "2",
        # A byte a second never trips the read timeout, and the total deadline is far off: only
        # the soft limit can end this fetch in time.
        "NEWSFLOW_FETCH_READ_TIMEOUT_S": "10",
        "NEWSFLOW_FETCH_TOTAL_TIMEOUT_S": "60",
    }  # fmt: skip
    settings = load_settings(env)
    connect(settings.redis_url).flushdb()
    layout = [spec for spec in default_layout(settings) if spec.queue == "fetch"]
    log = tmp_path / "workers.log"
    dep = Deployment(settings, layout, log_path=log)
    app, stores = control_app(settings), Stores.from_settings(settings)
    try:
        with HostileServer() as hostile:
            dep.start()
            started = time.monotonic()
            [slow], _ = client.submit(app, stores, [f"http://127.0.0.1:{hostile.port}/trickle-body"])
            deadline = time.monotonic() + 30
            entry = None
            while time.monotonic() < deadline:
                entry = stores.state.ledger(slow.article_id)
                if entry is not None and entry.state == "dead":
                    break
                time.sleep(0.1)
            assert entry is not None and (entry.state, entry.reason) == ("dead", "time_limit"), entry
            assert time.monotonic() - started < 20  # the soft limit (2 s), not the total deadline (60 s)
            # The worker lives on: the next page is fetched.
            page = sorted(ground_truth)[0]
            [ok], _ = client.submit(app, stores, [f"{origin.base_url}/bench/{page}.html"])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                entry = stores.state.ledger(ok.article_id)
                if entry is not None and entry.state == "fetched":
                    break
                time.sleep(0.1)
            assert entry is not None and entry.state == "fetched", entry
    finally:
        dep.stop()
        if log.exists():
            print(log.read_text(errors="replace")[-1500:])  # shown by pytest only on failure
