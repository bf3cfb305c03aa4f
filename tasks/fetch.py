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

import functools
import random
from typing import Any
from urllib.parse import urlsplit

import requests

from newsflow.errors import PermanentError, TransientError
from newsflow.fetcher import NotModified, fetch_page, make_session
from newsflow.polite.hosts import host_key, interval_s, origin_of
from newsflow.polite.limiter import HostLimiter
from newsflow.polite.noindex import header_noindex, meta_noindex
from newsflow.polite.robots import RobotsCache, bot_token
from tasks import topology
from tasks.base import Handler, Payload, StageContext, StageTask, shared_state
from workers.app import app
from workers.logging import get_logger
from workers.settings import get_settings

log = get_logger("newsflow.fetch")
# Keys the gate adds to a payload; not passed on to the next stage.
_GATE_KEYS = ("slot_ms",)


@functools.cache
def session() -> requests.Session:
    """One HTTP session per worker process: connections are reused across tasks."""
    return make_session(get_settings())


@functools.cache
def limiter() -> HostLimiter:
    settings = get_settings()
    # A deferral's countdown must stay under the visibility timeout, or the broker redelivers it.
    reserve_s = min(settings.polite_max_reserve_s, settings.visibility_timeout_s / 2)
    return HostLimiter(shared_state().r, settings.key_prefix, reserve_s)


@functools.cache
def robots() -> RobotsCache:
    return RobotsCache(shared_state().r, get_settings())


def handle(ctx: StageContext, payload: Payload) -> Payload | None:
    url = payload["url"]
    try:
        result = fetch_page(url, ctx.settings, session())
    except NotModified:
        ctx.state.record(payload["id"], url, "indexed", ctx.stage, reason="not_modified", worker=ctx.worker)
        return None
    except TransientError as exc:
        if exc.retry_after_s and exc.reason in ("http_429", "http_503"):
            # The host asked everyone to wait, not just this message.
            limiter().hold(host_key(url), min(exc.retry_after_s, ctx.settings.visibility_timeout_s / 2))
        raise
    if ctx.settings.polite_obey_noindex:
        _check_noindex(result.html, result.headers.get("X-Robots-Tag", ""), ctx.settings.user_agent)
    pipe = ctx.state.pipeline()  # claim check and ledger in one round trip
    key = ctx.state.put_blob(payload["id"], result.html, pipe)
    ctx.state.record(
        payload["id"], url, "fetched", ctx.stage, worker=ctx.worker, extra={"bytes": result.n_bytes}, pipe=pipe
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
    out = {k: v for k, v in payload.items() if k not in _GATE_KEYS}
    return {**out, "blob": key, "fetch": fetch_meta}


def _check_noindex(html: str, tag: str, user_agent: str) -> None:
    bot = bot_token(user_agent)
    if tag and header_noindex([tag], bot):
        raise PermanentError("noindex", f"X-Robots-Tag: {tag[:200]}")
    if meta_noindex(html, bot):
        raise PermanentError("noindex", "robots meta tag says noindex")


def _raising(exc: Exception) -> Handler:
    """A handler that fails with `exc`, so run_stage gives the message its usual fate."""

    def fail(ctx: StageContext, payload: Payload) -> Payload | None:
        raise exc

    return fail


def polite_gate(task: StageTask, payload: Any) -> Handler | None:
    """The handler to run now, or None when the message was deferred to a later slot."""
    if not isinstance(payload, dict) or not isinstance(payload.get("url"), str):
        return handle  # run_stage dead-letters the bad payload
    url: str = payload["url"]
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return handle  # the fetcher refuses it with its own reason
        key, origin = host_key(url), origin_of(url)
    except ValueError:
        return handle
    try:
        return _gate(task, payload, url, key, origin)
    except Exception as exc:  # e.g. Redis down: run_stage decides (retry, or dead-letter a bug)
        return _raising(exc)


def _gate(task: StageTask, payload: Payload, url: str, key: str, origin: str) -> Handler | None:
    s = get_settings()
    booked = payload.get("slot_ms") if isinstance(payload.get("slot_ms"), int) else None
    source_rate = payload.get("rate_per_s") if isinstance(payload.get("rate_per_s"), int | float) else None
    crawl_delay = None
    if s.polite_obey_robots:
        bot = bot_token(s.user_agent)
        rules = robots().get(origin)
        if rules is None:
            if not robots().try_lock(origin):  # another worker is fetching it right now
                return _defer(task, payload, 0.3 + random.uniform(0, 0.4), booked)
            try:
                # Checked again under the lock: another worker may have stored it since our first look.
                rules = robots().get(origin)
                if rules is None:
                    permit = limiter().acquire(key, interval_s(key, s, source_rate), booked)
                    if not permit.go:
                        return _defer(task, payload, permit.wait_s, permit.slot_ms)
                    rules = robots().fetch_and_store(origin, session())
                    booked = None  # that slot went to robots.txt
            finally:
                robots().unlock(origin)
        if rules.kind == "error":
            return _raising(TransientError("robots_unavailable", f"{origin}/robots.txt: {rules.detail}"))
        if not rules.allowed(url, bot):
            return _raising(PermanentError("robots_disallowed", f"{origin}/robots.txt disallows this URL"))
        crawl_delay = rules.crawl_delay(bot)
    permit = limiter().acquire(key, interval_s(key, s, source_rate, crawl_delay), booked)
    if not permit.go:
        return _defer(task, payload, permit.wait_s, permit.slot_ms)
    return handle


def _defer(task: StageTask, payload: Payload, wait_s: float, slot_ms: int | None) -> Handler | None:
    """Send the message again for its slot; the retry counter is carried over, not increased."""
    again = {k: v for k, v in payload.items() if k not in _GATE_KEYS}
    if slot_ms:
        again["slot_ms"] = slot_ms
    task.apply_async(
        args=(again,),
        countdown=max(0.0, wait_s),
        retries=int(task.request.retries or 0),
        queue=topology.queue_of("fetch"),
    )
    log.debug("fetch_deferred", url=payload.get("url"), wait_s=round(wait_s, 3), booked=bool(slot_ms))
    return None


@app.task(name="fetch.page", base=StageTask, bind=True, stage="fetch")
def fetch_task(self: StageTask, payload: Any) -> str:
    handler = polite_gate(self, payload)
    if handler is None:
        return "deferred"
    return self.run_stage(payload, handler)
