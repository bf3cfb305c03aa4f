"""Redis that fails over (issue #18, part 2): one master, one replica, three sentinels, and the
whole pipeline on `sentinel://` URLs.

The unit tests check the URL handling; the slow one SIGKILLs the master (by its recorded pid) in
the middle of a 300-article batch. The sentinels promote the replica, the old master comes back as
a replica, and workers, beat, the CLI and the API must carry on with the new master (a worker that
exits instead is restarted by the rig's supervisor, and counted). Replication is asynchronous, so
the last writes before the kill can vanish: every article must still end indexed or dead-lettered
with a reason (the reconciler resumes those whose message or ledger step was lost).

Every process listens on a free loopback port, never 6379 or 26379: a sentinel that found the
machine's own Redis could make it a replica and wipe it.

Run alone:  .venv/bin/pytest -m slow -s tests/test_sentinel.py
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import load_settings, redact_url
from newsflow import sentinel
from tests.conftest import BENCH_DIR, ROOT, SEED_HTML, fixtures_available, need
from tests.hostile.origin import FaultyOrigin
from tests.hostile.rig import RedisProc, Rig, log_events, temp_root
from tests.test_faults import fault_env
from workers.runtime import BeatSpec, free_port

MASTER = "mymaster"
FORBIDDEN_PORTS = {6379, 26379}
SENTINEL_BATCH = int(os.environ.get("NEWSFLOW_SENTINEL_BATCH", "300"))
VISIBILITY_TIMEOUT_S = 10
CONTENT_REASONS = {"noindex", "no_article", "not_html", "too_large", "duplicate"}


# --- URL handling (fast) ---------------------------------------------------------------------------
def test_parse_sentinel_url() -> None:
    url = "sentinel://:s3cret@10.0.0.1:26400/2;sentinel://10.0.0.2;sentinel://10.0.0.3:26402"
    parsed = sentinel.parse(url)
    assert parsed.sentinels == (("10.0.0.1", 26400), ("10.0.0.2", 26379), ("10.0.0.3", 26402))
    assert parsed.db == 2 and parsed.password == "s3cret" and parsed.username is None
    assert "s3cret" not in redact_url(url)
    assert redact_url(url).count(";") == 2
    with pytest.raises(ValueError):
        sentinel.parse("redis://127.0.0.1:6379/0")


def test_celery_config_uses_the_sentinel_transport() -> None:
    from tasks.celeryconfig import celery_config
    from workers.cli.common import redact_url

    url = "sentinel://:pw@127.0.0.1:26401;sentinel://127.0.0.1:26402"
    settings = load_settings({"NEWSFLOW_REDIS_URL": url, "NEWSFLOW_REDIS_SENTINEL_PASSWORD": "spw"})
    conf = celery_config(settings)
    assert conf["broker_transport"] == "tasks.transport:SentinelTransport"
    options = conf["broker_transport_options"]
    assert options["master_name"] == MASTER
    assert options["sentinel_kwargs"]["password"] == "spw"
    assert options["visibility_timeout"] == settings.visibility_timeout_s
    plain = celery_config(load_settings({"NEWSFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}))
    assert plain["broker_transport"] == "tasks.transport:Transport"
    assert "master_name" not in plain["broker_transport_options"]
    assert "pw" not in redact_url(url).replace("pw@", "")  # both parts redacted
    assert redact_url(url) == "sentinel://:***@127.0.0.1:26401;sentinel://127.0.0.1:26402"


def test_ack_on_a_channel_whose_connection_closed_does_not_end_the_worker() -> None:
    """After a failover (or a Redis restart) kombu closes the channel and clears its connection; a
    task ending later acks through that channel. kombu 5.7 then raised AttributeError building a
    pool from nothing, and Celery ended the worker. Now the message is left to the visibility
    timeout (it is still in the unacked set) and the worker goes on (tasks/transport.py QoS)."""
    from types import SimpleNamespace

    from tasks.transport import QoS

    for connection in (None, SimpleNamespace(client=None)):
        qos = QoS(SimpleNamespace(_pool=None, connection=connection, do_restore=False))
        for tag in ("a", "b", "c"):
            qos._delivered[tag] = SimpleNamespace()
        assert qos.connection_gone()
        qos.ack("a")
        qos.reject("b", requeue=True)
        qos.restore_unacked()
        assert not qos._delivered


@pytest.mark.integration
def test_unreachable_sentinels_fail_cleanly_without_secrets() -> None:
    """No sentinel answers: the CLI exits 3 (Redis unreachable) and prints neither password."""
    from tests.conftest import run_cli

    port = loopback_port(set())
    env = {
        "NEWSFLOW_REDIS_URL": f"sentinel://:masterpw123@127.0.0.1:{port};sentinel://127.0.0.1:{port}",
        "NEWSFLOW_STATE_REDIS_URL": "",
        "NEWSFLOW_REDIS_SENTINEL_PASSWORD": "sentinelpw456",
    }
    done = run_cli("status", env=env, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == 3, out[-2000:]
    assert "masterpw123" not in out and "sentinelpw456" not in out, out[-2000:]
    assert "sentinel://:***@127.0.0.1" in out, out[-2000:]


# --- a master, a replica, three sentinels ---------------------------------------------------------
def loopback_port(taken: set[int]) -> int:
    while True:
        port = free_port()
        if port not in FORBIDDEN_PORTS and port not in taken:
            taken.add(port)
            return port


class ReplicaProc(RedisProc):
    def __init__(self, data_dir: Path, port: int, master_port: int) -> None:
        super().__init__(data_dir, port)
        self.master_port = master_port

    def command(self) -> list[str]:
        return [*super().command(), "--replicaof", "127.0.0.1", str(self.master_port)]


class SentinelProc(RedisProc):
    """`redis-server sentinel.conf --sentinel`, watching the test's own master only."""

    def __init__(self, data_dir: Path, port: int, master_port: int) -> None:
        super().__init__(data_dir, port)
        self.master_port = master_port

    def command(self) -> list[str]:
        assert self.port not in FORBIDDEN_PORTS and self.master_port not in FORBIDDEN_PORTS
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "sentinel.conf"
        if not conf.exists():  # sentinel rewrites its file with what it learns: keep it across restarts
            conf.write_text(
                f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.data_dir}\n"
                f"logfile {self.data_dir / 'sentinel.log'}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 6000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
        from workers.runtime import find_redis_server

        return [find_redis_server(), str(conf), "--sentinel"]


class SentinelGroup:
    """Stands in for the rig's RedisProc: `url` is the sentinel URL, `start`/`stop` run all five."""

    def __init__(self, root: Path) -> None:
        taken: set[int] = set()
        self.master = RedisProc(root / "master", loopback_port(taken))
        self.replica = ReplicaProc(root / "replica", loopback_port(taken), self.master.port)
        self.sentinels = [SentinelProc(root / f"sentinel{i}", loopback_port(taken), self.master.port) for i in range(3)]
        self.servers = {self.master.port: self.master, self.replica.port: self.replica}

    @property
    def url(self) -> str:
        # The db (and a password) go with the first part, as kombu and newsflow/sentinel.py read them.
        return ";".join(
            f"sentinel://127.0.0.1:{s.port}" + ("/0" if i == 0 else "") for i, s in enumerate(self.sentinels)
        )

    def sentinel_client(self, i: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinels[i].port, socket_timeout=2, decode_responses=True)

    def master_port(self) -> int | None:
        """The master's port as a majority of the sentinels name it now."""
        votes: Counter[int] = Counter()
        for i in range(len(self.sentinels)):
            with contextlib.suppress(redis.RedisError):
                addr = self.sentinel_client(i).sentinel_get_master_addr_by_name(MASTER)
                if addr:
                    votes[int(addr[1])] += 1
        port, n = votes.most_common(1)[0] if votes else (None, 0)
        return port if n >= 2 else None

    def role(self, port: int) -> str:
        try:
            return str(redis.Redis(port=port, socket_timeout=2).info("replication")["role"])
        except redis.RedisError:
            return "down"

    def start(self, timeout_s: float = 30.0) -> None:
        if self.master.proc is not None:
            return  # started already (the test starts it before the rig, to skip if it cannot)
        self.master.start()
        self.replica.start()
        for s in self.sentinels:
            s.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                info = redis.Redis(port=self.master.port).info("replication")
                masters = [self.sentinel_client(i).sentinel_master(MASTER) for i in range(3)]
                if info.get("connected_slaves", 0) >= 1 and all(
                    int(m["num-other-sentinels"]) >= 2 and int(m["num-slaves"]) >= 1 for m in masters
                ):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the sentinels did not see the master, the replica and each other in time")

    def logs(self, lines: int = 25) -> str:
        out = []
        for proc in [self.sentinels[0], self.replica]:
            for log in proc.data_dir.glob("*.log"):
                out += [f"--- {log}", *log.read_text(errors="replace").splitlines()[-lines:]]
        return "\n".join(out)

    def stop(self) -> None:
        for proc in [*self.sentinels, self.replica, self.master]:
            proc.stop()


# --- the failover scenario -------------------------------------------------------------------------
def sentinel_env(origin_port: int) -> dict[str, str]:
    """The fault suite's settings, with beat sweeping for lost messages every 5 s."""
    return {
        **fault_env(origin_port),
        "NEWSFLOW_RECONCILE_INTERVAL_S": "5",
        "NEWSFLOW_REDIS_SENTINEL_MASTER": MASTER,
    }


class SupervisedRig(Rig):
    """The fault rig, counting the workers its supervisor had to restart."""

    restarts: list[str]
    supervised: list[Any]  # more deployments to keep running (beat)

    def replace_exited(self) -> list[str]:
        replaced = super().replace_exited()
        for dep in getattr(self, "supervised", []):
            replaced += dep.restart_exited()
        self.restarts = getattr(self, "restarts", []) + replaced
        return replaced


def _ledger_states(rig: Rig, ids: list[str]) -> dict[str, str]:
    return {aid: (e.state if e else "missing") for aid, e in zip(ids, rig.state.ledgers(ids), strict=True)}


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return dict(json.loads(resp.read()))


@pytest.fixture
def origin() -> Iterator[FaultyOrigin]:
    need(fixtures_available(), "benchmark fixtures missing")
    with FaultyOrigin(BENCH_DIR / "html", SEED_HTML) as server:
        yield server


@pytest.mark.slow
@pytest.mark.integration
def test_master_sigkilled_sentinels_fail_over(origin: FaultyOrigin) -> None:
    with temp_root("sentinel") as root:
        group = SentinelGroup(root)
        try:
            group.start()
        except Exception as exc:
            group.stop()
            need(False, f"cannot start a master, a replica and three sentinels: {exc}")
        env = sentinel_env(origin.port)
        with SupervisedRig(root, env, redis_proc=group) as rig:  # type: ignore[arg-type]
            _failover_scenario(rig, group, origin, root)


def _failover_scenario(rig: SupervisedRig, group: SentinelGroup, origin: FaultyOrigin, root: Path) -> None:
    rig.restarts = []
    cli_env = {
        **rig.env,
        "NEWSFLOW_REDIS_URL": group.url,
        "NEWSFLOW_STATE_REDIS_URL": "",
        "NEWSFLOW_DATA_DIR": str(root / "data"),
    }
    # beat (its reconcile tick lands on the crawl queue every 5 s) and the API, on the same URL.
    beat = rig._deploy([BeatSpec("beat", "beat", 1, ("-s", str(root / "celerybeat-schedule")))])
    rig.extra_deployments.append(beat)
    rig.supervised = [beat]
    api_port = free_port()
    api_log = (root / "api.log").open("ab")
    api = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "serve", "--host", "127.0.0.1", "--port", str(api_port)],
        cwd=ROOT, env={**os.environ, **cli_env}, stdout=api_log, stderr=api_log, start_new_session=True,
    )  # fmt: skip
    try:
        _run_failover(rig, group, origin, cli_env, beat, api, api_port)
    finally:
        if api.poll() is None:
            api.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                api.wait(10)
        if api.poll() is None:
            api.kill()
        api_log.close()


def _run_failover(
    rig: SupervisedRig,
    group: SentinelGroup,
    origin: FaultyOrigin,
    cli_env: dict[str, str],
    beat: Any,
    api: subprocess.Popen[bytes],
    api_port: int,
) -> None:
    from tests.conftest import run_cli

    label = "sentinel-failover"
    urls = origin.urls(label, SENTINEL_BATCH)
    since = time.time() - 1
    ids = [s.article_id for s in rig.submit(urls)]
    old_port = group.master.port
    assert group.master_port() == old_port
    # Mid-run: a third of the batch done.
    deadline = time.monotonic() + 120
    while sum(1 for s in _ledger_states(rig, ids).values() if s in ("indexed", "dead")) < 0.3 * len(ids):
        assert time.monotonic() < deadline, "a third of the batch not done within 120 s"
        time.sleep(0.2)
    before = _ledger_states(rig, ids)
    replica_info = redis.Redis(port=group.replica.port).info("replication")  # first: a lower bound of the lag
    master_info = redis.Redis(port=old_port).info("replication")
    lag_bytes = int(master_info["master_repl_offset"]) - int(replica_info.get("slave_repl_offset", 0))
    crawl_before = redis.Redis(port=old_port).llen("crawl")
    pid = group.master.proc.pid if group.master.proc else None
    assert pid is not None
    killed_wall, killed_at = time.time(), time.monotonic()
    os.kill(pid, signal.SIGKILL)  # the master, by its recorded pid
    group.master.proc.wait(10)  # type: ignore[union-attr]
    done_before = sum(1 for s in before.values() if s in ("indexed", "dead"))
    print(f"\n{label}: SIGKILLed master pid {pid} (port {old_port}) with {done_before} articles done; "
          f"replica lag at the kill {lag_bytes} bytes")  # fmt: skip

    # The sentinels promote the replica.
    promoted_at = None
    while time.monotonic() - killed_at < 60:
        rig.replace_exited()
        port = group.master_port()
        if port == group.replica.port and group.role(port) == "master":
            promoted_at = time.monotonic()
            break
        time.sleep(0.2)
    assert promoted_at is not None, f"the sentinels did not promote the replica within 60 s:\n{group.logs()}"
    after = _ledger_states(rig, ids)
    order = ["missing", "discovered", "fetched", "cleaned", "enriched", "indexed"]
    lost_steps = [
        aid for aid in ids
        if before[aid] != after[aid] and before[aid] in order and after[aid] in order
        and order.index(after[aid]) < order.index(before[aid])
    ]  # fmt: skip
    print(f"{label}: replica promoted {promoted_at - killed_at:.1f} s after the kill; ledger steps lost "
          f"with the master's last writes: {len(lost_steps)}")  # fmt: skip

    # The old master returns (its append-only file) and the sentinels make it a replica.
    group.master.start()
    rejoined = None
    while time.monotonic() - promoted_at < 60:
        rig.replace_exited()
        if group.role(old_port) == "slave":
            rejoined = time.monotonic()
            break
        time.sleep(0.5)
    assert rejoined is not None, f"the old master did not come back as a replica: role {group.role(old_port)}"
    print(f"{label}: old master back as a replica {rejoined - killed_at:.1f} s after the kill")
    broker = redis.Redis(port=group.replica.port)
    print(
        f"{label}: new master now: unacked={broker.hlen('unacked')} unacked_index={broker.zcard('unacked_index')} "
        f"unacked_mutex ttl={broker.ttl('unacked_mutex')} queues="
        + ", ".join(f"{q}={broker.llen(q)}" for q in ("fetch", "clean", "enrich", "index"))
        + f" ledger={dict(Counter(_ledger_states(rig, ids).values()))}"
    )

    # The CLI and the API work with the new master.
    status = run_cli("status", "--json", env=cli_env, timeout=60)
    assert status.returncode == 0, status.stderr[-2000:]
    st = json.loads(status.stdout.strip().splitlines()[-1])
    online = {w for q in st.get("queues", []) for w in q.get("workers", [])}
    print(f"{label}: `newsflow status` after the failover: {len(online)} workers online")
    assert online, st

    done = rig.wait(ids, 300, since, stall_s=6 * VISIBILITY_TIMEOUT_S)
    entries = rig.state.ledgers(ids)
    after_fault = [e.updated_at for e in entries if e and e.state == "indexed" and e.updated_at > killed_wall]
    first_after = min(after_fault) - killed_wall if after_fault else float("nan")
    health = _get_json(f"http://127.0.0.1:{api_port}/health")
    assert api.poll() is None, "the API exited"
    assert health["status"] == "ok", health
    beat_restarts = [r for r in rig.restarts if r.startswith("beat")]
    crawl_after = rig.state._r.llen("crawl")  # the broker and state share the one master here

    counts = rig.account(ids)
    batch = set(ids)
    resumed = Counter(r.article_id for r in rig.resumed if r.article_id in batch)
    print(counts.line(label))
    print(
        f"{label}: submitted={counts.submitted} indexed={counts.indexed} dead={counts.dead} "
        f"({dict(counts.dead_reasons)}) duplicates={counts.in_index - counts.distinct_in_index} "
        f"resumed_by_reconciler={sum(resumed.values())} (articles {len(resumed)}) "
        f"lost_ledger_steps={len(lost_steps)} replica_lag_bytes={lag_bytes} "
        f"promotion_s={promoted_at - killed_at:.1f} first_indexed_after_fault_s={first_after:.1f} "
        f"workers_restarted_by_supervisor={rig.restarts or 'none'} beat_restarted={beat_restarts or 'none'} "
        f"beat_ticks_queued_before/after={crawl_before}/{crawl_after} api_docs={health.get('docs')}"
    )
    events = [e for e in log_events(rig.log_path) if e.get("article_id") in batch]
    not_ok = Counter(
        f"{e.get('stage')}:{e.get('outcome')}:{e.get('reason')}"
        for e in events
        if e.get("event") == "stage_done" and e.get("outcome") not in ("ok", "done", None)
    )
    print(f"{label}: stage runs that did not simply succeed: {dict(not_ok)}")
    crashes = Counter(
        line.strip()[:160]
        for line in rig.log_path.read_text(errors="replace").splitlines()
        if not line.startswith("{") and ("Error:" in line or "Unrecoverable" in line)
    )
    crashes.update(
        f"{e.get('logger')}: {str(e.get('event'))[:140]}"
        for e in log_events(rig.log_path)
        if e.get("level") in ("error", "critical") and "article_id" not in e
    )
    print(f"{label}: worker log errors, most common: {crashes.most_common(4)}")
    for e in log_events(rig.log_path):
        if "Unrecoverable" in str(e.get("event")):
            print(f"{label}: a worker's exit: {json.dumps(e)[-2500:]}")
            break
    for aid in list(resumed)[:3]:
        story = [
            f"{e.get('event')}:{e.get('stage', '')}:{e.get('outcome', '')}:{e.get('reason', '')}"
            for e in events
            if e.get("article_id") == aid
        ]
        print(f"{label}: resumed article {aid}: {story}")
    for line in rig.diagnose_pending(ids):
        print(f"{label}: {line}")
    assert len(done) == len(ids), f"{len(ids) - len(done)} articles never reached indexed or dead"
    rig.check_invariants(ids, label)
    assert set(counts.dead_reasons) <= CONTENT_REASONS, counts.line(label)
    assert first_after == first_after, "no article was indexed after the failover"
    assert crawl_after > crawl_before, "beat sent nothing after the failover"
    for queue in ("fetch", "clean", "enrich", "index"):
        assert rig.worker_proc(queue).poll() is None
