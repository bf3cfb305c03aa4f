"""One URL normalisation for the article id and for the fetch (issue #14, section 5).

The corpus (tests/data/url_pairs.json) lists URL pairs that must and must not share an id, with
the reason, and URLs that have no id. Beyond the pairs: the normalised URL is what requests and
urllib3 put on the wire unchanged (so the page fetched is the one whose id was computed), and a
real GET to a local server for an IDN host with escapes, dot segments and a repeated parameter
asks for exactly the normalised URL.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from urllib3.util.url import _encode_target

from config.defaults import Settings
from newsflow.domains import normalize_host
from newsflow.errors import PermanentError
from newsflow.fetcher import fetch_bytes, make_session, wire_url
from newsflow.netguard import ascii_host
from newsflow.urls import (
    ID_VERSION,
    InvalidURL,
    article_id,
    article_id_v1,
    normalize_url,
    normalize_url_v1,
    remove_dot_segments,
    wire_host,
)

CORPUS = json.loads((Path(__file__).parent / "data" / "url_pairs.json").read_text(encoding="utf-8"))
PAIRS = CORPUS["pairs"]
INVALID = CORPUS["invalid"]
VALID_URLS = sorted({p["a"] for p in PAIRS} | {p["b"] for p in PAIRS})


def test_corpus_is_big_enough_and_balanced() -> None:
    assert len(PAIRS) >= 60
    kinds = {p["expect"] for p in PAIRS}
    assert kinds == {"same", "different"}
    assert all(p["reason"] for p in PAIRS)
    assert sum(p["expect"] == "different" for p in PAIRS) >= 25


@pytest.mark.parametrize("pair", PAIRS, ids=[p["reason"][:60] for p in PAIRS])
def test_pair(pair: dict[str, str]) -> None:
    a, b = normalize_url(pair["a"]), normalize_url(pair["b"])
    if pair["expect"] == "same":
        assert a == b, pair["reason"]
        assert article_id(pair["a"]) == article_id(pair["b"])
    else:
        assert a != b, pair["reason"]
        assert article_id(pair["a"]) != article_id(pair["b"])


@pytest.mark.parametrize("case", INVALID, ids=[c["reason"][:60] for c in INVALID])
def test_invalid(case: dict[str, str]) -> None:
    with pytest.raises(InvalidURL):
        normalize_url(case["url"])
    with pytest.raises(PermanentError) as info:  # the fetcher refuses it, as a permanent error
        wire_url(case["url"])
    assert info.value.reason in ("bad_url", "bad_scheme")


def test_rejected_idn_message_is_clear() -> None:
    with pytest.raises(InvalidURL, match="UTS 46"):
        normalize_url("http://a\u200db.example/")
    with pytest.raises(PermanentError) as info:
        wire_url("http://a\u200db.example/")
    assert info.value.reason == "bad_url" and "UTS 46" in info.value.detail


@pytest.mark.parametrize("url", VALID_URLS)
def test_normalised_is_a_fixed_point(url: str) -> None:
    once = normalize_url(url)
    assert normalize_url(once) == once
    assert wire_url(url) == once


@pytest.mark.parametrize("url", VALID_URLS)
def test_requests_sends_the_normalised_url_unchanged(url: str) -> None:
    """What requests prepares, and the request target urllib3 writes, are the normalised URL itself."""
    wire = normalize_url(url)
    prepared = requests.Request("GET", wire).prepare()
    assert prepared.url == wire
    path_url = prepared.path_url
    assert _encode_target(path_url) == path_url
    assert wire.endswith(path_url)


def test_repeated_values_keep_their_order() -> None:
    assert normalize_url("http://e.com/?b=1&a=2&a=1&c") == "http://e.com/?a=2&a=1&b=1&c"


def test_remove_dot_segments_rfc3986_examples() -> None:
    # RFC 3986 5.4 (the paths of the normal and abnormal examples after merging)
    cases = {
        "/a/b/c/./../../g": "/a/g",
        "mid/content=5/../6": "mid/6",
        "/b/c/./g": "/b/c/g",
        "/b/c/../../../g": "/g",
        "/b/c/g.": "/b/c/g.",
        "/b/c/.g": "/b/c/.g",
        "/b/c/g..": "/b/c/g..",
        "/b/c/..g": "/b/c/..g",
        "/b/c/./../g": "/b/g",
        "/b/c/./g/.": "/b/c/g/",
        "/b/c/g/./h": "/b/c/g/h",
        "/b/c/g/../h": "/b/c/h",
        "/.": "/",
        "/..": "/",
    }
    for given, want in cases.items():
        assert remove_dot_segments(given) == want, given


HOSTS = ["faß.de", "FAß.de", "ΣΟΦΟΣ.gr", "ς.gr", "ｅｘａｍｐｌｅ.com", "münchen.de.", "Example.COM"]


@pytest.mark.parametrize("host", HOSTS)
def test_one_host_rule_everywhere(host: str) -> None:
    """The id (urls), the site (domains) and the connection (netguard) spell a host alike."""
    expected = wire_host(host)
    assert normalize_host(host) == expected
    assert ascii_host(host) == expected
    assert normalize_url(f"http://{host}/").split("/")[2] == expected


def test_version_one_was_wrong_where_the_issue_says() -> None:
    """The old rule (kept only for `newsflow migrate`) merged what the corpus keeps apart."""
    assert ID_VERSION == 2
    merged_by_v1 = [
        ("http://faß.de/a", "http://fass.de/a"),
        ("http://example.com/a%2Fb", "http://example.com/a/b"),
        ("http://example.com/?a=1&a=2", "http://example.com/?a=2&a=1"),
        ("http://example.com/%E9", "http://example.com/%E8"),
        ("http://example.com/?a", "http://example.com/?a="),
    ]
    for a, b in merged_by_v1:
        assert normalize_url_v1(a) == normalize_url_v1(b)
        assert article_id_v1(a) == article_id_v1(b)
        assert article_id(a) != article_id(b)
    # ... and an ASCII URL without any of that keeps its id across the versions.
    plain = "https://news.example/2024/05/story.html?page=2"
    assert article_id(plain) == article_id_v1(plain)


# --- a real GET: the server sees exactly the normalised URL ---------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Host", "")))
        body = b"<html><body>ok</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture()
def recorder() -> Iterator[tuple[ThreadingHTTPServer, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, seen
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_requests_exactly_the_url_the_id_was_made_of(
    recorder: tuple[ThreadingHTTPServer, list[tuple[str, str]]],
) -> None:
    server, seen = recorder
    port = server.server_address[1]
    settings = dataclasses.replace(
        Settings(), fetch_allow_private=True, fetch_resolve=f"xn--fa-hia.test:{port}:127.0.0.1"
    )
    url = f"http://FAß.test:{port}/x/%2f/./y/../z%7e?b=1&a=2&a=1&utm_source=feed&q=a+b%20c#frag"
    got = fetch_bytes(url, settings, make_session(settings), max_bytes=10_000)
    wire = normalize_url(url)
    assert wire == f"http://xn--fa-hia.test:{port}/x/%2F/z~?a=2&a=1&b=1&q=a+b%20c"
    assert seen == [("/x/%2F/z~?a=2&a=1&b=1&q=a+b%20c", f"xn--fa-hia.test:{port}")]
    assert got.final_url == wire
    assert got.url == url


def test_an_id_given_in_any_case_is_the_stored_id() -> None:
    from newsflow.urls import given_article_id

    aid = article_id("https://news.example/a")
    assert given_article_id(aid.upper()) == aid and given_article_id(f"  {aid}\n") == aid
    assert given_article_id("https://news.example/a") is None and given_article_id("g" * 32) is None
