"""Per-host rate limit shared by every worker on every machine: one "next free slot" per host in Redis.

A Lua script (atomic, on Redis's clock, so worker clocks do not matter) books the host's next
free slot and moves it one interval on. The caller then either goes now (slot is now), or comes
back when its booked slot arrives (a Celery countdown: the worker thread is not blocked, and
the booking is presented again so it is not booked twice). A slot further away than
`max_reserve` is not booked at all: the caller comes back later and tries again, so a burst of
10,000 URLs for one host never books hours ahead. A caller that comes back too late (more than
a quarter interval) books again, so late slots cannot bunch requests.

Keys: `{prefix}rate:{host[:port]}`, the next free slot in ms (expires one interval after it), and
`{prefix}rate-hold:{host[:port]}`, set for Retry-After seconds after a 429/503 (its value: the
reason, e.g. `http_429`): while it exists nobody goes, not even a caller with a booked slot.
`newsflow status` lists the holds (`HostLimiter.holds`).
"""

from __future__ import annotations

import re
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

_GLOB_SPECIAL = re.compile(r"[*?\[\]\\]")  # escaped in a SCAN pattern: the key prefix is the operator's

_HOLD = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then redis.call('SET', KEYS[1], ARGV[2], 'PX', ms) end
return ms
"""


@dataclass(frozen=True)
class Hold:
    """A host nobody may talk to for `remaining_s` more seconds, and why (e.g. `http_429`)."""

    host: str
    remaining_s: float
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "remaining_s": self.remaining_s, "reason": self.reason}


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

    def hold(self, host: str, seconds: float, reason: str = "retry_after") -> None:
        """Nobody talks to `host` for `seconds` (it answered 429/503 with Retry-After)."""
        if seconds > 0:
            self._hold(keys=[self.hold_key(host)], args=[int(seconds * 1000), reason])

    def holds(self, limit: int = 1000) -> list[Hold]:
        """The hosts on hold now, longest first (at most `limit`; a SCAN, not a KEYS)."""
        prefix = self.hold_key("")
        keys = []
        for key in self.r.scan_iter(match=_GLOB_SPECIAL.sub(r"\\\g<0>", prefix) + "*", count=500):
            keys.append(key)
            if len(keys) >= limit:
                break
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(key)
            pipe.get(key)
        replies = pipe.execute() if keys else []
        out = []
        for key, ms, value in zip(keys, replies[::2], replies[1::2], strict=True):
            if int(ms) > 0:  # gone (or never to expire, which hold() never writes) between SCAN and PTTL
                name = key.decode() if isinstance(key, bytes) else str(key)
                why = value.decode() if isinstance(value, bytes) else str(value or "")
                out.append(Hold(name[len(prefix) :], round(int(ms) / 1000.0, 1), "retry_after" if why == "1" else why))
        return sorted(out, key=lambda h: -h.remaining_s)

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
