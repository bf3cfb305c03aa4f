"""Drift watch: notice when a source's pages stop extracting the way they used to.

A publisher that changes its page template rarely breaks extraction outright; it degrades it: the
date or the byline goes missing, the body shrinks to a teaser, or more pages end `no_article`.
The clean stage records one small observation per article (newsflow.drift.Observation), keyed by
its source, or by its site (registrable domain) when it came from no configured source. For each
key the newest `drift_window` observations (the window) are compared with the `drift_baseline`
before them (the source's own baseline), so a site where dates were always missing is never
flagged for it, and a change is noticed within one window.

Windows are counted in articles, not hours, so a source publishing ten articles a day and one
publishing a thousand are judged on samples of the same size. Small samples cannot flag: a window
needs `drift_min_window` observations and the baseline `drift_min_baseline`. A share moves when it
changed by at least `drift_min_change` (absolute) *and* the change is unlikely to be chance (a
two-proportion z-test, z >= `drift_min_z`); the median body length moves when it halves or doubles.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from config.defaults import Settings

# The shares the watch follows; each is "how many of the window's articles had this problem".
SHARES = ("no_article", "no_date", "no_author", "fallback_body")
# How long an idle key's observations are kept (a source that stopped publishing ages out).
KEY_TTL_S = 90 * 24 * 3600


@dataclass(frozen=True)
class Observation:
    """What the clean stage saw of one article (no_article: the page yielded no article at all)."""

    no_article: bool = False
    has_date: bool = False
    has_author: bool = False
    fallback_body: bool = False
    body_chars: int = 0

    def encode(self) -> str:
        bits = (self.no_article, self.has_date, self.has_author, self.fallback_body)
        flags = "".join("1" if b else "0" for b in bits)
        return f"{flags}:{max(0, self.body_chars)}"

    @classmethod
    def decode(cls, raw: str | bytes) -> Observation | None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        flags, _, chars = text.partition(":")
        if len(flags) != 4 or not chars.isdigit():
            return None  # written by another version: ignored, not fatal
        a, d, u, f = (c == "1" for c in flags)
        return cls(no_article=a, has_date=d, has_author=u, fallback_body=f, body_chars=int(chars))

    @classmethod
    def of_article(cls, doc: dict[str, Any], fallback_body: bool) -> Observation:
        return cls(
            has_date=bool(doc.get("published")),
            has_author=bool(doc.get("author")),
            fallback_body=fallback_body,
            body_chars=len(doc.get("body") or ""),
        )


@dataclass(frozen=True)
class Rates:
    """A sample's shares (0..1) and its median body length; `n` observations, `articles` of them articles."""

    n: int
    articles: int
    no_article: float
    no_date: float
    no_author: float
    fallback_body: float
    median_body: float

    @classmethod
    def of(cls, sample: Sequence[Observation]) -> Rates:
        arts = [o for o in sample if not o.no_article]

        def share(k: int, total: int) -> float:
            return k / total if total else 0.0

        return cls(
            n=len(sample),
            articles=len(arts),
            no_article=share(len(sample) - len(arts), len(sample)),
            no_date=share(sum(not o.has_date for o in arts), len(arts)),
            no_author=share(sum(not o.has_author for o in arts), len(arts)),
            fallback_body=share(sum(o.fallback_body for o in arts), len(arts)),
            median_body=float(statistics.median(o.body_chars for o in arts)) if arts else 0.0,
        )

    def total(self, name: str) -> int:
        """The sample size a share is taken over (no_article: every page; the rest: articles)."""
        return self.n if name == "no_article" else self.articles


@dataclass(frozen=True)
class Thresholds:
    window: int = 50
    baseline: int = 500
    min_window: int = 30
    min_baseline: int = 100
    min_change: float = 0.2
    min_z: float = 3.0
    body_ratio: float = 2.0  # the median body halving or doubling

    @classmethod
    def of(cls, s: Settings) -> Thresholds:
        return cls(
            window=s.drift_window,
            baseline=s.drift_baseline,
            min_window=s.drift_min_window,
            min_baseline=s.drift_min_baseline,
            min_change=s.drift_min_change,
            min_z=s.drift_min_z,
        )


@dataclass(frozen=True)
class Moved:
    metric: str
    window: float
    baseline: float
    z: float | None = None


@dataclass(frozen=True)
class DriftReport:
    key: str  # "source:NAME" or "site:DOMAIN"
    window: Rates
    baseline: Rates | None
    moved: list[Moved] = field(default_factory=list)
    judged: bool = False  # enough observations on both sides to flag at all

    @property
    def flagged(self) -> bool:
        return bool(self.moved)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["flagged"] = self.flagged
        return out


def z_two_proportions(k1: int, n1: int, k2: int, n2: int) -> float:
    """The two-proportion z statistic (pooled); 0 when both samples agree perfectly."""
    if not n1 or not n2:
        return 0.0
    pooled = (k1 + k2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 0.0
    return (k1 / n1 - k2 / n2) / spread


def assess(key: str, newest_first: Sequence[Observation], t: Thresholds) -> DriftReport:
    """Compare the newest `t.window` observations with the `t.baseline` before them."""
    window, baseline = newest_first[: t.window], newest_first[t.window : t.window + t.baseline]
    w = Rates.of(window)
    if len(window) < t.min_window or len(baseline) < t.min_baseline:
        return DriftReport(key, w, Rates.of(baseline) if baseline else None)
    b = Rates.of(baseline)
    moved: list[Moved] = []
    for name in SHARES:
        nw, nb = w.total(name), b.total(name)
        if nw < t.min_window // 2 or nb < t.min_baseline // 2:
            continue  # too few articles on one side for this share (e.g. most pages are no_article)
        pw, pb = getattr(w, name), getattr(b, name)
        z = z_two_proportions(round(pw * nw), nw, round(pb * nb), nb)
        if abs(pw - pb) >= t.min_change and abs(z) >= t.min_z:
            moved.append(Moved(name, round(pw, 3), round(pb, 3), round(z, 1)))
    if w.articles >= t.min_window // 2 and b.articles >= t.min_baseline // 2 and b.median_body > 0:
        ratio = (w.median_body or 1) / b.median_body
        if ratio <= 1 / t.body_ratio or ratio >= t.body_ratio:
            moved.append(Moved("median_body", w.median_body, b.median_body))
    return DriftReport(key, w, b, moved, judged=True)


def drift_key(source: str | None, site: str | None) -> str:
    """Whose observation this is: the configured source, else the site it was fetched from."""
    if source:
        return f"source:{source[:100]}"
    return f"site:{(site or 'unknown')[:253]}"


class DriftStore:
    """Observations per source or site, in Redis (this class owns the `drift:*` keys).

    - `drift:obs:{key}`  list of encoded observations, newest first, capped at window + baseline
    - `drift:keys`       zset of keys by last observation time (idle ones age out)
    """

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._r = client
        self._t = Thresholds.of(settings)
        self._p = settings.key_prefix

    def _key(self, *parts: str) -> str:
        return self._p + "drift:" + ":".join(parts)

    def observe(self, key: str, obs: Observation, pipe: Any = None) -> None:
        """Record one observation; with `pipe`, the writes join it (the clean stage's final write)."""
        target = pipe if pipe is not None else self._r.pipeline(transaction=False)
        okey = self._key("obs", key)
        target.lpush(okey, obs.encode())
        target.ltrim(okey, 0, self._t.window + self._t.baseline - 1)
        target.expire(okey, KEY_TTL_S)
        target.zadd(self._key("keys"), {key: time.time()})
        if pipe is None:
            target.execute()

    def observations(self, key: str) -> list[Observation]:
        raw: list[bytes] = self._r.lrange(self._key("obs", key), 0, -1)  # type: ignore[assignment]
        return [o for o in (Observation.decode(r) for r in raw) if o is not None]

    def keys(self) -> list[str]:
        zkey = self._key("keys")
        self._r.zremrangebyscore(zkey, 0, time.time() - KEY_TTL_S)
        raw: list[bytes] = self._r.zrevrange(zkey, 0, -1)  # type: ignore[assignment]
        return [k.decode() for k in raw]

    def reports(self, keys: Iterable[str] | None = None) -> list[DriftReport]:
        """Every key's report, flagged ones first (then by key)."""
        out = [assess(k, self.observations(k), self._t) for k in (self.keys() if keys is None else keys)]
        return sorted(out, key=lambda r: (not r.flagged, r.key))
