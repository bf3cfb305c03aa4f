"""One crawl of one source: discover URLs, keep the new ones, enqueue them for the fetch stage.

    lock (one crawl per source at a time) -> read the source (robots.txt, per-host limiter,
    conditional GET) -> link rules -> normalised URL -> article id -> seen? (recrawl policy)
    -> at most `max_items` -> enqueue in chunks, pausing while the fetch queue is too deep
    -> remember what was enqueued (seen-set) and the documents' validators (ETag/Last-Modified).

No Celery here: the caller passes `enqueue` and `fetch_queue_depth`, so the Celery task
(`tasks.crawl`) and the CLI (`newsflow crawl`) run the same code.

What a crawl remembers lives in `newsflow.crawlstore.CrawlStore` (seen-set, validators, reports, locks).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from config.defaults import Settings
from newsflow.errors import PermanentError, StageError, TransientError
from newsflow.fetcher import NotModified
from newsflow.pipeline import Message
from newsflow.polite.hosts import host_key, interval_s, origin_of
from newsflow.polite.limiter import HostLimiter
from newsflow.polite.robots import LOCK_TTL_S as ROBOTS_LOCK_TTL_S
from newsflow.polite.robots import RobotsRules, bot_token
from newsflow.sources.config import Source
from newsflow.sources.feeds import parse_feed
from newsflow.sources.http import Document, fetch_document
from newsflow.sources.model import Discovered, SourceError
from newsflow.sources.sitemaps import parse_sitemap
from newsflow.sources.urllist import parse_url_list
from newsflow.state import State
from newsflow.stores import Stores
from newsflow.urls import InvalidURL, article_id, normalize_url

ENQUEUE_CHUNK = 100
BACKPRESSURE_POLL_S = 0.5
# Dead letters whose reason may pass: the next crawl tries such a URL again.
RETRYABLE_DEAD = ("timeout", "connection_error", "http_5", "http_429", "http_408", "robots_unavailable", "redis_")

Enqueue = Callable[[list[Message]], object]


@dataclass
class CrawlReport:
    source: str
    status: str = "ok"  # ok | not_modified | locked | failed
    discovered: int = 0  # URLs the source listed
    filtered: int = 0  # off-site, denied paths, bad URLs, duplicates within the run
    skipped_seen: int = 0  # known URLs the recrawl policy leaves alone
    enqueued: int = 0
    left_over: int = 0  # new URLs beyond max_items or cut by backpressure: found again next run
    documents: int = 0  # feeds/sitemaps fetched (200)
    not_modified: int = 0  # ... answered 304
    reason: str | None = None
    detail: str | None = None
    started_at: float = field(default_factory=time.time)
    duration_s: float = 0.0
    enqueued_items: list[tuple[str, str]] = field(default_factory=list)  # (url, article id)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("enqueued_items")
        d["duration_s"] = round(self.duration_s, 3)
        return d


@dataclass
class CrawlContext:
    settings: Settings
    stores: Stores
    session: requests.Session
    enqueue: Enqueue
    fetch_queue_depth: Callable[[], int]
    sleep: Callable[[float], None] = time.sleep

    @property
    def state(self) -> State:
        return self.stores.state


def crawl_source(source: Source, ctx: CrawlContext, *, refresh: bool = False) -> CrawlReport:
    """Crawl `source` once. Never raises for the source's own failures: the report says them."""
    report = CrawlReport(source.name)
    started = time.monotonic()
    with ctx.stores.crawl.lock(source.name).held() as held:
        if not held:
            report.status, report.reason = "locked", "already_running"
            report.detail = "another crawl of this source is running; this one did nothing"
            return _finish(report, started, ctx)
        validators: dict[str, dict[str, str]] = {}
        try:
            entries = discover(source, ctx, refresh, report, validators)
        except NotModified:
            report.status = "not_modified"
            return _finish(report, started, ctx)
        except StageError as exc:
            report.status, report.reason, report.detail = "failed", exc.reason, exc.detail
            _dead_letter_source(ctx, source, exc)
            return _finish(report, started, ctx)
        report.discovered = len(entries)
        if report.documents == 0 and report.not_modified:
            report.status = "not_modified"
        todo = select_new(source, ctx, entries, refresh, report)
        complete = enqueue_all(source, ctx, todo, report)
        if complete:  # only then may the next run skip unchanged documents
            ctx.stores.crawl.store_validators(validators)
        ctx.stores.crawl.trim_seen()
    return _finish(report, started, ctx)


# --- discovery ------------------------------------------------------------------------------------


def discover(
    source: Source, ctx: CrawlContext, refresh: bool, report: CrawlReport, validators: dict[str, dict[str, str]]
) -> list[Discovered]:
    s = ctx.settings
    if source.kind == "urls" and not source.is_url:
        path = source.local_path()
        try:
            data = path.read_bytes()[: s.crawl_max_doc_bytes + 1]
        except OSError as exc:
            raise SourceError("source_unreadable", f"cannot read {path}: {exc.strerror or exc}") from None
        return parse_url_list(data, s.crawl_max_sitemap_entries)
    if source.kind == "sitemap":
        return _sitemap_entries(source, ctx, refresh, report, validators)
    doc = polite_get(source.location, source, ctx, refresh, report, validators)
    if source.kind == "feed":
        return parse_feed(doc.body, doc.final_url, s.crawl_max_doc_bytes, s.crawl_max_sitemap_entries)
    return parse_url_list(doc.body, s.crawl_max_sitemap_entries)


def _sitemap_entries(
    source: Source, ctx: CrawlContext, refresh: bool, report: CrawlReport, validators: dict[str, dict[str, str]]
) -> list[Discovered]:
    """A urlset's entries, or those of an index's children (each fetched conditionally)."""
    s = ctx.settings
    try:
        doc = polite_get(source.location, source, ctx, refresh, report, validators)
    except NotModified:
        # An unchanged index still has children that may have changed (the news sitemap does).
        known = ctx.stores.crawl.validators(source.location).get("children")
        if not known:
            raise
        children = [(str(u), t) for u, t in json.loads(known)]
        validators.setdefault(source.location, ctx.stores.crawl.validators(source.location))
    else:
        top = parse_sitemap(doc.body, doc.final_url, s.crawl_max_doc_bytes, s.crawl_max_sitemap_entries)
        if not top.is_index:
            return top.entries
        children = top.children
        if source.location in validators:
            validators[source.location]["children"] = json.dumps(children)
    rules = source.rules()
    # Newest child sitemaps first: with a cap, the fresh news sitemap must not be the one left out.
    children = sorted(children, key=lambda c: -(c[1] or 0.0))
    entries: list[Discovered] = []
    problems: list[str] = []
    for url, _lastmod in children[: s.crawl_max_child_sitemaps]:
        if rules.why_not(url) == "off_site":
            problems.append(f"{url}: off-site sitemap skipped")
            continue
        try:
            child_doc = polite_get(url, source, ctx, refresh, report, validators)
            child = parse_sitemap(
                child_doc.body, child_doc.final_url, s.crawl_max_doc_bytes, s.crawl_max_sitemap_entries
            )
        except NotModified:
            continue
        except StageError as exc:  # one broken child does not stop the others
            problems.append(f"{url}: {exc.reason}: {exc.detail}")
            _dead_letter_document(ctx, source, url, exc)
            continue
        if child.is_index:
            problems.append(f"{url}: nested sitemap index not followed")
        entries.extend(child.entries)
    if len(children) > s.crawl_max_child_sitemaps:
        problems.append(f"{len(children) - s.crawl_max_child_sitemaps} child sitemaps beyond the cap not read")
    if problems:
        report.detail = "; ".join(problems)[:1000]
    return entries


def polite_get(
    url: str,
    source: Source,
    ctx: CrawlContext,
    refresh: bool,
    report: CrawlReport,
    validators: dict[str, dict[str, str]],
) -> Document:
    """GET a feed/sitemap the way the fetch stage gets pages: robots.txt, the host's limiter, 304s."""
    s = ctx.settings
    key, origin, bot = host_key(url), origin_of(url), bot_token(s.user_agent)
    limiter = ctx.stores.limiter
    crawl_delay = None
    if s.polite_obey_robots:
        rules = _robots_rules(origin, key, source, ctx, limiter)
        if rules.kind == "error":
            raise TransientError("robots_unavailable", f"{origin}/robots.txt could not be read: {rules.detail}")
        if not rules.allowed(url, bot):
            raise SourceError("robots_disallowed", f"{origin}/robots.txt disallows {url}")
        crawl_delay = rules.crawl_delay(bot)
    known = {} if refresh else ctx.stores.crawl.validators(url)
    limiter.wait_for_slot(key, interval_s(key, s, source.rate_per_s, crawl_delay))
    try:
        doc = fetch_document(
            url,
            s,
            ctx.session,
            max_bytes=s.crawl_max_doc_bytes,
            etag=known.get("etag"),
            last_modified=known.get("last_modified"),
        )
    except NotModified:
        report.not_modified += 1
        raise
    report.documents += 1
    fresh = {k: v for k, v in (("etag", doc.etag), ("last_modified", doc.last_modified)) if v}
    if fresh:
        validators[url] = fresh
    return doc


def _robots_rules(origin: str, key: str, source: Source, ctx: CrawlContext, limiter: HostLimiter) -> RobotsRules:
    """The origin's robots.txt from the cache, or fetched once (other crawls and workers wait for it)."""
    robots = ctx.stores.robots
    rules = robots.get(origin)
    deadline = time.monotonic() + ROBOTS_LOCK_TTL_S
    while rules is None:
        with robots.lock(origin).held() as ours:
            if ours:
                # Checked again under the lock: another fetcher may have stored it since our first look.
                cached = robots.get(origin)
                if cached is not None:
                    return cached
                limiter.wait_for_slot(key, interval_s(key, ctx.settings, source.rate_per_s))
                return robots.fetch_and_store(origin, ctx.session)
        if time.monotonic() > deadline:
            raise TransientError("robots_unavailable", f"{origin}/robots.txt: another fetcher held it too long")
        ctx.sleep(0.1)
        rules = robots.get(origin)
    return rules


# --- what is new ----------------------------------------------------------------------------------


def select_new(
    source: Source, ctx: CrawlContext, entries: list[Discovered], refresh: bool, report: CrawlReport
) -> list[tuple[str, str, Discovered]]:
    """(url, article id, entry) of the URLs to fetch, in the source's order, capped at max_items."""
    rules = source.rules()
    candidates: list[tuple[str, str, Discovered]] = []
    ids: set[str] = set()
    for entry in entries:
        try:
            aid = article_id(entry.url)
            url = normalize_url(entry.url)
        except InvalidURL:
            report.filtered += 1
            continue
        if aid in ids or rules.why_not(url) is not None:
            report.filtered += 1
            continue
        ids.add(aid)
        candidates.append((entry.url.strip(), aid, entry))
    now = time.time()
    todo: list[tuple[str, str, Discovered]] = []
    for start in range(0, len(candidates), 500):
        batch = candidates[start : start + 500]
        ids_ = [aid for _url, aid, _e in batch]
        seen = ctx.stores.crawl.seen_at(ids_)
        for item, seen_at, known in zip(batch, seen, ctx.state.ledgers(ids_), strict=True):
            state, reason = (known.state, known.reason) if known else ("", "")
            if refresh or should_refetch(item[2], seen_at, state, reason, source, now):
                todo.append(item)
            else:
                report.skipped_seen += 1
    if len(todo) > source.max_items:
        report.left_over += len(todo) - source.max_items
        todo = todo[: source.max_items]
    return todo


def should_refetch(
    entry: Discovered, seen_at: float | None, state: str, reason: str, source: Source, now: float
) -> bool:
    """The recrawl policy for a URL a crawl already enqueued (`seen_at`)."""
    if seen_at is None:
        return True
    if state == "dead" and reason.startswith(RETRYABLE_DEAD):
        return True  # it died of something that passes (timeouts, 5xx): try again
    if entry.lastmod is not None and seen_at + 1 < entry.lastmod < now + 300:
        # The source says it changed after we queued it (sitemap lastmod, feed updated); a date in
        # the future is a clock or time-zone bug on their side, not a change.
        return True
    return source.recrawl_after_s > 0 and now - seen_at > source.recrawl_after_s


# --- enqueue ---------------------------------------------------------------------------------------


def enqueue_all(
    source: Source, ctx: CrawlContext, todo: list[tuple[str, str, Discovered]], report: CrawlReport
) -> bool:
    """Enqueue in chunks with backpressure. False when backpressure cut the run short."""
    s = ctx.settings
    for start in range(0, len(todo), ENQUEUE_CHUNK):
        if not wait_for_room(ctx):
            report.left_over += len(todo) - start
            report.detail = _join(report.detail, f"fetch queue stayed above {s.crawl_max_fetch_queue} messages")
            return False
        chunk = todo[start : start + ENQUEUE_CHUNK]
        messages = [new_message(url, aid, entry, source) for url, aid, entry in chunk]
        for msg in messages:
            ctx.state.record(
                msg.id, msg.url, "discovered", "crawl", extra={"source": source.name}, origin=msg.origin_json()
            )
        ctx.enqueue(messages)
        ctx.stores.crawl.mark_seen(msg.id for msg in messages)
        report.enqueued += len(chunk)
        report.enqueued_items.extend((url, aid) for url, aid, _e in chunk)
    return True


def wait_for_room(ctx: CrawlContext) -> bool:
    """Block while the fetch queue is deeper than the bound; False if it did not drain in time."""
    deadline = time.monotonic() + ctx.settings.crawl_backpressure_max_wait_s
    while ctx.fetch_queue_depth() > ctx.settings.crawl_max_fetch_queue:
        if time.monotonic() >= deadline:
            return False
        ctx.sleep(BACKPRESSURE_POLL_S)
    return True


def new_message(url: str, aid: str, entry: Discovered, source: Source) -> Message:
    """The first-stage message of a URL the source listed, with the source's hints and rate."""
    hints = dict(entry.hints)
    if source.language and "language" not in hints:
        hints["language"] = source.language
    return Message.new(url, aid, source=source.name, hints=hints, rate_per_s=source.rate_per_s)


# --- outcome ---------------------------------------------------------------------------------------


def _finish(report: CrawlReport, started: float, ctx: CrawlContext) -> CrawlReport:
    report.duration_s = time.monotonic() - started
    if report.status != "locked":
        ctx.stores.crawl.save_report(report.source, report.to_dict())
    return report


def _source_record_id(source: Source, url: str | None = None) -> str:
    try:
        return article_id(url or source.location)
    except InvalidURL:
        return hashlib.sha256(f"source:{source.name}".encode()).hexdigest()[:32]


def _dead_letter_source(ctx: CrawlContext, source: Source, exc: StageError) -> None:
    _dead_letter_document(ctx, source, source.location, exc)


def _dead_letter_document(ctx: CrawlContext, source: Source, url: str, exc: StageError) -> None:
    """A dead letter for the source document, so `newsflow` shows why a source yields nothing."""
    payload = {"source": source.name, "kind": source.kind, "location": url}
    ctx.state.dead_letter(_source_record_id(source, url), url, "crawl", exc.reason, exc.detail, payload)


def _join(a: str | None, b: str) -> str:
    return f"{a}; {b}" if a else b


__all__ = ["CrawlContext", "CrawlReport", "PermanentError", "crawl_source"]
