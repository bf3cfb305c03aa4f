"""Read the broker's queues directly: depth, oldest message age, unacked and scheduled messages.

Kombu's Redis transport keeps each queue as a Redis list named after it (plus `{queue}\\x06\\x16{n}`
lists for priorities 3, 6 and 9). Producers LPUSH and consumers RPOP, so the oldest message is the
last element. A message is JSON: `{"body": base64(JSON [args, kwargs, embed]), "headers": {...},
"properties": {"body_encoding": "base64", "delivery_info": {"routing_key": ...}}}`. Celery puts no
enqueue time in it, so newsflow's payloads carry `enqueued_at` (set by the client and by each stage
when it forwards); messages without it have an unknown age.

A delivered message that is not yet acknowledged lives in the `unacked` hash (delivery tag ->
JSON `[message, exchange, routing_key]`) with its delivery time in the `unacked_index` zset; Redis
gives it back to the queue when the worker shuts down or after the visibility timeout. Retries
with a countdown wait there too, as unacked messages with an `eta` header.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"


@dataclass
class QueueInfo:
    queue: str
    depth: int
    oldest_age_s: float | None  # None: empty, or its oldest message carries no enqueue time
    unacked: int  # delivered, not acknowledged: running, prefetched, or held for a retry countdown
    scheduled: int  # of those, held for a retry countdown (`eta` header)
    oldest_unacked_s: float | None  # longest time a message has been delivered but not acked

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def priority_lists(queue: str) -> list[str]:
    return [queue if p == 0 else f"{queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS]


def payload_of(message: dict[str, Any]) -> dict[str, Any] | None:
    """The stage payload (first task argument) inside one kombu message, if it is ours."""
    try:
        body: Any = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        decoded = json.loads(body)
    except (KeyError, ValueError, TypeError):
        return None
    # Protocol 2: [args, kwargs, embed]; protocol 1: {"args": [...], ...}.
    args = decoded[0] if isinstance(decoded, list) and decoded else (decoded or {}).get("args")
    if isinstance(args, list) and args and isinstance(args[0], dict):
        return args[0]
    return None


def enqueued_at(raw: bytes | str) -> float | None:
    try:
        payload = payload_of(json.loads(raw))
    except ValueError:
        return None
    value = (payload or {}).get("enqueued_at")
    return float(value) if isinstance(value, int | float) else None


def inspect_queues(r: redis.Redis, queues: Sequence[str], now: float | None = None) -> list[QueueInfo]:
    now = time.time() if now is None else now
    pipe = r.pipeline(transaction=False)
    for q in queues:
        for name in priority_lists(q):
            pipe.llen(name)
            pipe.lindex(name, -1)
    replies = pipe.execute()
    unacked, scheduled, oldest_unacked = _unacked_by_queue(r, now)
    out: list[QueueInfo] = []
    step = 2 * len(PRIORITY_STEPS)
    for i, q in enumerate(queues):
        chunk = replies[i * step : (i + 1) * step]
        depth = sum(int(n or 0) for n in chunk[0::2])
        stamps = [t for raw in chunk[1::2] if raw is not None and (t := enqueued_at(raw)) is not None]
        age = round(max(0.0, now - min(stamps)), 3) if stamps else None
        out.append(QueueInfo(q, depth, age, unacked.get(q, 0), scheduled.get(q, 0), oldest_unacked.get(q)))
    return out


def _unacked_by_queue(r: redis.Redis, now: float) -> tuple[dict[str, int], dict[str, int], dict[str, float]]:
    """Count unacked messages per routing key (= queue), scanning the hash in chunks."""
    counts: dict[str, int] = {}
    eta: dict[str, int] = {}
    tag_queue: dict[str, str] = {}
    for tag, raw in r.hscan_iter(UNACKED_KEY, count=500):
        try:
            message, _exchange, routing_key = json.loads(raw)
        except (ValueError, TypeError):
            continue
        queue = str(routing_key)
        counts[queue] = counts.get(queue, 0) + 1
        tag_queue[tag.decode() if isinstance(tag, bytes) else str(tag)] = queue
        if (message.get("headers") or {}).get("eta"):
            eta[queue] = eta.get(queue, 0) + 1
    oldest: dict[str, float] = {}
    if tag_queue:
        tags = list(tag_queue)
        scores = r.zmscore(UNACKED_INDEX_KEY, tags)  # Redis >= 6.2
        for tag, score in zip(tags, scores, strict=True):
            if score is not None:
                q = tag_queue[tag]
                oldest[q] = max(oldest.get(q, 0.0), round(now - float(score), 3))
    return counts, eta, oldest


@dataclass(frozen=True)
class Room:
    """What one Redis server says about its memory."""

    full: bool  # used_memory >= maxmemory (> 0): refusing writes right now
    oom_errors: int  # writes refused for want of memory since it started (INFO errorstats)


def room_of(client: Any) -> Room:
    """A Redis server's memory: full now, and how many writes it refused (OOM) since it started."""
    memory = client.info("memory")
    limit = int(memory.get("maxmemory") or 0)
    try:
        errors = client.info("errorstats")  # Redis >= 6.2
    except redis.ResponseError:
        errors = {}
    oom = errors.get("errorstat_OOM")
    count = int(oom.get("count", 0)) if isinstance(oom, dict) else 0  # none refused yet (or Redis < 6.2)
    return Room(limit > 0 and int(memory.get("used_memory") or 0) >= limit, count)


def durability_warnings(r: redis.Redis) -> list[str]:
    """What this Redis could lose, if anything: on a restart (queued messages, the unacked set and
    the ledger live in memory; only the append-only file keeps each write), and when full (a policy
    that evicts keys drops queued messages and claim checks silently). A Redis that refuses CONFIG
    (a managed service) is judged by INFO alone."""
    out = []
    memory: dict[str, Any] = r.info("memory")
    policy = str(memory.get("maxmemory_policy") or "noeviction")
    if int(memory.get("maxmemory") or 0) and policy != "noeviction":
        out.append(
            f"it evicts keys when full (maxmemory-policy {policy}): queued articles and claim checks can vanish"
            " without a trace; set `maxmemory-policy noeviction` (newsflow waits out a full Redis)"
        )
    restart = _restart_warning(r)
    if restart:
        out.append(restart)
    return out


def _restart_warning(r: redis.Redis) -> str | None:
    info: dict[str, Any] = r.info("persistence")
    if int(info.get("aof_enabled") or 0):
        return None
    try:
        reply = r.config_get("save")
        save: str | None = str(reply.get("save", ""))
    except redis.ResponseError:  # CONFIG renamed or refused
        save = None
    fix = "turn on `appendonly yes` (docs/operations.md)"
    if save is None:
        return f"appendonly is off: a crash loses what was queued since the last snapshot, if any; {fix}"
    if not save.strip():
        lost = "a restart loses every queued article and the ledger"
        return f"it keeps nothing on disk (appendonly no, no snapshots): {lost}; {fix}"
    return f"it only takes snapshots (save {save!r}): a crash loses what was queued since the last one; {fix}"
