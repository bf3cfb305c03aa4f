"""Resume articles whose message was lost.

At-least-once delivery has one gap with Celery's Redis transport: a worker process killed between
popping a message and recording it as unacknowledged takes the message with it, and no
visibility timeout brings it back. The ledger still knows the article is in flight, so the
reconciler re-sends the message of the stage the article was about to enter, rebuilt from the
origin the ledger kept (source, hints, rate). Stages are idempotent on the article id, so a
re-send of a message that was merely slow costs work, never a duplicate.

A full Redis (maxmemory, noeviction) makes every in-flight article look lost: no ledger transition
can be written, and messages wait in the unacked set for the visibility timeout. Resending them
all when room comes back multiplied messages (364 for 120 articles, issue #14), so the silence
that counts starts again when Redis was last seen refusing writes (`silence_restarted_at`).

Silence alone does not tell a lost message from a late one either: behind a backlog (a slow stage,
or everything that piled up while Redis was full) an article waits in a queue long after its last
transition. So an article is resumed only if no message in the broker carries it, waiting in a
stage's queue or delivered and unacked (running, held for a retry countdown, or handed back by a
requeue Redis could not take yet): `carried_ids`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from kombu.exceptions import OperationalError

from newsflow.dispatch import send
from newsflow.logs import get_logger
from newsflow.pipeline import STAGES, Message, reentry, resume_from
from newsflow.queues import UNACKED_KEY, Room, payload_of, priority_lists, room_of
from newsflow.state import State

log = get_logger("newsflow.reconcile")
# Most broker entries one sweep reads to see which articles a message still carries. A broker
# holding more than that is deep in a backlog: its messages are late, not lost; the sweep waits.
SCAN_MAX = 200_000
SCAN_CHUNK = 1000


@dataclass(frozen=True)
class Resume:
    article_id: str
    url: str
    state: str
    stage: str
    idle_s: float


def silence_restarted_at(
    rooms: Mapping[str, Room], seen: Mapping[str, str], now: float
) -> tuple[float | None, dict[str, str]]:
    """When Redis last refused writes for want of memory, as far as the reconciler can tell, and
    what to remember for the next sweep. Seen now if a server is full, or refused more writes than
    at the last sweep (or refused some and there is no last sweep to compare with: a full spell
    between two sweeps, or before the first, is not missed)."""
    last = float(seen["full_at"]) if seen.get("full_at") else None
    remember: dict[str, str] = {}
    hit = False
    for name, room in rooms.items():
        hit = hit or room.full
        before = seen.get(f"{name}_oom")
        hit = hit or room.oom_errors > (int(before) if before is not None else 0)
        remember[f"{name}_oom"] = str(room.oom_errors)
    if hit:
        last = now
        remember["full_at"] = repr(now)
    return last, remember


def _waiting_for_room(app: Celery, state: State, older_than_s: float, now: float, dry_run: bool) -> bool:
    """Whether this sweep must resume nothing: a Redis (broker or state) is full now, or was less
    than `older_than_s` ago. A server that cannot say is taken as not full."""
    try:
        rooms = {"state": state.room()}
        with app.connection_for_read() as conn:
            rooms["broker"] = room_of(conn.default_channel.client)
        seen = state.reconcile_marks()
    except (redis.ConnectionError, redis.TimeoutError):
        raise  # Redis away: the sweep fails as it always did (callers wait it out, the CLI says so)
    except (redis.RedisError, OperationalError, OSError, AttributeError) as exc:
        log.warning("reconcile_room_unknown", error=str(exc)[:300])
        return False
    last, remember = silence_restarted_at(rooms, seen, now)
    if any(room.full for room in rooms.values()):
        log.warning("reconcile_waits_redis_full", full=[name for name, room in rooms.items() if room.full])
        return True
    if remember and not dry_run:
        try:
            state.set_reconcile_marks(remember)
        except redis.RedisError as exc:  # full again already: nothing can move, resend nothing
            log.warning("reconcile_waits_redis_full", error=str(exc)[:300])
            return True
    if last is not None and now - last < older_than_s:
        log.info("reconcile_waits_after_redis_full", since_s=round(now - last, 1), wait_s=older_than_s)
        return True
    return False


def carried_ids(client: Any, wanted: Iterable[str], max_entries: int = SCAN_MAX) -> set[str] | None:
    """Which of the `wanted` article ids a message in the broker still carries: waiting in a
    stage's queue, or delivered and not yet acked. None if the broker holds more than
    `max_entries` entries (not all read: unknown)."""
    wanted = set(wanted)
    found: set[str] = set()
    read = 0

    def note(message: Any) -> None:
        payload = payload_of(message) if isinstance(message, dict) else None
        aid = (payload or {}).get("id")
        if isinstance(aid, str) and aid in wanted:
            found.add(aid)

    for name in [n for s in STAGES for n in priority_lists(s.queue)]:
        for start in range(0, int(client.llen(name)), SCAN_CHUNK):
            for raw in client.lrange(name, start, start + SCAN_CHUNK - 1):
                read += 1
                if read > max_entries:
                    return None
                note(_json(raw))
    for _tag, raw in client.hscan_iter(UNACKED_KEY, count=SCAN_CHUNK):
        read += 1
        if read > max_entries:
            return None
        entry = _json(raw)  # [message, exchange, routing_key]
        note(entry[0] if isinstance(entry, list) and entry else None)
    return found


def _json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


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
    instead of being sent round forever. Nothing is resumed while a Redis is full, nor until
    `older_than_s` after it last was (see the module's docstring).
    """
    now = time.time()
    resumed: list[Resume] = []
    if _waiting_for_room(app, state, older_than_s, now, dry_run):
        return resumed
    stuck = state.stuck(older_than_s, limit)
    if not stuck:
        return resumed
    with app.connection_for_read() as conn:
        carried = carried_ids(conn.default_channel.client, [e.article_id for e in stuck])
    if carried is None:
        log.warning("reconcile_waits_broker_backlog", more_than=SCAN_MAX)
        return resumed
    for entry in stuck:
        if entry.article_id in carried:
            continue  # its message is late, not lost: waiting in a queue, or delivered and unacked
        message = Message.from_origin(entry.article_id, entry.url, entry.origin)
        # The raw HTML's key and what the fetch saw travel only in the clean message, so an
        # article lost on its way to clean is fetched again; enrich and index need the document.
        at = reentry(resume_from(entry.state).name, message, state)
        resume = Resume(entry.article_id, entry.url, entry.state, at.name, round(now - entry.updated_at, 1))
        resumed.append(resume)
        if dry_run:
            continue
        try:
            times = state.count_attempt("reconcile", entry.article_id)
            if times > max_resumes:
                detail = f"resumed {times - 1} times by the reconciler and never finished (last stuck at {entry.state})"
                state.dead_letter(entry.article_id, entry.url, at.name, "poison", detail, message.to_wire())
                resumed[-1] = Resume(resume.article_id, resume.url, resume.state, "dead", resume.idle_s)
                continue
            # Recording first keeps a slow re-send from being picked up twice by the next sweep.
            state.record(entry.article_id, entry.url, entry.state, "reconcile", reason=f"resumed_at_{at.name}")
            send(app, at, message.restart(at.name))
        except (redis.exceptions.OutOfMemoryError, OperationalError) as exc:
            # Redis filled up during the sweep: stop. An article recorded but not sent is resumed
            # by a later sweep, once it has been silent long enough again.
            log.warning("reconcile_stopped_redis_full", error=str(exc)[:300], article_id=entry.article_id)
            resumed.pop()
            break
    return resumed
