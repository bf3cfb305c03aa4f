"""Pages out of WARC files written elsewhere (Common Crawl's CC-NEWS, another crawler's archive).

`read_pages` streams one file record by record (memory bounded by the largest body it keeps,
`fetch_max_bytes`, whatever the file's size) and yields each HTML response with a 200 status as
the fetcher would have returned it, with the capture's own URL and date. Every other record is
counted by why it was passed over, never raised:

    revisit, not_200, not_html, empty_body, too_large, truncated (WARC-Truncated, or the file ends
    inside it), malformed (unparsable record; the rest of that file cannot be trusted), noindex,
    bad_url, url_filter, before_since, other_record (warcinfo, request, metadata, resource ...)
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from newsflow.archive.reader import Captured, iso_date
from newsflow.archive.writer import Capture
from newsflow.errors import PermanentError
from newsflow.fetcher import HTML_TYPES, SNIFF_TYPES, FetchResult
from newsflow.polite.noindex import header_noindex, meta_noindex
from newsflow.urls import InvalidURL, article_id

REASONS = (
    "revisit", "not_200", "not_html", "empty_body", "too_large", "truncated", "malformed", "noindex",
    "bad_url", "url_filter", "before_since", "other_record",
)  # fmt: skip


@dataclass(frozen=True)
class BackfillPage:
    url: str
    article_id: str
    page: FetchResult
    capture: Capture


def parse_warc_date(value: str) -> datetime | None:
    text = (value or "").strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def read_pages(
    path: str | Path,
    counts: Counter[str],
    *,
    max_bytes: int,
    url_filter: re.Pattern[str] | None = None,
    since: datetime | None = None,
    noindex_bot: str | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[BackfillPage]:
    """The HTML 200 pages of one WARC file, in order; `counts` gets a reason for every other record.

    `noindex_bot`: honour noindex (X-Robots-Tag, robots meta) for this robots token; None: do not.
    `on_bytes(position)` is called with the file position after each record (a progress bar).
    """
    where = str(Path(path).resolve())
    with open(path, "rb") as f:
        it = ArchiveIterator(f, check_digests=False)
        records = iter(it)
        while True:
            # Reading the next record and its payload fail the same ways: a damaged file stops here.
            try:
                record = next(records)
                page = _page(record, it, where, counts, max_bytes, url_filter, since, noindex_bot)
            except StopIteration:
                return
            except (ArchiveLoadFailed, ValueError):
                counts["malformed"] += 1
                return
            except (EOFError, zlib.error, OSError):
                counts["truncated"] += 1
                return
            if on_bytes is not None:
                on_bytes(f.tell())
            if page is not None:
                yield page


def _page(
    record: Any,
    it: ArchiveIterator,
    where: str,
    counts: Counter[str],
    max_bytes: int,
    url_filter: re.Pattern[str] | None,
    since: datetime | None,
    noindex_bot: str | None,
) -> BackfillPage | None:
    rec_type = str(record.rec_type)
    if rec_type != "response":
        counts["revisit" if rec_type == "revisit" else "other_record"] += 1
        return None
    headers = record.rec_headers
    url = str(headers.get_header("WARC-Target-URI") or "").strip().strip("<>")
    date = str(headers.get_header("WARC-Date") or "")
    if record.http_headers is None or not url:
        counts["malformed"] += 1
        return None
    if url_filter is not None and not url_filter.search(url):
        counts["url_filter"] += 1
        return None
    when = parse_warc_date(date)
    if since is not None and (when is None or when < since):
        counts["before_since"] += 1
        return None
    try:
        status = int(record.http_headers.get_statuscode())
    except (TypeError, ValueError):
        counts["malformed"] += 1
        return None
    if status != 200:
        counts["not_200"] += 1
        return None
    mime = str(record.http_headers.get_header("Content-Type") or "").split(";", 1)[0].strip().lower()
    if mime not in HTML_TYPES and mime not in SNIFF_TYPES:
        counts["not_html"] += 1
        return None
    if headers.get_header("WARC-Truncated"):
        counts["truncated"] += 1
        return None
    body = record.content_stream().read(max_bytes + 1)
    if len(body) > max_bytes:
        counts["too_large"] += 1
        return None
    if getattr(record.raw_stream, "limit", 0) > 0:  # the file ended before the record's declared length
        counts["truncated"] += 1
        return None
    it.read_to_end(record)
    try:
        aid = article_id(url)
    except InvalidURL:
        counts["bad_url"] += 1
        return None
    captured = Captured(
        url=url,
        date=date,
        status=status,
        headers=[(str(k), str(v)) for k, v in record.http_headers.headers],
        body=body,
        digest=str(headers.get_header("WARC-Payload-Digest") or ""),
    )
    try:
        page = captured.page(url)
    except PermanentError as exc:
        counts[exc.reason if exc.reason in ("not_html", "empty_body") else "not_html"] += 1
        return None
    if noindex_bot is not None:
        tag = captured.header("X-Robots-Tag") or ""
        if (tag and header_noindex([tag], noindex_bot)) or meta_noindex(page.html, noindex_bot):
            counts["noindex"] += 1
            return None
    page = replace(page, fetched_at=iso_date(date) or page.fetched_at)
    capture = Capture(where, int(it.get_record_offset()), int(it.get_record_length()), captured.digest, date)
    return BackfillPage(url, aid, page, capture)
