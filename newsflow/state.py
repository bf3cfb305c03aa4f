"""Shared state in Redis: claim-check blobs, article documents, the ledger and dead letters.

Every key lives under the configured prefix (default `newsflow:`) and has a TTL or a bound:
- `blob:{article_id}`      raw HTML, TTL `blob_ttl_s`, deleted once cleaned: the WARC response record's gzip
                           member when archiving is on (newsflow/archive/claim.py), else zstd of the HTML
- `doc:{article_id}`       zstd-compressed JSON article document between clean and index, TTL `doc_ttl_s`
- `article:{article_id}`   ledger hash: url, state, stage, reason, updated_at; TTL `ledger_ttl_s`
- `trace:{article_id}`     the article's last 50 transitions (JSON lines), same TTL
- `attempts:{stage}:{article_id}` redeliveries, worker deaths and reconciler resumes (poison count), same TTL
- `dead:{article_id}`      dead-letter record (stage, reason, detail, payload), in the `dead` zset
- `dead`                   zset of dead article ids by time, capped at `deadletter_max`
- `stats:{state}:{hour}`   transition counters per hour, kept two days
- `statm:{state}:{minute}` transition counters per minute, kept two hours (throughput, "last hour")
- `deadidx`                set of `{stage}|{reason}` pairs seen in dead letters (bounded: stages x reasons)
- `deadidx:{stage}|{reason}` zset of dead article ids by time, pruned against `dead`, capped like it
- `reconcile:redis_full`   hash: OOM refusals per server and when Redis was last seen full (reconciler)
- `sources`                hash `{source}|{state}` -> articles (fields bounded by the configured sources)
- `metrics:*`              Prometheus counters written by every worker (see newsflow/metrics.py)
- `id_version`             the URL normalisation version article ids are made by (newsflow/migrate.py)
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import zstandard
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from config.defaults import Settings
from newsflow import metrics, sentinel
from newsflow.pipeline import STATES, TERMINAL_STATES, beyond
from newsflow.queues import Room, room_of

TRACE_LEN = 50
# Retries kept per article for `newsflow trace` (newest), apart from the trace of its transitions.
RETRIES_LEN = 20
STATS_TTL_S = 2 * 24 * 3600
MINUTE_STATS_TTL_S = 2 * 3600
# States counted per source: what came in, and how it ended.
SOURCE_STATES = ("discovered", "indexed", "skipped", "dead")
SOURCE_NAME_MAX = 100
# zstd levels: raw HTML lives minutes (level 1: ~0.45 ms per median page, a third of zlib-1's CPU, 10%
# smaller); documents are small and may wait longer (bench/pipeline.py measures both).
_BLOB_LEVEL, _DOC_LEVEL = 1, 3
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_MAGIC = b"\x1f\x8b"  # a claim-check blob that is a WARC gzip member (zlib streams start 0x78)
Pipe = redis.client.Pipeline

# A stage's final writes, applied only if the article has not gone past the stage meanwhile: the
# state check and the writes in one atomic round trip, so a stale delivery (a worker frozen past the
# visibility timeout after reading its input) can never write over a later state. The `#!lua`
# shebang (Redis 7) makes Redis refuse the whole script up front when it is out of memory, instead
# of failing at its first write with the writes before it kept: all or none, like MULTI/EXEC.
# ARGV: n, the n states that stand in the way, then each command as (argc, args...).
_GUARDED_WRITE = """#!lua
local now = redis.call('HGET', KEYS[1], 'state')
local n = tonumber(ARGV[1])
for i = 2, n + 1 do
  if now == ARGV[i] then return now end
end
local i = n + 2
while i <= #ARGV do
  local argc = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + argc))
  i = i + argc + 1
end
return false
"""


class _Codecs(threading.local):
    """zstd contexts, kept per thread (a context is not thread-safe) and per level: making one
    costs about what compressing a document does (~10 us), and every hop packs or unpacks one."""

    compressors: dict[int, zstandard.ZstdCompressor] | None = None
    unpacker: zstandard.ZstdDecompressor | None = None

    def compressor(self, level: int) -> zstandard.ZstdCompressor:
        if self.compressors is None:
            self.compressors = {}
        made = self.compressors.get(level)
        if made is None:
            made = self.compressors[level] = zstandard.ZstdCompressor(level=level)
        return made

    def decompressor(self) -> zstandard.ZstdDecompressor:
        if self.unpacker is None:
            self.unpacker = zstandard.ZstdDecompressor()
        return self.unpacker


_codecs = _Codecs()


def _pack(data: bytes, level: int) -> bytes:
    return _codecs.compressor(level).compress(data)


def _unpack(raw: bytes) -> bytes:
    """zstd frames; zlib streams written before zstd was adopted are still read (upgrades in flight)."""
    if raw[:4] == _ZSTD_MAGIC:
        return _codecs.decompressor().decompress(raw)
    return zlib.decompress(raw)


def _html(raw: bytes) -> str:
    """A claim-check blob's HTML, told by its first bytes: a WARC response record's gzip member
    (`put_blob_member`; BadMember, an InputGone, when unreadable), else zstd (or old zlib) of UTF-8."""
    if raw[:2] == _GZIP_MAGIC:
        # Imported here: the archive package (warcio, the fetcher) is not loaded by every process
        # that loads the state, only by those that meet a member.
        from newsflow.archive.claim import html_of_member

        return html_of_member(raw)
    return _unpack(raw).decode("utf-8")


@dataclass(frozen=True)
class LedgerEntry:
    article_id: str
    url: str
    state: str
    stage: str
    reason: str
    updated_at: float
    origin: dict[str, Any] = field(default_factory=dict)  # where it came from (newsflow.pipeline.ORIGIN_KEYS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "article_id": self.article_id,
            "url": self.url,
            "state": self.state,
            "stage": self.stage,
            "reason": self.reason or None,
            "updated_at": self.updated_at,
        }


# A refused connection (Redis restarting, or still loading its append-only file) is retried with
# backoff for about three seconds before the caller sees it: a restart costs a pause, not an error.
# Timeouts are not retried here: each already took `socket_timeout`.
_CONNECT_RETRIES = 6


def connect(url: str, settings: Settings | None = None) -> redis.Redis:
    """A client with timeouts, so a dead Redis shows up as an error instead of a hang.

    A `sentinel://` URL gives a client of the master its sentinels name (newsflow/sentinel.py),
    with the master group and sentinel password of `settings` (default: this process's)."""
    options: dict[str, Any] = {
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), _CONNECT_RETRIES),
        "retry_on_error": [redis.ConnectionError],
    }
    if sentinel.is_sentinel_url(url):
        if settings is None:
            from config.settings import get_settings

            settings = get_settings()
        client: redis.Redis = sentinel.master_client(
            url, settings.redis_sentinel_master, settings.redis_sentinel_password, **options
        )
        return client
    return redis.Redis.from_url(url, **options)


class State:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._r = client
        self.s = settings
        self.p = settings.key_prefix
        self._guarded: Any = None  # the registered guarded-write script, made on first use

    @classmethod
    def from_settings(cls, settings: Settings) -> State:
        return cls(connect(settings.state_url, settings), settings)

    def _key(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    # --- claim check ----------------------------------------------------------------------
    def blob_key(self, article_id: str) -> str:
        """The claim check of an article's raw HTML (opaque to everyone else; it travels in messages)."""
        return self._key("blob", article_id)

    def put_blob(self, article_id: str, data: str, pipe: Pipe | None = None) -> str:
        """Park raw HTML; with `pipe`, the write joins that pipeline (the caller executes it)."""
        key = self.blob_key(article_id)
        (pipe or self._r).set(key, _pack(data.encode("utf-8"), _BLOB_LEVEL), ex=self.s.blob_ttl_s)
        return key

    def put_blob_member(self, article_id: str, member: bytes, pipe: Pipe | None = None) -> str:
        """Park raw HTML as the gzip member of its WARC response record (`Capture.member`), as is:
        with archiving on, the one compression of the page serves the archive and the claim check.
        Same key and TTL as `put_blob`; the readers tell the two formats apart by their first bytes."""
        if member[:2] != _GZIP_MAGIC:
            raise ValueError("not a gzip member")  # would be read back as zstd or zlib
        key = self.blob_key(article_id)
        (pipe or self._r).set(key, member, ex=self.s.blob_ttl_s)
        return key

    def get_blob(self, key: str) -> str | None:
        raw = self._r.get(key)
        return None if raw is None else _html(raw)  # type: ignore[arg-type]

    def blob_and_state(self, key: str, article_id: str) -> tuple[str | None, str | None]:
        """The raw HTML and the article's ledger state, in one round trip (the clean stage's read).
        An unreadable member raises BadMember, an InputGone: the clean stage's lost-input path."""
        pipe = self._r.pipeline(transaction=False)
        pipe.get(key)
        pipe.hget(self._key("article", article_id), "state")
        raw, state = pipe.execute()
        return (None if raw is None else _html(raw)), _text(state)

    def doc_and_state(self, article_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The article document and its ledger state, in one round trip (the enrich stage's read)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.get(self._key("doc", article_id))
        pipe.hget(self._key("article", article_id), "state")
        raw, state = pipe.execute()
        return (None if raw is None else json.loads(_unpack(raw))), _text(state)

    def delete_blob(self, key: str, pipe: Pipe | None = None) -> None:
        (pipe or self._r).delete(key)

    # --- documents --------------------------------------------------------------------------
    def put_doc(self, article_id: str, doc: Mapping[str, Any], pipe: Pipe | None = None) -> None:
        raw = _pack(json.dumps(doc, ensure_ascii=False).encode("utf-8"), _DOC_LEVEL)
        (pipe or self._r).set(self._key("doc", article_id), raw, ex=self.s.doc_ttl_s)

    def get_doc(self, article_id: str) -> dict[str, Any] | None:
        raw = self._r.get(self._key("doc", article_id))
        return None if raw is None else json.loads(_unpack(raw))  # type: ignore[arg-type]

    def pipeline(self) -> Pipe:
        """A stage's writes in one round trip, all or none (MULTI/EXEC): a Redis refusing one of
        them (maxmemory) must not let the others through, e.g. free the blob without the document."""
        return self._r.pipeline(transaction=True)

    def commit_unless_beyond(
        self, pipe: Pipe, article_id: str, stage: str, also: Sequence[Sequence[Any]] = ()
    ) -> str | None:
        """Apply `pipe`'s queued writes unless the article's ledger state is already past `stage`
        (`newsflow.pipeline.beyond`); one atomic script, all or none. Returns None when written,
        else the state that stood in the way (nothing was written: the delivery is stale).

        `also`: raw commands on keys that are not the state's (the broker's: the next stage's
        message and this delivery's ack, tasks.base.commit), written in the same step."""
        later = [s for s in STATES if beyond(s, stage)]
        argv: list[Any] = [len(later), *later]
        for args in [*(args for args, _options in pipe.command_stack), *also]:
            argv.append(len(args))
            argv.extend(args)  # encoded once, by the script call (as the pipeline would have)
        pipe.reset()
        if self._guarded is None:
            self._guarded = self._r.register_script(_GUARDED_WRITE)
        now = self._guarded(keys=[self._key("article", article_id)], args=argv)
        return now.decode() if isinstance(now, bytes) else None

    def get_docs(self, article_ids: list[str]) -> list[dict[str, Any] | None]:
        raws = self._r.mget([self._key("doc", a) for a in article_ids]) if article_ids else []
        return [None if raw is None else json.loads(_unpack(raw)) for raw in raws]  # type: ignore[arg-type]

    def delete_docs(self, article_ids: Iterable[str]) -> None:
        keys = [self._key("doc", a) for a in article_ids]
        if keys:
            self._r.delete(*keys)

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
        origin: str | None = None,
        pipe: Pipe | None = None,
    ) -> None:
        """One transition: the ledger's current state, the trace line and the hourly counter.

        `origin` (the message's origin as JSON, `Message.origin_json()`) is kept with the entry so
        that an article started again later (reconcile) keeps its source, hints and rate.
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
        akey, tkey = self._key("article", article_id), self._key("trace", article_id)
        skey = self._key("stats", state, time.strftime("%Y%m%d%H", time.gmtime(now)))
        own = pipe is None
        pipe = self.pipeline() if pipe is None else pipe
        mapping: dict[str, Any] = {"url": url, "state": state, "stage": stage, "reason": reason, "updated_at": now}
        if origin:
            mapping["origin"] = origin
        pipe.hset(akey, mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(akey, self.s.ledger_ttl_s)
        pipe.lpush(tkey, json.dumps(event))
        pipe.ltrim(tkey, 0, TRACE_LEN - 1)
        pipe.expire(tkey, self.s.ledger_ttl_s)
        pipe.incr(skey)
        pipe.expire(skey, STATS_TTL_S)
        mkey = self._key("statm", state, time.strftime("%Y%m%d%H%M", time.gmtime(now)))
        pipe.incr(mkey)
        pipe.expire(mkey, MINUTE_STATS_TTL_S)
        # In-flight index: what the reconciler looks at (bounded: terminal states leave it).
        if state in TERMINAL_STATES:
            pipe.zrem(self._key("inflight"), article_id)
        else:
            pipe.zadd(self._key("inflight"), {article_id: now})
        if own:
            pipe.execute()

    def stuck(self, older_than_s: float, limit: int = 1000) -> list[LedgerEntry]:
        """Articles not terminal whose last transition is older than `older_than_s`."""
        zkey = self._key("inflight")
        raw: list[bytes] = self._r.zrangebyscore(zkey, 0, time.time() - older_than_s, start=0, num=limit)  # type: ignore[assignment]
        ids = [x.decode() for x in raw]
        out: list[LedgerEntry] = []
        for aid, entry in zip(ids, self.ledgers(ids), strict=True):
            if entry is None or entry.state in TERMINAL_STATES:
                self._r.zrem(zkey, aid)  # the ledger expired or moved on: nothing to watch
                continue
            out.append(entry)
        return out

    def has_doc(self, article_id: str) -> bool:
        return bool(self._r.exists(self._key("doc", article_id)))

    def has_blob(self, key: str) -> bool:
        return key.startswith(self._key("blob", "")) and bool(self._r.exists(key))

    def release_indexed(self, article_id: str, pipe: Pipe) -> None:
        """An article is in the index: its dead letter goes, and its document only once a
        redelivered message can no longer need it (the broker's visibility timeout)."""
        pipe.expire(self._key("doc", article_id), self.s.visibility_timeout_s)
        self.clear_dead(article_id, pipe)

    def delete_doc(self, article_id: str, pipe: Pipe | None = None) -> None:
        (pipe or self._r).delete(self._key("doc", article_id))

    def count_attempt(self, stage: str, article_id: str) -> int:
        """One more start of this article's `stage` that may have killed its worker (a redelivered
        message, a process that died, a reconciler resume): how many so far. Only those are
        counted, so the normal path writes nothing here."""
        key = self._key("attempts", stage, article_id)
        pipe = self._r.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, self.s.ledger_ttl_s)
        return int(pipe.execute()[0])

    # --- memory (the reconciler waits while Redis is full) -------------------------------------
    def room(self) -> Room:
        """The state Redis's memory: full now, and how many writes it refused for want of it."""
        return room_of(self._r)

    def reconcile_marks(self) -> dict[str, str]:
        """What the reconciler noted at its last sweep (`reconcile:redis_full`: OOM counts, when full)."""
        raw: dict[bytes, bytes] = self._r.hgetall(self._key("reconcile", "redis_full"))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    def set_reconcile_marks(self, marks: Mapping[str, str]) -> None:
        self._r.hset(self._key("reconcile", "redis_full"), mapping=dict(marks))  # type: ignore[arg-type]

    def reset_connections(self) -> None:
        """Drop idle pooled connections (one interrupted mid-pipeline may hold unread replies).
        Connections other threads are using are left alone: a threads pool shares the pool."""
        self._r.connection_pool.disconnect(inuse_connections=False)

    def ledger(self, article_id: str) -> LedgerEntry | None:
        raw: dict[bytes, bytes] = self._r.hgetall(self._key("article", article_id))  # type: ignore[assignment]
        if not raw:
            return None
        return _entry(article_id, raw)

    def ledgers(self, article_ids: list[str]) -> list[LedgerEntry | None]:
        pipe = self._r.pipeline(transaction=False)
        for a in article_ids:
            pipe.hgetall(self._key("article", a))
        out: list[LedgerEntry | None] = []
        for a, raw in zip(article_ids, pipe.execute(), strict=True):
            if not raw:
                out.append(None)
                continue
            out.append(_entry(a, raw))
        return out

    def note_retry(
        self, article_id: str, stage: str, reason: str, detail: str, attempt: int, countdown_s: float, worker: str = ""
    ) -> None:
        """One retry of a stage, for `newsflow trace`: kept apart from the trace (a retry is no
        transition, and readers of the trace take its entries for states)."""
        key = self._key("retries", article_id)
        event = {
            "t": round(time.time(), 3),
            "stage": stage,
            "reason": reason,
            "detail": detail[:300],
            "attempt": attempt,
            "countdown_s": round(countdown_s, 2),
            "worker": worker,
        }
        pipe = self.pipeline()
        pipe.lpush(key, json.dumps(event))
        pipe.ltrim(key, 0, RETRIES_LEN - 1)
        pipe.expire(key, self.s.ledger_ttl_s)
        pipe.execute()

    def retries(self, article_id: str) -> list[dict[str, Any]]:
        """The article's retries noted by `note_retry`, oldest first."""
        raw: list[bytes] = self._r.lrange(self._key("retries", article_id), 0, -1)  # type: ignore[assignment]
        return [json.loads(x) for x in reversed(raw)]

    def trace(self, article_id: str) -> list[dict[str, Any]]:
        raw: list[bytes] = self._r.lrange(self._key("trace", article_id), 0, -1)  # type: ignore[assignment]
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
        *,
        unless_beyond: bool = False,
    ) -> bool:
        """Dead-letter the article: its record, the indexes and the ledger, in one round trip.

        With `unless_beyond`, nothing is written if the article went past `stage` meanwhile (a
        stale delivery's late failure must not move the ledger backwards). Returns whether written.
        """
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
        dkey, zkey = self._key("dead", article_id), self._key("dead")
        pair = _pair(stage, reason)
        others = [other for other in self._dead_pairs() if other != pair]
        pipe = self.pipeline()
        pipe.set(dkey, json.dumps(record, ensure_ascii=False), ex=self.s.ledger_ttl_s)
        pipe.zadd(zkey, {article_id: now})
        # Bound the dead-letter set: drop the oldest beyond the cap.
        pipe.zremrangebyrank(zkey, 0, -self.s.deadletter_max - 1)
        for other in others:  # died before elsewhere, maybe cleared since: leave those indexes
            pipe.zrem(self._key("deadidx", other), article_id)
        pipe.sadd(self._key("deadidx"), pair)
        pipe.zadd(self._key("deadidx", pair), {article_id: now})
        pipe.zremrangebyrank(self._key("deadidx", pair), 0, -self.s.deadletter_max - 1)
        self.record(article_id, url, "dead", stage, reason=reason, detail=detail, worker=worker, pipe=pipe)
        if unless_beyond:
            if self.commit_unless_beyond(pipe, article_id, stage) is not None:
                return False
        else:
            pipe.execute()
        source = payload.get("source") if isinstance(payload, Mapping) else None
        if isinstance(source, str) and source and payload.get("id"):  # an article, not a failed crawl
            self.count_source(source, "dead")
        metrics.count_failed(self._r, self.p, stage, reason)
        return True

    def dead_letters(
        self, limit: int = 1000, *, stage: str | None = None, reason: str | None = None
    ) -> list[dict[str, Any]]:
        """The newest dead letters first, optionally only those of one stage and/or reason."""
        if stage is None and reason is None:
            ids: list[bytes] = self._r.zrevrange(self._key("dead"), 0, limit - 1)  # type: ignore[assignment]
        else:
            pairs = [p for p in self._dead_pairs() if _matches(p, stage, reason)]
            scored: list[Any] = []
            for pair in pairs:
                scored.extend(self._r.zrevrange(self._key("deadidx", pair), 0, limit - 1, withscores=True))
            ids = [i for i, _ in sorted(scored, key=lambda x: -x[1])[:limit]]
        if not ids:
            return []
        raws = self._r.mget([self._key("dead", i.decode()) for i in ids])
        return [json.loads(x) for x in raws if x is not None]

    def dead_letter_record(self, article_id: str) -> dict[str, Any] | None:
        raw = self._r.get(self._key("dead", article_id))
        return None if raw is None else dict(json.loads(raw))

    def dead_letter_counts(self) -> list[dict[str, Any]]:
        """Dead letters still on file, by stage and reason (largest first).

        Each per-pair index is first intersected with the `dead` zset, which drops ids that were
        replayed, indexed since (the index stage clears their dead letters) or trimmed by the cap.
        """
        out: list[dict[str, Any]] = []
        for pair in self._dead_pairs():
            ikey = self._key("deadidx", pair)
            self._r.zinterstore(ikey, {ikey: 1, self._key("dead"): 0})
            n = int(self._r.zcard(ikey))
            if n == 0:
                self._r.srem(self._key("deadidx"), pair)
                continue
            stage, _, reason = pair.partition("|")
            out.append({"stage": stage, "reason": reason, "count": n})
        return sorted(out, key=lambda d: (-d["count"], d["stage"], d["reason"]))

    def _dead_pairs(self) -> list[str]:
        raw: set[bytes] = self._r.smembers(self._key("deadidx"))  # type: ignore[assignment]
        return sorted(x.decode() for x in raw)

    def clear_dead(self, article_id: str, pipe: Pipe | None = None) -> None:
        """Forget an article's dead letter (replayed, or indexed since). Its entry in the per-pair
        index is dropped lazily: `dead_letter_counts` intersects that index with `dead`."""
        own = pipe is None
        pipe = self._r.pipeline(transaction=False) if pipe is None else pipe
        pipe.zrem(self._key("dead"), article_id)
        pipe.delete(self._key("dead", article_id))
        if own:
            pipe.execute()

    # --- operations: per-source counters and transition statistics ------------------------------
    def count_source(self, source: str, state: str, sink: metrics.CounterSink | None = None) -> None:
        """One more article of `source` reached `state` (discovered, indexed or dead)."""
        (sink or self._r).hincrby(self._key("sources"), f"{source[:SOURCE_NAME_MAX]}|{state}", 1)

    def source_counts(self) -> dict[str, dict[str, int]]:
        """Per source: how many articles were discovered, indexed and dead-lettered (all time)."""
        raw: dict[bytes, bytes] = self._r.hgetall(self._key("sources"))  # type: ignore[assignment]
        out: dict[str, dict[str, int]] = {}
        for name, value in raw.items():
            source, _, state = name.decode().rpartition("|")
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
        keys = [self._key(kind, state, stamp) for state in STATES for stamp in stamps]
        values = self._r.mget(keys)
        out = dict.fromkeys(STATES, 0)
        for i, value in enumerate(values):
            if value is not None:
                out[STATES[i // len(stamps)]] += int(value)
        return out

    # --- article id version and re-keying (`newsflow migrate`, newsflow/migrate.py) -------------
    # `id_version` holds the version of the URL normalisation the stored ids were made by
    # (newsflow.urls.ID_VERSION); absent on deployments older than the key (version 1 if they hold
    # anything keyed by article id).
    def id_version(self) -> int | None:
        raw = self._r.get(self._key("id_version"))
        return None if raw is None else int(raw)

    def set_id_version(self, version: int) -> None:
        self._r.set(self._key("id_version"), str(int(version)))

    def set_id_version_if_absent(self, version: int) -> bool:
        """Record the version on a deployment that has none yet; False if one is there."""
        return bool(self._r.set(self._key("id_version"), str(int(version)), nx=True))

    def holds_articles(self) -> bool:
        """Whether anything is kept here under article ids (a ledger entry or a dead letter)."""
        if self._r.exists(self._key("dead")):
            return True
        return next(iter(self._r.scan_iter(match=self._key("article", "*"), count=1000)), None) is not None

    def ledger_ids(self) -> list[str]:
        """The article id of every ledger entry (and of every dead letter), by a SCAN."""
        head = len(self._key("article", ""))
        ids = {k.decode()[head:] for k in self._r.scan_iter(match=self._key("article", "*"), count=1000)}
        ids.update(x.decode() for x in self._r.zrange(self._key("dead"), 0, -1))  # type: ignore[union-attr]
        return sorted(ids)

    def _id_keys(self, article_id: str) -> list[str]:
        from newsflow.pipeline import ORDER

        return [
            self._key("article", article_id),
            self._key("trace", article_id),
            self._key("dead", article_id),
            self._key("doc", article_id),
            self._key("blob", article_id),
            *(self._key("attempts", stage, article_id) for stage in ORDER),
        ]

    def rekey_article(self, old: str, new: str, dry_run: bool = False) -> str:
        """Move everything kept under article id `old` to `new`: the ledger entry, trace, dead
        letter (its record, the `dead` and per-reason indexes), document, blob, attempt counters and
        the in-flight index. TTLs are kept. When `new` holds an entry already (two old ids are one
        article now), the entry updated last wins and the other is dropped.

        Returns "moved", "merged_kept_old" / "merged_kept_new" or "missing" (nothing under `old`)."""
        if old == new:
            return "missing"
        olds, news = self._id_keys(old), self._id_keys(new)
        pipe = self._r.pipeline(transaction=False)
        for key in olds:
            pipe.exists(key)
        pipe.hget(olds[0], "updated_at")
        pipe.hget(news[0], "updated_at")
        pipe.exists(news[0], news[2])
        for zkey in (self._key("dead"), self._key("inflight")):
            pipe.zscore(zkey, old)
        *present, old_at, new_at, new_exists, dead_at, inflight_at = pipe.execute()
        if not any(present) and dead_at is None and inflight_at is None:
            return "missing"
        outcome = "moved"
        if new_exists:
            keep_old = float(old_at or 0) > float(new_at or 0)
            outcome = "merged_kept_old" if keep_old else "merged_kept_new"
            if not keep_old:
                if not dry_run:
                    self._drop_id(old)
                return outcome
        if dry_run:
            return outcome
        record = self._r.get(olds[2])
        tx = self._r.pipeline(transaction=True)
        if new_exists:
            tx.delete(*news)
            tx.zrem(self._key("dead"), new)
            tx.zrem(self._key("inflight"), new)
        for key, target, there in zip(olds, news, present, strict=True):
            if there:
                tx.rename(key, target)
        if record is not None:  # the record names its article, and its payload is replayed as is
            data = json.loads(record)
            data["article_id"] = new
            if isinstance(data.get("payload"), dict) and data["payload"].get("id") == old:
                data["payload"]["id"] = new
            tx.set(news[2], json.dumps(data, ensure_ascii=False), keepttl=True)
        for zkey, score in ((self._key("dead"), dead_at), (self._key("inflight"), inflight_at)):
            if score is not None:
                tx.zrem(zkey, old)
                tx.zadd(zkey, {new: score})
        for pair in self._dead_pairs():
            ikey = self._key("deadidx", pair)
            tx.eval(_REKEY_ZMEMBER, 1, ikey, old, new)
        tx.execute()
        return outcome

    def _drop_id(self, article_id: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.delete(*self._id_keys(article_id))
        pipe.zrem(self._key("dead"), article_id)
        pipe.zrem(self._key("inflight"), article_id)
        for pair in self._dead_pairs():
            pipe.zrem(self._key("deadidx", pair), article_id)
        pipe.execute()


# Move one zset member to another name, keeping its score (nothing if it is not there).
_REKEY_ZMEMBER = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[1], score, ARGV[2])
end
return score
"""


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def _entry(article_id: str, raw: Mapping[bytes, bytes]) -> LedgerEntry:
    d = {k.decode(): v.decode() for k, v in raw.items()}
    try:
        origin = json.loads(d["origin"]) if d.get("origin") else {}
    except ValueError:
        origin = {}
    return LedgerEntry(
        article_id,
        d.get("url", ""),
        d.get("state", ""),
        d.get("stage", ""),
        d.get("reason", ""),
        float(d.get("updated_at", 0)),
        origin if isinstance(origin, dict) else {},
    )


def _pair(stage: str, reason: str) -> str:
    return f"{stage}|{reason}"


def _matches(pair: str, stage: str | None, reason: str | None) -> bool:
    p_stage, _, p_reason = pair.partition("|")
    return (stage is None or p_stage == stage) and (reason is None or p_reason == reason)
