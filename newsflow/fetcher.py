"""The fetch stage's pure part: one URL in, one decoded HTML page (or a typed error) out.

Order of checks, each with its own dead-letter reason:
scheme and URL shape -> SSRF guard (resolved addresses, then the connected socket) -> redirects
followed by hand (each hop checked again, loops and long chains refused) -> status -> content type
-> body streamed under a size cap and a total deadline -> binary sniffing -> charset decoding.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from config.defaults import Settings
from newsflow.errors import PermanentError, TransientError
from newsflow.netguard import ALLOWED_SCHEMES, NetPolicy, check_connected_socket, current_policy, resolve_and_check

MAX_URL_CHARS = 4096
HTML_TYPES = ("text/html", "application/xhtml+xml")
# Types that are text/html in disguise often enough to sniff instead of refusing outright.
SNIFF_TYPES = ("", "text/plain", "application/octet-stream")
BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04", b"\x1f\x8b", b"RIFF", b"\x00\x00\x01\x00")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_\-:.]+)""", re.I)


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


class NotModified(Exception):
    """The server answered 304 to a conditional request: nothing to do."""


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        try:
            check_connected_socket(sock, self.host, self.port or 80)
        except Exception:
            sock.close()
            raise
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> Any:
        sock = super()._new_conn()
        try:
            check_connected_socket(sock, self.host, self.port or 443)
        except Exception:
            sock.close()
            raise
        return sock


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """An adapter whose sockets are checked against the SSRF policy once connected."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


def make_session(settings: Settings) -> requests.Session:
    """A session for one worker: connection reuse, our User-Agent, no proxies from the env."""
    session = requests.Session()
    session.trust_env = False  # env proxies would route around the SSRF guard
    session.max_redirects = settings.fetch_max_redirects
    adapter = GuardedAdapter(pool_connections=32, pool_maxsize=32, max_retries=0)
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
    return NetPolicy(allow_private=settings.fetch_allow_private, allowed_hosts=settings.allowed_hosts)


def check_url(url: str, policy: NetPolicy) -> None:
    if len(url) > MAX_URL_CHARS:
        raise PermanentError("bad_url", f"URL is {len(url)} characters long (limit {MAX_URL_CHARS})")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise PermanentError("bad_scheme", f"only http and https are fetched, not {parts.scheme or 'none'!r}")
    if parts.username or parts.password:
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
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def _check_status(resp: requests.Response) -> None:
    code = resp.status_code
    if code == 304:
        raise NotModified()
    if code in (429, 503):
        raise TransientError(
            f"http_{code}", "server asked us to slow down", parse_retry_after(resp.headers.get("Retry-After"))
        )
    if code >= 500 or code in (408, 425):
        raise TransientError(f"http_{code}", resp.reason or "")
    if code >= 400:
        raise PermanentError(f"http_{code}", resp.reason or "")
    if code != 200 and code != 203:
        raise PermanentError(f"http_{code}", "unexpected status for a page")


def _read_body(resp: requests.Response, settings: Settings, deadline: float) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > settings.fetch_max_bytes:
        raise PermanentError("too_large", f"Content-Length {declared} > {settings.fetch_max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in resp.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > settings.fetch_max_bytes:
                raise PermanentError("too_large", f"body exceeds {settings.fetch_max_bytes} bytes")
            if time.monotonic() > deadline:
                raise TransientError("timeout", f"body not complete after {settings.fetch_total_timeout_s} s")
            chunks.append(chunk)
    except requests.exceptions.ContentDecodingError as exc:
        raise PermanentError("bad_encoding", f"cannot decompress body: {exc}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise TransientError("connection_error", str(exc)[:300]) from None
    return b"".join(chunks)


def _content_type(resp: requests.Response) -> tuple[str, str | None]:
    raw = resp.headers.get("Content-Type", "")
    mime = raw.split(";", 1)[0].strip().lower()
    charset = None
    m = re.search(r"charset\s*=\s*[\"']?([\w\-:.]+)", raw, re.I)
    if m:
        charset = m.group(1)
    return mime, charset


def looks_binary(body: bytes) -> bool:
    head = body[:1024]
    if head.startswith(BINARY_MAGIC):
        return True
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 with a BOM: text, decoded below
    return b"\x00" in head


def decode_html(body: bytes, header_charset: str | None) -> tuple[str, str]:
    """Decode with BOM, then the header's charset, then <meta charset>, then detection."""
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom) :].decode(enc, errors="replace"), enc
    candidates: list[str] = []
    if header_charset:
        candidates.append(header_charset)
    m = _META_CHARSET.search(body[:4096])
    if m:
        candidates.append(m.group(1).decode("ascii", "ignore"))
    for enc in candidates:
        try:
            return body.decode(enc), enc.lower()
        except (LookupError, UnicodeDecodeError):
            continue
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    if best is not None:
        return body.decode(best.encoding, errors="replace"), best.encoding
    return body.decode("utf-8", errors="replace"), "utf-8"


def fetch_page(
    url: str,
    settings: Settings,
    session: requests.Session,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> FetchResult:
    """GET one page. Raises PermanentError / TransientError / NotModified."""
    policy = policy_from(settings)
    token = current_policy.set(policy)
    try:
        return _fetch(url, settings, session, policy, etag, last_modified)
    finally:
        current_policy.reset(token)


def _fetch(
    url: str,
    settings: Settings,
    session: requests.Session,
    policy: NetPolicy,
    etag: str | None,
    last_modified: str | None,
) -> FetchResult:
    deadline = time.monotonic() + settings.fetch_total_timeout_s
    headers: dict[str, str] = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    current, hops = url, [url]
    for _ in range(settings.fetch_max_redirects + 1):
        check_url(current, policy)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientError("timeout", f"no answer within {settings.fetch_total_timeout_s} s")
        try:
            resp = session.get(
                current,
                headers=headers,
                stream=True,
                allow_redirects=False,
                timeout=(
                    min(settings.fetch_connect_timeout_s, remaining),
                    min(settings.fetch_read_timeout_s, remaining),
                ),
            )
        except requests.exceptions.Timeout as exc:
            raise TransientError("timeout", str(exc)[:300]) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientError("connection_error", str(exc)[:300]) from None
        except requests.exceptions.InvalidURL as exc:
            raise PermanentError("bad_url", str(exc)[:300]) from None
        with resp:
            if resp.is_redirect:
                target = urljoin(current, resp.headers.get("Location", ""))
                if target in hops:
                    raise PermanentError("redirect_loop", " -> ".join([*hops[-5:], target])[:500])
                hops.append(target)
                current = target
                continue
            return _finish(url, current, hops, resp, settings, deadline)
    raise PermanentError("too_many_redirects", f"more than {settings.fetch_max_redirects} redirects")


def _finish(
    url: str, final: str, hops: list[str], resp: requests.Response, settings: Settings, deadline: float
) -> FetchResult:
    _check_status(resp)
    mime, charset = _content_type(resp)
    if mime not in HTML_TYPES and mime not in SNIFF_TYPES:
        raise PermanentError("not_html", f"content type {mime!r}")
    body = _read_body(resp, settings, deadline)
    if not body.strip():
        raise PermanentError("empty_body", "the server sent no content")
    if looks_binary(body):
        raise PermanentError("not_html", f"binary content served as {mime or 'no type'}")
    html, encoding = decode_html(body, charset)
    if mime in SNIFF_TYPES and "<html" not in html[:5000].lower() and "<body" not in html[:20000].lower():
        raise PermanentError("not_html", f"content type {mime or 'none'} and no HTML markup")
    return FetchResult(
        url=url,
        final_url=final,
        status=resp.status_code,
        html=html,
        content_type=mime,
        encoding=encoding,
        n_bytes=len(body),
        etag=resp.headers.get("ETag"),
        last_modified=resp.headers.get("Last-Modified"),
        fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
        redirects=hops[1:],
    )
