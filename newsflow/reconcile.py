"""Resume articles whose message was lost.

At-least-once delivery has one gap with Celery's Redis transport: a worker process killed between
popping a message and recording it as unacknowledged takes the message with it, and no
visibility timeout brings it back. The ledger still knows the article is in flight, so the
reconciler re-sends the message of the stage the article was about to enter, rebuilt from the
origin the ledger kept (source, hints, rate). Stages are idempotent on the article id, so a
re-send of a message that was merely slow costs work, never a duplicate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from celery import Celery

from newsflow.dispatch import send
from newsflow.pipeline import Message, reentry, resume_from
from newsflow.state import State


@dataclass(frozen=True)
class Resume:
    article_id: str
    url: str
    state: str
    stage: str
    idle_s: float


def reconcile(
    app: Celery,
    state: State,
    older_than_s: float,
    *,
    max_resumes: int = 3,
    dry_run: bool = False,
    limit: int = 1000,
) -> list[Resume]:
    """Re-send the message of each article stuck in flight longer than `older_than_s`.

    An article resumed more than `max_resumes` times that still never finishes keeps killing or
    hanging its worker (the hard time limit leaves no dead letter): it is dead-lettered `poison`
    instead of being sent round forever.
    """
    now = time.time()
    resumed: list[Resume] = []
    for entry in state.stuck(older_than_s, limit):
        message = Message.from_origin(entry.article_id, entry.url, entry.origin)
        # The raw HTML's key and what the fetch saw travel only in the clean message, so an
        # article lost on its way to clean is fetched again; enrich and index need the document.
        at = reentry(resume_from(entry.state).name, message, state)
        resume = Resume(entry.article_id, entry.url, entry.state, at.name, round(now - entry.updated_at, 1))
        resumed.append(resume)
        if dry_run:
            continue
        times = state.count_attempt("reconcile", entry.article_id)
        if times > max_resumes:
            detail = f"resumed {times - 1} times by the reconciler and never finished (last stuck at {entry.state})"
            state.dead_letter(entry.article_id, entry.url, at.name, "poison", detail, message.to_wire())
            resumed[-1] = Resume(resume.article_id, resume.url, resume.state, "dead", resume.idle_s)
            continue
        # Recording first keeps a slow re-send from being picked up twice by the next sweep.
        state.record(entry.article_id, entry.url, entry.state, "reconcile", reason=f"resumed_at_{at.name}")
        send(app, at, message.restart(at.name))
    return resumed
