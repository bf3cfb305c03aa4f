"""Client side of the pipeline: put URLs in, follow them until they are indexed or dead."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery

from newsflow.dispatch import send
from newsflow.pipeline import FIRST, TERMINAL_STATES, Message
from newsflow.search.tombstones import site_of_url
from newsflow.state import LedgerEntry, State
from newsflow.stores import Stores
from newsflow.urls import InvalidURL, article_id


@dataclass
class Submitted:
    url: str
    article_id: str
    submitted_at: float


@dataclass
class Outcome:
    url: str
    article_id: str | None
    state: str
    stage: str | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "article_id": self.article_id,
            "state": self.state,
            "stage": self.stage,
            "reason": self.reason,
        }


def submit(app: Celery, stores: Stores, urls: Iterable[str]) -> tuple[list[Submitted], list[Outcome]]:
    """Enqueue each URL for the first stage. Invalid URLs come back as dead outcomes."""
    accepted: list[Submitted] = []
    rejected: list[Outcome] = []
    sent: set[str] = set()
    state, tombs = stores.state, stores.tombstones
    with app.producer_or_acquire() as producer:
        for url in urls:
            try:
                aid = article_id(url)
            except InvalidURL as exc:
                rejected.append(Outcome(url, None, "dead", "submit", f"bad_url: {exc}"))
                continue
            if tombs.dead_among([aid], [site_of_url(url)]):  # taken down: `newsflow purge --lift` first
                rejected.append(Outcome(url, aid, "dead", "submit", "purged"))
                continue
            now = time.time()
            if aid not in sent:  # two spellings of one URL are one article: fetch it once
                msg = Message.new(url, aid)
                state.record(aid, url, "discovered", "submit", origin=msg.origin_json())
                send(app, FIRST, msg, producer=producer)
                sent.add(aid)
            accepted.append(Submitted(url, aid, now))
    return accepted, rejected


def wait(
    state: State,
    submitted: list[Submitted],
    timeout_s: float,
    on_progress: Callable[[int, int], None] | None = None,
    poll_s: float = 0.2,
) -> list[Outcome]:
    """Poll the ledger until every article reached `indexed` or `dead` after it was submitted."""
    if not math.isfinite(timeout_s) or timeout_s < 0:  # monotonic() + nan is a deadline never reached
        raise ValueError(f"timeout_s must be a finite number of seconds, 0 or more, not {timeout_s!r}")
    deadline = time.monotonic() + timeout_s
    # One entry per article: several submitted spellings of a URL share it.
    first: dict[str, Submitted] = {}
    for s in submitted:
        first.setdefault(s.article_id, s)
    done: dict[str, LedgerEntry] = {}
    while True:
        pending = [s for aid, s in first.items() if aid not in done]
        try:
            entries = state.ledgers([s.article_id for s in pending]) if pending else []
        except (redis.ConnectionError, redis.TimeoutError):
            # Redis restarting: the workers ride it out, and so does the wait, up to its deadline.
            if time.monotonic() >= deadline:
                raise
            time.sleep(max(poll_s, 0.5))
            continue
        for sub, entry in zip(pending, entries, strict=True):
            if entry and entry.state in TERMINAL_STATES and entry.updated_at >= sub.submitted_at:
                done[sub.article_id] = entry
        if on_progress:
            on_progress(len(done), len(first))
        if len(done) == len(first) or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    return [_outcome(s, done.get(s.article_id)) for s in submitted]


def _outcome(sub: Submitted, entry: LedgerEntry | None) -> Outcome:
    if entry is None:
        return Outcome(sub.url, sub.article_id, "pending", None, None)
    return Outcome(sub.url, sub.article_id, entry.state, entry.stage, entry.reason or None)
