"""fetch.page: politely download one page and park its HTML in the claim-check store.

Before the GET (`polite_gate`, outside `run_stage` so waiting is not an attempt):
1. robots.txt of the page's origin, from the Redis cache or fetched once (one worker per origin
   fetches it; the others come back in a moment). Disallowed -> dead `robots_disallowed`, never
   fetched; unreadable (5xx) -> transient `robots_unavailable`.
2. the host's rate limit (`newsflow.polite.limiter`, shared by every worker on every machine),
   never faster than robots.txt's Crawl-delay. No free slot now -> the message is sent again with
   a countdown to its booked slot and this one is acked: the worker thread is free at once, and
   the retry counter is carried over unchanged (waiting is not a failure).
After the GET: 429/503 with Retry-After also hold the whole host that long; pages that say
noindex (X-Robots-Tag header or robots meta tag) are dead-lettered `noindex`.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import requests
from celery import signals

from config.settings import get_settings
from newsflow.archive.claim import faithful
from newsflow.archive.retention import prune
from newsflow.archive.writer import ArchiveWriter
from newsflow.dispatch import send
from newsflow.errors import PermanentError, StageError, TransientError
from newsflow.fetcher import FetchResult, NotModified, fetch_page, make_session
from newsflow.logs import get_logger
from newsflow.pipeline import FIRST, Message
from newsflow.polite.hosts import host_key, interval_s, origin_of
from newsflow.polite.noindex import header_noindex, meta_noindex
from newsflow.polite.robots import bot_token
from newsflow.stores import Stores
from newsflow.urls import normalize_url
from tasks.app import app
from tasks.base import Handler, StageContext, StageTask, commit, process_stores, stage_task

log = get_logger("newsflow.fetch")
_session: requests.Session | None = None
_archive: ArchiveWriter | None = None
_archive_made = threading.Lock()  # the threads of a fetch worker share one writer (one file per process)


def session() -> requests.Session:
    """One HTTP session per worker process: connections are reused across tasks."""
    global _session
    if _session is None:
        _session = make_session(get_settings())
    return _session


def archive() -> ArchiveWriter | None:
    """This process's WARC writer (docs/archive.md), made on first use; None when archiving is off."""
    global _archive
    s = get_settings()
    if not s.archive_path:
        return None
    if _archive is None:
        with _archive_made:
            if _archive is None:
                where, max_bytes, max_age_s = s.archive_path, s.archive_max_bytes, s.archive_max_age_days * 86400

                def retention() -> None:
                    if max_bytes or max_age_s:
                        prune(where, max_bytes=max_bytes, max_age_s=max_age_s, busy_s=s.archive_roll_s + 60)

                _archive = ArchiveWriter(
                    where, roll_bytes=s.archive_roll_bytes, roll_s=s.archive_roll_s,
                    gzip_level=s.archive_gzip_level, on_roll=retention,
                )  # fmt: skip
    return _archive


@signals.worker_process_shutdown.connect  # a prefork child exiting
@signals.worker_shutdown.connect  # a threads or solo worker's warm shutdown
def _close_archive(**_: object) -> None:
    """Close the WARC file cleanly (flushed, fsynced) before the process goes."""
    if _archive is not None:
        _archive.close()


def _archive_page(msg: Message, result: FetchResult) -> tuple[dict[str, Any] | None, bytes | None]:
    """Keep what was fetched; where it is travels on to the indexed article. A failing archive
    (full disk) is logged, never the fetch's failure.

    Returns the capture's location and the response record's gzip member, the page's claim check
    (newsflow/archive/claim.py), or None for the member when the record would not give back the
    fetcher's decoding (`claim.faithful`: a rare odd Content-Type) and the HTML must be parked itself."""
    writer = archive()
    if writer is None:
        return None, None
    meta = {
        "article_id": msg.id,
        "source": msg.source,
        "requested_url": msg.url,
        "redirects": result.redirects,
        "hints": dict(msg.hints) if msg.hints else None,
    }
    try:
        written = writer.write(
            result.final_url, result.status, result.headers, result.body,
            request_headers=session().headers, meta=meta,
            date=result.fetched_at.replace("+00:00", "Z"),  # one time for the capture and the article
        )  # fmt: skip
    except (OSError, ValueError) as exc:  # a full disk; a header warcio cannot write (UnicodeEncodeError)
        log.error("archive_write_failed", article_id=msg.id, url=msg.url, error=str(exc)[:300])
        return None, None
    capture = written.to_dict()
    if msg.hints:
        capture["hints"] = dict(msg.hints)  # reprocess restores them once the ledger has expired
    return capture, (written.member if faithful(result.headers) else None)


def handle(ctx: StageContext, msg: Message) -> Message | None:
    url = msg.url
    try:
        result = fetch_page(url, ctx.settings, session())
    except NotModified:
        ctx.state.record(msg.id, url, "indexed", ctx.stage.name, reason="not_modified", worker=ctx.worker)
        return None
    except TransientError as exc:
        if exc.retry_after_s and exc.reason in ("http_429", "http_503"):
            # The host asked everyone to wait, not just this message.
            ctx.stores.limiter.hold(
                host_key(url), min(exc.retry_after_s, ctx.settings.visibility_timeout_s / 2), exc.reason
            )
        raise
    if ctx.settings.polite_obey_noindex:
        _check_noindex(result.html, result.headers.get("X-Robots-Tag", ""), ctx.settings.user_agent)
    capture, member = _archive_page(msg, result)
    pipe = ctx.state.pipeline()  # claim check and ledger in one round trip
    if member is not None:  # archived: the record's gzip member is the claim check (one compression, not two)
        key = ctx.state.put_blob_member(msg.id, member, pipe)
    else:
        key = ctx.state.put_blob(msg.id, result.html, pipe)
    ctx.state.record(
        msg.id,
        url,
        "fetched",
        ctx.stage.name,
        worker=ctx.worker,
        extra={"bytes": result.n_bytes},
        origin=msg.origin_json(),
        pipe=pipe,
    )
    fetch_meta = {
        "final_url": result.final_url,
        "status": result.status,
        "etag": result.etag,
        "last_modified": result.last_modified,
        "fetched_at": result.fetched_at,
        "encoding": result.encoding,
        "bytes": result.n_bytes,
    }
    if capture is not None:
        fetch_meta["capture"] = capture
    return commit(ctx, pipe, msg, msg.forward(blob=key, fetch=fetch_meta))


def _check_noindex(html: str, tag: str, user_agent: str) -> None:
    bot = bot_token(user_agent)
    if tag and header_noindex([tag], bot):
        raise PermanentError("noindex", f"X-Robots-Tag: {tag[:200]}")
    if meta_noindex(html, bot):
        raise PermanentError("noindex", "robots meta tag says noindex")


def _raising(exc: Exception) -> Handler:
    """A handler that fails with `exc`, so run_stage gives the message its usual fate."""

    def fail(ctx: StageContext, msg: Message) -> Message | None:
        raise exc

    return fail


def polite_gate(task: StageTask, payload: Any) -> Handler | None:
    """The handler to run now, or None when the message was deferred to a later slot."""
    try:
        msg = Message.from_wire(payload)
        parts = urlsplit(msg.url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return handle  # the fetcher refuses it with its own reason
        # Robots rules are matched against the URL the fetcher will request (dot-segments resolved,
        # escapes normalised): `/a/../private/x` is `/private/x` to the site, and to its robots.txt.
        url = normalize_url(msg.url)
        key, origin = host_key(url), origin_of(url)
    except (StageError, ValueError):  # a bad message (run_stage dead-letters it), a bad URL (the fetcher does)
        return handle
    try:
        return _gate(task, process_stores(), msg, url, key, origin)
    except Exception as exc:  # e.g. Redis down: run_stage decides (retry, or dead-letter a bug)
        return _raising(exc)


def _gate(task: StageTask, stores: Stores, msg: Message, url: str, key: str, origin: str) -> Handler | None:
    s = stores.settings
    booked, crawl_delay = msg.slot_ms, None
    if s.polite_obey_robots:
        bot = bot_token(s.user_agent)
        rules = stores.robots.get(origin)
        if rules is None:
            lock = stores.robots.lock(origin)
            if not lock.acquire():  # another worker is fetching it right now
                return _defer(task, msg, 0.3 + random.uniform(0, 0.4), booked)
            try:
                # Checked again under the lock: another worker may have stored it since our first look.
                rules = stores.robots.get(origin)
                if rules is None:
                    permit = stores.limiter.acquire(key, interval_s(key, s, msg.rate_per_s), booked)
                    if not permit.go:
                        return _defer(task, msg, permit.wait_s, permit.slot_ms)
                    rules = stores.robots.fetch_and_store(origin, session())
                    booked = None  # that slot went to robots.txt
            finally:
                lock.release()
        if rules.kind == "error":
            return _raising(TransientError("robots_unavailable", f"{origin}/robots.txt: {rules.detail}"))
        if not rules.allowed(url, bot):
            return _raising(PermanentError("robots_disallowed", f"{origin}/robots.txt disallows this URL"))
        crawl_delay = rules.crawl_delay(bot)
    permit = stores.limiter.acquire(key, interval_s(key, s, msg.rate_per_s, crawl_delay), booked)
    if not permit.go:
        if permit.slot_ms is not None and permit.wait_s <= s.polite_inline_wait_s:
            time.sleep(permit.wait_s)  # our slot is booked and near: wait here, not in a queue round trip
            return handle
        return _defer(task, msg, permit.wait_s, permit.slot_ms)
    return handle


def _defer(task: StageTask, msg: Message, wait_s: float, slot_ms: int | None) -> Handler | None:
    """Send the message again for its slot; the retry counter is carried over, not increased."""
    again = replace(msg, slot_ms=slot_ms or None)
    send(task.app, FIRST, again, countdown=wait_s, retries=int(task.request.retries or 0))
    log.debug("fetch_deferred", url=msg.url, wait_s=round(wait_s, 3), booked=bool(slot_ms))
    return None


@app.task(**stage_task("fetch"))
def fetch_task(self: StageTask, payload: Any) -> str:
    handler = polite_gate(self, payload)
    if handler is None:
        return "deferred"
    return self.run_stage(payload, handler)
