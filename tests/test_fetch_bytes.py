"""`newsflow.fetcher.fetch_bytes`, the one redirect/read loop, and its thin wrapper
`newsflow.sources.http.fetch_document`, against real servers on 127.0.0.1 (no mocked HTTP).

Only the two test origins' host:port pairs are allow-listed, so every redirect elsewhere meets
the SSRF guard, as in tests/test_hostile_fetch.py.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from config.defaults import Settings
from newsflow.errors import PermanentError, TransientError
from newsflow.fetcher import FetchedBytes, FetchResult, NotModified, ResponseHead, fetch_bytes, fetch_page, make_session
from newsflow.sources.http import ACCEPT, Document, fetch_document
from tests.hostile.cases import TOTAL_DEADLINE_S, strict_fetch_settings
from tests.hostile.server import ARTICLE_EN, HostileServer, RouteServer, redirect, send, trickle

DRIP_MAX_S = 20.0  # a dripping response ends by itself after this long, whatever the client does
RSS = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Harbour news</title>'
    b"<item><title>Flood wall approved</title><link>https://news.example/wall</link></item></channel></rss>"
)
ETAG = '"feed-v1"'
LAST_MODIFIED = "Tue, 01 Apr 2025 10:00:00 GMT"


class FeedServer(RouteServer):
    """A small feed origin: a feed with validators and X-Robots-Tag, a redirect to it, a drip."""

    name = "feed-server"

    def __init__(self) -> None:
        self.accepts: dict[str, str] = {}  # the Accept header last sent for each path
        super().__init__(
            {
                "/feed": _feed,
                "/to-feed": lambda h: redirect(h, "/feed"),
                "/page": _page,
                "/drip-feed": lambda h: trickle(h, "application/rss+xml", 0.2, DRIP_MAX_S),
                "/robots.txt": lambda h: send(h, 304, b"", ""),  # a broken server: 304 to a plain GET
            }
        )

    def seen(self, path: str, request: BaseHTTPRequestHandler) -> None:
        self.accepts[path] = request.headers.get("Accept", "")

    def __enter__(self) -> FeedServer:
        super().__enter__()
        return self


def _feed(h: BaseHTTPRequestHandler) -> None:
    """The feed, or 304 when asked with its ETag. Echoes the Accept header it was sent."""
    seen = {"X-Seen-Accept": h.headers.get("Accept", "")}
    if h.headers.get("If-None-Match") == ETAG:
        send(h, 304, b"", "", {"ETag": ETAG, **seen})
        return
    headers = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED, "X-Robots-Tag": "noindex", **seen}
    send(h, 200, RSS, "application/rss+xml; charset=UTF-8", headers)


def _page(h: BaseHTTPRequestHandler) -> None:
    send(h, 200, ARTICLE_EN.encode(), "text/html; charset=utf-8", {"X-Robots-Tag": "noarchive"})


@pytest.fixture(scope="module")
def feeds() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


def strict_settings(feeds: FeedServer, hostile: HostileServer, **overrides: object) -> Settings:
    return strict_fetch_settings(f"127.0.0.1:{feeds.port},127.0.0.1:{hostile.port}", **overrides)


@pytest.fixture(scope="module")
def settings(feeds: FeedServer, hostile: HostileServer) -> Settings:
    return strict_settings(feeds, hostile)


@pytest.fixture(scope="module")
def session(settings: Settings) -> Iterator[requests.Session]:
    s = make_session(settings)
    yield s
    s.close()


# --- fetch_bytes ------------------------------------------------------------------------------


def test_feed_bytes_with_validators_and_headers(
    feeds: FeedServer, settings: Settings, session: requests.Session
) -> None:
    got = fetch_bytes(f"{feeds.base_url}/feed", settings, session, max_bytes=100_000, accept="application/rss+xml")
    assert isinstance(got, FetchedBytes)
    assert (got.status, got.body, got.content_type, got.charset) == (200, RSS, "application/rss+xml", "UTF-8")
    assert (got.etag, got.last_modified) == (ETAG, LAST_MODIFIED)
    assert got.final_url == got.url == f"{feeds.base_url}/feed"
    assert got.redirects == ()
    # Headers outlive the closed response, case-insensitive, and the result still pickles.
    assert got.headers["x-robots-tag"] == got.headers.get("X-Robots-Tag") == "noindex"
    assert got.headers["X-Seen-Accept"] == "application/rss+xml"
    assert pickle.loads(pickle.dumps(got)) == got


def test_accept_defaults_to_the_session_header(
    feeds: FeedServer, settings: Settings, session: requests.Session
) -> None:
    got = fetch_bytes(f"{feeds.base_url}/feed", settings, session, max_bytes=100_000)
    assert got.headers["X-Seen-Accept"] == session.headers["Accept"]


def test_redirect_hops_are_recorded(feeds: FeedServer, settings: Settings, session: requests.Session) -> None:
    got = fetch_bytes(f"{feeds.base_url}/to-feed", settings, session, max_bytes=100_000)
    assert got.url == f"{feeds.base_url}/to-feed"
    assert got.final_url == f"{feeds.base_url}/feed"
    assert got.redirects == (f"{feeds.base_url}/feed",)
    assert got.body == RSS


def test_304_is_not_modified_only_when_asked_conditionally(
    feeds: FeedServer, hostile: HostileServer, settings: Settings, session: requests.Session
) -> None:
    with pytest.raises(NotModified):
        fetch_bytes(f"{feeds.base_url}/feed", settings, session, max_bytes=100_000, etag=ETAG)
    with pytest.raises(PermanentError) as info:
        fetch_bytes(f"{hostile.base_url}/unconditional-304", settings, session, max_bytes=100_000)
    assert info.value.reason == "http_304"
    with pytest.raises(NotModified):
        fetch_bytes(
            f"{hostile.base_url}/unconditional-304", settings, session, max_bytes=100_000, any_304_is_not_modified=True
        )


def test_max_redirects_is_honoured(hostile: HostileServer, settings: Settings, session: requests.Session) -> None:
    before = sum(n for path, n in hostile.hits.items() if path.startswith("/endless/"))
    with pytest.raises(PermanentError) as info:
        fetch_bytes(f"{hostile.base_url}/endless/0", settings, session, max_bytes=100_000, max_redirects=2)
    assert info.value.reason == "too_many_redirects"
    after = sum(n for path, n in hostile.hits.items() if path.startswith("/endless/"))
    assert after - before == 3  # the first request and two redirects followed


def test_retry_after_is_passed_on(hostile: HostileServer, settings: Settings, session: requests.Session) -> None:
    with pytest.raises(TransientError) as info:
        fetch_bytes(f"{hostile.base_url}/rate-limited", settings, session, max_bytes=100_000)
    assert (info.value.reason, info.value.retry_after_s) == ("http_429", 1.0)


def test_size_cap_is_the_callers(feeds: FeedServer, settings: Settings, session: requests.Session) -> None:
    with pytest.raises(PermanentError) as info:
        fetch_bytes(f"{feeds.base_url}/feed", settings, session, max_bytes=len(RSS) - 1)
    assert info.value.reason == "too_large"
    assert fetch_bytes(f"{feeds.base_url}/feed", settings, session, max_bytes=len(RSS)).body == RSS


def test_screen_sees_the_head_and_refuses_before_the_body_is_read(
    hostile: HostileServer, settings: Settings, session: requests.Session
) -> None:
    """The trickling body would hold the fetch to its deadline; a refusing screen returns at once."""
    heads: list[ResponseHead] = []

    def refuse(head: ResponseHead) -> None:
        heads.append(head)
        raise PermanentError("refused", head.content_type)

    started = time.monotonic()
    with pytest.raises(PermanentError) as info:
        fetch_bytes(f"{hostile.base_url}/trickle-body", settings, session, max_bytes=1_000_000, screen=refuse)
    assert time.monotonic() - started < TOTAL_DEADLINE_S / 2
    assert (info.value.reason, info.value.detail) == ("refused", "text/html")
    [head] = heads
    assert (head.status, head.charset, head.headers["content-length"]) == (200, "utf-8", "100000")
    assert head.final_url == f"{hostile.base_url}/trickle-body"


def test_screen_is_not_asked_about_error_statuses(
    hostile: HostileServer, settings: Settings, session: requests.Session
) -> None:
    heads: list[ResponseHead] = []
    with pytest.raises(PermanentError) as info:
        fetch_bytes(f"{hostile.base_url}/gone", settings, session, max_bytes=100_000, screen=heads.append)
    assert (info.value.reason, heads) == ("http_410", [])


def test_fetch_page_keeps_the_response_headers(
    feeds: FeedServer, settings: Settings, session: requests.Session
) -> None:
    page = fetch_page(f"{feeds.base_url}/page", settings, session)
    assert "flood wall" in page.html
    assert page.headers.get("x-robots-tag") == "noarchive"
    assert page.n_bytes == len(ARTICLE_EN.encode())
    assert dataclasses.asdict(page)["headers"]["X-Robots-Tag"] == "noarchive"
    # Code that builds a FetchResult without headers keeps working: the field has a default.
    without = {k: v for k, v in dataclasses.asdict(page).items() if k != "headers"}
    assert FetchResult(**without).headers == {}


# --- fetch_document: the same guards for feeds, sitemaps and robots.txt ----------------------


def test_fetch_document_returns_a_document(feeds: FeedServer, settings: Settings, session: requests.Session) -> None:
    doc = fetch_document(f"{feeds.base_url}/to-feed", settings, session, max_bytes=100_000)
    assert isinstance(doc, Document)
    assert (doc.url, doc.final_url, doc.status, doc.body, doc.content_type, doc.etag, doc.last_modified) == (
        f"{feeds.base_url}/to-feed",
        f"{feeds.base_url}/feed",
        200,
        RSS,
        "application/rss+xml",
        ETAG,
        LAST_MODIFIED,
    )
    assert feeds.accepts["/feed"] == feeds.accepts["/to-feed"] == ACCEPT
    fetch_document(f"{feeds.base_url}/feed", settings, session, max_bytes=100_000, accept="text/plain")
    assert feeds.accepts["/feed"] == "text/plain"


def test_fetch_document_conditional_get(feeds: FeedServer, settings: Settings, session: requests.Session) -> None:
    with pytest.raises(NotModified):
        fetch_document(f"{feeds.base_url}/feed", settings, session, max_bytes=100_000, etag=ETAG)


@pytest.mark.parametrize(
    ("path", "error", "reason"),
    [
        ("/unconditional-304", NotModified, None),  # feeds always took any 304 as "unchanged"
        ("/no-content", None, None),  # any 2xx is a document (an empty one here)
        ("/gone", PermanentError, "http_410"),
        ("/error-500", TransientError, "http_500"),
        ("/rate-limited", TransientError, "http_429"),
        ("/loop-a", PermanentError, "redirect_loop"),
        ("/endless/0", PermanentError, "too_many_redirects"),
        ("/redirect-metadata", PermanentError, "private_address"),
        ("/redirect-loopback-other-port", PermanentError, "private_address"),
        ("/redirect-file", PermanentError, "bad_scheme"),
        ("/huge-declared", PermanentError, "too_large"),
        ("/huge-chunked", PermanentError, "too_large"),
        ("/gzip-bomb", PermanentError, "too_large"),
        ("/bad-gzip", PermanentError, "bad_encoding"),
        ("/close-no-answer", TransientError, "connection_error"),
        ("/trickle-headers", TransientError, "timeout"),
    ],
)
def test_fetch_document_hostile_answers(
    path: str,
    error: type[Exception] | None,
    reason: str | None,
    hostile: HostileServer,
    settings: Settings,
    session: requests.Session,
) -> None:
    url = f"{hostile.base_url}{path}"
    started = time.monotonic()
    if error is None:
        assert fetch_document(url, settings, session, max_bytes=1_000_000).body == b""
    else:
        with pytest.raises(error) as info:
            fetch_document(url, settings, session, max_bytes=1_000_000)
        assert getattr(info.value, "reason", None) == reason
    assert time.monotonic() - started < TOTAL_DEADLINE_S + 2.0


def test_slow_drip_feed_is_cut_off_by_the_total_deadline(feeds: FeedServer, hostile: HostileServer) -> None:
    """Read timeouts never trip on a byte every 0.2 s; the socket-level deadline does."""
    s = strict_settings(feeds, hostile, fetch_read_timeout_s=30.0, fetch_total_timeout_s=2.0)
    with make_session(s) as session:
        started = time.monotonic()
        with pytest.raises(TransientError) as info:
            fetch_document(f"{feeds.base_url}/drip-feed", s, session, max_bytes=1_000_000)
        elapsed = time.monotonic() - started
        assert info.value.reason == "timeout"
        assert 1.5 < elapsed < 4.0, elapsed
        # The session (its pool held the connection the deadline shut down) still works.
        assert fetch_document(f"{feeds.base_url}/feed", s, session, max_bytes=100_000).body == RSS


def test_robots_txt_answered_with_an_unasked_304_is_an_error_not_a_crash(
    feeds: FeedServer, settings: Settings, session: requests.Session
) -> None:
    from newsflow.polite.robots import fetch_rules

    rules = fetch_rules(feeds.base_url, settings, session)
    assert rules.kind == "error"  # retried after the error TTL, like an unreadable robots.txt
    assert "304" in rules.detail
