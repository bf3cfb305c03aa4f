"""The HTTP API over real sockets on 127.0.0.1: search, articles, health, OpenAPI, auth, rate limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TEST_ENV, suite_settings
from tests.test_search import STORY, sample_data_dir, sample_docs
from workers.api import ApiServer
from workers.runtime import free_port


def get(url: str, token: str | None = None) -> tuple[int, Message, Any]:
    """Status, headers (case-insensitive: the server sends them in lower case) and the decoded body."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
            status, headers = resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        body, status, headers = exc.read(), exc.code, exc.headers
    ctype = headers.get("Content-Type", "")
    return status, headers, json.loads(body) if ctype.startswith("application/json") else body.decode()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_data_dir(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def api(data_dir: Path) -> Iterator[str]:
    settings = suite_settings(data_dir=str(data_dir), api_rate_limit_per_min=6000, api_rate_burst=500)
    with ApiServer(settings, "127.0.0.1", 0) as server:
        yield server.base_url


def test_search_keeps_cli_keys_and_adds_more(api: str) -> None:
    status, _h, body = get(f"{api}/search?q=stoltenberg+drills&facets=1")
    assert status == 200
    assert body["total"] == 3 and body["stories"] == 1 and body["collapsed"] is True
    hit = body["hits"][0]
    for key in ("id", "url", "title", "published", "site_name", "language", "score", "snippet"):
        assert key in hit
    assert hit["similar"] == 2 and hit["cluster_id"] == STORY
    assert "<mark>" in hit["snippet_html"]
    assert {b["value"] for b in body["facets"]["site"]} == {"wire.example", "local.example", "third.example"}


def test_search_parameters(api: str) -> None:
    _s, _h, expanded = get(f"{api}/search?q=drills&expand_clusters=1")
    assert expanded["total"] == len(expanded["hits"]) == 3
    _s, _h, story = get(f"{api}/search?q=drills&cluster={STORY}")
    assert len(story["hits"]) == 3
    _s, _h, sites = get(f"{api}/search?q=drills&site=local.example&site=third.example&expand_clusters=1")
    assert {h["site"] for h in sites["hits"]} == {"local.example", "third.example"}
    _s, _h, dated = get(f"{api}/search?q=weather&sort=date&limit=3&page=2&since=2024-06-01&until=2024-06-30")
    assert [h["published"][:10] for h in dated["hits"]] == ["2024-06-18", "2024-06-17", "2024-06-16"]
    assert dated["page"] == 2 and dated["hits"][0]["score"] is None
    _s, _h, lang = get(f"{api}/search?q=&lang=de")
    assert [h["language"] for h in lang["hits"]] == ["de"]


@pytest.mark.parametrize(
    ("query", "error", "fragment"),
    [
        ("q=%22open", "bad_query", "unterminated quote"),
        ("q=a&limit=0", "bad_parameter", "limit must be between"),
        ("q=a&limit=ten", "bad_parameter", "limit must be an integer"),
        ("q=a&sort=popular", "bad_parameter", "sort must be one of"),
        ("q=a&since=someday", "bad_query", "--since"),
        ("q=a&since=2024&until=2020", "bad_query", "--since 2024 is after --until 2020"),
        ("q=a&since=2024-06-02&until=2024-06-01", "bad_query", "put the earlier date in since"),
        ("q=a&sinse=2024", "bad_parameter", "unknown parameter 'sinse': /search takes q, limit"),
    ],
)
def test_bad_requests_get_clear_400s(api: str, query: str, error: str, fragment: str) -> None:
    status, _h, body = get(f"{api}/search?{query}")
    assert status == 400
    assert body["error"] == error and fragment in body["message"]


def test_a_one_day_range_and_the_article_lookup_s_parameters_are_taken(api: str) -> None:
    status, _h, _b = get(f"{api}/search?q=a&since=2024-06-01&until=2024-06-01")  # since and until: one day
    assert status == 200
    status, _h, body = get(f"{api}/articles?url=http://x.example/a&id=1")
    assert status == 400 and body["parameter"] == "id" and "/articles takes url" in body["message"]


def test_bad_query_points_at_the_column(api: str) -> None:
    _s, _h, body = get(f"{api}/search?q=nato+%28eu")
    assert body["column"] == 6 and "never closed" in body["message"] and "help" in body


def test_articles_by_id_and_url(api: str) -> None:
    doc = sample_docs()[3]
    status, _h, body = get(f"{api}/articles/{doc['id']}")
    assert status == 200 and body["title"] == doc["title"] and body["body"] == doc["body"]
    status, _h, body = get(f"{api}/articles?url={doc['url']}")
    assert status == 200 and body["id"] == doc["id"]
    status, _h, body = get(f"{api}/articles/{'0' * 32}")
    assert status == 404 and body["error"] == "not_found"


def test_health_openapi_page_and_read_only(api: str) -> None:
    status, _h, body = get(f"{api}/health")
    assert status == 200 and body["status"] == "ok" and body["docs"] == len(sample_docs())
    _s, _h, spec = get(f"{api}/openapi.json")
    assert spec["openapi"].startswith("3.") and {"/search", "/articles/{id}", "/health"} <= set(spec["paths"])
    status, headers, page = get(f"{api}/")
    assert status == 200 and 'id="q"' in page and "default-src 'self'" in headers["Content-Security-Policy"]
    assert get(f"{api}/static/app.js")[0] == 200
    assert get(f"{api}/static/../api.py")[0] == 404
    req = urllib.request.Request(f"{api}/search", method="POST", data=b"{}")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 405


def test_token_and_rate_limit(data_dir: Path) -> None:
    settings = suite_settings(data_dir=str(data_dir), api_token="s3cret", api_rate_limit_per_min=60, api_rate_burst=3)
    with ApiServer(settings, "127.0.0.1", 0) as server:
        status, headers, body = get(f"{server.base_url}/search?q=drills")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert get(f"{server.base_url}/search?q=drills", token="wrong")[0] == 401
        assert get(f"{server.base_url}/health")[0] == 200  # liveness needs no token
        assert get(f"{server.base_url}/search?q=drills", token="s3cret")[0] == 200
        # Burst of 3 spent (two 401s and one 200 count): the next is refused with a wait.
        status, headers, body = get(f"{server.base_url}/search?q=drills", token="s3cret")
        assert status == 429 and body["error"] == "rate_limited" and int(headers["Retry-After"]) >= 1


def test_no_index_yet_is_a_503(tmp_path: Path) -> None:
    with ApiServer(suite_settings(data_dir=str(tmp_path)), "127.0.0.1", 0) as server:
        status, _h, body = get(f"{server.base_url}/search?q=x")
        assert status == 503 and body["error"] == "no_index"
        assert get(f"{server.base_url}/health")[0] == 503


def test_serve_command(data_dir: Path) -> None:
    env = {**os.environ, **TEST_ENV, "NEWSFLOW_DATA_DIR": str(data_dir)}
    refused = subprocess.run([sys.executable, "-m", "workers.cli", "serve", "--host", "0.0.0.0"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 1 and "NEWSFLOW_API_TOKEN" in refused.stderr
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _h, body = get(f"http://127.0.0.1:{port}/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.2)
        assert status == 200 and body["docs"] == len(sample_docs())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
