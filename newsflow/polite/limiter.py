"""Per-host rate limit shared by every worker on every machine: one "next free slot" per host in Redis.

A Lua script (atomic, on Redis's clock, so worker clocks do not matter) books the host's next
free slot and moves it one interval on. The caller then either goes now (slot is now), or comes
back when its booked slot arrives (a Celery countdown: the worker thread is not blocked, and
the booking is presented again so it is not booked twice). A slot further away than
`max_reserve` is not booked at all: the caller comes back later and tries again, so a burst of
10,000 URLs for one host never books hours ahead. A caller that comes back too late (more than
a quarter interval) books again, so late slots cannot bunch requests.

Keys: `{prefix}rate:{host[:port]}`, the next free slot in ms (expires one interval after it), and
`{prefix}rate-hold:{host[:port]}`, set for Retry-After seconds after a 429/503: while it exists
nobody goes, not even a caller with a booked slot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local max_reserve = tonumber(ARGV[2])
local booked = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local held = redis.call('PTTL', KEYS[2])
if held > 0 then return {0, held, 0} end
if booked > 0 then
  if now >= booked - 10 and now <= booked + grace then return {1, 0, booked} end
  if now < booked - 10 then return {1, booked - now, booked} end
end
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(nxt, now)
local wait = slot - now
if wait > max_reserve then return {0, wait, 0} end
redis.call('SET', KEYS[1], slot + interval, 'PX', wait + interval + 1000)
return {1, wait, slot}
"""

_HOLD = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], '1', 'PX', ms) end
return ms
"""


@dataclass(frozen=True)
class Permit:
    """`go`: send the request now. Else come back after `wait_s`, presenting `slot_ms` if booked."""

    go: bool
    wait_s: float
    slot_ms: int | None


class HostLimiter:
    def __init__(self, client: redis.Redis, prefix: str, max_reserve_s: float = 30.0) -> None:
        self.r = client
        self.prefix = prefix
        self.max_reserve_ms = int(max_reserve_s * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._hold = client.register_script(_HOLD)

    def key(self, host: str) -> str:
        return f"{self.prefix}rate:{host}"

    def hold_key(self, host: str) -> str:
        return f"{self.prefix}rate-hold:{host}"

    def acquire(self, host: str, interval_s: float, booked_ms: int | None = None) -> Permit:
        """Book (or use) a slot for one request to `host`, `interval_s` after the previous one."""
        interval_ms = max(1, int(interval_s * 1000))
        grace_ms = max(50, interval_ms // 4)
        booked, wait_ms, slot = self._acquire(
            keys=[self.key(host), self.hold_key(host)],
            args=[interval_ms, self.max_reserve_ms, int(booked_ms or 0), grace_ms],
        )
        if not booked:
            return Permit(False, min(int(wait_ms), self.max_reserve_ms) / 1000.0, None)
        if int(wait_ms) <= 0:
            return Permit(True, 0.0, int(slot))
        return Permit(False, int(wait_ms) / 1000.0, int(slot))

    def hold(self, host: str, seconds: float) -> None:
        """Nobody talks to `host` for `seconds` (it answered 429/503 with Retry-After)."""
        if seconds > 0:
            self._hold(keys=[self.hold_key(host)], args=[int(seconds * 1000)])

    def wait_for_slot(self, host: str, interval_s: float, deadline_s: float = 300.0) -> None:
        """Blocking variant for the crawl's own few requests (feeds, sitemaps), not for fetch workers."""
        booked: int | None = None
        end = time.monotonic() + deadline_s
        while True:
            permit = self.acquire(host, interval_s, booked)
            if permit.go:
                return
            if time.monotonic() + permit.wait_s > end:
                raise TimeoutError(f"no request slot for {host} within {deadline_s} s")
            booked = permit.slot_ms
            time.sleep(permit.wait_s)
