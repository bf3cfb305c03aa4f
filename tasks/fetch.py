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
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import requests

from config.settings import get_settings
from newsflow.dispatch import send
from newsflow.errors import PermanentError, StageError, TransientError
from newsflow.fetcher import NotModified, fetch_page, make_session
from newsflow.logs import get_logger
from newsflow.pipeline import FIRST, Message
from newsflow.polite.hosts import host_key, interval_s, origin_of
from newsflow.polite.noindex import header_noindex, meta_noindex
from newsflow.polite.robots import bot_token
from newsflow.stores import Stores
from tasks.app import app
from tasks.base import Handler, StageContext, StageTask, process_stores, stage_task

log = get_logger("newsflow.fetch")
_session: requests.Session | None = None


def session() -> requests.Session:
    """One HTTP session per worker process: connections are reused across tasks."""
    global _session
    if _session is None:
        _session = make_session(get_settings())
    return _session


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
            ctx.stores.limiter.hold(host_key(url), min(exc.retry_after_s, ctx.settings.visibility_timeout_s / 2))
        raise
    if ctx.settings.polite_obey_noindex:
        _check_noindex(result.html, result.headers.get("X-Robots-Tag", ""), ctx.settings.user_agent)
    pipe = ctx.state.pipeline()  # claim check and ledger in one round trip
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
    pipe.execute()
    fetch_meta = {
        "final_url": result.final_url,
        "status": result.status,
        "etag": result.etag,
        "last_modified": result.last_modified,
        "fetched_at": result.fetched_at,
        "encoding": result.encoding,
        "bytes": result.n_bytes,
    }
    return msg.forward(blob=key, fetch=fetch_meta)


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
        key, origin = host_key(msg.url), origin_of(msg.url)
    except (StageError, ValueError):  # a bad message (run_stage dead-letters it), a bad URL (the fetcher does)
        return handle
    try:
        return _gate(task, process_stores(), msg, key, origin)
    except Exception as exc:  # e.g. Redis down: run_stage decides (retry, or dead-letter a bug)
        return _raising(exc)


def _gate(task: StageTask, stores: Stores, msg: Message, key: str, origin: str) -> Handler | None:
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
        if not rules.allowed(msg.url, bot):
            return _raising(PermanentError("robots_disallowed", f"{origin}/robots.txt disallows this URL"))
        crawl_delay = rules.crawl_delay(bot)
    permit = stores.limiter.acquire(key, interval_s(key, s, msg.rate_per_s, crawl_delay), booked)
    if not permit.go:
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
