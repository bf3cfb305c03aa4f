"""Cookies in the fetcher: one jar per fetch, capped, never shared; real HTTP from 127.0.0.1.

A worker's session is shared by all its fetches and threads (for its connection pool). Cookies
set during one fetch's redirect chain are sent on that chain's later hops, and on no other fetch.
Made-up host names (`a.shared.example`, `x.github.io`) are pinned to 127.0.0.1 with
`fetch_resolve`: no DNS query and no packet leaves the machine.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from config.defaults import Settings
from newsflow.errors import PermanentError, TransientError
from newsflow.fetcher import (
    MAX_FETCH_COOKIE_BYTES,
    MAX_FETCH_COOKIES,
    FetchCookieJar,
    SessionCookieJar,
    fetch_page,
    is_public_suffix,
    make_session,
)
from newsflow.sources.http import fetch_document
from tests.hostile.cases import strict_fetch_settings
from tests.hostile.server import ARTICLE_EN, RouteServer, send

PINNED = ("a.shared.example", "b.shared.example", "x.github.io", "y.github.io")
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, str]
    host: str
    cookie: str | None
    client_port: int

    @property
    def cookies(self) -> dict[str, str]:
        if not self.cookie:
            return {}
        pairs = (p.partition("=") for p in self.cookie.split("; "))
        return {name: value for name, _, value in pairs}


class CookieServer(RouteServer):
    """Routes that set cookies (on answers and on redirects) and record the Cookie header they get.

    `/set?n=&size=&tag=&domain=&token=&next=`: a redirect to `next` (or the article if none)
    setting `n` cookies `<tag>000=xxx...` of `size` bytes each (tag `c`, 8 bytes by default), with
    `Domain=<domain>` if given, and `tok=<token>` if given. `/consent?next=`: a redirect setting
    `consent=yes`. `/gated`: the article only with `consent=yes`, else 403. `/echo`: the article.
    """

    name = "cookie-server"

    def __init__(self) -> None:
        self.seen_requests: list[Seen] = []
        super().__init__({"/set": _set, "/consent": _consent, "/gated": _gated, "/echo": _echo})

    def seen(self, path: str, request: BaseHTTPRequestHandler) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        host = request.headers.get("Host", "").rsplit(":", 1)[0]
        self.seen_requests.append(Seen(path, query, host, request.headers.get("Cookie"), request.client_address[1]))

    def requests_to(self, path: str, **query: str) -> list[Seen]:
        return [s for s in self.seen_requests if s.path == path and all(s.query.get(k) == v for k, v in query.items())]

    def __enter__(self) -> CookieServer:
        super().__enter__()
        return self


def _query(h: BaseHTTPRequestHandler) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(h.path).query).items()}


def _answer(h: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes = b"") -> None:
    h.send_response(status)
    for name, value in headers:
        h.send_header(name, value)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _set(h: BaseHTTPRequestHandler) -> None:
    q = _query(h)
    n, size = int(q.get("n", "1")), int(q.get("size", "8"))
    tag = q.get("tag", "c")
    domain = f"; Domain={q['domain']}" if "domain" in q else ""
    cookies = [("Set-Cookie", f"{tag}{i:03d}={'x' * size}; Path=/{domain}") for i in range(n)]
    if "token" in q:
        cookies.append(("Set-Cookie", f"tok={q['token']}; Path=/"))
        time.sleep(0.005)  # let concurrent chains interleave
    if "next" in q:
        _answer(h, 302, [("Location", q["next"]), *cookies])
    else:
        _answer(h, 200, [("Content-Type", HTML), *cookies], ARTICLE_EN.encode())


def _consent(h: BaseHTTPRequestHandler) -> None:
    """A consent wall: sets the cookie, sends the reader back to the article."""
    next_url = _query(h).get("next", "/gated")
    _answer(h, 302, [("Location", next_url), ("Set-Cookie", "consent=yes; Path=/; Max-Age=31536000")])


def _gated(h: BaseHTTPRequestHandler) -> None:
    if "consent=yes" in (h.headers.get("Cookie") or ""):
        send(h, 200, ARTICLE_EN.encode(), HTML)
    else:
        send(h, 403, b"consent first", "text/plain")


def _echo(h: BaseHTTPRequestHandler) -> None:
    if "token" in _query(h):
        time.sleep(0.005)
    send(h, 200, ARTICLE_EN.encode(), HTML)


@pytest.fixture(scope="module")
def server() -> Iterator[CookieServer]:
    with CookieServer() as s:
        yield s


@pytest.fixture(scope="module")
def settings(server: CookieServer) -> Settings:
    port = server.port
    allow = ",".join([f"127.0.0.1:{port}", *(f"{h}:{port}" for h in PINNED)])
    resolve = ",".join(f"{h}:{port}:127.0.0.1" for h in PINNED)
    return strict_fetch_settings(allow, fetch_resolve=resolve, fetch_total_timeout_s=10.0)


@pytest.fixture
def session(settings: Settings) -> Iterator[requests.Session]:
    s = make_session(settings)
    yield s
    s.close()


def url(server: CookieServer, path: str, host: str = "127.0.0.1", **query: str | int) -> str:
    q = f"?{urlencode(query)}" if query else ""
    return f"http://{host}:{server.port}{path}{q}"


def test_cookies_of_one_article_never_reach_the_next(
    server: CookieServer, settings: Settings, session: requests.Session
) -> None:
    # Article 1: a redirect sets cookies, then the page itself sets more.
    page_url = url(server, "/set", n=2, tag="page")
    page = fetch_page(url(server, "/set", n=3, tag="hop", next=page_url), settings, session)
    assert "flood wall" in page.html
    assert server.requests_to("/set", tag="page")[-1].cookies.keys() == {"hop000", "hop001", "hop002"}
    # Article 2, same site, same session: nothing from article 1.
    fetch_page(url(server, "/echo", article="2"), settings, session)
    assert server.requests_to("/echo", article="2")[-1].cookie is None
    assert len(session.cookies) == 0


def test_a_redirect_chain_that_needs_its_cookie_still_works(
    server: CookieServer, settings: Settings, session: requests.Session
) -> None:
    """A consent wall: /consent sets `consent=yes` and redirects to /gated, which wants it."""
    page = fetch_page(url(server, "/consent", next="/gated"), settings, session)
    assert "flood wall" in page.html and page.redirects == [url(server, "/gated")]
    assert server.requests_to("/gated")[-1].cookies == {"consent": "yes"}
    # The consent does not outlive its fetch: the next article meets the wall again.
    with pytest.raises(PermanentError) as info:
        fetch_page(url(server, "/gated"), settings, session)
    assert info.value.reason == "http_403"


def test_domain_cookie_reaches_a_sibling_within_its_chain_only(
    server: CookieServer, settings: Settings, session: requests.Session
) -> None:
    a, b = "a.shared.example", "b.shared.example"
    # Domain=shared.example: both hosts are under it, and this chain goes from one to the other.
    to_b = url(server, "/echo", host=b, hop="domain")
    fetch_page(url(server, "/set", host=a, tag="dom", domain="shared.example", next=to_b), settings, session)
    hop = server.requests_to("/echo", hop="domain")[-1]
    assert hop.host == b and hop.cookies == {"dom000": "xxxxxxxx"}
    # A host-only cookie stays with its host, even within the chain.
    to_b = url(server, "/echo", host=b, hop="host-only")
    fetch_page(url(server, "/set", host=a, tag="host", next=to_b), settings, session)
    assert server.requests_to("/echo", hop="host-only")[-1].cookie is None
    # A later article on the sibling, or on the host itself, gets none of it.
    for host in (a, b):
        fetch_page(url(server, "/echo", host=host, article="later"), settings, session)
        assert server.requests_to("/echo", article="later")[-1].cookie is None


def test_cookies_for_a_public_suffix_are_refused(
    server: CookieServer, settings: Settings, session: requests.Session
) -> None:
    """x.github.io may not set a cookie for all of github.io, not even for the rest of its own chain."""
    for target_host, hop in (("y.github.io", "psl-sibling"), ("x.github.io", "psl-self")):
        to = url(server, "/echo", host=target_host, hop=hop)
        fetch_page(url(server, "/set", host="x.github.io", tag="psl", domain="github.io", next=to), settings, session)
        assert server.requests_to("/echo", hop=hop)[-1].cookie is None, hop
    # Its own name is fine.
    to = url(server, "/echo", host="x.github.io", hop="own")
    fetch_page(url(server, "/set", host="x.github.io", tag="own", domain="x.github.io", next=to), settings, session)
    assert server.requests_to("/echo", hop="own")[-1].cookies == {"own000": "xxxxxxxx"}
    # A bare TLD, as Python's own policy already refuses.
    to = url(server, "/echo", host="a.shared.example", hop="tld")
    fetch_page(url(server, "/set", host="a.shared.example", domain="example", next=to), settings, session)
    assert server.requests_to("/echo", hop="tld")[-1].cookie is None


@pytest.mark.parametrize(
    ("domain", "public"),
    [
        ("com", True), (".com", True), ("co.uk", True), ("com.au", True), ("github.io", True),
        ("blogspot.com", True), ("s3.amazonaws.com", True), ("рф", True), ("example", True),
        ("foo.ck", True), ("www.ck", False),  # PSL wildcard *.ck and its exception !www.ck
        ("bbc.co.uk", False), ("x.github.io", False), ("example.com", False), ("пример.рф", False),
        ("shared.example", False), ("127.0.0.1", False),
    ],
)  # fmt: skip
def test_public_suffixes(domain: str, public: bool) -> None:
    assert is_public_suffix(domain) is public


@pytest.fixture
def many_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the HTTP client read 200+ headers, so the jar's own caps are what is tested."""
    monkeypatch.setattr(http.client, "_MAXHEADERS", 1000)


def test_200_cookies_of_1kb_are_not_all_sent_back(
    server: CookieServer, settings: Settings, session: requests.Session, many_headers: None
) -> None:
    to = url(server, "/echo", hop="flood")
    fetch_page(url(server, "/set", n=200, size=1024, next=to), settings, session)
    hop = server.requests_to("/echo", hop="flood")[-1]
    assert hop.cookie is not None and len(hop.cookie.encode()) <= MAX_FETCH_COOKIE_BYTES
    # First come, first kept: as many whole 1 kB cookies as fit in the budget.
    assert list(hop.cookies) == [f"c{i:03d}" for i in range(MAX_FETCH_COOKIE_BYTES // (4 + 1 + 1024 + 2))]


def test_200_small_cookies_are_capped_by_count(
    server: CookieServer, settings: Settings, session: requests.Session, many_headers: None
) -> None:
    to = url(server, "/echo", hop="many")
    fetch_page(url(server, "/set", n=200, size=10, next=to), settings, session)
    assert len(server.requests_to("/echo", hop="many")[-1].cookies) == MAX_FETCH_COOKIES


def test_200_set_cookie_headers_are_refused_by_the_http_client_anyway(
    server: CookieServer, settings: Settings, session: requests.Session
) -> None:
    """Without raising http.client's limit of 100 headers, such an answer is a connection error."""
    with pytest.raises(TransientError) as info:
        fetch_page(url(server, "/set", n=200, size=1024), settings, session)
    assert info.value.reason == "connection_error"


def test_the_jar_caps_count_replacements_once() -> None:
    jar = FetchCookieJar(max_cookies=2, max_bytes=100)
    jar.set("a", "1", domain="news.example", path="/")
    jar.set("a", "22", domain="news.example", path="/")  # replaces a=1
    jar.set("b", "1", domain="news.example", path="/")
    jar.set("c", "1", domain="news.example", path="/")  # a third one: dropped
    assert {c.name: c.value for c in jar} == {"a": "22", "b": "1"} and jar.dropped == 1
    jar = FetchCookieJar(max_cookies=10, max_bytes=30)
    jar.set("big", "x" * 20, domain="news.example", path="/")  # 26 bytes with "; "
    jar.set("more", "y", domain="news.example", path="/")  # 8 more: over 30
    assert [c.name for c in jar] == ["big"] and jar.dropped == 1


def test_concurrent_fetches_do_not_see_each_others_cookies(
    server: CookieServer, settings: Settings, session: requests.Session
) -> None:
    """16 threads on one session, as in the fetch worker: each chain sees its own token only."""
    tokens = [f"t{i:03d}" for i in range(96)]

    def chain(token: str) -> None:
        to = url(server, "/echo", token=token)
        fetch_page(url(server, "/set", n=2, tag=f"{token}x", token=token, next=to), settings, session)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(chain, tokens))
    for token in tokens:
        (seen,) = server.requests_to("/echo", token=token)
        assert seen.cookies == {"tok": token, f"{token}x000": "xxxxxxxx", f"{token}x001": "xxxxxxxx"}, token
    assert len(session.cookies) == 0
    # The pool is shared: far fewer connections than requests.
    ports = {s.client_port for s in server.seen_requests if s.query.get("token")}
    assert len(ports) <= 32, len(ports)


def test_connections_are_still_reused_across_articles(server: CookieServer, settings: Settings) -> None:
    with make_session(settings) as session:
        for i in range(4):
            fetch_page(url(server, "/set", n=3, tag="pool", article=f"pool{i}"), settings, session)
            fetch_page(url(server, "/echo", article=f"pool{i}"), settings, session)
    seen = [s for s in server.seen_requests if s.query.get("article", "").startswith("pool")]
    assert len(seen) == 8
    assert len({s.client_port for s in seen}) == 1, "keep-alive lost: a new connection per fetch"
    assert all(s.cookie is None for s in seen)


def test_session_jar_keeps_nothing(server: CookieServer, settings: Settings) -> None:
    jar = SessionCookieJar()
    jar.set("planted", "1", domain="127.0.0.1", path="/")
    assert len(jar) == 0
    # A plain requests.Session (not from make_session) handed to the fetcher forgets its cookies.
    plain = requests.Session()
    plain.cookies.set("planted", "1", domain="127.0.0.1", path="/")
    with plain:
        fetch_page(url(server, "/set", n=2, tag="plain", next=url(server, "/echo", hop="plain")), settings, plain)
        fetch_page(url(server, "/echo", article="plain-2"), settings, plain)
    assert server.requests_to("/echo", hop="plain")[-1].cookies.keys() == {"plain000", "plain001"}
    assert server.requests_to("/echo", article="plain-2")[-1].cookie is None
    assert isinstance(plain.cookies, SessionCookieJar) and len(plain.cookies) == 0


def test_feeds_get_one_jar_per_fetch_too(server: CookieServer, settings: Settings, session: requests.Session) -> None:
    """The crawl's feeds, sitemaps and robots.txt go through the same fetch_bytes."""
    to = url(server, "/echo", hop="feed")
    doc = fetch_document(url(server, "/set", tag="feed", next=to), settings, session, max_bytes=1 << 20)
    assert doc.status == 200 and server.requests_to("/echo", hop="feed")[-1].cookies == {"feed000": "xxxxxxxx"}
    fetch_document(url(server, "/echo", article="feed-2"), settings, session, max_bytes=1 << 20)
    assert server.requests_to("/echo", article="feed-2")[-1].cookie is None
