"""robots.txt against RFC 9309, rule by rule (docs/reliability.md, "robots.txt (RFC 9309)").

Parsing and matching are tested on strings; everything HTTP (sizes, redirects, statuses, timeouts,
caching) is fetched over real HTTP from servers on 127.0.0.1 (tests/sites/newsite.py SiteServer,
tests/hostile/server.py RouteServer), with the cache on a real Redis. No mocked HTTP.
"""

from __future__ import annotations

import gzip
import itertools
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import requests

from config.defaults import Settings
from newsflow.errors import PermanentError, TransientError
from newsflow.fetcher import make_session
from newsflow.polite.hosts import interval_s
from newsflow.polite.robots import (
    CRAWL_DELAY_CEILING_S,
    ROBOTS_MAX_BYTES,
    RobotsCache,
    RobotsRules,
    bot_token,
    cache_ttl_s,
    failure_rules,
    max_age_of,
    robots_text,
)
from newsflow.sources.http import fetch_document
from newsflow.state import connect
from tests.hostile.server import RouteServer, send, trickle
from tests.sites.newsite import Route, SiteServer
from workers.runtime import free_port

BOT = "newsflow"
DAY = 24 * 3600


def rules_of(body: str) -> RobotsRules:
    return RobotsRules("rules", body, time.time())


def allowed(body: str, path: str, bot: str = BOT) -> bool:
    return rules_of(body).allowed(f"https://example.org{path}", bot)


# --- 2.2.1 user-agent lines ------------------------------------------------------------------------


def test_user_agent_match_is_case_insensitive_and_on_the_whole_product_token() -> None:
    assert not allowed("User-agent: NewsFlow\nDisallow: /\n", "/a")  # case-insensitive
    assert not allowed("user-agent: NEWSFLOW\ndisallow: /\n", "/a")
    assert not allowed("User-agent: newsflow/2.0 (+https://x)\nDisallow: /\n", "/a")  # the token of the value
    # A group whose name only starts our token is not ours (Protego alone applies `news` to `newsflow`):
    assert allowed("User-agent: news\nDisallow: /\n", "/a")
    assert allowed("User-agent: news\nDisallow: /\n\nUser-agent: *\nDisallow: /x\n", "/a")  # `*` applies ...
    assert not allowed("User-agent: news\nDisallow: /\n\nUser-agent: *\nDisallow: /x\n", "/x")
    assert allowed("User-agent: newsflowbot\nDisallow: /\n", "/a")  # ... nor a longer name
    assert allowed("User-agent: flow\nDisallow: /\n", "/a")
    assert not allowed("User-agent: newsflow\nDisallow: /\n", "/a", bot="NewsFlow/0.1 (+https://example.org)")
    # Our own group, and only it, when there is one; `*` otherwise; nothing when neither.
    two = "User-agent: *\nDisallow: /private/\n\nUser-agent: newsflow\nDisallow: /no-bots/\n"
    assert allowed(two, "/private/x") and not allowed(two, "/no-bots/x")
    assert not allowed(two, "/private/x", bot="otherbot") and allowed(two, "/no-bots/x", bot="otherbot")
    assert allowed("User-agent: googlebot\nDisallow: /\n", "/a")
    assert allowed("Disallow: /\n", "/a")  # a rule before any user-agent line belongs to no group


def test_groups_naming_us_are_combined_and_agents_stack() -> None:
    body = (
        "User-agent: newsflow\nDisallow: /a/\n\n"
        "User-agent: other\nUser-agent: NewsFlow\nDisallow: /b/\n\n"  # two agents, one group
        "User-agent: newsflow\nDisallow: /c/\n"
    )
    assert not allowed(body, "/a/1") and not allowed(body, "/b/1") and not allowed(body, "/c/1")
    assert allowed(body, "/d/1")
    assert not allowed(body, "/b/1", bot="other") and allowed(body, "/a/1", bot="other")


@pytest.mark.parametrize(
    ("user_agent", "token"),
    [
        ("newsflow/0.1 (+https://example.org/bot)", "newsflow"),
        ("NewsFlow", "newsflow"),
        ("news_flow-bot/1", "news_flow-bot"),
        ("", "newsflow"),
        ("/0.1", "newsflow"),  # no product token: ours by default, never a crash
        ("  ", "newsflow"),
    ],
)
def test_bot_token_is_the_rfc_product_token(user_agent: str, token: str) -> None:
    assert bot_token(user_agent) == token


# --- 2.2.2 allow and disallow lines, 2.2.3 special characters --------------------------------------


def test_wildcard_and_end_anchor() -> None:
    body = "User-agent: *\nDisallow: /*.pdf$\nDisallow: /fish*\nDisallow: /a/*/edit\nAllow: /$\nDisallow: /\n"
    assert not allowed(body, "/docs/report.pdf")
    assert not allowed(body, "/fishheads") and not allowed(body, "/fish")
    assert not allowed(body, "/a/42/edit")
    assert allowed(body, "/")  # `Allow: /$` is longer than `Disallow: /` and matches only "/"
    assert not allowed(body, "/other")
    only = "User-agent: *\nDisallow: /*.pdf$\n"
    assert allowed(only, "/report.pdf?download=1")  # `$` anchors the end of the whole path + query
    assert allowed(only, "/report.pdfx")


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        # RFC 9309 2.2.2's table: the rule in robots.txt, then the URI path it matches.
        ("/foo/bar?baz=quz", "/foo/bar?baz=quz"),
        ("/foo/bar?baz=https://foo.bar", "/foo/bar?baz=https%3A%2F%2Ffoo.bar"),  # Protego alone misses this
        ("/foo/bar/\u30c4", "/foo/bar/%E3%83%84"),
        ("/foo/bar/%E3%83%84", "/foo/bar/%E3%83%84"),
        ("/foo/bar/%62%61%7A", "/foo/bar/baz"),
        # and the other way round, and hex case
        ("/foo/bar/baz", "/foo/bar/%62%61%7a"),
        ("/foo/bar/%e3%83%84", "/foo/bar/\u30c4"),
        ("/q?u=a%2Fb", "/q?u=a/b"),
    ],
)
def test_percent_encoding_equivalence(rule: str, path: str) -> None:
    assert not allowed(f"User-agent: *\nDisallow: {rule}\n", path)


def test_an_encoded_slash_in_a_path_is_not_a_slash() -> None:
    # RFC 9309 2.2.2: a reserved character stays encoded; /a%2Fb is one segment, /a/b two.
    assert allowed("User-agent: *\nDisallow: /a%2Fb\n", "/a/b")
    assert allowed("User-agent: *\nDisallow: /a/b\n", "/a%2Fb")


def test_longest_match_wins_and_allow_wins_a_tie() -> None:
    body = "User-agent: *\nDisallow: /news/\nAllow: /news/today/\nDisallow: /news/today/draft\n"
    assert not allowed(body, "/news/old")
    assert allowed(body, "/news/today/story")
    assert not allowed(body, "/news/today/draft-1")
    assert allowed("User-agent: *\nAllow: /folder\nDisallow: /folder\n", "/folder/x")  # tie: allow
    assert allowed("User-agent: *\nDisallow: /folder\nAllow: /folder\n", "/folder/x")  # whatever the order
    assert allowed("User-agent: *\nDisallow: /a\nAllow: /a*\n", "/ab")  # length of the pattern counts
    assert not allowed("User-agent: *\nAllow: /page\nDisallow: /*.htm\n", "/page.htm")


def test_robots_txt_itself_is_always_allowed() -> None:
    assert allowed("User-agent: *\nDisallow: /\n", "/robots.txt")
    assert not allowed("User-agent: *\nDisallow: /\n", "/robots.txt.bak")


def test_comments_line_endings_and_lines_that_are_not_rules() -> None:
    body = "# hello\r\nUser-agent: * # everyone\rDisallow: /a # not /b\r\nthis is not a rule\nDisallow:\nNoise: x\n"
    assert not allowed(body, "/a") and allowed(body, "/b")
    assert allowed("User-agent: *\nDisallow:\n", "/anything")  # an empty Disallow allows all
    assert allowed("User-agent: *\nDisallow: /\n", "/") is False


# --- 2.2 file format: encoding, things that are not a robots.txt ------------------------------------


@pytest.mark.parametrize(
    ("body", "private_disallowed"),
    [
        (b"\xef\xbb\xbfUser-agent: *\nDisallow: /private/\n", True),  # UTF-8 BOM: stripped (Protego chokes on it)
        (b"User-agent: *\nDisallow: /caf\xe9\xff\nDisallow: /private/\n", True),  # bad bytes: replaced, rest read
        (b"\xff\xfe" + "User-agent: *\nDisallow: /private/\n".encode("utf-16-le"), True),  # UTF-16 with its BOM
        (b"<!doctype html><html><head><title>Not found</title></head><body>Sorry</body></html>", False),
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, False),  # binary: no parseable line, nothing disallowed
        (b"", False),
    ],
    ids=["utf8_bom", "invalid_utf8", "utf16_bom", "html_page", "binary", "empty"],
)
def test_decoding(body: bytes, private_disallowed: bool) -> None:
    rules = rules_of(robots_text(body))
    assert rules.allowed("https://example.org/private/x", BOT) is not private_disallowed
    assert rules.allowed("https://example.org/public", BOT)


def test_a_line_cut_by_the_size_limit_is_dropped_not_half_parsed() -> None:
    cut = b"User-agent: *\nDisallow: /private/\nDisallow: /a"  # of "Disallow: /archive/"
    text = robots_text(cut, truncated=True)
    assert text == "User-agent: *\nDisallow: /private/\n"
    assert robots_text(b"User-agent: *\r\nDisallow: /x\r", truncated=True).endswith("/x\r")
    assert robots_text(cut, truncated=False).endswith("/a")  # a file ending without a newline is whole
    multibyte = "User-agent: *\nDisallow: /ツ\n".encode()
    assert robots_text(multibyte[:-2], truncated=True) == "User-agent: *\n"  # cut inside a character


# --- Crawl-delay (not in the RFC): bounded, never below the host's own rate -------------------------


@pytest.mark.parametrize(
    ("value", "delay", "interval"),
    [
        ("5", 5.0, 5.0),
        ("0.5", 0.5, 2.0),  # below the host's interval (rate 0.5/s): the interval stays
        ("0", 0.0, 2.0),
        ("-3", None, 2.0),  # negative: ignored, the host's rate applies
        ("nan", None, 2.0),
        ("soon", None, 2.0),
        ("1e300", CRAWL_DELAY_CEILING_S, 10.0),  # huge: capped at polite_max_crawl_delay_s
        ("inf", CRAWL_DELAY_CEILING_S, 10.0),  # Protego drops inf; here it is huge, not "no delay"
        ("1e999", CRAWL_DELAY_CEILING_S, 10.0),
    ],
)
def test_crawl_delay_is_bounded(value: str, delay: float | None, interval: float) -> None:
    rules = rules_of(f"User-agent: *\nCrawl-delay: {value}\nDisallow: /x\n")
    got = rules.crawl_delay(BOT)
    assert got == delay
    s = Settings(polite_host_rate_per_s=0.5, polite_max_crawl_delay_s=10.0)
    assert interval_s("example.org", s, crawl_delay_s=got) == interval


def test_interval_takes_any_crawl_delay_value_in_bounds() -> None:
    s = Settings(polite_host_rate_per_s=0.5, polite_max_crawl_delay_s=10.0)
    for raw in (None, -1.0, math.nan, 0.0, math.inf, -math.inf, 1e308):
        assert 2.0 <= interval_s("example.org", s, crawl_delay_s=raw) <= 10.0, raw
    assert interval_s("example.org", s, crawl_delay_s=7.0) == 7.0


# --- 2.4 caching (unit) ------------------------------------------------------------------------------


def test_cache_lifetime_is_at_most_24_hours_and_max_age_only_shortens_it() -> None:
    s = Settings(polite_robots_ttl_s=DAY, polite_robots_error_ttl_s=300)
    assert cache_ttl_s(s, None) == DAY
    assert cache_ttl_s(s, 600) == 600
    assert cache_ttl_s(s, 10 * DAY) == DAY  # a longer max-age does not lengthen it
    assert cache_ttl_s(s, 0) == 300  # no-cache / max-age=0: not below the error TTL
    assert cache_ttl_s(Settings(polite_robots_ttl_s=7 * DAY), None) == DAY  # the setting is capped too
    assert max_age_of("public, max-age=600") == 600
    assert max_age_of('max-age="60", s-maxage=30') == 30
    assert max_age_of("no-cache") == 0 and max_age_of("max-age=60, no-store") == 0
    assert max_age_of("") is None and max_age_of("max-age=soon") is None and max_age_of("private") is None


# --- 2.3.1.4 unreachable: which failures (unit; DNS cannot be failed without leaving the machine) ----


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (PermanentError("dns_error", "cannot resolve news.example"), "error"),
        (PermanentError("bad_encoding", "cannot decompress body"), "error"),
        (PermanentError("too_large", "a reason robots.txt no longer has"), "error"),  # unknown: not a policy
        (PermanentError("bad_settings", "NEWSFLOW_FETCH_RESOLVE"), "error"),
        (TransientError("http_503", "down"), "error"),
        (TransientError("connection_error", "refused"), "error"),
        (PermanentError("http_404", "Not Found"), "allow_all"),
        (PermanentError("http_403", "Forbidden"), "allow_all"),
        (PermanentError("too_many_redirects", "more than 5"), "allow_all"),
        (PermanentError("private_address", "a redirect to 10.0.0.1"), "allow_all"),
        # A response that cannot be framed (two Content-Lengths that disagree) is no answer at all.
        (PermanentError("bad_response", "Content-Length: 26, 27"), "error"),
    ],
)
def test_which_failures_are_unreachable(exc: PermanentError | TransientError, kind: str) -> None:
    assert failure_rules(exc, time.time()).kind == kind


# --- over HTTP ---------------------------------------------------------------------------------------


@pytest.fixture()
def settings() -> Settings:
    return Settings(
        fetch_allow_private=True,
        key_prefix=f"test-{uuid.uuid4().hex[:8]}:",
        fetch_total_timeout_s=5.0,
        polite_robots_ttl_s=DAY,
        polite_robots_error_ttl_s=300,
    )


@pytest.fixture()
def cache(redis_url: str, settings: Settings) -> RobotsCache:
    return RobotsCache(connect(redis_url), settings)


@pytest.fixture()
def session(settings: Settings) -> Iterator[requests.Session]:
    s = make_session(settings)
    yield s
    s.close()


@pytest.fixture()
def site() -> Iterator[SiteServer]:
    with SiteServer({}) as server:
        yield server


RULES = b"User-agent: *\nDisallow: /private/\n"


def ttl_of(cache: RobotsCache, origin: str) -> int:
    return int(cache.r.ttl(cache.key(origin)))


def big_robots(total: int) -> bytes:
    """Rules, then padding so that `Disallow: /archive/` is cut after `/a` by the limit, then more rules."""
    head = RULES
    straddling = b"Disallow: /archive/\n"
    pad = ROBOTS_MAX_BYTES - len(b"Disallow: /a") - len(head)
    body = head + b"#" + b"x" * (pad - 2) + b"\n" + straddling
    assert body[:ROBOTS_MAX_BYTES].endswith(b"\nDisallow: /a")
    while len(body) < total:
        body += b"Disallow: /after/\n"
    return body


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_600_kib_file_is_parsed_up_to_500_kib(cache: RobotsCache, session: requests.Session, encoding: str) -> None:
    body = big_robots(600 * 1024)
    headers = {"Content-Encoding": "gzip"} if encoding == "gzip" else {}
    payload = gzip.compress(body) if headers else body
    # RouteServer: quiet when we hang up on the rest of the body, which is the point.
    with RouteServer({"/robots.txt": lambda h: send(h, 200, payload, "text/plain", headers)}) as server:
        origin = server.base_url
        rules = cache.fetch_and_store(origin, session)
        assert server.hits == {"/robots.txt": 1}
    assert rules.kind == "rules", rules  # never "allow everything" because it is big
    assert "truncated" in rules.detail
    assert len(rules.body.encode()) <= ROBOTS_MAX_BYTES
    assert not rules.allowed(f"{origin}/private/x", BOT)  # the rules before the limit apply
    assert rules.allowed(f"{origin}/apple", BOT)  # the cut `Disallow: /a` was dropped, not read as /a
    assert rules.allowed(f"{origin}/after/x", BOT)  # past the limit: not read


def test_a_file_of_exactly_500_kib_is_read_whole(
    site: SiteServer, cache: RobotsCache, session: requests.Session
) -> None:
    tail = b"Disallow: /last"  # no newline at the end: a whole line all the same
    body = RULES + b"#" + b"x" * (ROBOTS_MAX_BYTES - len(RULES) - len(tail) - 2) + b"\n" + tail
    assert len(body) == ROBOTS_MAX_BYTES
    site.routes["/robots.txt"] = Route(body, "text/plain")
    rules = cache.fetch_and_store(site.base_url, session)
    assert rules.kind == "rules" and "truncated" not in rules.detail
    assert not rules.allowed(f"{site.base_url}/last", BOT)


def test_other_documents_are_still_refused_when_too_large(settings: Settings, session: requests.Session) -> None:
    """`truncate` is robots.txt's alone: feeds and sitemaps over their cap are refused as before."""
    feed = {"/feed.xml": lambda h: send(h, 200, b"x" * 600_000, "application/xml")}
    with RouteServer(feed) as server:
        with pytest.raises(PermanentError) as info:
            fetch_document(f"{server.base_url}/feed.xml", settings, session, max_bytes=500_000)
        assert info.value.reason == "too_large"
        doc = fetch_document(f"{server.base_url}/feed.xml", settings, session, max_bytes=1000, truncate=True)
    assert doc.body == b"x" * 1000
    assert "Content-Length" not in doc.headers


def chain(site: SiteServer, hops: int, final: Route) -> None:
    """/robots.txt -> /r1 -> ... -> /r{hops} (the final answer): `hops` consecutive redirects."""
    names = ["/robots.txt", *(f"/r{i}" for i in range(1, hops + 1))]
    for here, there in itertools.pairwise(names):
        site.routes[here] = Route(b"", status=302, headers={"Location": there})
    site.routes[names[-1]] = final


@pytest.mark.parametrize("hops", [1, 5])
def test_up_to_five_redirects_are_followed(
    site: SiteServer, cache: RobotsCache, session: requests.Session, hops: int
) -> None:
    chain(site, hops, Route(RULES, "text/plain"))
    rules = cache.fetch_and_store(site.base_url, session)
    assert rules.kind == "rules" and not rules.allowed(f"{site.base_url}/private/x", BOT)


def test_six_redirects_or_a_loop_mean_unavailable(
    site: SiteServer, cache: RobotsCache, session: requests.Session
) -> None:
    chain(site, 6, Route(RULES, "text/plain"))
    rules = cache.fetch_and_store(site.base_url, session)
    assert rules.kind == "allow_all" and rules.detail == "too_many_redirects"
    assert len(site.hits("/r6")) == 0  # the sixth redirect was not followed
    site.routes["/robots.txt"] = Route(b"", status=302, headers={"Location": "/loop"})
    site.routes["/loop"] = Route(b"", status=301, headers={"Location": "/robots.txt"})
    assert cache.fetch_and_store(site.base_url, session).kind == "allow_all"


def test_a_redirect_to_another_origin_is_followed_and_applies_to_the_first(
    site: SiteServer, cache: RobotsCache, session: requests.Session
) -> None:
    with SiteServer({"/robots.txt": Route(b"User-agent: *\nDisallow: /elsewhere/\n", "text/plain")}) as other:
        site.routes["/robots.txt"] = Route(b"", status=301, headers={"Location": f"{other.base_url}/robots.txt"})
        rules = cache.fetch_and_store(site.base_url, session)
    assert rules.kind == "rules" and not rules.allowed(f"{site.base_url}/elsewhere/x", BOT)
    assert other.base_url in rules.detail
    assert cache.get(site.base_url) == rules  # stored under the origin asked about ...
    assert cache.get(other.base_url) is None  # ... not under the one that answered


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 451])
def test_4xx_means_unavailable_everything_allowed(
    site: SiteServer, cache: RobotsCache, session: requests.Session, status: int
) -> None:
    site.routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /\n", "text/plain", status=status)
    rules = cache.fetch_and_store(site.base_url, session)
    assert rules.kind == "allow_all" and rules.allowed(f"{site.base_url}/x", BOT)
    assert ttl_of(cache, site.base_url) > 300  # cached like a robots.txt, not retried like an error


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_mean_unreachable_complete_disallow(
    site: SiteServer, cache: RobotsCache, session: requests.Session, status: int
) -> None:
    site.routes["/robots.txt"] = Route(b"User-agent: *\nAllow: /\n", "text/plain", status=status)
    rules = cache.fetch_and_store(site.base_url, session)
    assert rules.kind == "error" and not rules.allowed(f"{site.base_url}/x", BOT)
    assert f"http_{status}" in rules.detail
    assert 0 < ttl_of(cache, site.base_url) <= 300  # retried after the short error TTL


def test_timeouts_refused_connections_and_broken_bodies_are_unreachable(
    cache: RobotsCache, settings: Settings, redis_url: str
) -> None:
    quick = replace(settings, fetch_total_timeout_s=1.0)
    quick_cache = RobotsCache(connect(redis_url), quick)
    session = make_session(quick)
    with RouteServer({"/robots.txt": lambda h: trickle(h, "text/plain", 0.2, max_s=5.0)}) as slow:
        started = time.monotonic()
        rules = quick_cache.fetch_and_store(slow.base_url, session)
        assert rules.kind == "error" and rules.detail.startswith("timeout"), rules
        assert time.monotonic() - started < 4.0
    refused = quick_cache.fetch_and_store(f"http://127.0.0.1:{free_port()}", session)
    assert refused.kind == "error" and refused.detail.startswith("connection_error")
    garbage = b"\x1f\x8b\x08\x00garbage-not-gzip" * 50
    broken = {"/robots.txt": lambda h: send(h, 200, garbage, "text/plain", {"Content-Encoding": "gzip"})}
    with RouteServer(broken) as bad:
        garbled = quick_cache.fetch_and_store(bad.base_url, session)
    assert garbled.kind == "error" and garbled.detail.startswith("bad_encoding")
    session.close()


def test_unreachable_for_30_days_falls_back_to_the_last_good_copy(
    site: SiteServer, cache: RobotsCache, session: requests.Session
) -> None:
    origin = site.base_url
    site.routes["/robots.txt"] = Route(RULES, "text/plain")
    good = cache.fetch_and_store(origin, session)
    site.routes["/robots.txt"] = Route(b"down", "text/plain", status=500)
    first = cache.fetch_and_store(origin, session)
    assert first.kind == "error"  # the first 30 days: complete disallow, whatever was known before
    assert cache.r.get(cache.down_key(origin)) is not None
    cache.r.set(cache.down_key(origin), repr(time.time() - 31 * DAY))  # ... 31 days of 500s later
    kept = cache.fetch_and_store(origin, session)
    assert kept.kind == "rules" and kept.body == good.body and "last good copy" in kept.detail
    assert not kept.allowed(f"{origin}/private/x", BOT) and kept.allowed(f"{origin}/news/x", BOT)
    assert 0 < ttl_of(cache, origin) <= 300  # and robots.txt is still asked again soon
    # Never a good answer: after 30 days, still complete disallow (no "no restrictions" from errors alone).
    with SiteServer({"/robots.txt": Route(b"down", "text/plain", status=503)}) as never:
        cache.fetch_and_store(never.base_url, session)
        cache.r.set(cache.down_key(never.base_url), repr(time.time() - 31 * DAY))
        assert cache.fetch_and_store(never.base_url, session).kind == "error"
    # Back up: the run of failures is over.
    site.routes["/robots.txt"] = Route(b"User-agent: *\nDisallow: /new/\n", "text/plain")
    back = cache.fetch_and_store(origin, session)
    assert back.kind == "rules" and not back.allowed(f"{origin}/new/x", BOT)
    assert cache.r.get(cache.down_key(origin)) is None


@pytest.mark.parametrize(
    ("cache_control", "low", "high"),
    [
        (None, DAY - 5, DAY),
        ("max-age=600", 595, 600),
        ("public, max-age=864000", DAY - 5, DAY),  # longer than 24 h: 24 h
        ("max-age=10", 295, 300),  # shorter than the error TTL: the error TTL
        ("no-cache", 295, 300),
    ],
)
def test_cache_control_can_only_shorten_the_24_hours(
    site: SiteServer, cache: RobotsCache, session: requests.Session, cache_control: str | None, low: int, high: int
) -> None:
    headers = {"Cache-Control": cache_control} if cache_control else {}
    site.routes["/robots.txt"] = Route(RULES, "text/plain", headers=headers)
    assert cache.fetch_and_store(site.base_url, session).kind == "rules"
    assert low <= ttl_of(cache, site.base_url) <= high


def test_a_longer_ttl_setting_is_capped_at_24_hours(
    site: SiteServer, settings: Settings, redis_url: str, session: requests.Session
) -> None:
    week = RobotsCache(connect(redis_url), replace(settings, polite_robots_ttl_s=7 * DAY))
    site.routes["/robots.txt"] = Route(RULES, "text/plain")
    week.fetch_and_store(site.base_url, session)
    assert ttl_of(week, site.base_url) <= DAY


def test_an_html_page_served_with_200_allows_everything(
    site: SiteServer, cache: RobotsCache, session: requests.Session
) -> None:
    page = b"<!doctype html><html><head><title>Page not found</title></head><body><h1>404</h1></body></html>"
    site.routes["/robots.txt"] = Route(page, "text/html; charset=utf-8")
    rules = cache.fetch_and_store(site.base_url, session)
    assert rules.kind == "rules" and "text/html" in rules.detail
    assert rules.allowed(f"{site.base_url}/any/page", BOT)
