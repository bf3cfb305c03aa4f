"""Resume articles whose message was lost.

At-least-once delivery has one gap with Celery's Redis transport: a worker process killed between
popping a message and recording it as unacknowledged takes the message with it, and no
visibility timeout brings it back. The ledger still knows the article is in flight, so the
reconciler re-sends the message of the stage the article was about to enter. Stages are idempotent
on the article id, so a re-send of a message that was merely slow costs work, never a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass

from newsflow.state import DONE_STATE, STATES, LedgerEntry

# Ledger state -> the stage that consumes it next (the state just before the one that stage leaves).
NEXT_STAGE = {STATES[STATES.index(done) - 1]: stage for stage, done in DONE_STATE.items()}


@dataclass(frozen=True)
class Resume:
    article_id: str
    url: str
    state: str
    stage: str
    idle_s: float


def resume_stage(entry: LedgerEntry, has_doc: bool) -> str:
    """Where to re-enter: the next stage, or fetch when that stage's input is gone.

    The raw HTML's claim-check key and fetch metadata travel only in the clean message, so an
    article lost on its way to clean is fetched again; enrich and index need the stored document.
    """
    stage = NEXT_STAGE.get(entry.state, "fetch")
    if stage in ("enrich", "index") and not has_doc:
        return "fetch"
    return "fetch" if stage == "clean" else stage
