"""Crawls end to end: a local news site on loopback, real Redis, real workers, beat and the CLI.

Its own deployment (private redis-server, data dir) with the real per-host limit
(`RATE` requests/s, not the 200/s the shared tests use), four fetch threads, and three "hosts":
127.0.0.1 (the news site), 127.0.0.2 (answers 429 + Retry-After first) and 127.0.0.3 (beat's).
The limiter keys hosts by host[:port]; every request is timestamped by the servers themselves.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from config.defaults import Settings
from newsflow.state import State
from newsflow.urls import article_id
from tests.conftest import ROOT, TEST_ENV, start_private_redis, suite_settings
from tests.sites.newsite import NewsSite, Route, SiteServer, article_html, news_site, throttled_site

pytestmark = pytest.mark.integration

# Requests per second per host for this deployment (the product default is 1; 2 keeps the test short).
RATE = float(os.environ.get("NEWSFLOW_TEST_CRAWL_RATE", "2.0"))
RETRY_AFTER_S = 2.0


@dataclass
class Env:
    settings: Settings
    env: dict[str, str]
    state: State
    site: SiteServer
    news: NewsSite
    slow: SiteServer
    slow_site: NewsSite
    beat_site: SiteServer
    sources: Path
    tmp: Path

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def crawl(self, *args: str, timeout: float = 180) -> tuple[int, dict[str, Any]]:
        proc = self.cli("crawl", "--sources", str(self.sources), "--json", *args, timeout=timeout)
        assert proc.stdout.strip(), proc.stderr[-3000:]
        return proc.returncode, dict(json.loads(proc.stdout))

    def url(self, path: str) -> str:
        return self.site.base_url + path


def _sources(path: Path, site: str, slow_list: Path) -> None:
    path.write_text(
        f"""
[[source]]
name = "rss"
kind = "feed"
location = "{site}/rss.xml"
[[source]]
name = "atom"
kind = "feed"
location = "{site}/atom.xml"
[[source]]
name = "news-sitemap"
kind = "sitemap"
location = "{site}/sitemap_index.xml"
[[source]]
name = "slowhost"
kind = "urls"
location = "{slow_list.name}"
"""
    )


@pytest.fixture(scope="module")
def crawl_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from config.settings import env_for
    from workers.runtime import Deployment, default_layout, free_port

    tmp = tmp_path_factory.mktemp("crawl")
    port = free_port()
    redis_server = start_private_redis(port, tmp / "redis")
    site = SiteServer({}, "127.0.0.1")
    slow_site = throttled_site(2, RETRY_AFTER_S)
    slow = SiteServer(slow_site.routes, "127.0.0.2")
    beat_site = SiteServer({}, "127.0.0.3")
    news = news_site(site.base_url)
    site.routes.update(news.routes)
    beat_site.routes.update(
        {
            "/feed.xml": Route(
                f"""<rss version="2.0"><channel><item><title>Beat story</title>
                <link>{beat_site.base_url}/beat/story.html</link></item></channel></rss>""".encode(),
                "application/rss+xml",
            ),
            "/beat/story.html": Route(article_html(200, "Beat story")),
        }
    )
    slow_list = tmp / "slow-urls.txt"
    slow_list.write_text("".join(f"{slow.base_url}{p}\n" for p in slow_site.articles))
    sources = tmp / "sources.toml"
    _sources(sources, site.base_url, slow_list)
    beat_sources = tmp / "beat-sources.toml"
    beat_sources.write_text(
        f'[[source]]\nname = "beat-feed"\nkind = "feed"\nlocation = "{beat_site.base_url}/feed.xml"\n'
        'schedule = "@every 2s"\n'
    )
    settings = suite_settings(
        redis_url=f"redis://127.0.0.1:{port}/0",
        data_dir=str(tmp / "data"),
        polite_host_rate_per_s=RATE,
        fetch_concurrency=4,
        crawl_sources_file=str(beat_sources),
        crawl_beat=True,
        max_retries=3,
        retry_backoff_max_s=10.0,
    )
    env = {**os.environ, **TEST_ENV, **env_for(settings)}
    log_path = tmp / "workers.log"
    layout = default_layout(settings)
    assert [s.queue for s in layout][-2:] == ["crawl", "beat"]
    dep = Deployment(settings, layout, log_path=log_path)
    with site, slow, beat_site:
        try:
            dep.start()
        except Exception:
            dep.stop()
            redis_server.stop()
            sys.stderr.write(log_path.read_text(errors="replace")[-5000:] if log_path.exists() else "")
            raise
        try:
            yield Env(
                settings, env, State.from_settings(settings), site, news, slow, slow_site, beat_site, sources, tmp
            )
        finally:
            dep.stop()
            redis_server.stop()


@pytest.fixture(scope="module")
def first_crawl(crawl_env: Env) -> tuple[int, dict[str, Any], float, float]:
    t0 = time.time()
    code, summary = crawl_env.crawl("--all", "--wait", "--timeout", "120")
    return code, summary, t0, time.time()


def test_first_crawl_indexes_every_allowed_article_once(crawl_env: Env, first_crawl: Any) -> None:
    code, summary, _t0, _t1 = first_crawl
    assert code == 0, summary
    by_name = {s["source"]: s for s in summary["sources"]}
    assert set(by_name) == {"rss", "atom", "news-sitemap", "slowhost"}
    assert all(s["status"] == "ok" for s in summary["sources"]), summary
    # rss: 4 stories + private + noindex (tag and off-site links dropped); atom overlaps rss on 2 stories
    assert by_name["rss"]["discovered"] == 8 and by_name["rss"]["filtered"] == 2
    assert summary["totals"]["enqueued"] == 10 + 2 + 2 + 2  # articles, disallowed, noindex, slow host
    assert summary["totals"]["indexed"] == 12 and summary["totals"]["failed"] == 4
    assert summary["totals"]["pending"] == 0
    for path in crawl_env.news.articles:
        entry = crawl_env.state.ledger(article_id(crawl_env.url(path)))
        assert entry is not None and entry.state == "indexed", (path, entry)
        assert len(crawl_env.site.hits(path)) == 1, path  # fetched exactly once, though listed twice
    proc = crawl_env.cli("search", "Marker", "--json", "--limit", "50", "--expand-clusters")
    hits = {h["url"] for h in json.loads(proc.stdout)["hits"]}
    assert {crawl_env.url(p) for p in crawl_env.news.articles} <= hits
    # feed hints travel with the URL: the sitemap's language and date reached the document
    doc = json.loads(crawl_env.cli("show", crawl_env.url("/news/story-7.html"), "--json").stdout)
    assert doc["language"] == "en" and doc["title"] == "Story number 7 from the local desk"


def test_disallowed_and_filtered_pages_are_never_requested(crawl_env: Env, first_crawl: Any) -> None:
    for path in crawl_env.news.disallowed:
        assert crawl_env.site.hits(path) == [], path
        entry = crawl_env.state.ledger(article_id(crawl_env.url(path)))
        assert entry is not None and entry.state == "dead" and entry.reason == "robots_disallowed"
    for path in crawl_env.news.filtered:
        assert crawl_env.site.hits(path) == [], path
    assert len(crawl_env.site.hits("/robots.txt")) == 1  # once per host, then from the Redis cache


def test_noindex_pages_are_not_indexed(crawl_env: Env, first_crawl: Any) -> None:
    for path in crawl_env.news.noindex:
        entry = crawl_env.state.ledger(article_id(crawl_env.url(path)))
        assert entry is not None and entry.state == "dead" and entry.reason == "noindex", (path, entry)


def _rate(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return (len(times) - 1) / (times[-1] - times[0]), min(gaps)


def test_request_rate_per_host_stays_within_the_limit(crawl_env: Env, first_crawl: Any) -> None:
    _code, _summary, t0, t1 = first_crawl
    hits = [h.t for h in crawl_env.site.hits(since=t0) if h.t <= t1]
    assert len(hits) >= 17  # robots, 2 feeds, index, 2 sitemaps, 10 articles, 2 noindex pages
    rate, min_gap = _rate(hits)
    print(
        f"\nhost {crawl_env.site.base_url}: {len(hits)} requests, {rate:.3f} req/s (limit {RATE}), "
        f"min gap {min_gap:.3f} s"
    )
    assert rate <= RATE * 1.1, rate
    # A booked slot may be used up to a quarter interval late, never two requests at once.
    assert min_gap >= 0.6 / RATE, min_gap


def test_429_retry_after_is_honoured_end_to_end(crawl_env: Env, first_crawl: Any) -> None:
    for path in crawl_env.slow_site.articles:
        hits = crawl_env.slow.hits(path)
        assert [h.status for h in hits] == [429, 200], hits
        assert hits[1].t - hits[0].t >= RETRY_AFTER_S - 0.05, hits
        entry = crawl_env.state.ledger(article_id(crawl_env.slow.base_url + path))
        assert entry is not None and entry.state == "indexed"
    # The only retries were the two 429s: waiting for a rate-limit slot is not a retry attempt.
    retries = [
        json.loads(line) for line in (crawl_env.tmp / "workers.log").read_text().splitlines() if '"retry"' in line
    ]
    assert sorted(r.get("reason") for r in retries if r.get("outcome") == "retry") == ["http_429", "http_429"]
    # While the host asked us to wait, nobody sent it anything.
    log = sorted(crawl_env.slow.hits(), key=lambda h: h.t)
    for i, h in enumerate(log):
        if h.status == 429:
            assert all(later.t - h.t >= RETRY_AFTER_S - 0.05 for later in log[i + 1 :]), log


def test_second_crawl_fetches_nothing_new(crawl_env: Env, first_crawl: Any) -> None:
    t0 = time.time()
    started = time.monotonic()
    code, summary = crawl_env.crawl("--all")
    elapsed = time.monotonic() - started
    print(f"\nsecond crawl: {elapsed:.2f} s wall (CLI start included), {summary['duration_s']} s crawling")
    assert code == 0, summary
    assert summary["totals"]["enqueued"] == 0, summary
    time.sleep(0.5)
    new_hits = crawl_env.site.hits(since=t0)
    # only conditional GETs of the feeds and sitemaps, each answered 304; no page, no robots.txt
    assert {h.path for h in new_hits} <= {
        "/rss.xml",
        "/atom.xml",
        "/sitemap_index.xml",
        "/sitemap-news.xml",
        "/sitemap-pages.xml.gz",
    }
    assert all(h.status == 304 for h in new_hits), new_hits
    assert {s["source"]: s["status"] for s in summary["sources"]}["rss"] == "not_modified"
    assert crawl_env.slow.hits(since=t0) == []  # the URL list's URLs are all seen


def test_refresh_fetches_again(crawl_env: Env, first_crawl: Any) -> None:
    code, summary = crawl_env.crawl("rss", "--refresh", "--wait", "--timeout", "60")
    assert code == 0, summary
    assert summary["totals"]["enqueued"] == 6
    for path in crawl_env.news.articles[:4]:
        assert len(crawl_env.site.hits(path)) == 2, path


def test_a_running_crawl_is_not_started_twice(crawl_env: Env) -> None:
    from newsflow.stores import Stores

    other = Stores.from_settings(crawl_env.settings).crawl.lock("atom")  # another crawl holds it
    assert other.acquire()
    try:
        code, summary = crawl_env.crawl("atom")
    finally:
        other.release()
    assert code == 0
    assert summary["sources"][0]["status"] == "locked"


def test_hostile_source_is_dead_lettered_and_others_go_on(crawl_env: Env) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<rss><channel><item><title>&b;</title><link>http://x/1</link></item></channel></rss>"
    )
    crawl_env.beat_site.routes["/evil.xml"] = Route(bomb, "application/rss+xml")
    crawl_env.beat_site.routes["/html-feed.xml"] = Route(b"<!doctype html><html><body>login</body></html>")
    path = crawl_env.tmp / "hostile.toml"
    base = crawl_env.beat_site.base_url
    path.write_text(
        f'[[source]]\nname = "evil"\nkind = "feed"\nlocation = "{base}/evil.xml"\n'
        f'[[source]]\nname = "html"\nkind = "sitemap"\nlocation = "{base}/html-feed.xml"\n'
        f'[[source]]\nname = "fine"\nkind = "feed"\nlocation = "{base}/feed.xml"\n'
    )
    proc = crawl_env.cli("crawl", "--all", "--sources", str(path), "--json")
    summary = json.loads(proc.stdout)
    assert proc.returncode == 1, summary
    status = {s["source"]: (s["status"], s["reason"]) for s in summary["sources"]}
    assert status["evil"] == ("failed", "xml_forbidden")
    assert status["html"] == ("failed", "not_xml")
    assert status["fine"][0] in ("ok", "not_modified")
    assert summary["failed_sources"] == ["evil", "html"]
    dead = {d["url"]: d for d in crawl_env.state.dead_letters()}
    assert dead[f"{base}/evil.xml"]["reason"] == "xml_forbidden"
    assert dead[f"{base}/evil.xml"]["stage"] == "crawl"


def test_beat_entry_fires_and_crawls(crawl_env: Env) -> None:
    aid = article_id(crawl_env.beat_site.base_url + "/beat/story.html")
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        entry = crawl_env.state.ledger(aid)
        if entry is not None and entry.state == "indexed" and len(crawl_env.beat_site.hits("/feed.xml")) >= 2:
            break
        time.sleep(0.5)
    feed_hits = crawl_env.beat_site.hits("/feed.xml")
    assert len(feed_hits) >= 2, feed_hits  # beat fired more than once ...
    assert len(crawl_env.beat_site.hits("/beat/story.html")) == 1  # ... and the article was fetched once
    entry = crawl_env.state.ledger(aid)
    assert entry is not None and entry.state == "indexed"
    from workers.beat import BeatLock

    assert BeatLock(crawl_env.settings).holder()  # the one beat holds the lock
