"""What crawls remember in Redis: URLs already enqueued, feed validators, the last report, the lock.

Keys (under the configured prefix):
- `crawl:seen`               zset article id -> when a crawl last enqueued it (TTL and size bounded)
- `crawl:validators:{hash}`  ETag / Last-Modified of a feed or sitemap document, for conditional GETs
- `crawl:last:{source}`      the last crawl report of a source (JSON)
- `crawl:lock:{source}`      held while a crawl of that source runs
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import redis

from newsflow.locks import Lock


class CrawlStore:
    def __init__(self, client: redis.Redis, prefix: str, seen_ttl_s: int, seen_max: int, lock_ttl_s: float) -> None:
        self._r = client
        self._p = prefix
        self.seen_ttl_s, self.seen_max, self.lock_ttl_s = seen_ttl_s, seen_max, lock_ttl_s

    def _key(self, *parts: str) -> str:
        return self._p + ":".join(("crawl", *parts))

    def lock(self, source: str) -> Lock:
        return Lock(self._r, self._key("lock", source), self.lock_ttl_s)

    def seen_at(self, article_ids: Sequence[str]) -> list[float | None]:
        """When a crawl last enqueued each article (None: never, or forgotten)."""
        if not article_ids:
            return []
        return [None if v is None else float(v) for v in self._r.zmscore(self._key("seen"), list(article_ids))]

    def mark_seen(self, article_ids: Iterable[str], now: float | None = None) -> None:
        at = time.time() if now is None else now
        mapping = {aid: at for aid in article_ids}
        if mapping:
            pipe = self._r.pipeline(transaction=False)
            pipe.zadd(self._key("seen"), mapping)
            pipe.expire(self._key("seen"), self.seen_ttl_s)
            pipe.execute()

    def trim_seen(self) -> None:
        key = self._key("seen")
        pipe = self._r.pipeline(transaction=False)
        pipe.zremrangebyscore(key, "-inf", time.time() - self.seen_ttl_s)
        pipe.zremrangebyrank(key, 0, -self.seen_max - 1)
        pipe.execute()

    def seen_count(self) -> int:
        return int(self._r.zcard(self._key("seen")))

    def seen_entries(self) -> list[tuple[str, float]]:
        """Every (article id, when) of the seen set (`newsflow migrate`)."""
        raw: list[tuple[bytes, float]] = self._r.zrange(self._key("seen"), 0, -1, withscores=True)  # type: ignore[assignment]
        return [(m.decode(), float(t)) for m, t in raw]

    def rekey_seen(self, moves: Mapping[str, Collection[str]]) -> int:
        """Re-key seen ids: each old id's time goes to its new ids (the later time wins when one is
        seen already) and the old id leaves the set. Returns the old ids moved."""
        key = self._key("seen")
        old_ids = [old for old in moves if moves[old] and set(moves[old]) != {old}]
        if not old_ids:
            return 0
        pipe = self._r.pipeline(transaction=True)
        scores = self._r.zmscore(key, old_ids)
        n = 0
        for old, at in zip(old_ids, scores, strict=True):
            if at is None:
                continue
            pipe.zadd(key, dict.fromkeys(moves[old], float(at)), gt=True)
            if old not in moves[old]:
                pipe.zrem(key, old)
            n += 1
        pipe.expire(key, self.seen_ttl_s)
        pipe.execute()
        return n

    def _validator_key(self, url: str) -> str:
        return self._key("validators", hashlib.sha256(url.encode()).hexdigest()[:32])

    def validators(self, url: str) -> dict[str, str]:
        raw: dict[bytes, bytes] = self._r.hgetall(self._validator_key(url))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    def store_validators(self, validators: Mapping[str, Mapping[str, str]]) -> None:
        if not validators:
            return
        pipe = self._r.pipeline(transaction=False)
        for url, values in validators.items():
            key = self._validator_key(url)
            pipe.delete(key)
            if values:
                pipe.hset(key, mapping=dict(values))  # type: ignore[arg-type]
                pipe.expire(key, self.seen_ttl_s)
        pipe.execute()

    def save_report(self, source: str, report: Mapping[str, Any]) -> None:
        self._r.set(self._key("last", source), json.dumps(dict(report)), ex=self.seen_ttl_s)

    def last_report(self, source: str) -> dict[str, Any] | None:
        raw = self._r.get(self._key("last", source))
        return None if raw is None else dict(json.loads(raw))
