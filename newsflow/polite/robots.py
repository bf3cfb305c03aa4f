"""robots.txt: fetched once per origin, cached in Redis with a TTL, parsed with Protego.

RFC 9309 behaviour: 2xx -> the rules; 4xx (no robots.txt) -> everything allowed; 5xx, timeouts,
429 -> "unreachable", treated as disallow-all for a short while (`polite_robots_error_ttl_s`),
so a page waits (transient retry) rather than being fetched against an unknown policy.

Keys: `{prefix}robots:{scheme://host[:port]}` (JSON, TTL `polite_robots_ttl_s`) and
`{prefix}robots-lock:{origin}` (one fetcher at a time, 30 s).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import redis
import requests
from protego import Protego

from config.defaults import Settings
from newsflow.errors import PermanentError, TransientError
from newsflow.fetcher import NotModified
from newsflow.locks import Lock
from newsflow.sources.http import fetch_document

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: parse at least the first 500 KiB
LOCK_TTL_S = 30
_PARSED_MAX = 512


def bot_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: `newsflow/0.1 (+...)` -> `newsflow`."""
    return (user_agent.split("/", 1)[0].split()[0] if user_agent.strip() else "newsflow").lower()


@dataclass(frozen=True)
class RobotsRules:
    kind: str  # "rules" | "allow_all" | "error"
    body: str
    fetched_at: float
    detail: str = ""

    def parser(self) -> Any:
        return _parsed(self)

    def allowed(self, url: str, bot: str) -> bool:
        if self.kind == "allow_all":
            return True
        if self.kind == "error":
            return False
        return bool(self.parser().can_fetch(url, bot))

    def crawl_delay(self, bot: str) -> float | None:
        if self.kind != "rules":
            return None
        delay = self.parser().crawl_delay(bot)
        return float(delay) if delay is not None else None

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "body": self.body, "t": self.fetched_at, "detail": self.detail})

    @classmethod
    def from_json(cls, raw: bytes | str) -> RobotsRules:
        d = json.loads(raw)
        return cls(str(d["kind"]), str(d.get("body", "")), float(d.get("t", 0)), str(d.get("detail", "")))


_cache: OrderedDict[tuple[str, float], Any] = OrderedDict()


def _parsed(rules: RobotsRules) -> Any:
    """Parsed rules, kept per process (a fetch worker sees the same few hosts again and again)."""
    key = (rules.body, rules.fetched_at)
    found = _cache.get(key)
    if found is None:
        found = Protego.parse(rules.body)
        _cache[key] = found
        while len(_cache) > _PARSED_MAX:
            _cache.popitem(last=False)
    return found


# Origins whose rules a worker process remembers at most (a crawl of many sites just re-reads Redis).
MEMO_MAX = 10_000


class RobotsCache:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.r = client
        self.s = settings
        self.prefix = settings.key_prefix
        # origin -> (rules, monotonic time they stop being trusted): spares a Redis round trip per fetch.
        self._memo: dict[str, tuple[RobotsRules, float]] = {}

    def key(self, origin: str) -> str:
        return f"{self.prefix}robots:{origin}"

    def get(self, origin: str) -> RobotsRules | None:
        now = time.monotonic()
        hit = self._memo.get(origin)
        if hit is not None and hit[1] > now:
            return hit[0]
        raw = self.r.get(self.key(origin))
        if raw is None:
            return None
        rules = RobotsRules.from_json(raw)
        if rules.kind != "error":  # an error is re-read from Redis, whose short TTL decides the retry
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            self._memo[origin] = (rules, now + min(self.s.polite_robots_memo_s, self.s.polite_robots_ttl_s))
        return rules

    def lock(self, origin: str) -> Lock:
        """Held by the one worker fetching this origin's robots.txt; the others come back shortly."""
        return Lock(self.r, f"{self.prefix}robots-lock:{origin}", LOCK_TTL_S)

    def fetch_and_store(self, origin: str, session: requests.Session) -> RobotsRules:
        """GET {origin}/robots.txt once and cache what it says (rules, allow-all or error)."""
        rules = fetch_rules(origin, self.s, session)
        ttl = self.s.polite_robots_error_ttl_s if rules.kind == "error" else self.s.polite_robots_ttl_s
        self.r.set(self.key(origin), rules.to_json(), ex=max(1, int(ttl)))
        return rules


def fetch_rules(origin: str, settings: Settings, session: requests.Session) -> RobotsRules:
    now = time.time()
    try:
        doc = fetch_document(
            f"{origin}/robots.txt", settings, session, max_bytes=ROBOTS_MAX_BYTES, accept="text/plain, */*;q=0.5"
        )
    except TransientError as exc:
        return RobotsRules("error", "", now, f"{exc.reason}: {exc.detail}"[:300])
    except PermanentError as exc:
        # 4xx: no robots.txt, everything is allowed. Other refusals (too large, bad URL) are not a policy.
        return RobotsRules("allow_all", "", now, exc.reason)
    except NotModified:
        # A 304 to a request that was not conditional is a broken server, not a policy: treated like
        # an unreadable robots.txt (retried after the error TTL) instead of escaping as a crash.
        return RobotsRules("error", "", now, "http_304 to an unconditional request")
    return RobotsRules("rules", doc.body.decode("utf-8", errors="replace"), now)
