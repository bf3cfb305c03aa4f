"""Client side of the pipeline: put URLs in, follow them until they are indexed or dead."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from celery import Celery

from newsflow.search.tombstones import Tombstones, site_of_url
from newsflow.state import TERMINAL_STATES, LedgerEntry, State
from newsflow.urls import InvalidURL, article_id
from tasks import topology


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


def make_payload(
    url: str, aid: str, *, source: str | None = None, hints: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    now = round(time.time(), 3)
    # submitted_at: start of the publish-to-indexed lag; enqueued_at: age of a queue's oldest message.
    payload: dict[str, Any] = {"v": topology.PAYLOAD_VERSION, "id": aid, "url": url, "submitted_at": now}
    payload["enqueued_at"] = now
    if source:
        payload["source"] = source
    if hints:
        payload["hints"] = dict(hints)
    return payload


def submit(app: Celery, state: State, urls: Iterable[str]) -> tuple[list[Submitted], list[Outcome]]:
    """Enqueue each URL for the first stage. Invalid URLs come back as dead outcomes."""
    accepted: list[Submitted] = []
    rejected: list[Outcome] = []
    first_task, first_queue = topology.task_name(topology.FIRST_STAGE), topology.queue_of(topology.FIRST_STAGE)
    sent: set[str] = set()
    tombs = Tombstones(state.r, state.p)
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
                state.record(aid, url, "discovered", "submit")
                app.send_task(first_task, args=(make_payload(url, aid),), queue=first_queue, producer=producer)
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
    deadline = time.monotonic() + timeout_s
    # One entry per article: several submitted spellings of a URL share it.
    first: dict[str, Submitted] = {}
    for s in submitted:
        first.setdefault(s.article_id, s)
    done: dict[str, LedgerEntry] = {}
    while True:
        pending = [s for aid, s in first.items() if aid not in done]
        if pending:
            entries = state.ledgers([s.article_id for s in pending])
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


def send_first_stage(app: Celery, payloads: Iterable[Mapping[str, Any]]) -> int:
    """Enqueue ready-made first-stage payloads (a crawl builds them with its hints); returns how many."""
    first_task, first_queue = topology.task_name(topology.FIRST_STAGE), topology.queue_of(topology.FIRST_STAGE)
    n = 0
    with app.producer_or_acquire() as producer:
        for payload in payloads:
            # Timestamps for `newsflow status` (queue age) and the publish-to-indexed lag metric.
            now = round(time.time(), 3)
            stamped = {"submitted_at": now, **payload, "enqueued_at": now}
            app.send_task(first_task, args=(stamped,), queue=first_queue, producer=producer)
            n += 1
    return n


def queue_depth(app: Celery, queue: str) -> int:
    """Messages waiting in `queue` on the Redis broker (kombu keeps priorities in sibling lists)."""
    with app.connection_for_read() as conn:
        client = conn.default_channel.client
        names = [queue, *(f"{queue}\x06\x16{p}" for p in range(1, 10))]
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.llen(name)
        return int(sum(pipe.execute()))


def reconcile(app: Celery, state: State, older_than_s: float, *, dry_run: bool = False, limit: int = 1000) -> list[Any]:
    """Re-send the message of each article stuck in flight longer than `older_than_s` (see newsflow.reconcile)."""
    from newsflow.reconcile import Resume, resume_stage

    now = time.time()
    resumed: list[Resume] = []
    for entry in state.stuck(older_than_s, limit):
        stage = resume_stage(entry, state.has_doc(entry.article_id))
        resumed.append(Resume(entry.article_id, entry.url, entry.state, stage, round(now - entry.updated_at, 1)))
        if dry_run:
            continue
        # Recording first keeps a slow re-send from being picked up twice by the next sweep.
        state.record(entry.article_id, entry.url, entry.state, "reconcile", reason=f"resumed_at_{stage}")
        app.send_task(
            topology.task_name(stage), args=(make_payload(entry.url, entry.article_id),), queue=topology.queue_of(stage)
        )
    return resumed
