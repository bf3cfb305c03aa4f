"""Every hostile case through a real deployment, next to good pages (issue #8).

Private addresses are not allowed: only the hostile origin's and the good origin's host:port are
allow-listed, and the IDN name is pinned to 127.0.0.1 with fetch_resolve. Each hostile URL must end
as its case says (indexed, or dead-lettered with that reason and a `stage_done` log event saying
so), every good page must be indexed, and every worker must still be running at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import BENCH_DIR, SEED_HTML, fixtures_available, need
from tests.hostile.cases import CASES, IDN_HOST, REBIND_HOST
from tests.hostile.origin import FaultyOrigin
from tests.hostile.rig import Rig, log_events, temp_root
from tests.hostile.server import HostileServer
from workers import client

pytestmark = pytest.mark.integration

N_GOOD = 24
# Benchmark pages that say noindex are dead-lettered for it, hostile neighbours or not.
GOOD_PAGE_REASONS = {"noindex"}


@pytest.fixture(scope="module")
def outcome() -> Iterator[dict[str, Any]]:
    need(fixtures_available(), "benchmark fixtures missing")
    with HostileServer() as hostile, FaultyOrigin(BENCH_DIR / "html", SEED_HTML) as good, temp_root("hostile") as root:
        hp, gp = hostile.port, good.port
        env = {
            "NEWSFLOW_FETCH_ALLOW_PRIVATE": "0",
            "NEWSFLOW_FETCH_ALLOW_HOSTS": f"127.0.0.1:{hp},127.0.0.1:{gp},{IDN_HOST}:{hp}",
            "NEWSFLOW_FETCH_RESOLVE": f"{IDN_HOST}:{hp}:127.0.0.1,{REBIND_HOST}:{hp}:127.0.0.1",
            "NEWSFLOW_POLITE_HOST_RATES": f"127.0.0.1:{hp}=10000,127.0.0.1:{gp}=10000,127.0.0.1=10000",
            "NEWSFLOW_POLITE_OBEY_ROBOTS": "0",
            "NEWSFLOW_FETCH_TOTAL_TIMEOUT_S": "3",
            "NEWSFLOW_FETCH_READ_TIMEOUT_S": "2",
            "NEWSFLOW_FETCH_CONNECT_TIMEOUT_S": "2",
            "NEWSFLOW_MAX_RETRIES": "1",
            "NEWSFLOW_RETRY_BACKOFF_BASE_S": "0.2",
            "NEWSFLOW_RETRY_BACKOFF_MAX_S": "0.5",
            "NEWSFLOW_WORKER_CONCURRENCY": "2",
            "NEWSFLOW_FETCH_CONCURRENCY": "8",
            "NEWSFLOW_INDEX_BATCH_SIZE": "16",
            "NEWSFLOW_INDEX_BATCH_MAX_WAIT_S": "0.3",
            "NEWSFLOW_CRAWL_BEAT": "0",
        }
        with Rig(root, env) as rig:
            hostile_urls = [c.url(hp) for c in CASES]
            good_urls = good.urls("good", N_GOOD)
            submitted, rejected = client.submit(rig.app, rig.stores, [*hostile_urls, *good_urls])
            ids = {s.url: s.article_id for s in submitted}
            states = rig.wait(set(ids.values()), 180)
            entries = {e.article_id: e for e in rig.state.ledgers(list(set(ids.values()))) if e}
            yield {
                "rig": rig,
                "port": hp,
                "ids": ids,
                "states": states,
                "entries": entries,
                "rejected": {o.url: o for o in rejected},
                "good_urls": good_urls,
                "events": log_events(rig.log_path),
                "alive": {q: rig.worker_proc(q).poll() is None for q in ("fetch", "clean", "enrich", "index")},
            }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case_outcome(case: Any, outcome: dict[str, Any]) -> None:
    url = case.url(outcome["port"])
    if case.submit_rejected:
        rejected = outcome["rejected"][url]
        assert rejected.state == "dead" and rejected.reason.startswith(case.expected_outcome), rejected
        return
    aid = outcome["ids"][url]
    entry = outcome["entries"].get(aid)
    assert entry is not None and entry.state in ("indexed", "dead"), f"{case.name}: {entry}"
    got = "indexed" if entry.state == "indexed" else entry.reason
    assert got == case.expected_outcome, f"{case.name}: {entry}"
    if entry.state == "dead":
        # A clear log event: the stage said why, for this article.
        said = [
            e for e in outcome["events"]
            if e.get("event") == "stage_done" and e.get("article_id") == aid and e.get("reason") == entry.reason
        ]  # fmt: skip
        assert said, f"no stage_done log event with reason {entry.reason} for {case.name}"
        letter = outcome["rig"].state.dead_letter_record(aid)
        assert letter is not None and letter["reason"] == entry.reason


def test_good_pages_are_all_indexed(outcome: dict[str, Any]) -> None:
    rig: Rig = outcome["rig"]
    ids = [outcome["ids"][u] for u in outcome["good_urls"]]
    counts = rig.check_invariants(ids, "good pages beside hostile ones")
    assert set(counts.dead_reasons) <= GOOD_PAGE_REASONS, counts.line("good")
    assert counts.indexed >= N_GOOD - 4


def test_every_article_accounted_for(outcome: dict[str, Any]) -> None:
    rig: Rig = outcome["rig"]
    ids = sorted(set(outcome["ids"].values()))
    rig.check_invariants(ids, "hostile + good")


def test_workers_survived(outcome: dict[str, Any]) -> None:
    assert all(outcome["alive"].values()), outcome["alive"]


def test_unusual_pages_are_decoded_right(outcome: dict[str, Any]) -> None:
    """The cp1251, Shift_JIS, UTF-16 and IDN pages are not just indexed: their text is right."""
    from newsflow.search import iter_sources

    rig: Rig = outcome["rig"]
    docs = {d["id"]: d for d in iter_sources(rig.settings.index_dir)}
    port = outcome["port"]
    for case in CASES:
        if case.expected_outcome != "indexed" or not case.must_contain:
            continue
        doc = docs[outcome["ids"][case.url(port)]]
        assert case.must_contain in doc["body"] + doc.get("title", ""), f"{case.name}: {doc.get('title')}"
