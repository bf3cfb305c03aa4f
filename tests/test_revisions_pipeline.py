"""An article that changes after publication, through the real pipeline: served, ingested, its
title and a paragraph changed, ingested again. One document, two versions listed, `updated`;
an unchanged re-ingest adds nothing; search filters on updated articles and sorts by last update.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.sites.newsite import Route, SiteServer

pytestmark = pytest.mark.integration

PARAS = [
    "The harbour council approved the flood wall budget on Tuesday after a debate that ran past midnight.",
    "Engineers said the new barrier would be finished before next winter's storms, weather permitting.",
    "Fishermen asked the council to keep the old slipway open while the works go on along the quay.",
    "The mayor said the vote showed the town could still agree on what matters for the coastline.",
]


def page(title: str, paras: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paras)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        "<meta property='article:published_time' content='2026-11-20T08:00:00+00:00'></head>"
        f"<body><article><h1>{title}</h1>{body}</article></body></html>"
    ).encode()


def _ingest(url: str) -> None:
    proc = run_cli("ingest", url, "--wait", "--json", "--timeout", "120")
    assert proc.returncode == 0, proc.stderr[-3000:]
    [outcome] = json.loads(proc.stdout)
    assert outcome["state"] == "indexed", outcome


def _show(url: str) -> dict[str, Any]:
    proc = run_cli("show", url, "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return dict(json.loads(proc.stdout))


def _search(*args: str) -> list[dict[str, Any]]:
    proc = run_cli("search", "harbour flood wall", "--json", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return list(json.loads(proc.stdout)["hits"])


def test_a_revised_article_is_one_document_with_both_versions(deployment: Any) -> None:
    routes = {"/news/flood-wall.html": Route(page("Flood wall budget passes", PARAS), last_modified="v1")}
    with SiteServer(routes) as site:
        url = site.base_url + "/news/flood-wall.html"
        _ingest(url)
        first = _show(url)
        assert first["revision_count"] == 1 and first["updated"] is False

        _ingest(url)  # unchanged (the server answers 304): no revision
        assert _show(url)["revision_count"] == 1

        paras = [*PARAS[:2], "Fishermen will keep the old slipway, the council agreed late on Tuesday.", PARAS[3]]
        revised = page("Flood wall budget passes after late deal", paras)
        routes["/news/flood-wall.html"] = Route(revised, last_modified="v2")
        _ingest(url)
        doc = _show(url)
        assert doc["id"] == first["id"] and doc["updated"] is True and doc["revision_count"] == 2
        v1, v2 = doc["revisions"]
        assert v1["title"] == "Flood wall budget passes" and v2["title"] == "Flood wall budget passes after late deal"
        assert v2["title_changed"] is True and 10 <= v2["body_changed_pct"] <= 50
        assert doc["title"] == "Flood wall budget passes after late deal"

        hits = [h for h in _search("--updated", "--sort", "updated") if h["url"] == url]
        assert len(hits) == 1 and hits[0]["updated"] is True and hits[0]["revision_count"] == 2
        assert sum(h["url"] == url for h in _search("--expand-clusters")) == 1  # one document, not two
        print("revisions:", json.dumps(doc["revisions"]))
