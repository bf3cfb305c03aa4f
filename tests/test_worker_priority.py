"""Workers run at a lower CPU priority than the search API (setting worker_nice, docs/search.md).

`newsflow up` starts every worker through `Deployment._spawn`: each must come up `worker_nice` steps
below `up` (os.getpriority), and, where the kernel schedules by session first (sched_autogroup), in
a session whose autogroup carries that nice value, or the nice value would weigh only against the
worker's own session. compose.yaml does the same for containers with cpu_shares.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config.defaults import Settings
from tests.conftest import ROOT, suite_settings
from workers.runtime import BeatSpec, Deployment, WorkerSpec, default_layout

AUTOGROUP = Path("/proc/sys/kernel/sched_autogroup_enabled")


@dataclass(frozen=True)
class IdleSpec(WorkerSpec):
    """A worker slot whose process only sleeps: the spawn is what is under test, not Celery."""

    def command(self, node_suffix: str, log_level: str) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(60)"]


def spawn(settings: Settings) -> subprocess.Popen[bytes]:
    """One process started exactly as `Deployment.start` starts each worker of the layout."""
    dep = Deployment(settings, [IdleSpec("fetch", "threads", 1)])
    dep._spawn_args = (dict(os.environ), str(ROOT), None, "priority-test")
    return dep._spawn(dep.layout[0])


def autogroup_nice(pid: int) -> int | None:
    """The nice value of the process's autogroup, None where the kernel has autogroups off."""
    if not AUTOGROUP.exists() or AUTOGROUP.read_text().strip() != "1":
        return None
    return int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])


def test_workers_are_nicer_than_the_api_by_default() -> None:
    assert Settings().worker_nice == 10
    assert suite_settings().worker_nice == Settings().worker_nice or "NEWSFLOW_WORKER_NICE" in os.environ


@pytest.mark.parametrize("nice", [10, 0])
def test_spawned_worker_gets_worker_nice(nice: int) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    proc = spawn(suite_settings(worker_nice=nice))
    try:
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, ours + nice)
        assert os.getsid(proc.pid) == proc.pid  # a session of its own (Deployment.stop signals the group)
        group = autogroup_nice(proc.pid)
        if group is not None:
            assert group == nice
            assert Path(f"/proc/{proc.pid}/autogroup").read_text() != Path("/proc/self/autogroup").read_text()
    finally:
        proc.kill()
        proc.wait()
    assert os.getpriority(os.PRIO_PROCESS, 0) == ours  # the parent (`up`, the API, a test) keeps its own


def test_every_worker_up_starts_is_niced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`up` is `Deployment(settings, default_layout(settings)).start()`: every process of the layout,
    beat included, comes up at worker_nice (commands replaced by a sleep: no broker needed)."""
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    monkeypatch.setattr(WorkerSpec, "command", lambda self, suffix, level: sleep)
    monkeypatch.setattr(BeatSpec, "command", lambda self, suffix, level: sleep)
    monkeypatch.setattr(Deployment, "ensure_redis", lambda self: None)
    monkeypatch.setattr(Deployment, "wait_ready", lambda self, timeout_s: None)
    settings = suite_settings(data_dir=str(tmp_path), crawl_beat=True)
    dep = Deployment(settings, [*default_layout(settings), BeatSpec("beat", "beat", 1)])
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    dep.start()
    try:
        assert len(dep.procs) == len(dep.layout) >= 6
        for proc, spec in zip(dep.procs, dep.layout, strict=True):
            assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, ours + settings.worker_nice), spec.queue
    finally:
        dep.stop(timeout_s=5)


def test_compose_workers_weigh_less_than_the_api() -> None:
    yaml = pytest.importorskip("yaml", reason="pyyaml is a dev dependency: pip install -e '.[dev]'")
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    api = int(services["api"].get("cpu_shares", 1024))
    workers = {n: s for n, s in services.items() if n.startswith("worker-") or n == "beat"}
    assert {"worker-fetch", "worker-clean", "worker-enrich", "worker-index", "beat"} <= set(workers)
    for name, svc in workers.items():
        assert int(svc.get("cpu_shares", 1024)) * 4 <= api, f"{name} weighs as much as the API"


def test_newsflow_worker_lowers_its_own_priority_before_starting_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    """What compose and systemd units run: `newsflow worker STAGE` execs Celery at worker_nice."""
    from click.testing import CliRunner

    from workers import runtime
    from workers.cli import services

    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(runtime, "lower_priority", lambda nice: calls.append(("nice", nice)))
    monkeypatch.setattr(services, "require_current_ids", lambda settings: None)
    monkeypatch.setattr(services.os, "execve", lambda path, argv, env: calls.append(("exec", argv[:3])))
    result = CliRunner().invoke(services.worker, ["fetch"])
    assert result.exit_code == 0, result.output
    assert [kind for kind, _ in calls] == ["nice", "exec"]  # lowered first, then Celery inherits it
    assert calls[0][1] == Settings().worker_nice


# A stand-in for `newsflow up`: spawns one worker as Deployment.start does, prints its pid, waits.
SUPERVISOR = """
import os, sys, time
sys.path.insert(0, {root!r})
from tests.test_worker_priority import spawn
from tests.conftest import suite_settings
proc = spawn(suite_settings())
print(proc.pid, flush=True)
time.sleep(60)
"""


def test_workers_end_when_their_supervisor_is_killed() -> None:
    """`up` SIGKILLed (the OOM killer, `kill -9`): its workers get SIGTERM from the kernel and end,
    instead of running on unsupervised beside the next `up`'s set (two index writers)."""
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR.format(root=str(ROOT))], stdout=subprocess.PIPE, cwd=str(ROOT)
    )
    assert supervisor.stdout is not None
    worker = int(supervisor.stdout.readline())
    try:
        assert Path(f"/proc/{worker}").exists()
        supervisor.kill()
        supervisor.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(worker), "the worker outlived its supervisor"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
