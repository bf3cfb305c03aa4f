"""GET one non-HTML document (feed, sitemap, URL list, robots.txt) with the fetcher's guards.

A thin wrapper over `newsflow.fetcher.fetch_bytes`, the one redirect/read loop shared with
`fetch_page`: the same SSRF checks on every hop, loop and chain limits, status mapping, size cap,
and total deadline enforced on the socket (so a feed server dripping bytes cannot hold a crawl
past it), plus conditional GET (ETag / Last-Modified) so an unchanged feed costs one 304.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast

import requests

from config.defaults import Settings
from newsflow.fetcher import FetchedBytes, fetch_bytes

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)


# What `fetch_document` returns: the body undecoded, with its final URL, type and validators.
Document = FetchedBytes


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
    truncate: bool = False,
) -> Document:
    """Raises NotModified (304), TransientError (timeouts, 5xx, 429) or PermanentError (4xx, too large).

    `truncate=True` reads a prefix instead: a body longer than `max_bytes` is cut to its first
    `max_bytes` bytes (after Content-Encoding) rather than refused `too_large`, and the rest is never
    read (the connection is closed, not drained). The answer then carries no Content-Length. Ask for
    one byte more than you keep to know whether the document went on (robots.txt, RFC 9309 2.5).
    """
    return fetch_bytes(
        url,
        settings,
        cast(requests.Session, _PrefixSession(session, max_bytes)) if truncate else session,
        max_bytes=max_bytes,
        accept=accept,
        etag=etag,
        last_modified=last_modified,
        max_redirects=max_redirects,
        # The crawl only counts a 304 as "unchanged", and always has, asked conditionally or not.
        any_304_is_not_modified=True,
    )


class _PrefixSession:
    """Stands in for the session inside `fetch_bytes` so a final answer's body ends after `limit` bytes.

    `fetch_bytes` refuses a body over its cap, from the declared Content-Length or from the bytes
    read. Here the declared length is dropped from each non-redirect answer and its stream stops at
    `limit` decoded bytes, so the cap is never crossed. Everything else (`check_url` on every hop,
    the deadline on the sockets, redirect limits, status mapping) is `fetch_bytes`'s own, unchanged.
    """

    def __init__(self, session: requests.Session, limit: int) -> None:
        self._session = session
        self._limit = limit

    # The session's cookie jar, read and replaced through the stand-in as on the session itself.
    @property
    def cookies(self) -> Any:
        return self._session.cookies

    @cookies.setter
    def cookies(self, jar: Any) -> None:
        self._session.cookies = jar

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        resp = self._session.get(url, **kwargs)
        if not resp.is_redirect:
            resp.headers.pop("Content-Length", None)
            resp.iter_content = _capped(resp.iter_content, self._limit)  # type: ignore[method-assign]
        return resp


def _capped(iter_content: Callable[..., Iterator[bytes]], limit: int) -> Callable[..., Iterator[bytes]]:
    def capped(chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[bytes]:
        left = limit
        for chunk in iter_content(chunk_size, decode_unicode):
            if len(chunk) >= left:
                if left:
                    yield chunk[:left]
                return
            left -= len(chunk)
            yield chunk

    return capped
