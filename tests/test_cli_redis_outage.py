"""A bad day for Redis, as the CLI sees it: every command rides out a short outage, and one that
stays down is one line and exit status 3 (never a traceback, never "some articles are dead")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_ENV, run_cli, start_private_redis
from workers.runtime import free_port

DEAD_REDIS = {"NEWSFLOW_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # nothing listens there
AID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--json"),
        ("ingest", "https://news.example/a"),
        ("ingest", "https://news.example/a", "--wait", "--timeout", "5", "--json"),
        ("deadletters", "list"),
        ("deadletters", "replay", "--all"),
        ("reconcile", "--json"),
        ("trace", AID),
        ("crawl", "--sources", str(ROOT / "tests" / "data" / "no-such-sources.toml"), "--all"),
    ],
)
def test_an_unreachable_redis_is_one_line_and_exit_3(args: tuple[str, ...]) -> None:
    proc = run_cli(*args, timeout=120, env=DEAD_REDIS)
    if args[0] == "crawl":  # a bad sources file is a usage error, found before Redis is needed
        assert proc.returncode == 2, proc.stderr
        return
    assert proc.returncode == 3, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("newsflow: error:")]
    assert len(errors) == 1 and "cannot reach Redis at redis://127.0.0.1:" in errors[0], proc.stderr
    assert "NEWSFLOW_REDIS_URL" in errors[0]  # it says the fix


@pytest.mark.integration
def test_ingest_wait_rides_out_a_redis_restart(tmp_path: Path) -> None:
    """Redis goes away for a few seconds while `ingest --wait` follows an article; it comes back
    (append-only: the ledger survives) and the article is indexed: exit 0, as if nothing happened."""
    from newsflow.state import State
    from newsflow.urls import article_id
    from tests.conftest import suite_settings

    server = start_private_redis(free_port(), tmp_path / "redis")
    url = "https://news.example/outage"
    aid = article_id(url)
    env = {**TEST_ENV, "NEWSFLOW_REDIS_URL": server.url, "NEWSFLOW_DATA_DIR": str(tmp_path / "data")}

    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "ingest", url, "--wait", "--timeout", "60", "--json"],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        state = State.from_settings(suite_settings(redis_url=server.url))
        deadline = time.monotonic() + 30
        while state.ledger(aid) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state.ledger(aid) is not None, "the article was never submitted"
        time.sleep(1.5)  # past appendfsync everysec: the submission is on disk
        server.stop()
        time.sleep(4)  # longer than a client's own connection retries (about 3.5 s)
        assert proc.poll() is None, "ingest --wait gave up while Redis was away"
        server.start()
        state.record(aid, url, "indexed", "index")  # what the index worker would write
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert [row["state"] for row in json.loads(out)] == ["indexed"]


@pytest.mark.integration
def test_a_redis_that_answers_wrong_says_which_fix(tmp_path: Path) -> None:
    """A Redis that is up but refuses the URL (a database it has not, a wrong password) is not
    "start it": the one line says what to fix in NEWSFLOW_REDIS_URL."""
    from tests.hostile.rig import RedisProc

    server = RedisProc(tmp_path / "redis", password="s3cret")
    server.start()
    try:
        base = f"redis://127.0.0.1:{server.port}"
        cases = [
            (f"{base}/0", "password in the URL is wrong or missing"),  # no password given
            (f"redis://:wrong@127.0.0.1:{server.port}/0", "password in the URL is wrong or missing"),
            (f"redis://:s3cret@127.0.0.1:{server.port}/99", "database number at the end of the URL"),
        ]
        for url, fix in cases:
            proc = run_cli("status", timeout=120, env={"NEWSFLOW_REDIS_URL": url, "NEWSFLOW_STATE_REDIS_URL": ""})
            assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
            assert fix in proc.stderr and "s3cret" not in proc.stderr, proc.stderr
    finally:
        server.stop()


def test_the_fix_follows_what_redis_said() -> None:
    from workers.cli.common import redis_fix

    assert "TLS" in redis_fix("Timeout connecting to server", "rediss://h:6380/0")
    assert "Start it" in redis_fix("Timeout connecting to server", "redis://h:6379/0")
    assert "Start it" in redis_fix("Error 111 connecting to h:6379. Connection refused", "redis://h:6379/0")
    assert "certificate" in redis_fix("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "rediss://h/0")
    # A full Redis answers: it refuses writes, and starting another is no fix.
    full = redis_fix("command not allowed when used memory > 'maxmemory'", "redis://h:6379/0")
    assert "maxmemory" in full and "Start it" not in full
