"""Shared test fixtures: a private Redis, a local origin server and a real deployment.

Integration tests run real `celery worker` processes against a real redis-server of their own
(on a free port, so parallel test runs and a developer's deployment never share queues), and
fetch over real HTTP from 127.0.0.1. Under CI=true a missing service fails the test; elsewhere it
skips with the reason.

The settings of the code under test are made here (`suite_settings`) and given to this process with
`config.settings.use_settings`; worker processes and CLI runs get them as `NEWSFLOW_*` variables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.defaults import Settings
from config.settings import load_settings, use_settings
from workers.runtime import free_port

ROOT = Path(__file__).resolve().parents[1]
# The test data lives in the repository (tests/fixtures/README.md: sources and licences). The one definition
# of its path: test modules import FIXTURES / SEED_HTML / SEED_EXPECTED / BENCH_DIR from here.
FIXTURES = Path(os.environ.get("NEWSFLOW_FIXTURES_DIR") or ROOT / "tests" / "fixtures")
SEED_HTML = FIXTURES / "seed" / "kyiv-independent-stoltenberg.html"
SEED_EXPECTED = FIXTURES / "seed" / "kyiv-independent-stoltenberg.expected.json"
BENCH_DIR = FIXTURES / "extraction-benchmark"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


_TMP = Path(tempfile.mkdtemp(prefix="newsflow-tests-"))
_REDIS_PORT = free_port()
TEST_ENV = {
    "NEWSFLOW_REDIS_URL": os.environ.get("NEWSFLOW_TEST_REDIS_URL", f"redis://127.0.0.1:{_REDIS_PORT}/0"),
    "NEWSFLOW_DATA_DIR": str(_TMP / "data"),
    "NEWSFLOW_FETCH_ALLOW_PRIVATE": "1",
    "NEWSFLOW_INDEX_BATCH_MAX_WAIT_S": "0.3",
    "NEWSFLOW_INDEX_BATCH_SIZE": "16",
    "NEWSFLOW_FETCH_CONCURRENCY": "8",
    "NEWSFLOW_WORKER_CONCURRENCY": "2",
    "NEWSFLOW_MAX_RETRIES": "2",
    "NEWSFLOW_RETRY_BACKOFF_BASE_S": "0.2",
    "NEWSFLOW_RETRY_BACKOFF_MAX_S": "1",
    "NEWSFLOW_LOG_LEVEL": "INFO",
    "NEWSFLOW_POLITE_HOST_RATE_PER_S": "200",  # the shared tests hit one 127.0.0.1 host; test_crawl uses the real limit
}


def suite_settings(**overrides: Any) -> Settings:
    """The test session's settings (the environment, then TEST_ENV, then `overrides`)."""
    return load_settings({**os.environ, **TEST_ENV}, **overrides)


use_settings(suite_settings())


def need(condition: bool, reason: str) -> None:
    """Fail under CI, skip elsewhere, when a service a test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required service missing under CI: {reason}")
    pytest.skip(reason)


def wait_for(check: Callable[[], Any], timeout_s: float, every_s: float = 0.1) -> bool:
    """Whether `check()` came true within `timeout_s` (asked every `every_s`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return False


def start_private_redis(port: int, data_dir: Path) -> Any:
    """A redis-server of the test's own (workers.runtime.PrivateRedis), started; fails under CI
    (skips elsewhere) when none can be started."""
    from workers.runtime import DeploymentError, PrivateRedis

    server = PrivateRedis(port, data_dir)
    try:
        server.start()
    except DeploymentError as exc:
        need(False, f"cannot start a redis-server for the tests: {exc}")
    return server


def fixtures_available() -> bool:
    """True; the fixtures are part of the repository, so a missing one fails the test (never a skip)."""
    missing = [p for p in (SEED_HTML, SEED_EXPECTED, BENCH_DIR / "ground-truth.json") if not p.exists()]
    if missing:
        pytest.fail(f"test fixtures missing (they belong in the repository): {', '.join(map(str, missing))}")
    return True


@pytest.fixture(scope="session")
def seed_html() -> str:
    need(SEED_HTML.exists(), f"seed fixture not found at {SEED_HTML}")
    return SEED_HTML.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def seed_expected() -> dict[str, Any]:
    need(SEED_EXPECTED.exists(), f"seed fixture not found at {SEED_EXPECTED}")
    return dict(json.loads(SEED_EXPECTED.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def ground_truth() -> dict[str, Any]:
    path = BENCH_DIR / "ground-truth.json"
    need(path.exists(), f"benchmark fixtures not found at {path}")
    return dict(json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for this test session: ours on a free port, unless NEWSFLOW_TEST_REDIS_URL is set."""
    from workers.runtime import redis_answers

    url = TEST_ENV["NEWSFLOW_REDIS_URL"]
    if "NEWSFLOW_TEST_REDIS_URL" in os.environ:
        need(redis_answers(url), f"no Redis answers at {url}")
        _mark_current_ids(url)
        yield url
        return
    server = start_private_redis(_REDIS_PORT, _TMP / "redis")
    _mark_current_ids(url)
    try:
        yield url
    finally:
        server.stop()


def _mark_current_ids(url: str) -> None:
    """The session's Redis holds ids of this code's version (tests/test_migrate.py builds older ones
    under a prefix of its own): workers started later must not take test data for an old deployment."""
    from newsflow.state import State, connect
    from newsflow.urls import ID_VERSION

    State(connect(url), suite_settings()).set_id_version_if_absent(ID_VERSION)


@pytest.fixture(scope="session")
def site_root() -> Path:
    """The local origin's document root: the seed page, bundled examples and the benchmark pages."""
    need(fixtures_available(), f"shared fixtures not found under {FIXTURES}")
    root = _TMP / "site"
    root.mkdir(exist_ok=True)
    shutil.copy(SEED_HTML, root / "seed.html")
    (root / "bench").symlink_to(BENCH_DIR / "html", target_is_directory=True)
    (root / "empty.html").write_text("<html><head><title>Nothing</title></head><body><nav>Home</nav></body></html>")
    (root / "image.html").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    return root


@pytest.fixture(scope="session")
def origin(site_root: Path) -> Iterator[Any]:
    from workers.staticserver import StaticServer

    with StaticServer(site_root) as server:
        yield server


@pytest.fixture(scope="session")
def deployment(redis_url: str) -> Iterator[Any]:
    """One worker per queue, started exactly as `newsflow up` starts them."""
    from config.settings import get_settings
    from workers.runtime import Deployment, default_layout

    settings = get_settings()
    assert settings.redis_url == redis_url
    log_path = _TMP / "workers.log"
    dep = Deployment(settings, default_layout(settings), log_path=log_path)
    try:
        dep.start()
    except Exception:
        dep.stop()
        sys.stderr.write(log_path.read_text(errors="replace")[-5000:] if log_path.exists() else "")
        raise
    try:
        yield dep
    finally:
        dep.stop()


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `newsflow` command with the test environment (and `env` over it)."""
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=ROOT,
        env={**os.environ, **TEST_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single `newsflow: error:` / `Error:` line of a failed CLI run (and no traceback)."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1, proc.stderr
    return errors[0]
