"""One crawl of one source: discover URLs, keep the new ones, enqueue them for the fetch stage.

    lock (one crawl per source at a time) -> read the source (robots.txt, per-host limiter,
    conditional GET) -> link rules -> normalised URL -> article id -> seen? (recrawl policy)
    -> at most `max_items` -> enqueue in chunks, pausing while the fetch queue is too deep
    -> remember what was enqueued (seen-set) and the documents' validators (ETag/Last-Modified).

No Celery here: the caller passes `enqueue` and `fetch_queue_depth`, so the Celery task
(`tasks.crawl`) and the CLI (`newsflow crawl`) run the same code.

Redis keys (under the prefix):
- `crawl:seen`             zset article id -> when a crawl enqueued it; entries older than
                           `crawl_seen_ttl_s` and beyond `crawl_seen_max` are dropped each run
- `crawl:lock:{source}`    the source's crawl lock (token, TTL `crawl_lock_ttl_s`)
- `crawl:validators:{url}` ETag / Last-Modified of a feed or sitemap (TTL `crawl_seen_ttl_s`)
- `crawl:last:{source}`    the source's last crawl report (JSON, same TTL)
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import requests

from config.defaults import Settings
from newsflow.errors import PermanentError, StageError, TransientError
from newsflow.fetcher import NotModified
from newsflow.polite.hosts import host_key, interval_s, origin_of
from newsflow.polite.limiter import HostLimiter
from newsflow.polite.robots import LOCK_TTL_S as ROBOTS_LOCK_TTL_S
from newsflow.polite.robots import RobotsCache, RobotsRules, bot_token
from newsflow.sources.config import Source
from newsflow.sources.feeds import parse_feed
from newsflow.sources.http import Document, fetch_document
from newsflow.sources.model import Discovered, SourceError
from newsflow.sources.sitemaps import parse_sitemap
from newsflow.sources.urllist import parse_url_list
from newsflow.state import State
from newsflow.urls import InvalidURL, article_id, normalize_url

PAYLOAD_VERSION = 1  # = tasks.topology.PAYLOAD_VERSION (newsflow/ does not import tasks/)
ENQUEUE_CHUNK = 100
BACKPRESSURE_POLL_S = 0.5
# Dead letters whose reason may pass: the next crawl tries such a URL again.
RETRYABLE_DEAD = ("timeout", "connection_error", "http_5", "http_429", "http_408", "robots_unavailable", "redis_")
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

Enqueue = Callable[[list[dict[str, Any]]], object]


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
    state: State
    session: requests.Session
    enqueue: Enqueue
    fetch_queue_depth: Callable[[], int]
    sleep: Callable[[float], None] = time.sleep

    @property
    def r(self) -> redis.Redis:
        return self.state.r

    def key(self, *parts: str) -> str:
        return self.state.key(*parts)


def crawl_source(source: Source, ctx: CrawlContext, *, refresh: bool = False) -> CrawlReport:
    """Crawl `source` once. Never raises for the source's own failures: the report says them."""
    report = CrawlReport(source.name)
    started = time.monotonic()
    with crawl_lock(ctx, source.name) as held:
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
            _store_validators(ctx, validators)
        _trim_seen(ctx)
    return _finish(report, started, ctx)


@contextmanager
def crawl_lock(ctx: CrawlContext, name: str) -> Iterator[bool]:
    key, token = ctx.key("crawl", "lock", name), uuid.uuid4().hex
    held = bool(ctx.r.set(key, token, nx=True, ex=ctx.settings.crawl_lock_ttl_s))
    try:
        yield held
    finally:
        if held:
            ctx.r.eval(_RELEASE, 1, key, token)


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
        known = _validators(ctx, source.location).get("children")
        if not known:
            raise
        children = [(str(u), t) for u, t in json.loads(known)]
        validators.setdefault(source.location, _validators(ctx, source.location))
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
    limiter = HostLimiter(ctx.r, s.key_prefix, s.polite_max_reserve_s)
    crawl_delay = None
    if s.polite_obey_robots:
        rules = _robots_rules(origin, key, source, ctx, limiter)
        if rules.kind == "error":
            raise TransientError("robots_unavailable", f"{origin}/robots.txt could not be read: {rules.detail}")
        if not rules.allowed(url, bot):
            raise SourceError("robots_disallowed", f"{origin}/robots.txt disallows {url}")
        crawl_delay = rules.crawl_delay(bot)
    known = {} if refresh else _validators(ctx, url)
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
    robots = RobotsCache(ctx.r, ctx.settings)
    rules = robots.get(origin)
    deadline = time.monotonic() + ROBOTS_LOCK_TTL_S
    while rules is None:
        if robots.try_lock(origin):
            try:
                # Checked again under the lock: another fetcher may have stored it since our first look.
                cached = robots.get(origin)
                if cached is not None:
                    return cached
                limiter.wait_for_slot(key, interval_s(key, ctx.settings, source.rate_per_s))
                return robots.fetch_and_store(origin, ctx.session)
            finally:
                robots.unlock(origin)
        if time.monotonic() > deadline:
            raise TransientError("robots_unavailable", f"{origin}/robots.txt: another fetcher held it too long")
        ctx.sleep(0.1)
        rules = robots.get(origin)
    return rules


def _validators(ctx: CrawlContext, url: str) -> dict[str, str]:
    raw: dict[bytes, bytes] = ctx.r.hgetall(_validator_key(ctx, url))  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}


def _validator_key(ctx: CrawlContext, url: str) -> str:
    return ctx.key("crawl", "validators", hashlib.sha256(url.encode()).hexdigest()[:32])


def _store_validators(ctx: CrawlContext, validators: dict[str, dict[str, str]]) -> None:
    pipe = ctx.r.pipeline(transaction=False)
    for url, values in validators.items():
        key = _validator_key(ctx, url)
        pipe.delete(key)
        pipe.hset(key, mapping=values)  # type: ignore[arg-type]
        pipe.expire(key, ctx.settings.crawl_seen_ttl_s)
    pipe.execute()


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
    seen_key = ctx.key("crawl", "seen")
    todo: list[tuple[str, str, Discovered]] = []
    for start in range(0, len(candidates), 500):
        batch = candidates[start : start + 500]
        pipe = ctx.r.pipeline(transaction=False)
        for _url, aid, _e in batch:
            pipe.zscore(seen_key, aid)
            pipe.hmget(ctx.key("article", aid), "state", "reason")
        answers = pipe.execute()
        for i, item in enumerate(batch):
            seen_at, (state, reason) = answers[2 * i], answers[2 * i + 1]
            if refresh or should_refetch(item[2], seen_at, _text(state), _text(reason), source, now):
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


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


# --- enqueue ---------------------------------------------------------------------------------------


def enqueue_all(
    source: Source, ctx: CrawlContext, todo: list[tuple[str, str, Discovered]], report: CrawlReport
) -> bool:
    """Enqueue in chunks with backpressure. False when backpressure cut the run short."""
    s = ctx.settings
    seen_key = ctx.key("crawl", "seen")
    for start in range(0, len(todo), ENQUEUE_CHUNK):
        if not wait_for_room(ctx):
            report.left_over += len(todo) - start
            report.detail = _join(report.detail, f"fetch queue stayed above {s.crawl_max_fetch_queue} messages")
            return False
        chunk = todo[start : start + ENQUEUE_CHUNK]
        payloads = [_payload(url, aid, entry, source) for url, aid, entry in chunk]
        now = time.time()
        for url, aid, _entry in chunk:
            ctx.state.record(aid, url, "discovered", "crawl", extra={"source": source.name})
        ctx.enqueue(payloads)
        ctx.r.zadd(seen_key, {aid: now for _u, aid, _e in chunk})
        ctx.r.expire(seen_key, s.crawl_seen_ttl_s)
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


def _payload(url: str, aid: str, entry: Discovered, source: Source) -> dict[str, Any]:
    payload: dict[str, Any] = {"v": PAYLOAD_VERSION, "id": aid, "url": url, "source": source.name}
    hints = dict(entry.hints)
    if source.language and "language" not in hints:
        hints["language"] = source.language
    if hints:
        payload["hints"] = hints
    if source.rate_per_s:
        payload["rate_per_s"] = source.rate_per_s
    return payload


def _trim_seen(ctx: CrawlContext) -> None:
    key = ctx.key("crawl", "seen")
    pipe = ctx.r.pipeline(transaction=False)
    pipe.zremrangebyscore(key, "-inf", time.time() - ctx.settings.crawl_seen_ttl_s)
    pipe.zremrangebyrank(key, 0, -ctx.settings.crawl_seen_max - 1)
    pipe.execute()


# --- outcome ---------------------------------------------------------------------------------------


def _finish(report: CrawlReport, started: float, ctx: CrawlContext) -> CrawlReport:
    report.duration_s = time.monotonic() - started
    if report.status != "locked":
        ctx.r.set(
            ctx.key("crawl", "last", report.source), json.dumps(report.to_dict()), ex=ctx.settings.crawl_seen_ttl_s
        )
    return report


def last_report(state: State, name: str) -> dict[str, Any] | None:
    raw = state.r.get(state.key("crawl", "last", name))
    return None if raw is None else dict(json.loads(raw))


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


__all__ = ["CrawlContext", "CrawlReport", "PermanentError", "crawl_source", "last_report"]
