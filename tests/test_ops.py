"""Operating newsflow: status, trace, dead-letter replay, metrics, per-stage worker commands.

Everything runs against real Redis and real workers, through the real CLI.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BENCH_DIR, ROOT, TEST_ENV, run_cli
from workers.runtime import free_port

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`newsflow ARGS` with the test environment, plus `env` on top (run_cli cannot override it)."""
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        cwd=ROOT,
        env={**os.environ, **TEST_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli_json(*args: str, env: dict[str, str] | None = None) -> Any:
    proc = cli(*args, "--json", env=env)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return json.loads(proc.stdout)


def bench_ids(ground_truth: dict[str, Any], sl: slice) -> list[str]:
    # The end of the sorted list: the e2e tests use its start, and count search hits there.
    return sorted(ground_truth)[sl]


def ingest(*urls: str, timeout: float = 180) -> list[dict[str, Any]]:
    proc = run_cli("ingest", *urls, "--wait", "--json", "--timeout", str(timeout), timeout=timeout + 60)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return list(json.loads(proc.stdout))


def isolated_db(redis_url: str, db: int) -> dict[str, str]:
    """Env for a Redis database no worker of this session consumes from."""
    return {"NEWSFLOW_REDIS_URL": re.sub(r"/\d+$", f"/{db}", redis_url)}


# --- status with a backlog and no workers ----------------------------------------------------------
def test_status_shows_depth_age_and_missing_workers(redis_url: str) -> None:
    from config.settings import load_settings
    from newsflow import queues
    from newsflow.dispatch import send_first
    from newsflow.pipeline import Message
    from newsflow.state import connect
    from newsflow.stores import Stores
    from newsflow.urls import article_id
    from workers import client
    from workers.cli.ops import control_app

    env = isolated_db(redis_url, 7)
    settings = load_settings({**os.environ, **env})
    connect(settings.redis_url).flushdb()
    app = control_app(settings)
    urls = [f"http://127.0.0.1:9/backlog/{i}.html" for i in range(3)]
    client.submit(app, Stores.from_settings(settings), urls)
    # A crawl's new message is stamped on the way in too.
    crawled = "http://127.0.0.1:9/backlog/crawled.html"
    send_first(app, [Message.new(crawled, article_id(crawled), source="s")])
    newest = queues.payload_of(json.loads(connect(settings.redis_url).lindex("fetch", 0)))
    assert newest is not None and newest["url"] == crawled
    assert abs(newest["enqueued_at"] - time.time()) < 5 and newest["submitted_at"] == newest["enqueued_at"]
    time.sleep(1.2)
    st = cli_json("status", env=env)
    fetch = next(q for q in st["queues"] if q["queue"] == "fetch")
    assert fetch["depth"] == 4
    assert fetch["oldest_age_s"] is not None and 1.0 <= fetch["oldest_age_s"] < 60
    assert fetch["workers"] == []
    assert st["articles"]["last_hour"]["discovered"] == 3
    human = cli("status", env=env)
    assert human.returncode == 0, human.stderr
    assert re.search(r"^fetch\s+4\s+\d+\.\ds\s+0\s+0\s+0 NONE ONLINE", human.stdout, re.M), human.stdout
    aid = article_id(urls[0])
    tr = cli("trace", urls[0], env=env)
    assert tr.returncode == 0
    assert f"article {aid}" in tr.stdout and "now: discovered at submit" in tr.stdout
    assert "queue fetch holds 4" in tr.stdout


def test_status_shows_hosts_on_hold(redis_url: str) -> None:
    """A host that answered 429 with Retry-After holds every fetch for it: status says which and how long."""
    from config.settings import load_settings
    from newsflow.state import connect
    from newsflow.stores import Stores

    env = isolated_db(redis_url, 7)
    settings = load_settings({**os.environ, **env})
    connect(settings.redis_url).flushdb()
    assert cli_json("status", env=env)["host_holds"] == []
    Stores.from_settings(settings).limiter.hold("slow.example:8080", 120, "http_429")
    holds = cli_json("status", env=env)["host_holds"]
    assert [(h["host"], h["reason"]) for h in holds] == [("slow.example:8080", "http_429")]
    assert 100 < holds[0]["remaining_s"] <= 120
    human = cli("status", env=env)
    assert "HOSTS ON HOLD: 1" in human.stdout, human.stdout
    assert re.search(r"slow\.example:8080\s+\d+\.\d[sm] left\s+http_429", human.stdout), human.stdout


def test_status_warns_when_redis_could_lose_articles(tmp_path: Path) -> None:
    """A Redis without the append-only file loses every queued article on a restart, one that evicts
    keys when full loses them silently: status says so."""
    from newsflow import queues
    from newsflow.state import connect
    from tests.conftest import start_private_redis
    from workers.runtime import free_port

    server = start_private_redis(free_port(), tmp_path / "redis")  # appendonly yes, as `newsflow up` runs it
    try:
        r = connect(server.url)
        env = {"NEWSFLOW_REDIS_URL": server.url, "NEWSFLOW_STATE_REDIS_URL": ""}
        assert queues.durability_warnings(r) == []
        assert cli_json("status", env=env)["durability"] == []
        r.config_set("appendonly", "no")
        r.config_set("save", "")
        (warning,) = queues.durability_warnings(r)
        assert "keeps nothing on disk" in warning
        human = cli("status", env=env)
        assert human.returncode == 0 and "WARNING: the broker Redis" in human.stdout, human.stdout
        assert "appendonly yes" in human.stdout
        r.config_set("save", "3600 1")
        assert "only takes snapshots" in queues.durability_warnings(r)[0]
        r.config_set("appendonly", "yes")
        r.config_set("maxmemory-policy", "allkeys-lru")
        assert queues.durability_warnings(r) == []  # no maxmemory: nothing is ever evicted
        r.config_set("maxmemory", "1gb")
        (warning,) = queues.durability_warnings(r)
        assert "evicts keys when full (maxmemory-policy allkeys-lru)" in warning and "noeviction" in warning
        assert "evicts keys" in cli_json("status", env=env)["durability"][0]["warning"]
    finally:
        server.stop()


# --- a real run: status, trace, sources, dead letters, replay, metrics -----------------------------
@pytest.fixture(scope="module")
def ran(deployment: Any, origin: Any, site_root: Path, ground_truth: dict[str, Any]) -> dict[str, Any]:
    """Three good pages, a 404 and an empty page through the session's deployment."""
    good = [f"{origin.base_url}/bench/{i}.html" for i in bench_ids(ground_truth, slice(-6, -3))]
    flaky_good = BENCH_DIR / "html" / f"{bench_ids(ground_truth, slice(-7, -6))[0]}.html.gz"
    (site_root / "ops-flaky.html").write_text("<html><body><nav>Home</nav><p>Soon.</p></body></html>")
    (site_root / "ops-empty.html").write_text("<html><body><nav>Nothing here</nav></body></html>")
    missing, flaky, empty = (f"{origin.base_url}/{n}" for n in ("ops-404.html", "ops-flaky.html", "ops-empty.html"))
    rows = ingest(*good, missing, flaky, empty)
    return {"good": good, "missing": missing, "flaky": flaky, "empty": empty, "rows": rows,
            "flaky_html": gzip.decompress(flaky_good.read_bytes()), "site_root": site_root}  # fmt: skip


def test_run_ends_indexed_or_dead_with_reasons(ran: dict[str, Any]) -> None:
    by_url = {r["url"]: r for r in ran["rows"]}
    assert all(by_url[u]["state"] == "indexed" for u in ran["good"])
    assert (by_url[ran["missing"]]["stage"], by_url[ran["missing"]]["reason"]) == ("fetch", "http_404")
    assert (by_url[ran["empty"]]["stage"], by_url[ran["empty"]]["reason"]) == ("clean", "no_article")


def test_status_after_a_run(ran: dict[str, Any]) -> None:
    st = cli_json("status")
    queues = {q["queue"]: q for q in st["queues"]}
    for name in ("fetch", "clean", "enrich", "index"):
        assert queues[name]["workers"], f"no worker online for {name}: {queues[name]}"
        assert queues[name]["depth"] == 0
    assert st["articles"]["last_hour"]["indexed"] >= 3
    assert st["articles"]["last_day"]["dead"] >= 3
    assert st["throughput_per_min"]["indexed"] > 0
    pairs = {(d["stage"], d["reason"]) for d in st["dead_letters"]["by_stage_reason"]}
    assert {("fetch", "http_404"), ("clean", "no_article")} <= pairs
    assert st["stage_runs"]["index"]["ok"] >= 3
    clean = st["stage_costs"]["clean"]
    assert clean["cpu_ms_per_task"] > 0 and clean["ms_per_task"] >= clean["cpu_ms_per_task"]
    human = cli("status")
    assert human.returncode == 0 and "DEAD LETTERS on file" in human.stdout and "CPU ms/task" in human.stdout


def test_trace_shows_the_path_through_every_stage(ran: dict[str, Any]) -> None:
    tr = cli_json("trace", ran["good"][0] + "?utm_source=x")  # any spelling of the URL finds it
    states = [e["state"] for e in tr["events"]]
    assert states[-5:] == ["discovered", "fetched", "cleaned", "enriched", "indexed"]
    stages = [e["stage"] for e in tr["events"]][-4:]
    assert stages == ["fetch", "clean", "enrich", "index"]
    # Each event names the worker that did it: a node of a layout worker consuming that stage's queue.
    from config.settings import get_settings
    from workers.runtime import default_layout

    names = {
        s: {spec.name or spec.queue for spec in default_layout(get_settings()) if s in spec.queues} for s in stages
    }
    assert all(e["worker"].split("-")[0] in names[s] for e, s in zip(tr["events"][-4:-1], stages, strict=False))
    text = cli("trace", tr["article_id"]).stdout
    assert "now: indexed at index" in text and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\s+fetched", text)
    dead = cli("trace", ran["missing"])
    assert dead.returncode == 0
    assert "dead letter: stage fetch, reason http_404" in dead.stdout
    assert "deadletters replay --id" in dead.stdout
    never = cli("trace", "http://127.0.0.1:9/never-seen.html")
    assert never.returncode == 1 and "never seen" in never.stdout


def test_deadletters_list_filters(ran: dict[str, Any]) -> None:
    only_404 = cli_json("deadletters", "list", "--reason", "http_404")
    assert only_404 and {r["reason"] for r in only_404} == {"http_404"}
    assert ran["missing"] in {r["url"] for r in only_404}
    clean = cli_json("deadletters", "list", "--stage", "clean")
    assert {r["stage"] for r in clean} == {"clean"}
    assert {ran["flaky"], ran["empty"]} <= {r["url"] for r in clean}
    assert clean[0]["payload"]["blob"], "a clean dead letter keeps the clean stage's payload"
    assert cli("deadletters", "replay").returncode == 2  # refuses to guess what to replay


def test_replay_at_failed_stage_and_fallback_to_fetch(ran: dict[str, Any]) -> None:
    from config.settings import get_settings
    from newsflow.state import State
    from newsflow.urls import article_id

    state = State.from_settings(get_settings())
    empty_id, flaky_id = article_id(ran["empty"]), article_id(ran["flaky"])
    # The empty page's raw HTML is still stored: it re-enters at clean (and dies there again).
    rows = cli_json("deadletters", "replay", "--id", empty_id)
    assert rows == [dict(rows[0], replay_stage="clean", dead_stage="clean", reason="no_article")]
    # The flaky page now serves an article, and its stored HTML has expired: replay re-fetches it.
    (ran["site_root"] / "ops-flaky.html").write_bytes(ran["flaky_html"])
    record = state.dead_letter_record(flaky_id)
    assert record is not None
    state.delete_blob(record["payload"]["blob"])
    rows = cli_json("deadletters", "replay", "--id", flaky_id)
    assert rows[0]["replay_stage"] == "fetch" and "gone" in rows[0]["note"]
    assert state.dead_letter_record(flaky_id) is None  # cleared on replay
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        flaky, empty = state.ledger(flaky_id), state.ledger(empty_id)
        if flaky and flaky.state == "indexed" and empty and empty.state == "dead":
            break
        time.sleep(0.2)
    assert flaky is not None and flaky.state == "indexed"
    assert empty is not None and empty.state == "dead" and empty.stage == "clean"
    trace = [(e["state"], e["stage"]) for e in state.trace(flaky_id)]
    assert trace[-5:] == [("discovered", "replay"), ("fetched", "fetch"), ("cleaned", "clean"),
                          ("enriched", "enrich"), ("indexed", "index")]  # fmt: skip
    assert state.dead_letter_record(empty_id) is not None  # died again, on file again
    counts = {(d["stage"], d["reason"]): d["count"] for d in state.dead_letter_counts()}
    assert counts.get(("clean", "no_article"), 0) >= 1


def test_per_source_counts(deployment: Any, origin: Any, ground_truth: dict[str, Any]) -> None:
    from config.settings import get_settings
    from newsflow.dispatch import send_first
    from newsflow.pipeline import Message
    from newsflow.state import State
    from newsflow.urls import article_id
    from workers import client
    from workers.app import app

    state = State.from_settings(get_settings())
    url = f"{origin.base_url}/bench/{bench_ids(ground_truth, slice(-8, -7))[0]}.html"
    bad = f"{origin.base_url}/ops-source-404.html"
    started = time.time()
    for u in (url, bad):
        aid = article_id(u)
        msg = Message.new(u, aid, source="ops-test-source")
        state.record(aid, u, "discovered", "crawl", origin=msg.origin_json())
        send_first(app, [msg])
    subs = [client.Submitted(u, article_id(u), started) for u in (url, bad)]
    outcomes = client.wait(state, subs, 60)
    assert [o.state for o in outcomes] == ["indexed", "dead"]
    want = {"discovered": 2, "indexed": 1, "skipped": 0, "dead": 1}
    deadline = time.monotonic() + 10  # workers write their counters about once a second
    while (got := cli_json("status")["sources"].get("ops-test-source")) != want and time.monotonic() < deadline:
        time.sleep(0.3)
    assert got == want


def test_metrics_endpoint(ran: dict[str, Any]) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "metrics", "--port", str(port)],
        cwd=ROOT, env={**os.environ, **TEST_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip

    def value(pattern: str) -> float:
        m = re.search("^" + pattern + r" ([0-9.e+]+)$", body, re.M)
        assert m, pattern
        return float(m.group(1))

    def settled() -> bool:
        """Workers write their counters about once a second (metrics_flush_s): allow for that."""
        try:
            return value(r'newsflow_stage_processed_total\{outcome="ok",stage="index"\}') >= 3
        except AssertionError:
            return False

    try:
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    body = resp.read().decode()
                if settled():
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert body, proc.stderr.read().decode() if proc.poll() is not None else "no answer"
    finally:
        proc.terminate()
        proc.wait(10)

    assert value(r'newsflow_stage_processed_total\{outcome="ok",stage="index"\}') >= 3
    assert value(r'newsflow_stage_failed_total\{reason="http_404",stage="fetch"\}') >= 1
    assert value(r"newsflow_publish_to_indexed_seconds_count") >= 3
    assert value(r'newsflow_stage_duration_seconds_count\{stage="clean"\}') >= 3
    assert value(r'newsflow_stage_cpu_seconds_total\{stage="clean"\}') > 0  # extraction takes CPU
    for q in ("fetch", "clean", "enrich", "index"):
        assert value(rf'newsflow_queue_depth\{{queue="{q}"\}}') == 0
        value(rf'newsflow_queue_oldest_age_seconds\{{queue="{q}"\}}')
    assert value("newsflow_redis_up") == 1


# --- per-stage worker commands ------------------------------------------------------------------------
def test_worker_commands_follow_the_layout() -> None:
    from config.settings import get_settings
    from workers.runtime import default_layout

    for spec in default_layout(get_settings()):
        proc = run_cli("worker", spec.name or spec.queue, "--print", "--node", "t")
        assert proc.returncode == 0, proc.stderr
        argv = shlex.split(proc.stdout)
        first = dataclasses.replace(spec, instance=0)  # `newsflow worker` runs one process; its node has no number
        assert argv == first.command("t", get_settings().log_level)
        assert argv[argv.index("-P") + 1] == spec.pool and argv[argv.index("-Q") + 1] == spec.queue
    bad = run_cli("worker", "nonsense", "--print")
    assert bad.returncode == 2 and "choose one of" in bad.stderr
