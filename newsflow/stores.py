"""Every Redis-backed store of one process, over one connection pool.

This is where stores are wired to a client; each store keeps its own key names and Redis calls to
itself, and nothing else builds keys or talks to the client:
- `state`: claim-check blobs, article documents, the ledger, dead letters (newsflow.state)
- `robots`: the robots.txt cache and its fetch lock (newsflow.polite.robots)
- `limiter`: the per-host politeness limiter (newsflow.polite.limiter)
- `tombstones`: takedowns by article and by site (newsflow.search.tombstones)
- `clusters`: near-duplicate (MinHash) signatures and bands (newsflow.enrich.clusters)
- `crawl`: seen URLs, feed validators, last reports, crawl locks (newsflow.crawlstore)
- `counters`: this process's buffered metric counters (newsflow.metrics)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import redis

from config.defaults import Settings
from newsflow import metrics
from newsflow.crawlstore import CrawlStore
from newsflow.drift import DriftStore
from newsflow.enrich.clusters import ClusterStore
from newsflow.locks import Lock
from newsflow.polite.limiter import HostLimiter
from newsflow.polite.robots import RobotsCache
from newsflow.search.tombstones import Tombstones
from newsflow.state import State, connect


class Stores:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._r = client
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> Stores:
        return cls(connect(settings.state_url, settings), settings)

    @cached_property
    def state(self) -> State:
        return State(self._r, self.settings)

    @cached_property
    def robots(self) -> RobotsCache:
        return RobotsCache(self._r, self.settings)

    @cached_property
    def limiter(self) -> HostLimiter:
        s = self.settings
        # A deferral's countdown must stay under the visibility timeout, or the broker redelivers it.
        return HostLimiter(self._r, s.key_prefix, min(s.polite_max_reserve_s, s.visibility_timeout_s / 2))

    @cached_property
    def tombstones(self) -> Tombstones:
        return Tombstones(self._r, self.settings.key_prefix)

    @cached_property
    def clusters(self) -> ClusterStore:
        return ClusterStore(self._r, self.settings.key_prefix)

    @cached_property
    def crawl(self) -> CrawlStore:
        s = self.settings
        return CrawlStore(self._r, s.key_prefix, s.crawl_seen_ttl_s, s.crawl_seen_max, s.crawl_lock_ttl_s)

    @cached_property
    def drift(self) -> DriftStore:
        return DriftStore(self._r, self.settings)

    @cached_property
    def counters(self) -> metrics.CounterBuffer:
        return metrics.CounterBuffer(self._r, self.settings.metrics_flush_s)

    def lock(self, name: str, ttl_s: float, token: str | None = None) -> Lock:
        """A lock of its own name (e.g. `beat`), under the prefix."""
        return Lock(self._r, f"{self.settings.key_prefix}{name}:lock", ttl_s, token)

    def stage_counts(self, stages: Sequence[str]) -> dict[str, dict[str, int]]:
        return metrics.stage_counts(self._r, self.settings.key_prefix, stages)

    def stage_costs(self, stages: Sequence[str]) -> dict[str, dict[str, float | None]]:
        return metrics.stage_costs(self._r, self.settings.key_prefix, stages)

    def reset_connections(self) -> None:
        """Drop idle pooled connections (one interrupted mid-pipeline may hold unread replies).
        Connections other threads are using are left alone: a threads pool shares the pool."""
        self._r.connection_pool.disconnect(inuse_connections=False)
