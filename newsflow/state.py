"""Shared state in Redis: claim-check blobs, article documents, the ledger and dead letters.

Every key lives under the configured prefix (default `newsflow:`) and has a TTL or a bound:
- `blob:{article_id}`      zstd-compressed raw HTML, TTL `blob_ttl_s`, deleted once cleaned
- `doc:{article_id}`       zstd-compressed JSON article document between clean and index, TTL `doc_ttl_s`
- `article:{article_id}`   ledger hash: url, state, stage, reason, updated_at; TTL `ledger_ttl_s`
- `trace:{article_id}`     the article's last 50 transitions (JSON lines), same TTL
- `dead:{article_id}`      dead-letter record (stage, reason, detail, payload), in the `dead` zset
- `dead`                   zset of dead article ids by time, capped at `deadletter_max`
- `stats:{state}:{hour}`   transition counters per hour, kept two days
- `statm:{state}:{minute}` transition counters per minute, kept two hours (throughput, "last hour")
- `deadidx`                set of `{stage}|{reason}` pairs seen in dead letters (bounded: stages x reasons)
- `deadidx:{stage}|{reason}` zset of dead article ids by time, pruned against `dead`, capped like it
- `sources`                hash `{source}|{state}` -> articles (fields bounded by the configured sources)
- `metrics:*`              Prometheus counters written by every worker (see newsflow/metrics.py)
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
import zstandard

from config.defaults import Settings
from newsflow import metrics

TERMINAL_STATES = frozenset({"indexed", "dead"})
STATES = ("discovered", "fetched", "cleaned", "enriched", "indexed", "dead")
# The ledger state each stage leaves an article in, in pipeline order.
DONE_STATE = {"fetch": "fetched", "clean": "cleaned", "enrich": "enriched", "index": "indexed"}
TRACE_LEN = 50
STATS_TTL_S = 2 * 24 * 3600
MINUTE_STATS_TTL_S = 2 * 3600
# States counted per source: what came in, and how it ended.
SOURCE_STATES = ("discovered", "indexed", "skipped", "dead")
SOURCE_NAME_MAX = 100
# zstd levels: raw HTML lives minutes (level 1: ~0.45 ms per median page, a third of zlib-1's CPU, 10%
# smaller); documents are small and may wait longer (bench/pipeline.py measures both).
_BLOB_LEVEL, _DOC_LEVEL = 1, 3
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
Pipe = redis.client.Pipeline


def _pack(data: bytes, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level).compress(data)


def _unpack(raw: bytes) -> bytes:
    """zstd frames; zlib streams written before zstd was adopted are still read (upgrades in flight)."""
    if raw[:4] == _ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().decompress(raw)
    return zlib.decompress(raw)


@dataclass(frozen=True)
class LedgerEntry:
    article_id: str
    url: str
    state: str
    stage: str
    reason: str
    updated_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "article_id": self.article_id,
            "url": self.url,
            "state": self.state,
            "stage": self.stage,
            "reason": self.reason or None,
            "updated_at": self.updated_at,
        }


def connect(url: str) -> redis.Redis:
    """A client with timeouts, so a dead Redis shows up as an error instead of a hang."""
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30)


class State:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.p = settings.key_prefix

    @classmethod
    def from_settings(cls, settings: Settings) -> State:
        return cls(connect(settings.state_url), settings)

    def key(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    # --- claim check ----------------------------------------------------------------------
    def put_blob(self, article_id: str, data: str, pipe: Pipe | None = None) -> str:
        """Park raw HTML; with `pipe`, the write joins that pipeline (the caller executes it)."""
        key = self.key("blob", article_id)
        (pipe or self.r).set(key, _pack(data.encode("utf-8"), _BLOB_LEVEL), ex=self.s.blob_ttl_s)
        return key

    def get_blob(self, key: str) -> str | None:
        raw = self.r.get(key)
        return None if raw is None else _unpack(raw).decode("utf-8")  # type: ignore[arg-type]

    def delete_blob(self, key: str, pipe: Pipe | None = None) -> None:
        (pipe or self.r).delete(key)

    # --- documents --------------------------------------------------------------------------
    def put_doc(self, article_id: str, doc: Mapping[str, Any], pipe: Pipe | None = None) -> None:
        raw = _pack(json.dumps(doc, ensure_ascii=False).encode("utf-8"), _DOC_LEVEL)
        (pipe or self.r).set(self.key("doc", article_id), raw, ex=self.s.doc_ttl_s)

    def get_doc(self, article_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self.key("doc", article_id))
        return None if raw is None else json.loads(_unpack(raw))  # type: ignore[arg-type]

    def pipeline(self) -> Pipe:
        """A stage's writes in one round trip, all or none (MULTI/EXEC): a Redis refusing one of
        them (maxmemory) must not let the others through, e.g. free the blob without the document."""
        return self.r.pipeline(transaction=True)

    def get_docs(self, article_ids: list[str]) -> list[dict[str, Any] | None]:
        raws = self.r.mget([self.key("doc", a) for a in article_ids]) if article_ids else []
        return [None if raw is None else json.loads(_unpack(raw)) for raw in raws]  # type: ignore[arg-type]

    def delete_docs(self, article_ids: Iterable[str]) -> None:
        keys = [self.key("doc", a) for a in article_ids]
        if keys:
            self.r.delete(*keys)

    # --- ledger -------------------------------------------------------------------------------
    def record(
        self,
        article_id: str,
        url: str,
        state: str,
        stage: str,
        *,
        reason: str = "",
        detail: str = "",
        worker: str = "",
        extra: Mapping[str, Any] | None = None,
        pipe: Pipe | None = None,
    ) -> None:
        """One transition: the ledger's current state, the trace line and the hourly counter.

        With `pipe`, the writes join that pipeline and the caller executes it.
        """
        now = time.time()
        event = {
            "t": round(now, 3),
            "state": state,
            "stage": stage,
            "reason": reason,
            "detail": detail[:300],
            "worker": worker,
        }
        if extra:
            event.update(extra)
        akey, tkey = self.key("article", article_id), self.key("trace", article_id)
        skey = self.key("stats", state, time.strftime("%Y%m%d%H", time.gmtime(now)))
        own = pipe is None
        pipe = self.pipeline() if pipe is None else pipe
        mapping = {"url": url, "state": state, "stage": stage, "reason": reason, "updated_at": now}
        pipe.hset(akey, mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(akey, self.s.ledger_ttl_s)
        pipe.lpush(tkey, json.dumps(event))
        pipe.ltrim(tkey, 0, TRACE_LEN - 1)
        pipe.expire(tkey, self.s.ledger_ttl_s)
        pipe.incr(skey)
        pipe.expire(skey, STATS_TTL_S)
        mkey = self.key("statm", state, time.strftime("%Y%m%d%H%M", time.gmtime(now)))
        pipe.incr(mkey)
        pipe.expire(mkey, MINUTE_STATS_TTL_S)
        # In-flight index: what the reconciler looks at (bounded: terminal states leave it).
        if state in TERMINAL_STATES:
            pipe.zrem(self.key("inflight"), article_id)
        else:
            pipe.zadd(self.key("inflight"), {article_id: now})
        if own:
            pipe.execute()

    def stuck(self, older_than_s: float, limit: int = 1000) -> list[LedgerEntry]:
        """Articles not terminal whose last transition is older than `older_than_s`."""
        zkey = self.key("inflight")
        raw: list[bytes] = self.r.zrangebyscore(zkey, 0, time.time() - older_than_s, start=0, num=limit)  # type: ignore[assignment]
        ids = [x.decode() for x in raw]
        out: list[LedgerEntry] = []
        for aid, entry in zip(ids, self.ledgers(ids), strict=True):
            if entry is None or entry.state in TERMINAL_STATES:
                self.r.zrem(zkey, aid)  # the ledger expired or moved on: nothing to watch
                continue
            out.append(entry)
        return out

    def has_doc(self, article_id: str) -> bool:
        return bool(self.r.exists(self.key("doc", article_id)))

    def ledger(self, article_id: str) -> LedgerEntry | None:
        raw: dict[bytes, bytes] = self.r.hgetall(self.key("article", article_id))  # type: ignore[assignment]
        if not raw:
            return None
        d = {k.decode(): v.decode() for k, v in raw.items()}
        return LedgerEntry(
            article_id,
            d.get("url", ""),
            d.get("state", ""),
            d.get("stage", ""),
            d.get("reason", ""),
            float(d.get("updated_at", 0)),
        )

    def ledgers(self, article_ids: list[str]) -> list[LedgerEntry | None]:
        pipe = self.r.pipeline(transaction=False)
        for a in article_ids:
            pipe.hgetall(self.key("article", a))
        out: list[LedgerEntry | None] = []
        for a, raw in zip(article_ids, pipe.execute(), strict=True):
            if not raw:
                out.append(None)
                continue
            d = {k.decode(): v.decode() for k, v in raw.items()}
            out.append(
                LedgerEntry(
                    a,
                    d.get("url", ""),
                    d.get("state", ""),
                    d.get("stage", ""),
                    d.get("reason", ""),
                    float(d.get("updated_at", 0)),
                )
            )
        return out

    def trace(self, article_id: str) -> list[dict[str, Any]]:
        raw: list[bytes] = self.r.lrange(self.key("trace", article_id), 0, -1)  # type: ignore[assignment]
        return [json.loads(x) for x in reversed(raw)]

    # --- dead letters ---------------------------------------------------------------------------
    def dead_letter(
        self,
        article_id: str,
        url: str,
        stage: str,
        reason: str,
        detail: str,
        payload: Mapping[str, Any],
        worker: str = "",
    ) -> None:
        now = time.time()
        record = {
            "article_id": article_id,
            "url": url,
            "stage": stage,
            "reason": reason,
            "detail": detail[:1000],
            "time": now,
            "payload": payload,
        }
        dkey, zkey = self.key("dead", article_id), self.key("dead")
        pair = _pair(stage, reason)
        previous = self.dead_letter_record(article_id)  # died before elsewhere: leave that index
        pipe = self.r.pipeline(transaction=False)
        pipe.set(dkey, json.dumps(record, ensure_ascii=False), ex=self.s.ledger_ttl_s)
        pipe.zadd(zkey, {article_id: now})
        # Bound the dead-letter set: drop the oldest beyond the cap.
        pipe.zremrangebyrank(zkey, 0, -self.s.deadletter_max - 1)
        if previous is not None:
            pipe.zrem(self.key("deadidx", _pair(previous.get("stage", ""), previous.get("reason", ""))), article_id)
        pipe.sadd(self.key("deadidx"), pair)
        pipe.zadd(self.key("deadidx", pair), {article_id: now})
        pipe.zremrangebyrank(self.key("deadidx", pair), 0, -self.s.deadletter_max - 1)
        pipe.execute()
        source = payload.get("source") if isinstance(payload, Mapping) else None
        if isinstance(source, str) and source and payload.get("id"):  # an article, not a failed crawl
            self.count_source(source, "dead")
        metrics.count_failed(self.r, self.p, stage, reason)
        self.record(article_id, url, "dead", stage, reason=reason, detail=detail, worker=worker)

    def dead_letters(
        self, limit: int = 1000, *, stage: str | None = None, reason: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest dead letters first, optionally only those of one stage and/or reason."""
        if stage is None and reason is None:
            ids: list[bytes] = self.r.zrevrange(self.key("dead"), 0, limit - 1)  # type: ignore[assignment]
        else:
            pairs = [p for p in self._dead_pairs() if _matches(p, stage, reason)]
            scored: list[Any] = []
            for pair in pairs:
                scored.extend(self.r.zrevrange(self.key("deadidx", pair), 0, limit - 1, withscores=True))
            ids = [i for i, _ in sorted(scored, key=lambda x: -x[1])[:limit]]
        if not ids:
            return []
        raws = self.r.mget([self.key("dead", i.decode()) for i in ids])
        return [json.loads(x) for x in raws if x is not None]

    def dead_letter_record(self, article_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self.key("dead", article_id))
        return None if raw is None else dict(json.loads(raw))

    def dead_letter_counts(self) -> list[dict[str, Any]]:
        """Dead letters still on file, by stage and reason (largest first).

        Each per-pair index is first intersected with the `dead` zset, which drops ids that were
        replayed, indexed since (the index stage clears their dead letters) or trimmed by the cap.
        """
        out: list[dict[str, Any]] = []
        for pair in self._dead_pairs():
            ikey = self.key("deadidx", pair)
            self.r.zinterstore(ikey, {ikey: 1, self.key("dead"): 0})
            n = int(self.r.zcard(ikey))
            if n == 0:
                self.r.srem(self.key("deadidx"), pair)
                continue
            stage, _, reason = pair.partition("|")
            out.append({"stage": stage, "reason": reason, "count": n})
        return sorted(out, key=lambda d: (-d["count"], d["stage"], d["reason"]))

    def _dead_pairs(self) -> list[str]:
        raw: set[bytes] = self.r.smembers(self.key("deadidx"))  # type: ignore[assignment]
        return sorted(x.decode() for x in raw)

    def clear_dead(self, article_id: str) -> None:
        previous = self.dead_letter_record(article_id)
        self.r.zrem(self.key("dead"), article_id)
        self.r.delete(self.key("dead", article_id))
        if previous is not None:
            pair = _pair(previous.get("stage", ""), previous.get("reason", ""))
            self.r.zrem(self.key("deadidx", pair), article_id)

    # --- operations: per-source counters and transition statistics ------------------------------
    def count_source(self, source: str, state: str, sink: metrics.CounterSink | None = None) -> None:
        """One more article of `source` reached `state` (discovered, indexed or dead)."""
        (sink or self.r).hincrby(self.key("sources"), f"{source[:SOURCE_NAME_MAX]}|{state}", 1)

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Per source: how many articles were discovered, indexed and dead-lettered (all time)."""
        raw: dict[bytes, bytes] = self.r.hgetall(self.key("sources"))  # type: ignore[assignment]
        out: dict[str, dict[str, int]] = {}
        for field, value in raw.items():
            source, _, state = field.decode().rpartition("|")
            out.setdefault(source, dict.fromkeys(SOURCE_STATES, 0))[state] = int(value)
        return dict(sorted(out.items()))

    def transitions(self, minutes: int, now: float | None = None) -> dict[str, int]:
        """Transitions into each state during the last `minutes` minutes (at most 120)."""
        now = time.time() if now is None else now
        stamps = [time.strftime("%Y%m%d%H%M", time.gmtime(now - 60 * i)) for i in range(min(minutes, 120))]
        return self._sum_counters("statm", stamps)

    def transitions_hours(self, hours: int, now: float | None = None) -> dict[str, int]:
        """Transitions into each state in the current clock hour and the `hours - 1` before it (at most 48)."""
        now = time.time() if now is None else now
        stamps = [time.strftime("%Y%m%d%H", time.gmtime(now - 3600 * i)) for i in range(min(hours, 48))]
        return self._sum_counters("stats", stamps)

    def _sum_counters(self, kind: str, stamps: list[str]) -> dict[str, int]:
        keys = [self.key(kind, state, stamp) for state in STATES for stamp in stamps]
        values = self.r.mget(keys)
        out = dict.fromkeys(STATES, 0)
        for i, value in enumerate(values):
            if value is not None:
                out[STATES[i // len(stamps)]] += int(value)
        return out


def _pair(stage: str, reason: str) -> str:
    return f"{stage}|{reason}"


def _matches(pair: str, stage: str | None, reason: str | None) -> bool:
    p_stage, _, p_reason = pair.partition("|")
    return (stage is None or p_stage == stage) and (reason is None or p_reason == reason)
