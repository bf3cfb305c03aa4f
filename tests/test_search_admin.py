"""The search CLI, reindex, backup and purge through the real `newsflow` command, on a private index
and a real Redis (tombstones under their own key prefix, so other tests' state is untouched)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from newsflow.search import SearchIndex
from newsflow.state import State, connect
from tests.conftest import ROOT, TEST_ENV, suite_settings
from tests.test_search import _old_v1_index, sample_docs

PREFIX = "nftest-search-admin:"


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **TEST_ENV, "NEWSFLOW_DATA_DIR": str(data_dir), "NEWSFLOW_KEY_PREFIX": PREFIX}
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def cli_json(data_dir: Path, *args: str) -> Any:
    proc = cli(data_dir, *args, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.fixture
def data_dir(tmp_path: Path, redis_url: str) -> Path:
    connect(redis_url).delete(f"{PREFIX}tombstone:ids", f"{PREFIX}tombstone:sites")
    ix = SearchIndex(tmp_path / "index")
    ix.upsert_batch(sample_docs())
    ix.close()
    return tmp_path


def test_search_cli_filters_pages_facets(data_dir: Path) -> None:
    out = cli_json(data_dir, "search", "drills")
    assert out["total"] == 3 and len(out["hits"]) == 1 and out["hits"][0]["similar"] == 2
    assert set(out["hits"][0]) >= {"id", "url", "title", "published", "site_name", "language", "score", "snippet"}
    assert len(cli_json(data_dir, "search", "drills", "--expand-clusters")["hits"]) == 3
    assert [h["language"] for h in cli_json(data_dir, "search", "", "--lang", "de")["hits"]] == ["de"]
    page = cli_json(data_dir, "search", "weather", "--sort", "date", "--limit", "3", "--page", "2")
    assert [h["published"][:10] for h in page["hits"]] == ["2024-06-18", "2024-06-17", "2024-06-16"]
    faceted = cli_json(data_dir, "search", "drills OR rates", "--facets", "--since", "2024-01-01")
    assert {b["value"] for b in faceted["facets"]["month"]} == {"2024-05"}
    text = cli(data_dir, "search", "drills", "--facets")
    assert text.returncode == 0 and "+2 similar" in text.stdout and "site: " in text.stdout


def test_malformed_query_exit_2_with_pointer_no_trace(data_dir: Path) -> None:
    proc = cli(data_dir, "search", "nato (eu OR")
    assert proc.returncode == 2
    assert "OR needs something on its right at column 10" in proc.stderr
    assert "\n           ^" in proc.stderr  # caret under column 10, after two spaces of indent
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_show_by_id_and_url(data_dir: Path) -> None:
    doc = sample_docs()[0]
    assert cli_json(data_dir, "show", doc["id"])["title"] == doc["title"]
    assert cli_json(data_dir, "show", doc["url"])["id"] == doc["id"]
    assert cli(data_dir, "show", "https://nowhere.example/x").returncode == 1


def test_reindex_rebuilds_an_old_schema_index(tmp_path: Path, redis_url: str) -> None:
    _old_v1_index(tmp_path / "index", sample_docs())
    refused = cli(tmp_path, "search", "drills")
    assert refused.returncode == 1 and "newsflow reindex" in refused.stderr
    # An index that old also predates versioned article ids: `newsflow migrate` re-keys and rebuilds it.
    refused = cli(tmp_path, "reindex")
    assert refused.returncode == 1 and "newsflow migrate" in refused.stderr
    migrated = cli_json(tmp_path, "migrate", "--force")  # --force: other tests' messages may be queued
    assert migrated["from_version"] == 1 and sum(migrated["stores"]["index"].values()) == len(sample_docs())
    out = cli_json(tmp_path, "reindex")
    assert out["indexed"] == len(sample_docs()) and out["skipped_tombstoned"] == 0
    assert cli_json(tmp_path, "search", "häuser")["total"] == 1  # German stemming now applies
    assert cli_json(tmp_path, "search", "drills")["total"] == 3
    assert not list(tmp_path.glob("index.old-*")) and not list(tmp_path.glob("index.rebuild-*"))


def test_purge_tombstones_and_survives_restore(data_dir: Path, redis_url: str, tmp_path: Path) -> None:
    target = sample_docs()[3]  # the central bank story
    backup = tmp_path / "backup.jsonl.gz"
    assert cli(data_dir, "backup", str(backup)).returncode == 0
    out = cli_json(data_dir, "purge", target["url"], "--reason", "court order 17")
    assert out == {"purged": [target["id"]], "sites": [], "mode": "direct"}
    assert cli_json(data_dir, "search", "rates")["total"] == 0
    assert cli(data_dir, "show", target["id"]).returncode == 1
    listing = cli_json(data_dir, "purge", "--list")
    assert listing["ids"][target["id"]]["reason"] == "court order 17"
    state = State(connect(redis_url), suite_settings(key_prefix=PREFIX))
    entry = state.ledger(target["id"])
    assert entry is not None and (entry.state, entry.reason) == ("dead", "purged")
    # Restoring the backup does not bring it back.
    restored = cli_json(data_dir, "reindex", "--from", str(backup))
    assert restored["indexed"] == len(sample_docs()) - 1 and restored["skipped_tombstoned"] == 1
    assert cli_json(data_dir, "search", "rates")["total"] == 0
    # A whole site, now and later.
    out = cli_json(data_dir, "purge", "--site", "weather.example")
    assert len(out["purged"]) == 12
    assert cli_json(data_dir, "search", "weather")["total"] == 0
    assert "weather.example" in cli_json(data_dir, "purge", "--list")["sites"]
    # Lifting a tombstone lets the article be ingested again (it is not restored by itself).
    assert cli_json(data_dir, "purge", "--lift", target["id"]) == {"lifted": 1}
    assert target["id"] not in cli_json(data_dir, "purge", "--list")["ids"]
    log = (data_dir / "tombstones.jsonl").read_text().splitlines()
    assert any(json.loads(line).get("site") == "weather.example" for line in log)


def test_submit_refuses_tombstoned_urls(redis_url: str) -> None:
    from newsflow.stores import Stores
    from workers.app import app
    from workers.client import submit

    stores = Stores(connect(redis_url), suite_settings(key_prefix=PREFIX))
    tombs = stores.tombstones
    tombs.add_site("banned.example", "test")
    accepted, rejected = submit(app, stores, ["https://www.banned.example/story"])
    assert accepted == [] and [(r.state, r.reason) for r in rejected] == [("dead", "purged")]
    tombs.lift(sites=["banned.example"])
