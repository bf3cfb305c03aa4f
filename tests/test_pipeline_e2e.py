"""End to end: real workers, real Redis, real HTTP, a real index, driven through the CLI."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

N_BENCH_PAGES = 24


def ingest(*urls: str, timeout: float = 240) -> tuple[int, list[dict[str, Any]]]:
    proc = run_cli("ingest", *urls, "--wait", "--json", "--timeout", str(timeout), timeout=timeout + 60)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout)


def search(query: str, limit: int = 10, *options: str) -> dict[str, Any]:
    proc = run_cli("search", query, "--json", "--limit", str(limit), *options)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


def show(id_or_url: str) -> dict[str, Any] | None:
    proc = run_cli("show", id_or_url, "--json")
    if proc.returncode == 1:
        return None
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def seed_ingested(deployment: Any, origin: Any) -> dict[str, Any]:
    code, rows = ingest(f"{origin.base_url}/seed.html")
    assert code == 0, rows
    return rows[0]


def test_seed_page_becomes_a_search_hit(seed_ingested: dict[str, Any], seed_expected: dict[str, Any]) -> None:
    assert seed_ingested["state"] == "indexed"
    result = search("Stoltenberg")
    # Other tests of the session index the same page under other URLs (test_transport's
    # `seed.html?after-garbage`): the seed's own article is one hit among them, found once.
    (hit,) = [h for h in result["hits"] if h["id"] == seed_ingested["article_id"]]
    assert hit["title"] == seed_expected["title"]
    assert hit["published"].startswith(seed_expected["published"])
    assert hit["site_name"] == seed_expected["site_name"]
    assert "Stoltenberg" in hit["snippet"]


def test_show_gives_clean_body_and_metadata(seed_ingested: dict[str, Any], seed_expected: dict[str, Any]) -> None:
    doc = show(seed_ingested["article_id"])
    assert doc is not None
    assert show(seed_ingested["article_id"].upper()) == doc  # an id pasted in upper case is the same id
    assert doc["author"] == seed_expected["author"]
    # Served from 127.0.0.1, the page's canonical on kyivindependent.com is only a claim.
    assert doc["canonical_url"] is None
    assert doc["final_url"] == seed_ingested["url"]
    assert doc["fetched_at"]
    assert doc["word_count"] > 100
    for text in seed_expected["body_must_contain"]:
        assert text in doc["body"], text
    for text in seed_expected["body_must_not_contain"]:
        assert text not in doc["body"], text


def test_lookup_by_requested_url_not_by_a_claimed_canonical(
    seed_ingested: dict[str, Any], seed_expected: dict[str, Any]
) -> None:
    by_url = show(seed_ingested["url"] + "?utm_source=newsletter#top")
    assert by_url is not None and by_url["id"] == seed_ingested["article_id"]
    # A copy served by another host is not the article at its claimed canonical URL.
    assert show(seed_expected["canonical_url"]) is None
    assert show("https://example.com/never-seen") is None


def test_reingest_upserts_without_duplicates(seed_ingested: dict[str, Any]) -> None:
    code, rows = ingest(seed_ingested["url"], seed_ingested["url"] + "?utm_campaign=x")
    assert code == 0
    assert {r["article_id"] for r in rows} == {seed_ingested["article_id"]}
    assert search("Stoltenberg")["total"] == 1
    assert search('"pause for regrouping"')["total"] == 1


def _phrase(text: str, n_words: int = 6) -> str | None:
    """A run of plain words from the middle of a text: something only that article says."""
    words = re.findall(r"[A-Za-z]{4,}", text)
    if len(words) < 40:
        return None
    mid = len(words) // 2
    return " ".join(words[mid : mid + n_words])


def test_benchmark_pages_flow_through(deployment: Any, origin: Any, ground_truth: dict[str, Any]) -> None:
    ids = sorted(ground_truth)[:N_BENCH_PAGES]
    urls = [f"{origin.base_url}/bench/{page_id}.html" for page_id in ids]
    code, rows = ingest(*urls)
    states = [r["state"] for r in rows]
    assert states.count("indexed") == len(urls), [r for r in rows if r["state"] != "indexed"]
    assert code == 0
    found = 0
    checked = 0
    for page_id, row in zip(ids, rows, strict=True):
        phrase = _phrase(ground_truth[page_id]["articleBody"])
        if phrase is None:
            continue
        checked += 1
        # Every copy, not one per story: other tests index the same pages under other URLs, and a
        # collapsed story may show one of those copies instead.
        hits = search(f"{phrase}", 10, "--expand-clusters")["hits"]
        found += any(h["id"] == row["article_id"] for h in hits)
    # The words of each page's true body find that page (a few bodies may miss one word).
    assert checked >= 15
    assert found >= checked - 2, (found, checked)


def test_permanent_failures_are_dead_lettered_with_reasons(deployment: Any, origin: Any) -> None:
    code, rows = ingest(
        f"{origin.base_url}/missing-page.html",
        f"{origin.base_url}/image.html",
        f"{origin.base_url}/empty.html",
        "ftp://127.0.0.1/file.html",
    )
    assert code == 1
    by_url = {r["url"]: r for r in rows}
    assert by_url[f"{origin.base_url}/missing-page.html"]["reason"] == "http_404"
    assert by_url[f"{origin.base_url}/image.html"]["reason"] == "not_html"
    assert by_url[f"{origin.base_url}/empty.html"]["reason"] == "no_article"
    assert all(r["state"] == "dead" for r in rows)
    assert by_url["ftp://127.0.0.1/file.html"]["article_id"] is None
    # The workers are still there and still work.
    code, rows = ingest(f"{origin.base_url}/seed.html")
    assert code == 0 and rows[0]["state"] == "indexed"


def test_reconciler_resumes_an_article_whose_message_was_lost(
    deployment: Any, origin: Any, ground_truth: dict[str, Any]
) -> None:
    """A worker killed between popping a message and recording it unacked loses the message;
    the ledger still says the article is in flight, and `newsflow reconcile` resumes it."""
    from config.settings import get_settings
    from newsflow.state import State
    from newsflow.urls import article_id

    url = f"{origin.base_url}/bench/{sorted(ground_truth)[-1]}.html?lost=1"
    aid = article_id(url)
    state = State.from_settings(get_settings())
    state.record(aid, url, "discovered", "submit")  # ... and the fetch message never reaches Redis
    proc = run_cli("reconcile", "--older-than", "0", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    resumed = {r["article_id"]: r for r in json.loads(proc.stdout)}
    assert resumed[aid]["stage"] == "fetch"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = state.ledger(aid)
        if entry and entry.state in ("indexed", "dead"):
            break
        time.sleep(0.2)
    assert entry is not None and entry.state == "indexed", entry
    assert show(aid) is not None


def test_seed_is_enriched(seed_ingested: dict[str, Any], seed_expected: dict[str, Any]) -> None:
    doc = show(seed_ingested["article_id"])
    assert doc is not None
    assert doc["language"] == seed_expected["language"]
    for kind, names in seed_expected["entities_expected"].items():
        assert set(names) <= set(doc["entities"][kind]), (kind, doc["entities"][kind])
    assert 5 <= len(doc["keywords"]) <= 10
    first_sentence = (doc["summary"] or "").split(". ")[0]
    assert first_sentence and first_sentence in doc["body"]  # the summary is taken from the text
    assert doc["cluster_id"]


def test_syndicated_copies_from_two_hosts_share_a_cluster(deployment: Any) -> None:
    """The bundled wire story, served by two different origins, lands in one near-duplicate cluster."""
    from workers.staticserver import StaticServer

    examples = Path(__file__).resolve().parents[1] / "examples"
    with StaticServer(examples) as host_a, StaticServer(examples) as host_b:
        code, rows = ingest(
            f"{host_a.base_url}/wire-bridge-reopens-a.html",
            f"{host_b.base_url}/wire-bridge-reopens-b.html",
            f"{host_b.base_url}/storm.html",
        )
    assert code == 0, rows
    docs = [show(r["article_id"]) for r in rows]
    assert all(d is not None for d in docs)
    wire_a, wire_b, other = docs
    assert wire_a and wire_b and other
    assert wire_a["cluster_id"] == wire_b["cluster_id"]
    assert other["cluster_id"] != wire_a["cluster_id"]


def _wait_terminal(state: Any, aid: str, since: float, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entry = state.ledger(aid)
        if entry and entry.state in ("indexed", "dead") and entry.updated_at >= since:
            return entry
        time.sleep(0.2)
    return state.ledger(aid)


def test_lost_stage_input_is_refetched_and_redelivered_work_is_skipped(
    deployment: Any, origin: Any, seed_ingested: dict[str, Any], ground_truth: dict[str, Any]
) -> None:
    """A clean message whose raw HTML is gone: done already -> skipped; otherwise fetched anew once."""
    from config.settings import get_settings
    from newsflow.state import State
    from newsflow.urls import article_id
    from workers.app import app

    state = State.from_settings(get_settings())
    gone = {"v": 1, "blob": "newsflow:blob:gone"}
    # 1. A redelivery of work already done (the seed is indexed): skipped, no dead letter.
    before = state.ledger(seed_ingested["article_id"])
    app.send_task("clean.page", args=({**gone, "id": seed_ingested["article_id"], "url": seed_ingested["url"]},))
    # 2. An article whose HTML was lost before it was cleaned: fetched again, then indexed.
    url = f"{origin.base_url}/bench/{sorted(ground_truth)[-2]}.html?lost=blob"
    aid, since = article_id(url), time.time()
    state.record(aid, url, "fetched", "fetch")
    app.send_task("clean.page", args=({**gone, "id": aid, "url": url},))
    entry = _wait_terminal(state, aid, since)
    assert entry is not None and entry.state == "indexed", entry
    assert any(e.get("reason") == "blob_missing_refetch" for e in state.trace(aid))
    after = state.ledger(seed_ingested["article_id"])
    assert before is not None and after is not None
    assert after.state == "indexed" and state.dead_letter_record(seed_ingested["article_id"]) is None


def test_demo_runs_end_to_end(redis_url: str, tmp_path: Path) -> None:
    """The README's main job: `newsflow demo` on the bundled pages (own Redis db and data dir)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NEWSFLOW_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/3", "NEWSFLOW_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "demo"], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    done = re.search(r"(\d+)/(\d+) pages indexed", proc.stdout)
    assert done and done.group(1) == done.group(2) and int(done.group(1)) >= 13, proc.stdout[:500]
    assert "Stoltenberg: Putin doesn’t want peace" in proc.stdout
