"""robots.txt (RFC 9309): fetched once per origin, cached in Redis, parsed with Protego.

What a fetch of `{origin}/robots.txt` means (docs/reliability.md, "robots.txt (RFC 9309)"):

- 2xx: the rules. Only the first 500 KiB are parsed (2.5); a longer file is cut there, never
  ignored, and a line cut by the limit is dropped rather than half-parsed. UTF-8, a BOM stripped,
  invalid bytes replaced; a body that is not rules at all (an HTML page, binary) has no line
  Protego can parse, so nothing is disallowed (2.3.1.5: "use the parseable rules").
- Redirects: up to five consecutive ones are followed, to any origin, and the rules found apply
  to the original origin (2.3.1.2). More than five, a loop, or a hop the fetcher will not take
  (another scheme, a private address, a 3xx without Location) -> "unavailable", like a 4xx.
- 4xx (401, 403, 404, 410 ...) -> "unavailable": everything allowed (2.3.1.3).
- 5xx, 429, 408, timeouts, refused connections, DNS failures, a body that cannot be decoded, or
  anything unexpected -> "unreachable": complete disallow (2.3.1.4), kind "error", retried after
  `polite_robots_error_ttl_s`. Unreachable for 30 days or more, the last good answer (rules or
  allow-all) is used instead if one is kept; with none, disallow goes on.
- Caching (2.4): at most 24 h (`polite_robots_ttl_s`, capped at 24 h); a shorter Cache-Control
  max-age / s-maxage (or no-cache, no-store) shortens it, down to `polite_robots_error_ttl_s`.

Matching (2.2) is Protego's, with the gaps it leaves closed here before parsing (`_for_protego`):
a group applies when its product token equals ours, case-insensitively (Protego alone matches
`User-agent: news` to `newsflow`); a `%2F` in a query compares equal to `/` (the RFC's own example);
an infinite Crawl-delay is a huge one, not none.

Keys: `{prefix}robots:{origin}` (JSON, TTL above), `{prefix}robots-lock:{origin}` (one fetcher at a
time, 30 s), `{prefix}robots-good:{origin}` (the last good answer, 60 days) and
`{prefix}robots-down:{origin}` (when the current run of unreachable answers began).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import redis
import requests
from protego import Protego

from config.defaults import Settings
from newsflow.errors import PermanentError, TransientError
from newsflow.fetcher import NotModified
from newsflow.locks import Lock
from newsflow.sources.http import fetch_document

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 2.5: parse at least the first 500 KiB
ROBOTS_MAX_REDIRECTS = 5  # RFC 9309 2.3.1.2: follow at least five consecutive redirects
MAX_CACHE_S = 24 * 3600  # RFC 9309 2.4: a cached copy is not used for more than 24 hours ...
UNREACHABLE_FALLBACK_S = 30 * 24 * 3600  # ... unless unreachable; 2.3.1.4's "for example, 30 days"
LAST_GOOD_TTL_S = 60 * 24 * 3600  # how long the last good answer (and a run of failures) is kept
CRAWL_DELAY_CEILING_S = 24 * 3600.0  # what "Crawl-delay: inf" means; settings cap it (hosts.interval_s)
LOCK_TTL_S = 30
_PARSED_MAX = 512

# A failed fetch is "unavailable" (everything allowed) only for these reasons; any other failure
# is "unreachable" (complete disallow), so a new failure mode can never switch politeness off.
_UNAVAILABLE_REASONS = frozenset(
    {
        "too_many_redirects",  # more than five consecutive redirects (2.3.1.2)
        "redirect_loop",
        "bad_scheme",  # a redirect to ftp:, file:, ...
        "bad_url",
        "private_address",  # a redirect into a private network
    }
)


def bot_token(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: `newsflow/0.1 (+...)` -> `newsflow`."""
    return _product_token(user_agent) or "newsflow"


def _product_token(value: str) -> str:
    """RFC 9309 2.2.1: the leading run of [a-zA-Z_-], lower case ("" if there is none)."""
    m = re.match(r"[A-Za-z_-]+", value.strip())
    return m.group(0).lower() if m else ""


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
        return bool(self.parser().can_fetch(_match_url(url), _agent(bot)))

    def crawl_delay(self, bot: str) -> float | None:
        """Seconds, finite and >= 0, or None; negative, NaN and non-numeric values are ignored."""
        if self.kind != "rules":
            return None
        delay = self.parser().crawl_delay(_agent(bot))
        if delay is None or math.isnan(delay):
            return None
        return min(max(0.0, float(delay)), CRAWL_DELAY_CEILING_S)

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
        found = Protego.parse(_for_protego(rules.body))
        _cache[key] = found
        while len(_cache) > _PARSED_MAX:
            _cache.popitem(last=False)
    return found


# --- decoding and the gaps Protego leaves -----------------------------------------------------------

_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


def robots_text(body: bytes, truncated: bool = False) -> str:
    """The text of a robots.txt body: UTF-8 (RFC 9309 2.2), BOM stripped, bad bytes replaced.

    A UTF-16 file with its BOM is decoded too (its owner meant the rules in it). When the body was
    cut at the size limit, whatever follows its last line break is dropped: a rule half read could
    say something else than the whole one (`Disallow: /a` of `Disallow: /archive/2019/`).
    """
    encoding = "utf-8"
    for bom, enc in _BOMS:
        if body.startswith(bom):
            body, encoding = body[len(bom) :], enc
            break
    text = body.decode(encoding, errors="replace")
    if truncated:
        text = text[: max(text.rfind("\n"), text.rfind("\r")) + 1]
    return text


# Protego's directive names (protego/_protego.py), needed to read a line as Protego will.
_UA_FIELDS = {"user-agent", "useragent", "user agent"}
_RULE_FIELDS = {"allow", "disallow", "dissallow", "dissalow", "disalow", "diasllow", "disallaw"}
_DELAY_FIELDS = {"crawl-delay", "crawl delay"}
_KNOWN_FIELDS = (
    _UA_FIELDS
    | _RULE_FIELDS
    | _DELAY_FIELDS
    | {"sitemap", "sitemaps", "site-map", "request-rate", "request rate", "visit-time", "visit time", "host"}
)
# Appended to product tokens, ours and the file's: Protego matches a group whose name *starts* our
# token (`news` in `newsflow`); with the mark, only the whole token matches.
_TOKEN_END = "~"
_NO_TOKEN = _TOKEN_END  # a User-agent value with no product token: a group that matches nobody
_QUERY_SLASH = re.compile(r"%2f", re.I)


def _directive(line: str) -> tuple[str, str] | None:
    """(field, value) as Protego reads a line (comment already removed), or None."""
    field: str | None = None
    value = ""
    if ":" in line:
        head, raw = line.split(":", 1)
        field, value = head.strip().lower(), raw.strip()
        if field in _KNOWN_FIELDS or not raw or raw[0].isspace():
            return field, value
    words = line.split()
    for n in (1, 2):
        candidate = " ".join(words[:n]).lower()
        if candidate in _KNOWN_FIELDS:
            return candidate, " ".join(words[n:])
    return None if field is None else (field, value)


def _for_protego(text: str) -> str:
    """The text Protego is given: the lines it would misread rewritten, every other line as it is."""
    text = text.removeprefix("\ufeff")
    out: list[str] = []
    for line in text.splitlines():
        parsed = _directive(line.split("#", 1)[0].strip())
        if parsed is None or not parsed[1]:
            out.append(line)
            continue
        field, value = parsed
        if field in _UA_FIELDS:
            # RFC 9309 2.2.1: the group whose product token is ours, case-insensitively; `*` otherwise.
            out.append(f"User-agent: {'*' if value == '*' else _product_token(value) + _TOKEN_END}")
        elif field in _RULE_FIELDS and "?" in value and "%" in value:
            head, query = value.split("?", 1)
            out.append(f"{'Allow' if field == 'allow' else 'Disallow'}: {head}?{_QUERY_SLASH.sub('/', query)}")
        elif field in _DELAY_FIELDS and _is_infinite(value):
            out.append(f"Crawl-delay: {CRAWL_DELAY_CEILING_S:g}")
        else:
            out.append(line)
    return "\n".join(out)


def _is_infinite(value: str) -> bool:
    try:
        return math.isinf(float(value))
    except ValueError:
        return False


def _agent(bot: str) -> str:
    """Our product token as the rewritten file names it."""
    return bot_token(bot) + _TOKEN_END


def _match_url(url: str) -> str:
    """The URL as rules are matched against it: a `%2F` in the query is a `/` (RFC 9309 2.2.2 example)."""
    url = url.split("#", 1)[0]
    if "?" not in url or "%" not in url:
        return url
    head, query = url.split("?", 1)
    return f"{head}?{_QUERY_SLASH.sub('/', query)}"


# --- the cache ------------------------------------------------------------------------------------

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

    def good_key(self, origin: str) -> str:
        """The last good answer (rules or allow-all), for an origin unreachable for 30 days."""
        return f"{self.prefix}robots-good:{origin}"

    def down_key(self, origin: str) -> str:
        """The time (epoch seconds) the origin's current run of unreachable answers began."""
        return f"{self.prefix}robots-down:{origin}"

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
        rules, max_age = _fetch(origin, self.s, session)
        if rules.kind != "error":
            with self.r.pipeline() as pipe:
                pipe.set(self.key(origin), rules.to_json(), ex=cache_ttl_s(self.s, max_age))
                pipe.set(self.good_key(origin), rules.to_json(), ex=LAST_GOOD_TTL_S)
                pipe.delete(self.down_key(origin))
                pipe.execute()
            return rules
        stored = self._unreachable(origin, rules)
        self.r.set(self.key(origin), stored.to_json(), ex=max(1, int(self.s.polite_robots_error_ttl_s)))
        return stored

    def _unreachable(self, origin: str, rules: RobotsRules) -> RobotsRules:
        """Complete disallow (`rules`), or after 30 days unreachable, the last good answer if kept."""
        with self.r.pipeline() as pipe:
            pipe.set(self.down_key(origin), repr(rules.fetched_at), nx=True)
            pipe.expire(self.down_key(origin), LAST_GOOD_TTL_S)
            pipe.get(self.down_key(origin))
            since_raw = pipe.execute()[2]
        try:
            since = float(since_raw)
        except (TypeError, ValueError):
            since = rules.fetched_at
        if rules.fetched_at - since < UNREACHABLE_FALLBACK_S:
            return rules
        good = self.r.get(self.good_key(origin))
        if good is None:
            return rules
        self.r.expire(self.good_key(origin), LAST_GOOD_TTL_S)  # kept while it is still needed
        kept = RobotsRules.from_json(good)
        day = datetime.fromtimestamp(since, UTC).date().isoformat()
        return replace(kept, detail=f"unreachable since {day}, last good copy used ({rules.detail})"[:300])


def cache_ttl_s(settings: Settings, max_age_s: float | None) -> int:
    """How long an answer is cached: at most 24 h; a shorter max-age down to the error TTL."""
    ttl = min(float(settings.polite_robots_ttl_s), MAX_CACHE_S)
    if max_age_s is not None:
        floor = min(float(settings.polite_robots_error_ttl_s), ttl)
        ttl = min(ttl, max(max_age_s, floor))
    return max(1, int(ttl))


def max_age_of(cache_control: str) -> float | None:
    """Seconds from Cache-Control (s-maxage over max-age; no-cache and no-store are 0), or None."""
    found: dict[str, float] = {}
    for item in cache_control.lower().split(","):
        name, _, value = item.strip().partition("=")
        name = name.strip()
        if name in ("no-cache", "no-store"):
            found[name] = 0.0
        elif name in ("max-age", "s-maxage"):
            try:
                found[name] = max(0.0, float(value.strip().strip('"')))
            except ValueError:
                continue
    if "no-store" in found or "no-cache" in found:
        return 0.0
    return found.get("s-maxage", found.get("max-age"))


def fetch_rules(origin: str, settings: Settings, session: requests.Session) -> RobotsRules:
    return _fetch(origin, settings, session)[0]


def failure_rules(exc: TransientError | PermanentError | NotModified, now: float) -> RobotsRules:
    """What a failed fetch of robots.txt means: allow-all ("unavailable") or disallow-all ("error")."""
    if isinstance(exc, NotModified):
        # A 304 to a request that was not conditional is a broken server, not a policy: treated like
        # an unreadable robots.txt (retried after the error TTL) instead of escaping as a crash.
        return RobotsRules("error", "", now, "http_304 to an unconditional request")
    if isinstance(exc, PermanentError) and _unavailable(exc.reason):
        return RobotsRules("allow_all", "", now, exc.reason)
    return RobotsRules("error", "", now, f"{exc.reason}: {exc.detail}"[:300])


def _unavailable(reason: str) -> bool:
    if reason in _UNAVAILABLE_REASONS:
        return True
    # 4xx (2.3.1.3) and a 3xx that is no redirect (300, 305, no Location). 408, 425 and 429 come
    # as TransientError from the fetcher and never get here.
    m = re.fullmatch(r"http_([34])\d\d", reason)
    return m is not None and reason not in ("http_304", "http_408", "http_425", "http_429")


def _fetch(origin: str, settings: Settings, session: requests.Session) -> tuple[RobotsRules, float | None]:
    """The answer, and the max-age its server gave it (None when it gave none)."""
    now = time.time()
    try:
        doc = fetch_document(
            f"{origin}/robots.txt",
            settings,
            session,
            max_bytes=ROBOTS_MAX_BYTES + 1,  # one byte more: was the file longer than the limit?
            accept="text/plain, */*;q=0.5",
            max_redirects=ROBOTS_MAX_REDIRECTS,
            truncate=True,
        )
    except (TransientError, PermanentError, NotModified) as exc:
        return failure_rules(exc, now), None
    truncated = len(doc.body) > ROBOTS_MAX_BYTES
    text = robots_text(doc.body[:ROBOTS_MAX_BYTES], truncated)
    notes = [f"truncated at {ROBOTS_MAX_BYTES} bytes"] if truncated else []
    if doc.content_type and not doc.content_type.startswith("text/plain"):
        notes.append(f"served as {doc.content_type}")
    if doc.redirects:
        notes.append(f"from {doc.final_url}"[:200])
    return RobotsRules("rules", text, now, "; ".join(notes)), max_age_of(doc.headers.get("Cache-Control", ""))
