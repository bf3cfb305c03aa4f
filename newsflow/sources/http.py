"""GET one non-HTML document (feed, sitemap, URL list, robots.txt) with the fetcher's guards.

A thin wrapper over `newsflow.fetcher.fetch_bytes`, the one redirect/read loop shared with
`fetch_page`: the same SSRF checks on every hop, loop and chain limits, status mapping, size cap,
and total deadline enforced on the socket (so a feed server dripping bytes cannot hold a crawl
past it), plus conditional GET (ETag / Last-Modified) so an unchanged feed costs one 304.
"""

from __future__ import annotations

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
    read (the connection is closed, not drained). Ask for one byte more than you keep to know
    whether the document went on (robots.txt, RFC 9309 2.5).
    """
    return fetch_bytes(
        url,
        settings,
        session,
        max_bytes=max_bytes,
        accept=accept,
        etag=etag,
        last_modified=last_modified,
        max_redirects=max_redirects,
        # The crawl only counts a 304 as "unchanged", and always has, asked conditionally or not.
        any_304_is_not_modified=True,
        truncate=truncate,
    )
