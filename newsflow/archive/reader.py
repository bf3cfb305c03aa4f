"""Reading captures back: one by its location (file, offset, length), or whole files in order.

A capture's location is kept with the indexed article (`capture` in its stored source), so any
indexed article can be read back years later, long after its ledger entry expired.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from newsflow.fetcher import FetchedBytes, FetchResult, page_from

# A capture's record is read whole into memory; none is larger than the fetcher's own cap plus headers.
MAX_RECORD_BYTES = 64 * 1024 * 1024


class CaptureUnavailable(Exception):
    """The capture cannot be read: `reason` is one of no_capture, missing_file, unreadable, not_response."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Captured:
    """One archived HTTP response."""

    url: str
    date: str  # WARC-Date
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    digest: str = ""

    def header(self, name: str) -> str | None:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)

    def fetched(self, url: str | None = None) -> FetchedBytes:
        """As the fetcher would have returned it (for `newsflow.fetcher.page_from`)."""
        ctype = self.header("Content-Type") or ""
        mime = ctype.split(";", 1)[0].strip().lower()
        charset = None
        for part in ctype.split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip("\"'")
        return FetchedBytes(
            url=url or self.url,
            final_url=self.url,
            status=self.status,
            body=self.body,
            content_type=mime,
            charset=charset,
            etag=self.header("ETag"),
            last_modified=self.header("Last-Modified"),
            headers={k: v for k, v in self.headers},
        )

    def page(self, url: str | None = None) -> FetchResult:
        """The decoded page, with the capture's date as its fetch time. PermanentError as a fetch would."""
        from dataclasses import replace

        return replace(page_from(self.fetched(url)), fetched_at=iso_date(self.date))


def iso_date(warc_date: str) -> str:
    """WARC-Date (`2026-01-02T03:04:05.123456Z`) as the fetcher writes fetched_at (seconds, +00:00)."""
    text = warc_date.strip()
    if not text:
        return ""
    head = text[:19]
    return head + "+00:00" if len(head) == 19 else text


def resolve(archive_dir: str | Path, file: str) -> Path:
    path = Path(file)
    if path.is_absolute():
        return path
    if ".." in path.parts:
        raise CaptureUnavailable("unreadable", f"bad file name {file!r}")
    return Path(archive_dir) / path


def capture_of(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The capture location an indexed article carries, if it has a usable one."""
    cap = doc.get("capture")
    if not isinstance(cap, Mapping):
        return None
    if not isinstance(cap.get("file"), str) or not isinstance(cap.get("offset"), int):
        return None
    if not isinstance(cap.get("length"), int) or cap["length"] <= 0:
        return None
    return dict(cap)


def read_capture(archive_dir: str | Path, capture: Mapping[str, Any]) -> Captured:
    """The response record at `capture` (file, offset, length): one seek and one read, no scan."""
    path = resolve(archive_dir, str(capture.get("file") or ""))
    offset, length = int(capture.get("offset") or 0), int(capture.get("length") or 0)
    if length <= 0 or length > MAX_RECORD_BYTES or offset < 0:
        raise CaptureUnavailable("unreadable", f"bad location {offset}+{length}")
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
    except FileNotFoundError:
        raise CaptureUnavailable("missing_file", str(path)) from None
    except OSError as exc:
        raise CaptureUnavailable("unreadable", f"{path}: {exc}") from None
    if len(data) < length:
        raise CaptureUnavailable("unreadable", f"{path} ends before {offset}+{length}")
    try:
        for record in ArchiveIterator(io.BytesIO(data)):
            if record.rec_type != "response" or record.http_headers is None:
                raise CaptureUnavailable("not_response", f"a {record.rec_type} record at {path}:{offset}")
            return _captured(record, record.content_stream().read())
    except (ArchiveLoadFailed, ValueError, OSError, EOFError, zlib.error) as exc:
        raise CaptureUnavailable("unreadable", f"{path}:{offset}: {exc}") from None
    raise CaptureUnavailable("unreadable", f"no record at {path}:{offset}")


def _captured(record: Any, body: bytes) -> Captured:
    http = record.http_headers
    try:
        status = int(http.get_statuscode())
    except (TypeError, ValueError):
        status = 0
    return Captured(
        url=str(record.rec_headers.get_header("WARC-Target-URI") or ""),
        date=str(record.rec_headers.get_header("WARC-Date") or ""),
        status=status,
        headers=[(str(k), str(v)) for k, v in http.headers],
        body=body,
        digest=str(record.rec_headers.get_header("WARC-Payload-Digest") or ""),
    )


def file_size(path: str | Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def iter_records(path: str | Path) -> Iterator[tuple[str, int, int]]:
    """(record type, offset, length) of every complete record of a file, in order; stops quietly at
    a torn or corrupt tail (a killed writer). Raises nothing for a damaged file."""
    with open(path, "rb") as f:
        it = ArchiveIterator(f)
        try:
            for record in it:
                rec_type = str(record.rec_type)
                it.read_to_end(record)
                if getattr(record.raw_stream, "limit", 0) > 0:  # the file ends inside this record
                    return
                yield rec_type, int(it.get_record_offset()), int(it.get_record_length())
        except Exception:  # ArchiveLoadFailed, zlib.error, EOFError: the tail is torn
            return


__all__ = ["CaptureUnavailable", "Captured", "capture_of", "iter_records", "read_capture"]
