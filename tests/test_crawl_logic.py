"""The crawl's own logic against a real Redis and a loopback site, without workers:
backpressure, the recrawl policy, the per-source lock and the beat lock."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.defaults import Settings
from newsflow.crawl import CrawlContext, crawl_source, should_refetch
from newsflow.fetcher import make_session
from newsflow.pipeline import Message
from newsflow.sources.config import Source
from newsflow.sources.model import Discovered
from newsflow.state import connect
from newsflow.stores import Stores
from tests.sites.newsite import SiteServer, news_site


@pytest.fixture()
def settings(redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        key_prefix=f"test-{uuid.uuid4().hex[:8]}:",
        fetch_allow_private=True,
        polite_host_rate_per_s=200.0,
        crawl_max_fetch_queue=5,
        crawl_backpressure_max_wait_s=10.0,
    )


@pytest.fixture()
def site() -> Iterator[SiteServer]:
    server = SiteServer({})
    server.routes.update(news_site(server.base_url).routes)
    with server:
        yield server


Sent = list[tuple[float, list[Message]]]


def _ctx(settings: Settings, queue_key: str, sent: Sent) -> CrawlContext:
    r = connect(settings.redis_url)  # a stand-in fetch queue, as deep as the test makes it
    return CrawlContext(
        settings=settings,
        stores=Stores(connect(settings.redis_url), settings),
        session=make_session(settings),
        enqueue=lambda messages: sent.append((time.monotonic(), messages)),
        fetch_queue_depth=lambda: int(r.llen(queue_key)),  # type: ignore[arg-type]
        sleep=time.sleep,
    )


def test_backpressure_pauses_until_the_fetch_queue_drains(settings: Settings, site: SiteServer) -> None:
    queue_key = f"{settings.key_prefix}fake-fetch-queue"
    sent: Sent = []
    ctx = _ctx(settings, queue_key, sent)
    connect(settings.redis_url).rpush(queue_key, *range(20))  # deeper than crawl_max_fetch_queue (5)
    drained_at: list[float] = []

    def drain() -> None:
        time.sleep(1.0)
        connect(settings.redis_url).delete(queue_key)
        drained_at.append(time.monotonic())

    threading.Thread(target=drain).start()
    source = Source("rss", "feed", f"{site.base_url}/rss.xml")
    report = crawl_source(source, ctx)
    assert report.status == "ok" and report.enqueued == 6
    assert sent and sent[0][0] >= drained_at[0]  # nothing was enqueued while the queue was deep
    msg = sent[0][1][0]
    assert msg.source == "rss" and msg.hints is not None and msg.hints["title"].startswith("Feed title")


def test_backpressure_gives_up_and_leaves_the_rest_for_next_run(settings: Settings, site: SiteServer) -> None:
    settings = dataclasses.replace(settings, crawl_backpressure_max_wait_s=0.5)
    queue_key = f"{settings.key_prefix}fake-fetch-queue"
    sent: Sent = []
    ctx = _ctx(settings, queue_key, sent)
    connect(settings.redis_url).rpush(queue_key, *range(20))
    source = Source("atom", "feed", f"{site.base_url}/atom.xml")
    report = crawl_source(source, ctx)
    assert report.enqueued == 0 and report.left_over == 5 and "fetch queue" in (report.detail or "")
    # Nothing was marked seen and the feed's validators were not kept: the next run finds them all.
    connect(settings.redis_url).delete(queue_key)
    again = crawl_source(source, ctx)
    assert again.enqueued == 5 and again.status == "ok"


def test_max_items_and_seen_set(settings: Settings, site: SiteServer) -> None:
    sent: Sent = []
    ctx = _ctx(settings, "unused", sent)
    source = Source("rss", "feed", f"{site.base_url}/rss.xml", max_items=2)
    first = crawl_source(source, ctx)
    assert first.enqueued == 2 and first.left_over == 4
    second = crawl_source(source, ctx, refresh=True)  # refresh: ignore 304 and the seen-set
    assert second.enqueued == 2 and second.skipped_seen == 0
    big = dataclasses.replace(source, max_items=100)
    third = crawl_source(big, ctx, refresh=False)
    # the feed is unchanged (304) after the refresh run stored its validators
    assert third.status == "not_modified" and third.enqueued == 0


def test_recrawl_policy() -> None:
    src = Source("s", "sitemap", "https://x/s.xml")
    now = 1_000_000.0
    assert should_refetch(Discovered("u"), None, "", "", src, now)  # never seen
    assert not should_refetch(Discovered("u"), now - 10, "indexed", "", src, now)
    assert should_refetch(Discovered("u", lastmod=now - 5), now - 10, "indexed", "", src, now)  # changed since
    assert not should_refetch(Discovered("u", lastmod=now + 86400), now - 10, "indexed", "", src, now)  # future
    assert should_refetch(Discovered("u"), now - 10, "dead", "http_503", src, now)  # died of something passing
    assert not should_refetch(Discovered("u"), now - 10, "dead", "http_404", src, now)
    aged = dataclasses.replace(src, recrawl_after_s=5)
    assert should_refetch(Discovered("u"), now - 10, "indexed", "", aged, now)


def test_one_crawl_per_source_at_a_time(settings: Settings, site: SiteServer) -> None:
    sent: Sent = []
    ctx = _ctx(settings, "unused", sent)
    assert ctx.stores.crawl.lock("rss").acquire()  # another crawl of it runs
    report = crawl_source(Source("rss", "feed", f"{site.base_url}/rss.xml"), ctx)
    assert report.status == "locked" and not sent and site.hits() == []


def test_unreadable_url_list_fails_the_source(settings: Settings, tmp_path: Path) -> None:
    ctx = _ctx(settings, "unused", [])
    src = Source("l", "urls", "missing.txt", base_dir=tmp_path)
    report = crawl_source(src, ctx)
    assert report.status == "failed" and report.reason == "source_unreadable"


def test_beat_lock_lets_one_beat_run_and_the_next_take_over(settings: Settings) -> None:
    from workers.beat import BeatLock

    first, second = BeatLock(settings), BeatLock(settings)
    second.token = "standby:2"
    first.acquire()
    got: list[float] = []
    t = threading.Thread(target=lambda: (second.acquire(poll_s=0.1), got.append(time.monotonic())))
    t.start()
    time.sleep(0.5)
    assert not got  # the standby waits while the first holds the lock
    released = time.monotonic()
    first.release()
    t.join(5)
    assert got and got[0] >= released
    assert first.holder() == "standby:2"
    second.release()
