"""One Redis lock for everything that must run once at a time: a crawl of a source, beat, a robots.txt fetch.

A lock is a key holding a random token, set only if absent and with a TTL (a holder that dies frees
it when the TTL runs out). Renewing and releasing compare the token first, in one script, so a
holder whose lock expired and was taken by another can never extend or delete the other's lock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0"


class Lock:
    def __init__(self, client: redis.Redis, key: str, ttl_s: float, token: str | None = None) -> None:
        self._r = client
        self.key = key
        self.ttl_s = max(1, int(ttl_s))
        self.token = token or uuid.uuid4().hex

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits."""
        return bool(self._r.set(self.key, self.token, nx=True, ex=self.ttl_s))

    def renew(self) -> bool:
        """Push the TTL out again; False when the lock is no longer ours."""
        return bool(self._r.eval(_RENEW, 1, self.key, self.token, self.ttl_s))

    def release(self) -> bool:
        """Free the lock if it is still ours (True), else leave the new holder's alone (False)."""
        return bool(self._r.eval(_RELEASE, 1, self.key, self.token))

    def holder(self) -> str | None:
        raw = self._r.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else None

    @contextmanager
    def held(self) -> Iterator[bool]:
        """`with lock.held() as ok:` runs the block either way; `ok` says whether we got the lock."""
        ok = self.acquire()
        try:
            yield ok
        finally:
            if ok:
                self.release()
