"""Graceful shutdown: SIGTERM a worker mid-batch and nothing is lost.

A deployment of its own (its own Redis database and data dir, so the session's workers cannot
pick up its messages and hide a loss): pages are submitted, the clean worker and the index writer
get SIGTERM while articles are in flight (as `docker stop` sends it: to the main process only),
replacements start, and every article must still end indexed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_ENV

pytestmark = pytest.mark.integration

N_PAGES = 60


def test_sigterm_mid_batch_loses_nothing(
    redis_url: str, origin: Any, ground_truth: dict[str, Any], tmp_path: Path
) -> None:
    from config.settings import load_settings
    from newsflow import queues
    from newsflow.pipeline import STAGES
    from newsflow.state import connect
    from newsflow.stores import Stores
    from workers import client
    from workers.cli.ops import control_app
    from workers.runtime import Deployment, default_layout

    env = {
        **os.environ, **TEST_ENV,
        "NEWSFLOW_REDIS_URL": re.sub(r"/\d+$", "/5", redis_url),
        "NEWSFLOW_DATA_DIR": str(tmp_path / "data"),
        "NEWSFLOW_WORKER_CONCURRENCY": "1",
        # All pages come from one host: no politeness delay, so clean (one process) is the bottleneck.
        "NEWSFLOW_POLITE_HOST_RATE_PER_S": "1000",
    }  # fmt: skip
    settings = load_settings(env)
    broker = connect(settings.redis_url)
    broker.flushdb()
    stage_queues = [s.queue for s in STAGES]
    layout = [spec for spec in default_layout(settings) if set(spec.queues) & set(stage_queues)]
    log = tmp_path / "workers.log"
    first = Deployment(settings, layout, log_path=log)
    second = None
    app, stores = control_app(settings), Stores.from_settings(settings)
    state = stores.state
    try:
        first.start()
        urls = [f"{origin.base_url}/bench/{p}.html" for p in sorted(ground_truth)[30 : 30 + N_PAGES]]
        submitted, _ = client.submit(app, stores, urls)
        # Wait until articles are in flight through clean and index, then stop those two workers.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = state.transitions(5)
            if counts["cleaned"] >= 3:
                break
            time.sleep(0.02)
        in_flight = {q.queue: q for q in queues.inspect_queues(broker, stage_queues)}
        indexed_before = state.transitions(5)["indexed"]
        # The workers of clean and index (clean's may be a shared `cpu` worker, enrich's too).
        stopped = [spec for spec in layout if set(spec.queues) & {"clean", "index"}]
        victims = [p for p, spec in zip(first.procs, layout, strict=True) if spec in stopped]
        for proc in victims:
            os.kill(proc.pid, signal.SIGTERM)  # the main process only, as `docker stop` does
        for proc in victims:
            assert proc.wait(60) == 0, "warm shutdown should exit 0"
        assert indexed_before < N_PAGES, "everything was indexed before the SIGTERM: the test proved nothing"
        busy = in_flight["clean"].depth + in_flight["clean"].unacked + in_flight["index"].unacked
        assert busy > 0, f"nothing in flight at SIGTERM: {in_flight}"
        # Nothing is left unacknowledged by the stopped workers: it was finished or handed back.
        after = {q.queue: q for q in queues.inspect_queues(broker, ["clean", "index"])}
        assert after["clean"].unacked == 0 and after["index"].unacked == 0, after
        second = Deployment(settings, stopped, log_path=log)
        second.start()
        outcomes = client.wait(state, submitted, 180)
        states = {o.state for o in outcomes}
        assert states == {"indexed"}, [o.to_dict() for o in outcomes if o.state != "indexed"]
        assert state.dead_letter_counts() == []
    finally:
        for dep in (second, first):
            if dep is not None:
                dep.stop()
        if log.exists():
            print(log.read_text(errors="replace")[-1500:])  # shown by pytest only on failure


def test_workers_exit_on_sigterm_when_idle(redis_url: str, tmp_path: Path) -> None:
    """A warm shutdown of idle workers is quick (compose's stop_grace_period is far above it)."""
    from config.settings import load_settings
    from workers.runtime import Deployment, default_layout

    env = {**os.environ, **TEST_ENV, "NEWSFLOW_REDIS_URL": re.sub(r"/\d+$", "/5", redis_url),
           "NEWSFLOW_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    settings = load_settings(env)
    layout = [s for s in default_layout(settings) if s.queue in ("fetch", "index")]
    dep = Deployment(settings, layout, log_path=tmp_path / "w.log")
    try:
        dep.start()
        started = time.monotonic()
        for proc in dep.procs:
            os.kill(proc.pid, signal.SIGTERM)
        codes = [p.wait(30) for p in dep.procs]
        assert codes == [0] * len(codes)
        assert time.monotonic() - started < 15
    except subprocess.TimeoutExpired:
        pytest.fail("a worker ignored SIGTERM for 30 s")
    finally:
        dep.stop()
