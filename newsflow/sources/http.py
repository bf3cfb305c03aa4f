"""GET one non-HTML document (feed, sitemap, URL list, robots.txt) with the fetcher's guards.

`newsflow.fetcher.fetch_page` only accepts HTML; this is its small sibling for the crawl: the same
session (SSRF-guarded sockets), `check_url` on every redirect hop, a size cap, a total deadline,
and conditional GET (ETag / Last-Modified) so an unchanged feed costs one 304.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

from config.defaults import Settings
from newsflow.errors import PermanentError, TransientError
from newsflow.fetcher import NotModified, check_url, parse_retry_after, policy_from
from newsflow.netguard import current_policy

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)


@dataclass(frozen=True)
class Document:
    url: str
    final_url: str
    status: int
    body: bytes
    content_type: str
    etag: str | None
    last_modified: str | None


def fetch_document(
    url: str,
    settings: Settings,
    session: requests.Session,
    *,
    max_bytes: int,
    etag: str | None = None,
    last_modified: str | None = None,
    accept: str = ACCEPT,
    max_redirects: int = 5,
) -> Document:
    """Raises NotModified (304), TransientError (timeouts, 5xx, 429) or PermanentError (4xx, too large)."""
    policy = policy_from(settings)
    token = current_policy.set(policy)
    try:
        deadline = time.monotonic() + settings.fetch_total_timeout_s
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        current = url
        for _ in range(max_redirects + 1):
            check_url(current, policy)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError("timeout", f"no answer within {settings.fetch_total_timeout_s} s")
            timeout = (min(settings.fetch_connect_timeout_s, remaining), min(settings.fetch_read_timeout_s, remaining))
            try:
                resp = session.get(current, headers=headers, stream=True, allow_redirects=False, timeout=timeout)
            except requests.exceptions.Timeout as exc:
                raise TransientError("timeout", str(exc)[:300]) from None
            except requests.exceptions.ConnectionError as exc:
                raise TransientError("connection_error", str(exc)[:300]) from None
            except requests.exceptions.InvalidURL as exc:
                raise PermanentError("bad_url", str(exc)[:300]) from None
            with resp:
                if resp.is_redirect:
                    current = urljoin(current, resp.headers.get("Location", ""))
                    continue
                _check_status(resp)
                body = _read(resp, max_bytes, deadline, settings)
                return Document(
                    url=url,
                    final_url=current,
                    status=resp.status_code,
                    body=body,
                    content_type=resp.headers.get("Content-Type", "").split(";", 1)[0].strip().lower(),
                    etag=resp.headers.get("ETag"),
                    last_modified=resp.headers.get("Last-Modified"),
                )
        raise PermanentError("too_many_redirects", f"more than {max_redirects} redirects")
    finally:
        current_policy.reset(token)


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
    if code >= 300:
        raise PermanentError(f"http_{code}", resp.reason or "")


def _read(resp: requests.Response, max_bytes: int, deadline: float, settings: Settings) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise PermanentError("too_large", f"Content-Length {declared} > {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        # Content-Encoding is undone chunk by chunk, so the cap counts inflated bytes.
        for chunk in resp.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > max_bytes:
                raise PermanentError("too_large", f"body exceeds {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise TransientError("timeout", f"body not complete after {settings.fetch_total_timeout_s} s")
            chunks.append(chunk)
    except requests.exceptions.ContentDecodingError as exc:
        raise PermanentError("bad_encoding", f"cannot decompress body: {exc}") from None
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise TransientError("connection_error", str(exc)[:300]) from None
    return b"".join(chunks)
