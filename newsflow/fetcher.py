"""The fetch stage's pure part: one URL in, one decoded HTML page (or a typed error) out.

Order of checks, each with its own dead-letter reason:
scheme and URL shape -> SSRF guard (resolved addresses, then the connected socket) -> redirects
followed by hand (each hop checked again, loops and long chains refused) -> status -> content type
-> body streamed under a size cap and a total deadline -> binary sniffing -> charset decoding.

`fetch_bytes` is everything up to the body; `fetch_page` adds the HTML checks and decoding on
top, and the crawl's feeds, sitemaps and robots.txt go through `fetch_bytes` too
(`newsflow.sources.http`), so there is one redirect loop and one bounded read to keep safe.

Cookies live for one fetch only. A worker's session is shared by every fetch (and thread) of the
process for its connection pool, but its own cookie jar never holds anything (`SessionCookieJar`);
each `fetch_bytes` call starts with an empty `FetchCookieJar` of its own, fills it from the
redirects it follows (a consent or paywall hop that sets a cookie and expects it on the next hop
works) and drops it when it returns. That jar refuses cookies for public suffixes
(`Domain=github.io`, `Domain=co.uk`) and is capped (`MAX_FETCH_COOKIES` cookies,
`MAX_FETCH_COOKIE_BYTES` bytes of Cookie header), so no site's cookies reach another article,
and no site can make our requests too big to answer (`http_431`).
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import heapq
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import cookiejar
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from config.defaults import Settings
from newsflow.domains import is_public_suffix
from newsflow.errors import PermanentError, TransientError
from newsflow.netguard import (
    ALLOWED_SCHEMES,
    NetPolicy,
    check_connected_socket,
    current_policy,
    normalize_allow_entry,
    parse_resolve,
    resolve_and_check,
)
from newsflow.urls import InvalidURL, normalize_url

MAX_URL_CHARS = 4096
HTML_TYPES = ("text/html", "application/xhtml+xml")
# Types that are text/html in disguise often enough to sniff instead of refusing outright.
SNIFF_TYPES = ("", "text/plain", "application/octet-stream")
BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b", b"RIFF", b"\x00\x00\x01\x00")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-:.]+)""", re.I)
# One fetch's cookie jar (its redirect chain) holds at most this many cookies, and the Cookie
# header built from it at most this many bytes: a browser's per-site budget, well under the 8 to
# 16 kB of request headers most servers accept.
MAX_FETCH_COOKIES = 50
MAX_FETCH_COOKIE_BYTES = 8 * 1024


@dataclass(frozen=True)
class FetchResult:
    url: str
    final_url: str
    status: int
    html: str
    content_type: str
    encoding: str
    n_bytes: int
    etag: str | None
    last_modified: str | None
    fetched_at: str
    redirects: list[str] = field(default_factory=list)
    # Response headers, case-insensitive (the fetch stage reads X-Robots-Tag). A Mapping to
    # callers; a plain copy underneath, so results still pickle and go through asdict.
    headers: Mapping[str, str] = field(default_factory=CaseInsensitiveDict)
    # The body as received (after Content-Encoding), before decoding: what the archive keeps.
    body: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class ResponseHead:
    """An answer before its body is read: enough for a `fetch_bytes` screen to refuse it unread."""

    final_url: str
    status: int
    content_type: str  # the MIME type alone, lower case; "" if the server sent none
    charset: str | None
    headers: Mapping[str, str]


# Raises PermanentError / TransientError to refuse an answer; returns to have its body read.
Screen = Callable[[ResponseHead], None]


@dataclass(frozen=True)
class FetchedBytes:
    """One successful GET, undecoded: what `fetch_bytes` returns."""

    url: str
    final_url: str
    status: int
    body: bytes
    content_type: str  # the MIME type alone, lower case; "" if the server sent none
    charset: str | None
    etag: str | None
    last_modified: str | None
    headers: Mapping[str, str]  # case-insensitive
    redirects: tuple[str, ...] = ()  # the hops after `url`, in order


class NotModified(Exception):
    """The server answered 304 to a conditional request: nothing to do."""


class Deadline:
    """A total deadline for one fetch, enforced on the sockets themselves.

    Read timeouts bound the gap between two bytes; a server trickling one byte a second never
    trips them. When the deadline passes, the process's deadline watcher (`_Watcher`) shuts the
    fetch's sockets down, which wakes any blocked read at once; `fired` then tells the fetcher
    why the read failed or stopped.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.fired = False
        self.cancelled = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        _watcher().watch(self)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.fired = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)

    def cancel(self) -> None:
        # The watcher drops a cancelled deadline when its time comes: no wake-up, no thread.
        with self._lock:
            self.cancelled = True
            self._socks.clear()  # pooled sockets go on serving other fetches


class _Watcher:
    """One thread per process that fires every fetch's deadline at its time.

    A `threading.Timer` per fetch started and stopped a thread for every page (a tenth of the
    fetch worker's CPU with 16 threads). Deadlines of one fetch worker have one duration, so a
    new one almost never comes before the earliest: the thread is woken only when it does.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="newsflow-fetch-deadlines", daemon=True)
        self._thread.start()

    def watch(self, deadline: Deadline) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (deadline.at, self._seq, deadline))
            if self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _, deadline = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline.fire()


_watching: tuple[int, _Watcher] | None = None  # (pid, its watcher), made on first use
_watching_made = threading.Lock()


def _watcher() -> _Watcher:
    """This process's watcher (a forked child makes its own: threads do not cross a fork)."""
    global _watching
    pid = os.getpid()
    if _watching is None or _watching[0] != pid:
        with _watching_made:
            if _watching is None or _watching[0] != pid:
                _watching = (pid, _Watcher())
    return _watching[1]


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for TLS sockets: no TLS close_notify dance with a
    # server that is misbehaving anyway.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


current_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("newsflow_deadline", default=None)


def _guarded_new_conn(conn: HTTPConnection, connect: Any, default_port: int) -> Any:
    """Open the socket to the pinned address if the policy pins this host, then check its peer."""
    policy = current_policy.get()
    port = conn.port or default_port
    pins = policy.pinned(conn.host, port) if policy else None
    if pins:
        name = conn._dns_host
        last: BaseException | None = None
        sock = None
        for ip in pins:
            conn._dns_host = ip  # only the TCP connect uses it; SNI and Host keep the name
            try:
                sock = connect()
                break
            except Exception as exc:
                last = exc
            finally:
                conn._dns_host = name
        if sock is None:
            raise last or OSError(f"no pinned address of {name} answered")
    else:
        sock = connect()
    try:
        check_connected_socket(sock, conn.host, port)
    except Exception:
        sock.close()
        raise
    deadline = current_deadline.get()
    if deadline is not None:
        deadline.watch(sock)
    return sock


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> Any:
        return _guarded_new_conn(self, super()._new_conn, 80)

    def getresponse(self) -> Any:
        deadline = current_deadline.get()
        if deadline is not None:
            deadline.watch(self.sock)  # a reused connection is watched by this fetch too
        return super().getresponse()


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> Any:
        return _guarded_new_conn(self, super()._new_conn, 443)

    def getresponse(self) -> Any:
        deadline = current_deadline.get()
        if deadline is not None:
            deadline.watch(self.sock)
        return super().getresponse()


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """An adapter whose sockets are checked against the SSRF policy once connected.

    Requests made through it outside `fetch_bytes` get the session's policy, so no caller of
    `make_session` can reach a private address by forgetting to set one.
    """

    def __init__(self, policy: NetPolicy | None = None, **kwargs: Any) -> None:
        self.policy = policy or NetPolicy()
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if current_policy.get() is not None:
            return super().send(request, *args, **kwargs)
        token = current_policy.set(self.policy)
        try:
            return super().send(request, *args, **kwargs)
        finally:
            current_policy.reset(token)


# --- cookies ---------------------------------------------------------------------------------------


class SessionCookieJar(RequestsCookieJar):
    """A session's own jar, which never holds a cookie: the session is shared by every fetch and
    thread of a worker, so anything kept here would reach every later request to that domain.

    requests stores each answer's cookies here and merges this jar into each request; both are
    no-ops now. Cookies a fetch needs travel in its own `FetchCookieJar`.
    """

    def __init__(self) -> None:
        super().__init__(policy=cookiejar.DefaultCookiePolicy(allowed_domains=[]))  # sends and takes nothing

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None  # not even parsed: this jar is shared, and its lock with it

    def set_cookie(self, cookie: cookiejar.Cookie, *args: Any, **kwargs: Any) -> None:
        return None


class FetchCookiePolicy(cookiejar.DefaultCookiePolicy):
    """The standard cookie rules (RFC 6265-style Netscape cookies only), plus: no cookie for a
    public suffix. DefaultCookiePolicy alone only refuses a bare TLD (`Domain=com`) and, with
    strict_domain, a short hard-coded list of `co.uk`-style names; `Domain=github.io`,
    `Domain=com.au` or `Domain=blogspot.com` would reach every site under them."""

    def __init__(self) -> None:
        super().__init__(rfc2965=False, strict_domain=True)

    def set_ok(self, cookie: cookiejar.Cookie, request: Any) -> bool:
        if cookie.domain_specified and is_public_suffix(cookie.domain):
            return False
        return bool(super().set_ok(cookie, request))


class FetchCookieJar(RequestsCookieJar):
    """The cookies of one `fetch_bytes` call: empty at its start, dropped at its end, capped.

    Once full (`max_cookies` cookies, or `max_bytes` of `name=value; ` pairs, which bounds the
    Cookie header any request of the fetch can carry), further cookies are dropped and counted;
    a cookie replacing one of the same domain, path and name counts only once.
    """

    def __init__(self, max_cookies: int = MAX_FETCH_COOKIES, max_bytes: int = MAX_FETCH_COOKIE_BYTES) -> None:
        super().__init__(policy=FetchCookiePolicy())
        self.max_cookies = max_cookies
        self.max_bytes = max_bytes
        self.dropped = 0
        self._cap_lock = threading.RLock()  # one fetch, one thread; the lock only keeps the count exact

    def set_cookie(self, cookie: cookiejar.Cookie, *args: Any, **kwargs: Any) -> None:
        with self._cap_lock:
            others = [c for c in self if (c.domain, c.path, c.name) != (cookie.domain, cookie.path, cookie.name)]
            size = sum(map(cookie_bytes, others)) + cookie_bytes(cookie)
            if len(others) >= self.max_cookies or size > self.max_bytes:
                self.dropped += 1
                return
            super().set_cookie(cookie, *args, **kwargs)


def cookie_bytes(cookie: cookiejar.Cookie) -> int:
    """What one cookie adds to a Cookie header: `name=value` and the `; ` before the next one."""
    pair = cookie.name if cookie.value is None else f"{cookie.name}={cookie.value}"
    return len(pair.encode("utf-8", "surrogateescape")) + 2


def make_session(settings: Settings) -> requests.Session:
    """A session for one worker: connection reuse, our User-Agent, no proxies from the env, and
    no cookies (each fetch has its own jar; see `SessionCookieJar`)."""
    session = requests.Session()
    session.trust_env = False  # env proxies would route around the SSRF guard
    session.cookies = SessionCookieJar()
    session.max_redirects = settings.fetch_max_redirects
    adapter = GuardedAdapter(policy_from(settings), pool_connections=32, pool_maxsize=32, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update(
        {
            "User-Agent": settings.user_agent,
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
            "Accept-Encoding": "gzip, deflate",
        }
    )
    return session


def policy_from(settings: Settings) -> NetPolicy:
    try:
        pins = parse_resolve(settings.fetch_resolve)
    except ValueError as exc:
        raise PermanentError("bad_settings", f"NEWSFLOW_FETCH_RESOLVE: {exc}") from None
    try:
        allowed = frozenset(normalize_allow_entry(e) for e in settings.allowed_hosts)
    except PermanentError as exc:
        raise PermanentError("bad_settings", f"NEWSFLOW_FETCH_ALLOW_HOSTS: {exc.detail}") from None
    return NetPolicy(allow_private=settings.fetch_allow_private, allowed_hosts=allowed, resolve=pins)


def check_url(url: str, policy: NetPolicy) -> None:
    """Refuse what must never be fetched: odd schemes, credentials, huge URLs, private targets."""
    if len(url) > MAX_URL_CHARS:
        raise PermanentError("bad_url", f"URL is {len(url)} characters long (limit {MAX_URL_CHARS})")
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise PermanentError("bad_url", "URL contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise PermanentError("bad_scheme", f"only http and https are fetched, not {parts.scheme or 'none'!r}")
    if "@" in parts.netloc:
        raise PermanentError("bad_url", "URLs with credentials are not fetched")
    if not parts.hostname:
        raise PermanentError("bad_url", "URL has no host")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise PermanentError("bad_url", "URL has an invalid port") from None
    resolve_and_check(parts.hostname, port, policy)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not str.isdigit alone: "²" is a digit to it, not to float
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def _check_status(resp: requests.Response, conditional: bool) -> None:
    """Map the statuses that are errors whatever was asked for; a screen may refuse more."""
    code = resp.status_code
    if code == 304:
        if conditional:
            raise NotModified()
        # A 304 to a request that was not conditional would otherwise mark an article "indexed"
        # that never was.
        raise PermanentError("http_304", "not modified, but the request was not conditional")
    if code in (429, 503):
        raise TransientError(
            f"http_{code}", "server asked us to slow down", parse_retry_after(resp.headers.get("Retry-After"))
        )
    if code >= 500 or code in (408, 425):
        raise TransientError(f"http_{code}", resp.reason or "")
    if code >= 400:
        raise PermanentError(f"http_{code}", resp.reason or "")


def _timed_out(deadline: Deadline) -> TransientError:
    return TransientError("timeout", f"no complete answer within the total deadline of {deadline.seconds} s")


def _read_body(resp: requests.Response, max_bytes: int, deadline: Deadline, truncate: bool = False) -> bytes:
    """The body, at most `max_bytes` (decoded): longer is `too_large`, or with `truncate` its first
    `max_bytes` bytes, the rest never read (the connection is closed, not drained)."""
    declared = resp.headers.get("Content-Length")
    if not truncate and declared and declared.isdigit() and int(declared) > max_bytes:
        raise PermanentError("too_large", f"Content-Length {declared} > {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        # Small chunks: each is decompressed under a bound, so a gzip bomb costs a few MB at most.
        for chunk in resp.iter_content(chunk_size=16384):
            size += len(chunk)
            if size > max_bytes and truncate:
                chunks.append(chunk[: len(chunk) - (size - max_bytes)])
                resp.close()
                break
            if size > max_bytes:
                raise PermanentError("too_large", f"body exceeds {max_bytes} bytes")
            if deadline.fired or deadline.remaining() <= 0:
                raise _timed_out(deadline)
            chunks.append(chunk)
    except requests.exceptions.ContentDecodingError as exc:
        raise PermanentError("bad_encoding", f"cannot decompress body: {str(exc)[:200]}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError, OSError) as exc:
        if deadline.fired:
            raise _timed_out(deadline) from None
        raise TransientError("connection_error", str(exc)[:300]) from None
    if deadline.fired:  # the socket was shut down: a read-until-close body is cut short
        raise _timed_out(deadline)
    return b"".join(chunks)


def _content_type(resp: requests.Response) -> tuple[str, str | None]:
    raw = resp.headers.get("Content-Type", "")
    mime = raw.split(";", 1)[0].strip().lower()
    charset = None
    m = re.search(r"charset\s*=\s*[\"']?([\w\-:.]+)", raw, re.I)
    if m:
        charset = m.group(1)
    return mime, charset


def _is_wide(charset: str | None) -> bool:
    """UTF-16/32 text is full of NUL bytes; it must not be taken for binary."""
    return charset is not None and charset.lower().replace("_", "-").startswith(("utf-16", "utf-32", "ucs-2", "ucs-4"))


# The WHATWG MIME sniffing standard's "binary data bytes": control bytes no text encoding for the
# web uses (not tab, line feed, form feed, carriage return or escape).
_BINARY_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20)])
# How many of them in the first kilobyte make a body binary. Random or compressed bytes hold ~100;
# a page with a stray NUL in its title (a CMS copying a database field) holds one or two, and is a
# page: the parser drops such characters.
_BINARY_BYTES_MIN = 8


def looks_binary(body: bytes, charset: str | None = None) -> bool:
    head = body[:1024]
    if head.startswith(BINARY_MAGIC):
        return True
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or _is_wide(charset) or sniff_utf16(body):
        return False  # UTF-16 with a BOM, declared, or told by its NULs (decode_html): text
    return len(head) - len(head.translate(None, _BINARY_BYTES)) >= _BINARY_BYTES_MIN


def sniff_utf16(body: bytes) -> str | None:
    """UTF-16 without a BOM, told by its NULs: markup, spaces and Latin text put a NUL in every
    other byte, always on the same side (odd bytes: little-endian; even: big-endian). Binary and
    UTF-8 with stray NULs have them on both sides, or hardly any."""
    head = body[:2048]
    pairs = len(head) // 2
    if pairs < 16:
        return None
    even, odd = head[0 : pairs * 2 : 2].count(0), head[1 : pairs * 2 : 2].count(0)
    if odd >= pairs * 0.1 and even <= odd * 0.05:
        return "utf-16-le"
    if even >= pairs * 0.1 and odd <= even * 0.05:
        return "utf-16-be"
    return None


# Codecs Python has that no page may be decoded with, whatever it declares: not charsets at all
# (`idna`, `punycode`: host names; `unicode_escape`: Python literals; `undefined`: always raises),
# or refused by browsers (UTF-7, a classic XSS vector, is not in the WHATWG Encoding Standard).
# A page declaring one is decoded as if it had declared nothing.
_NOT_WEB_CODECS = frozenset({"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape", "utf-7"})


def _is_text_codec(name: str) -> bool:
    """Only real text encodings: `bytes.decode('zlib')`-style codecs must not run on hostile input."""
    import codecs

    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return False
    if info.name.replace("_", "-") in _NOT_WEB_CODECS:
        return False
    return bool(getattr(info, "_is_text_encoding", True))


def _attempt(body: bytes, enc: str) -> str | None:
    """`body` decoded strictly with `enc`, or None: unknown, not for the web, or the bytes do not fit."""
    if not _is_text_codec(enc):
        return None
    try:
        return body.decode(enc)
    except (LookupError, ValueError):  # UnicodeError is a ValueError; some codecs raise it bare
        return None


def decode_html(body: bytes, header_charset: str | None) -> tuple[str, str]:
    """Decode, first fit wins: BOM, UTF-16's NUL pattern, the header's charset, <meta charset>,
    UTF-8, detection, then UTF-8 with replacement characters. Never raises: unknown, bogus or
    non-web charsets (`x-unknown`, `utf-7`, `idna`) are passed over like absent ones."""
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom) :].decode(enc, errors="replace"), enc
    wide = sniff_utf16(body)
    if wide is not None:  # beats any declaration: no ASCII-compatible charset puts NULs there
        return body[: len(body) // 2 * 2].decode(wide, errors="replace"), wide
    has_nul = b"\x00" in body[:2048]
    candidates: list[str] = []
    if header_charset and (has_nul or not _is_wide(header_charset)):
        candidates.append(header_charset)  # a wide charset declared over bytes with no NUL is wrong
    m = _META_CHARSET.search(body[:4096])
    if m:
        meta = m.group(1).decode("ascii", "ignore")
        # A <meta> that could be read as ASCII is not UTF-16/32 (the HTML standard reads it as UTF-8).
        candidates.append("utf-8" if _is_wide(meta) else meta)
    for enc in candidates:
        text = _attempt(body, enc)
        if text is not None:
            return text, enc.lower()
    text = _attempt(body, "utf-8")
    if text is not None:
        return text, "utf-8"
    text = _mostly_utf8(body)
    if text is not None:
        return text, "utf-8"
    guess = _detect(body)
    if guess is not None:
        return body.decode(guess, errors="replace"), guess
    return body.decode("utf-8", errors="replace"), "utf-8"


# The legacy encoding a browser falls back to for a page in a language (the HTML standard's
# "suggested default encoding" by locale); windows-1252 for every language not listed.
_LEGACY_BY_LANGUAGE = {
    **dict.fromkeys(("ar", "fa", "ur"), "cp1256"),
    **dict.fromkeys(("ba", "be", "bg", "kk", "ky", "mk", "ru", "sr", "tg", "tt", "uk"), "cp1251"),
    **dict.fromkeys(("bs", "cs", "hr", "hu", "pl", "ro", "sk", "sl"), "cp1250"),
    **dict.fromkeys(("et", "lt", "lv"), "cp1257"),
    **dict.fromkeys(("az", "ku", "tr"), "cp1254"),
    "el": "cp1253",
    "he": "cp1255",
    "ja": "shift_jis",
    "ko": "euc_kr",
    "th": "cp874",
    "vi": "cp1258",
    "zh-cn": "gb18030",
    "zh-tw": "big5",
    "zh-hk": "big5",
}
_HTML_LANG = re.compile(rb"<html\b[^>]*?\blang\s*=\s*[\"']?([a-zA-Z]{2,3}(?:[-_][a-zA-Z]{2,4})?)", re.I)
# How close two of the detector's readings must score to be a tie (percentage points of its
# "chaos" and "coherence" measures): short Western text reads about equally well in windows-1250,
# -1252 and -1257, and the detector then names whichever it tried first. A page that declares its
# language is given more room: its `lang` is better evidence than coherence measured on a paragraph.
_TIE_CHAOS = 1.0
_TIE_COHERENCE = 1.0
_TIE_COHERENCE_DECLARED = 10.0


def legacy_encoding(body: bytes) -> tuple[str, bool]:
    """The encoding a browser would fall back to for this page, by its `<html lang>` (True: the
    page declared one), else windows-1252 (False)."""
    m = _HTML_LANG.search(body[:4096])
    if m is None:
        return "cp1252", False
    tag = m.group(1).decode("ascii").lower().replace("_", "-")
    return _LEGACY_BY_LANGUAGE.get(tag) or _LEGACY_BY_LANGUAGE.get(tag.split("-")[0], "cp1252"), True


# The share of a page's non-ASCII characters that may be broken bytes for it still to be UTF-8: a
# UTF-8 page with a few stray Latin-1 bytes (a template or an ad pasted in) is read as UTF-8 with
# replacement characters, as a browser reads it; a Latin-1 page has hardly a valid sequence.
_UTF8_BROKEN_SHARE = 0.2


def _mostly_utf8(body: bytes) -> str | None:
    """`body` as UTF-8 with replacement characters if most of its non-ASCII text is valid UTF-8."""
    text = body.decode("utf-8", errors="replace")
    broken = text.count("\ufffd") - body.count("\ufffd".encode())
    wide = sum(1 for ch in text if ord(ch) > 0x7F)
    valid = wide - broken
    return text if valid > 0 and broken <= _UTF8_BROKEN_SHARE * wide else None


def _detect(body: bytes) -> str | None:
    """charset_normalizer's guess, if it is a codec we would run; a guess is never worth an error.
    Where the page's legacy encoding (`legacy_encoding`) reads as well as the detector's best, it
    wins: Latin-1 text served as UTF-8 is French in windows-1252, not Czech in windows-1250."""
    from charset_normalizer import from_bytes

    legacy, declared = legacy_encoding(body)
    room = _TIE_COHERENCE_DECLARED if declared else _TIE_COHERENCE
    try:
        results = from_bytes(body[:200_000])
        best = results.best()
        if best is None:
            return None
        tied = {
            enc
            for match in results
            if match.percent_chaos <= best.percent_chaos + _TIE_CHAOS
            and match.percent_coherence >= best.percent_coherence - room
            for enc in (match.encoding, *match.could_be_from_charset)
        }
    except Exception:  # the detector's own bug: fall back to UTF-8 with replacement
        return None
    guess = legacy if legacy in tied else str(best.encoding)
    if not _is_text_codec(guess):
        return None
    try:
        body[:64].decode(guess, errors="replace")
    except (LookupError, ValueError):
        return None
    return guess


def fetch_bytes(
    url: str,
    settings: Settings,
    session: requests.Session,
    *,
    max_bytes: int,
    accept: str | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    max_redirects: int | None = None,
    screen: Screen | None = None,
    any_304_is_not_modified: bool = False,
    truncate: bool = False,
) -> FetchedBytes:
    """GET one URL's bytes under every guard. Raises PermanentError / TransientError / NotModified.

    `accept` overrides the session's Accept header; `max_redirects` defaults to the settings'.
    `screen` may refuse an answer from its status and headers before its body is read; it is
    not asked about 304, 4xx and 5xx answers, which are errors already.
    A 304 is NotModified when the request was conditional, else an error (`http_304`), unless
    `any_304_is_not_modified`. With `truncate`, a body over `max_bytes` is cut to its first
    `max_bytes` bytes instead of refused `too_large` (robots.txt, RFC 9309 2.5).
    Cookies set by the redirects followed are sent on the next hops of this call and then dropped;
    a session that keeps cookies of its own (not from `make_session`) is made to forget them.
    """
    jar = getattr(session, "cookies", None)  # a stand-in for a session may have none
    if jar is not None and not isinstance(jar, SessionCookieJar):
        session.cookies = SessionCookieJar()
    policy = policy_from(settings)
    deadline = Deadline(settings.fetch_total_timeout_s)
    token = current_policy.set(policy)
    dtoken = current_deadline.set(deadline)  # the guarded connections hand their sockets to it
    try:
        get = _Get(
            settings=settings,
            session=session,
            policy=policy,
            deadline=deadline,
            headers=_request_headers(accept, etag, last_modified),
            max_bytes=max_bytes,
            max_redirects=settings.fetch_max_redirects if max_redirects is None else max_redirects,
            screen=screen,
            conditional=any_304_is_not_modified or bool(etag or last_modified),
            cookies=FetchCookieJar(),
            truncate=truncate,
        )
        return _fetch(url, get)
    finally:
        current_deadline.reset(dtoken)
        current_policy.reset(token)
        deadline.cancel()


@dataclass(frozen=True)
class _Get:
    """One `fetch_bytes` call's fixed inputs, handed down the redirect loop."""

    settings: Settings
    session: requests.Session
    policy: NetPolicy
    deadline: Deadline
    headers: dict[str, str]
    max_bytes: int
    max_redirects: int
    screen: Screen | None
    conditional: bool  # whether a 304 means NotModified (else it is an error)
    cookies: FetchCookieJar  # this call's cookies, set by its redirects; never shared
    truncate: bool = False  # a body over max_bytes is cut, not refused


def _request_headers(accept: str | None, etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if accept:
        headers["Accept"] = accept
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def wire_url(url: str) -> str:
    """The URL a GET for `url` requests: `newsflow.urls.normalize_url`, the rule article ids are made
    by, so the page fetched is the one whose id was computed. PermanentError when it has none."""
    if len(url) > MAX_URL_CHARS:
        raise PermanentError("bad_url", f"URL is {len(url)} characters long (limit {MAX_URL_CHARS})")
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme and scheme not in ALLOWED_SCHEMES:
        raise PermanentError("bad_scheme", f"only http and https are fetched, not {scheme!r}")
    try:
        return normalize_url(url)
    except InvalidURL as exc:
        raise PermanentError("bad_url", str(exc)[:300]) from None


def _fetch(url: str, get: _Get) -> FetchedBytes:
    """The one redirect loop: redirects are followed by hand so every hop meets `check_url`.
    Each hop requests its `wire_url`; `final_url` and the redirects are in that form."""
    current = wire_url(url)
    hops = [current]
    for _ in range(get.max_redirects + 1):
        check_url(current, get.policy)
        with _send(current, get) as resp:
            if resp.is_redirect:
                extract_cookies_to_jar(get.cookies, resp.request, resp.raw)  # type: ignore[no-untyped-call]
                try:
                    target = wire_url(urljoin(current, resp.headers.get("Location", "")))
                except ValueError as exc:  # urljoin: "Invalid IPv6 URL"
                    raise PermanentError("bad_url", f"redirect to a malformed URL: {exc}"[:300]) from None
                if target in hops:
                    raise PermanentError("redirect_loop", " -> ".join([*hops[-5:], target])[:500])
                hops.append(target)
                current = target
                continue
            return _finish(url, current, hops, resp, get)
    raise PermanentError("too_many_redirects", f"more than {get.max_redirects} redirects")


def _send(url: str, get: _Get) -> requests.Response:
    """One GET, headers read and body not yet, with requests' failures mapped to our errors."""
    deadline = get.deadline
    remaining = deadline.remaining()
    if remaining <= 0 or deadline.fired:
        raise _timed_out(deadline)
    s = get.settings
    try:
        return get.session.get(
            url,
            headers=get.headers,
            cookies=get.cookies,
            stream=True,
            allow_redirects=False,
            timeout=(min(s.fetch_connect_timeout_s, remaining), min(s.fetch_read_timeout_s, remaining)),
        )
    except requests.exceptions.Timeout as exc:
        raise TransientError("timeout", str(exc)[:300]) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        if deadline.fired:
            raise _timed_out(deadline) from None
        raise TransientError("connection_error", str(exc)[:300]) from None
    except requests.exceptions.InvalidHeader as exc:  # the response's (conflicting Content-Lengths)
        raise PermanentError("bad_response", str(exc)[:300]) from None
    except ValueError as exc:  # (UnicodeError is one)
        # requests.InvalidURL, and what requests raises reading a redirect's Location for the hop we
        # follow by hand (`Invalid IPv6 URL` from urlparse, a raw non-ASCII byte): a bad target URL.
        raise PermanentError("bad_url", str(exc)[:300]) from None


def _finish(url: str, final: str, hops: list[str], resp: requests.Response, get: _Get) -> FetchedBytes:
    _check_status(resp, get.conditional)
    mime, charset = _content_type(resp)
    # A copy: the response is closed, and its connection pooled, once this returns.
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(resp.headers)
    if get.truncate:  # the body may be a prefix: a declared length would describe another one
        headers.pop("Content-Length", None)
    if get.screen is not None:
        get.screen(
            ResponseHead(final_url=final, status=resp.status_code, content_type=mime, charset=charset, headers=headers)
        )
    if resp.status_code >= 300:  # a 3xx we do not follow (300, 305, or no Location)
        raise PermanentError(f"http_{resp.status_code}", resp.reason or "")
    return FetchedBytes(
        url=url,
        final_url=final,
        status=resp.status_code,
        body=_read_body(resp, get.max_bytes, get.deadline, get.truncate),
        content_type=mime,
        charset=charset,
        etag=resp.headers.get("ETag"),
        last_modified=resp.headers.get("Last-Modified"),
        headers=headers,
        redirects=tuple(hops[1:]),
    )


def fetch_page(
    url: str,
    settings: Settings,
    session: requests.Session,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchResult:
    """GET one HTML page. Raises PermanentError / TransientError / NotModified."""
    raw = fetch_bytes(
        url,
        settings,
        session,
        max_bytes=settings.fetch_max_bytes,
        etag=etag,
        last_modified=last_modified,
        screen=_screen_page,
    )
    return _page_from(raw)


def page_from(raw: FetchedBytes) -> FetchResult:
    """An answer's bytes as a page, under the checks a fetched page meets (empty body, binary
    content, markup): for bytes that were not fetched now (an archived capture, a backfill)."""
    return _page_from(raw)


def _screen_page(head: ResponseHead) -> None:
    """Refuse what cannot be a page before its body costs us anything."""
    if head.status not in (200, 203):
        raise PermanentError(f"http_{head.status}", "unexpected status for a page")
    if head.content_type not in HTML_TYPES and head.content_type not in SNIFF_TYPES:
        raise PermanentError("not_html", f"content type {head.content_type!r}")


def _page_from(raw: FetchedBytes) -> FetchResult:
    body, mime = raw.body, raw.content_type
    if not body.strip():
        raise PermanentError("empty_body", "the server sent no content")
    if looks_binary(body, raw.charset):
        raise PermanentError("not_html", f"binary content served as {mime or 'no type'}")
    html, encoding = decode_html(body, raw.charset)
    if mime in SNIFF_TYPES and "<html" not in html[:5000].lower() and "<body" not in html[:20000].lower():
        raise PermanentError("not_html", f"content type {mime or 'none'} and no HTML markup")
    return FetchResult(
        url=raw.url,
        final_url=raw.final_url,
        status=raw.status,
        html=html,
        content_type=mime,
        encoding=encoding,
        n_bytes=len(body),
        etag=raw.etag,
        last_modified=raw.last_modified,
        fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
        redirects=list(raw.redirects),
        headers=raw.headers,
        body=body,
    )
