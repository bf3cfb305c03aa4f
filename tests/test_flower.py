"""Flower against the real broker and a real deployment: its REST API and its dashboard in Chromium."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TEST_ENV, need, run_cli
from workers.runtime import free_port

pytestmark = pytest.mark.integration

STAGE_QUEUES = ("fetch", "clean", "enrich", "index")
STAGE_TASKS = ("fetch.page", "clean.page", "enrich.article", "index.article")
AUTH = ("ops", "flower-test-pw")
DOCS_SCREENSHOT = ROOT / "docs" / "img" / "flower.png"


class Flower:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port, self.proc, self.log = port, proc, log
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, auth: tuple[str, str] | None = AUTH, timeout: float = 15) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path)
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
                is_json = resp.headers.get_content_type() == "application/json"
                return resp.status, json.loads(body) if is_json else body.decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, None


@pytest.fixture(scope="module")
def flower(deployment: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flower]:
    port = free_port()
    log = tmp_path_factory.mktemp("flower") / "flower.log"
    env = {**os.environ, **TEST_ENV, "NEWSFLOW_FLOWER_BASIC_AUTH": ":".join(AUTH)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "flower", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    fl = Flower(port, proc, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                code, _ = fl.get("/healthcheck", auth=None, timeout=2)
                if code == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("Flower did not answer: " + log.read_text()[-3000:])
        yield fl
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def queues_by_worker(fl: Flower) -> dict[str, set[str]]:
    code, workers = fl.get("/api/workers?refresh=1")
    assert code == 200
    return {node: {q["name"] for q in info.get("active_queues") or []} for node, info in (workers or {}).items()}


def queues_of_workers(fl: Flower) -> set[str]:
    return set().union(*queues_by_worker(fl).values())


@pytest.fixture(scope="module")
def flower_saw_a_run(flower: Flower, origin: Any, ground_truth: dict[str, Any]) -> dict[str, Any]:
    """Articles through the deployment while Flower watches, until it has seen every stage's task.

    Workers start with task events off (they cost CPU); Flower switches them on by itself every few
    seconds, so the first articles may go unseen: keep sending new ones until all four names show.
    """
    deadline = time.monotonic() + 90
    while queues_of_workers(flower) < set(STAGE_QUEUES):
        assert time.monotonic() < deadline, "Flower never listed a worker for every stage queue"
        time.sleep(0.5)
    pages = sorted(ground_truth)[-12:-9]
    names: set[str] = set()
    tasks: dict[str, Any] = {}
    for page in pages * 5:
        url = f"{origin.base_url}/bench/{page}.html?flower={time.monotonic_ns()}"
        proc = run_cli("ingest", url, "--wait", "--json", "--timeout", "60")
        assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
        code, tasks = flower.get("/api/tasks")
        assert code == 200
        names = {t["name"] for t in tasks.values()}
        if names >= set(STAGE_TASKS):
            break
        time.sleep(2)
    return {"tasks": tasks, "names": names}


def test_api_lists_a_worker_per_queue_and_every_stage_task(flower: Flower, flower_saw_a_run: dict[str, Any]) -> None:
    assert queues_of_workers(flower) >= set(STAGE_QUEUES)
    assert flower_saw_a_run["names"] >= set(STAGE_TASKS), flower_saw_a_run["names"]
    by_name = {t["name"]: t for t in flower_saw_a_run["tasks"].values() if t.get("worker")}
    consumes = queues_by_worker(flower)
    for name, queue in zip(STAGE_TASKS, STAGE_QUEUES, strict=True):
        # Each stage's task ran on a worker that consumes that stage's queue (one `cpu-...@host`
        # node takes both clean and enrich).
        assert queue in consumes[str(by_name[name]["worker"])], (by_name[name], consumes)


def test_api_and_dashboard_require_the_password(flower: Flower) -> None:
    assert flower.get("/api/workers", auth=None)[0] == 401
    assert flower.get("/api/workers", auth=("ops", "wrong"))[0] == 401
    assert flower.get("/", auth=None)[0] == 401


def test_refuses_to_listen_beyond_loopback_without_auth() -> None:
    proc = run_cli("flower", "--host", "0.0.0.0", "--print")
    assert proc.returncode == 2
    assert "NEWSFLOW_FLOWER_BASIC_AUTH" in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "workers.cli", "flower", "--host", "0.0.0.0", "--print"],
        cwd=ROOT, env={**os.environ, **TEST_ENV, "NEWSFLOW_FLOWER_BASIC_AUTH": "a:b"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0 and "--address=0.0.0.0" in ok.stdout
    assert "a:b" not in ok.stdout  # the password never goes on the command line
    bad = subprocess.run(
        [sys.executable, "-m", "workers.cli", "flower", "--print"],
        cwd=ROOT, env={**os.environ, **TEST_ENV, "NEWSFLOW_FLOWER_BASIC_AUTH": "nopassword"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "user:password" in bad.stderr


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,900",
)  # fmt: skip


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_dashboard_in_headless_chromium(flower: Flower, flower_saw_a_run: dict[str, Any]) -> None:
    need(
        bool(shutil.which("chromium") or shutil.which("chromium-browser")),
        "chromium not installed (apt-get update && apt-get install -y chromium)",
    )
    url = f"http://{AUTH[0]}:{AUTH[1]}@127.0.0.1:{flower.port}/"
    with tempfile.TemporaryDirectory(prefix="newsflow-chromium-") as tmp:
        # The DOM first: proves the page behind the password rendered the workers, not an error.
        dom = chromium("--dump-dom", "--virtual-time-budget=5000", url, profile=Path(tmp) / "p1")
        assert dom.returncode == 0, dom.stderr[-2000:]
        consumes = queues_by_worker(flower)
        for queue in STAGE_QUEUES:
            nodes = [node for node, queues in consumes.items() if queue in queues]
            assert any(node in dom.stdout for node in nodes), f"no {queue} worker on the dashboard"
        shot = Path(tmp) / "flower.png"
        proc = chromium(f"--screenshot={shot}", "--virtual-time-budget=5000", url, profile=Path(tmp) / "p2")
        assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (1400, 900)
        assert len(data) > 20_000, "a blank page compresses to almost nothing"
        if os.environ.get("NEWSFLOW_UPDATE_DOCS_SCREENSHOT"):
            DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, DOCS_SCREENSHOT)
