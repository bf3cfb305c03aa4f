"""The archive with real workers: fetches are kept as WARC, indexed articles reprocess from their
capture (after an extraction change, a dry run shows what would differ), other crawlers' WARC
files backfill the index, and a fetch worker killed mid-write leaves a readable archive."""

from __future__ import annotations

import gzip
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from config.settings import get_settings
from newsflow.archive.cdx import cdx_path, read_cdx
from newsflow.archive.reader import file_size, iter_records, read_capture
from newsflow.archive.retention import list_files
from newsflow.search import open_index
from tests.conftest import BENCH_DIR, run_cli
from tests.test_archive import build_test_warc

pytestmark = pytest.mark.integration

# Pages whose body changes when boilerplate stripping is switched off (and some whose body does not).
CHANGED_BY = "strip_boilerplate,strip_title_and_standfirst"
COMPARED = ("id", "url", "final_url", "title", "body", "author", "published", "language", "capture", "fetched_at")


def _cli_json(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> tuple[int, Any]:
    proc = run_cli(*args, "--json", env=env, timeout=timeout)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return proc.returncode, json.loads(proc.stdout)


def _docs(ids: list[str]) -> dict[str, dict[str, Any]]:
    index = open_index(get_settings().index_dir, create=False)
    try:
        return {aid: doc for aid in ids if (doc := index.get(aid)) is not None}
    finally:
        index.close()


def _ids_file(tmp_path: Path, ids: list[str]) -> str:
    path = tmp_path / "ids.txt"
    path.write_text("# articles to reprocess\n" + "\n".join(ids) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def ingested(deployment: Any, origin: Any, ground_truth: dict[str, Any]) -> dict[str, dict[str, Any]]:
    # Five pages: switching boilerplate stripping off changes the body of some of them.
    urls = [f"{origin.base_url}/bench/{page}.html?archive=1" for page in sorted(ground_truth)[-10:-5]]
    code, rows = _cli_json("ingest", *urls, "--wait", "--timeout", "150")
    assert code == 0, rows
    docs = _docs([r["article_id"] for r in rows])
    assert len(docs) == len(urls)
    return docs


def test_every_fetch_is_archived_and_the_index_knows_where(ingested: dict[str, dict[str, Any]]) -> None:
    archive = get_settings().archive_path
    for doc in ingested.values():
        cap = doc["capture"]
        got = read_capture(archive, cap)
        page = doc["url"].split("/bench/")[1].split(".html")[0]
        assert got.body == gzip.decompress((BENCH_DIR / "html" / f"{page}.html.gz").read_bytes())
        assert got.status == 200 and got.url == doc["final_url"]
        assert doc["fetched_at"] == got.page().fetched_at  # one time for the article and its capture
    code, out = _cli_json("archive", "stats", "--verify")
    assert code == 0 and out["captures"] >= len(ingested) and not out["torn_files"]


def test_reprocess_gives_the_same_index(ingested: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    ids = sorted(ingested)
    before_total = open_index(get_settings().index_dir, create=False).num_docs()
    code, out = _cli_json("reprocess", "--ids", _ids_file(tmp_path, ids), "--wait", "--timeout", "120")
    assert code == 0, out
    assert out["selected"] == out["sent"] == out["indexed"] == len(ids) and out["without_capture"] == []
    after = _docs(ids)
    for aid in ids:
        assert {k: after[aid].get(k) for k in COMPARED} == {k: ingested[aid].get(k) for k in COMPARED}
    assert open_index(get_settings().index_dir, create=False).num_docs() == before_total  # upserts, no copies


def test_dry_run_reports_what_an_extraction_change_would_do(
    ingested: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    ids_file = _ids_file(tmp_path, sorted(ingested))
    env = {"NEWSFLOW_CLEAN_EXTRACT_DISABLE": CHANGED_BY}  # this CLI's extraction differs from the workers'
    code, out = _cli_json("reprocess", "--ids", ids_file, "--dry-run", "--examples", "2", env=env)
    assert code == 0, out
    assert out["dry_run"] and out["compared"] == len(ingested) == 5
    # Some bodies change, and the others show no false change (which ones depends on the extractor).
    assert out["changed"] >= 1 and out["unchanged"] >= 1 and out["changed"] + out["unchanged"] == 5
    assert out["changed_fields"]["body"] == out["changed"]
    assert len(out["examples"]) == 2 and out["examples"][0]["changed"]["body"]["would_be"]
    after = _docs(sorted(ingested))
    assert all(after[a]["body"] == ingested[a]["body"] for a in ingested)  # nothing was sent


def test_article_older_than_the_ledger_reprocesses(ingested: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    settings = get_settings()
    aid = sorted(ingested)[0]
    r = redis.Redis.from_url(settings.state_url)
    r.delete(f"{settings.key_prefix}article:{aid}", f"{settings.key_prefix}trace:{aid}")  # what the TTL does
    assert r.exists(f"{settings.key_prefix}article:{aid}") == 0
    code, out = _cli_json("reprocess", "--ids", _ids_file(tmp_path, [aid, "0" * 32]), "--wait", "--timeout", "60")
    assert out["indexed"] == 1 and out["sent"] == 1
    # An id the index does not know is listed, not skipped silently (and the exit status says so).
    assert [m["id"] for m in out["without_capture"]] == ["0" * 32] and code == 1
    assert {k: _docs([aid])[aid].get(k) for k in COMPARED} == {k: ingested[aid].get(k) for k in COMPARED}


def test_backfill_indexes_exactly_the_html_200_pages(deployment: Any, tmp_path: Path) -> None:
    bench = sorted(BENCH_DIR.joinpath("html").glob("*.html.gz"))[40:43]
    pages = [(f"https://backfill.example/{p.name[:12]}?utm_medium=x", gzip.decompress(p.read_bytes())) for p in bench]
    warc = tmp_path / "CC-NEWS-test.warc.gz"
    want = build_test_warc(warc, pages, date="2024-03-01T10:00:00Z")
    code, out = _cli_json("backfill", str(warc), "--wait", "--timeout", "120")
    assert code == 0, out
    assert out["html_200_pages"] == out["sent"] == out["indexed"] == 3
    for reason in ("revisit", "not_200", "not_html", "noindex", "truncated"):
        assert out["skipped"][reason] == want[reason], out["skipped"]
    index = open_index(get_settings().index_dir, create=False)
    for url, _body in pages:
        doc = index.get(url)
        assert doc is not None and doc["url"] == url and doc["fetched_at"] == "2024-03-01T10:00:00+00:00"
        assert Path(doc["capture"]["file"]) == warc.resolve()
    for gone in ("https://news.example/gone", "https://news.example/a.pdf", "https://news.example/private"):
        assert index.get(gone) is None
    assert index.get("https://news.example/cut") is None


def test_fetch_worker_killed_mid_write_leaves_a_readable_archive(
    deployment: Any, origin: Any, ground_truth: dict[str, Any]
) -> None:
    archive = Path(get_settings().archive_path)
    captures_before = sum(1 for f in list_files(archive) for _ in read_cdx(cdx_path(f.path)))
    urls = [f"{origin.base_url}/bench/{page}.html?kill=1" for page in sorted(ground_truth)[:20]]
    proc = run_cli("ingest", *urls)  # no --wait: the worker is killed while it works through them
    assert proc.returncode == 0, proc.stderr[-2000:]
    (i,) = [n for n, spec in enumerate(deployment.layout) if spec.queue == "fetch"]
    deadline = time.monotonic() + 30
    while sum(1 for f in list_files(archive) for _ in read_cdx(cdx_path(f.path))) < captures_before + 5:
        assert time.monotonic() < deadline, "the fetch worker archived nothing"
        time.sleep(0.02)
    os.killpg(deployment.procs[i].pid, signal.SIGKILL)
    deployment.procs[i].wait(10)
    try:
        for f in list_files(archive):
            for entry in read_cdx(cdx_path(f.path)):
                got = read_capture(archive, {"file": f.name, **entry})
                assert got.status == 200 and got.body
            end = 0
            for _t, offset, length in iter_records(f.path):
                end = offset + length
            assert end <= file_size(f.path)
        code, out = _cli_json("archive", "stats", "--verify")
        assert code == 0 and out["records"] > 0
    finally:
        deployment.restart_exited()  # later tests get a fetch worker again
