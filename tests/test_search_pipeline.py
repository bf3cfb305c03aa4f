"""Takedowns against a running deployment: the index worker holds the writer, so `purge` hands the
ids to it; it deletes them, records them dead (`purged`), and a later ingest is refused."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_purge_through_the_running_index_worker(deployment: Any, origin: Any, ground_truth: dict[str, Any]) -> None:
    from config.settings import get_settings
    from newsflow.state import State

    url = f"{origin.base_url}/bench/{sorted(ground_truth)[-1]}.html"  # not one the e2e test searches
    proc = run_cli("ingest", url, "--wait", "--json", "--timeout", "120", timeout=180)
    rows = json.loads(proc.stdout)
    assert rows[0]["state"] == "indexed", proc.stderr[-2000:]
    aid = rows[0]["article_id"]
    assert run_cli("show", aid).returncode == 0

    proc = run_cli("purge", url, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["purged"] == [aid] and out["mode"] == "queued"  # the worker holds the index lock

    state = State.from_settings(get_settings())
    deadline = time.monotonic() + 60
    while True:
        entry = state.ledger(aid)
        if entry is not None and entry.state == "dead":
            break
        assert time.monotonic() < deadline, f"index worker did not purge {aid}: {entry}"
        time.sleep(0.2)
    assert (entry.stage, entry.reason) == ("index", "purged")
    assert run_cli("show", aid).returncode == 1

    again = run_cli("ingest", url, "--wait", "--json", "--timeout", "30", timeout=90)
    assert [(r["state"], r["reason"]) for r in json.loads(again.stdout)] == [("dead", "purged")]
    assert run_cli("purge", "--lift", aid, "--json").returncode == 0
