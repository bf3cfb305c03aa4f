"""Rolling WARC 1.1 files of what the fetch stage received, one file per process at a time.

Each fetch appends three records, each its own gzip member: the response (status line and headers
as received, the body as decoded by the fetcher), the request, and a metadata record (article
id, source, requested URL, redirects, hints). `build_records` writes them (warcio's HTTP header
encoding, not its record writer: `build_records` says why) and this module gzips them (at
`archive_gzip_level`, warcio's own gzip is fixed at level 9) and appends them.

Safety:
- one lock around the append, the index line and rolling: a threads pool's fetches interleave
  whole records, never bytes;
- each fetch's records go out in one write and are flushed to the kernel before its index line:
  a SIGKILL loses at most the fetch being written, and a torn last member spoils nothing before it;
- names sort by time and carry host and pid (`newsflow-<UTC time>-<host>-<pid>-<seq>.warc.gz`), so
  workers on several hosts writing one shared volume never share a file; a forked child opens its own;
- `close()` (worker shutdown) flushes, fsyncs and closes the file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from warcio.statusandheaders import StatusAndHeaders

from newsflow.archive.cdx import cdx_line, cdx_path

PREFIX = "newsflow"
SUFFIX = ".warc.gz"
# Headers describing a transfer the archived body no longer has (the fetcher decoded it): kept
# under their original value as X-Archive-Orig-*, the convention of web archives (pywb).
_TRANSFER_HEADERS = frozenset({"content-encoding", "transfer-encoding", "content-length"})
_SAFE = re.compile(r"[^A-Za-z0-9.]+")


@dataclass(frozen=True)
class Capture:
    """Where one response record is: enough to read it back without scanning (the index keeps it)."""

    file: str  # name inside the archive dir (an absolute path for a backfilled file elsewhere)
    offset: int  # of the record's gzip member
    length: int  # bytes of that member
    digest: str  # WARC-Payload-Digest (sha1:BASE32)
    date: str  # WARC-Date (ISO 8601, UTC)
    # The response record's gzip member, exactly the bytes appended at `offset`: the fetch stage
    # parks it as the claim check (newsflow/archive/claim.py), so a page is compressed once, not
    # twice. Not part of the location (`to_dict`), which travels in messages and the index.
    member: bytes = field(default=b"", repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "offset": self.offset,
            "length": self.length,
            "digest": self.digest,
            "date": self.date,
        }


def warc_date(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_fast_zlib: Any
try:  # ISA-L's gzip: the same format as zlib's at a third to a quarter of its CPU (bench/archive.py)
    from isal import isal_zlib as _fast_zlib
except ImportError:  # pragma: no cover - the wheel is a dependency; any zlib will do
    _fast_zlib = None
FAST_LEVELS = range(0, 4)  # levels ISA-L has; higher ones are zlib's


def gzip_member(data: bytes, level: int) -> bytes:
    """One gzip member (RFC 1952): ISA-L for levels 0-3 when installed, zlib otherwise."""
    lib: Any = _fast_zlib if _fast_zlib is not None and level in FAST_LEVELS else zlib
    z = lib.compressobj(max(level, 1) if lib is zlib else level, lib.DEFLATED, zlib.MAX_WBITS | 16)
    return bytes(z.compress(data) + z.flush())


def response_headers(headers: Mapping[str, str], body_len: int) -> list[tuple[str, str]]:
    """The headers as received, with those the decoded body no longer matches renamed, and its length."""
    out: list[tuple[str, str]] = []
    for name, value in headers.items():
        if name.lower() in _TRANSFER_HEADERS:
            out.append((f"X-Archive-Orig-{name}", value))
        else:
            out.append((name, value))
    out.append(("Content-Length", str(body_len)))
    return out


def build_records(
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    request_headers: Mapping[str, Any],
    meta: Mapping[str, Any],
    date: str,
) -> tuple[list[bytes], str]:
    """The response, request and metadata records of one fetch (uncompressed), and the payload digest.

    The records are those warcio's writer made (its HTTP header encoding, `StatusAndHeaders`:
    non-ASCII values %-encoded), written here directly: warcio's record objects, streams and
    digest passes cost about as much CPU as compressing the page, on every fetch. No
    WARC-Block-Digest (optional in WARC 1.1, a second SHA-1 over every page that no reader here
    uses); WARC-Payload-Digest (the CDX digest) stays."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    http = StatusAndHeaders(f"{status} {phrase}", response_headers(headers, len(body)), protocol="HTTP/1.1")
    digest = _sha1(body)
    resp_id = _record_id()
    response = _record(
        [("WARC-Type", "response"), ("WARC-Record-ID", resp_id), ("WARC-Target-URI", url), ("WARC-Date", date),
         ("WARC-Payload-Digest", digest), ("Content-Type", "application/http; msgtype=response")],
        _header_block(http), body,
    )  # fmt: skip
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    req_headers = [("Host", parts.netloc), *((k, str(v)) for k, v in request_headers.items())]
    req_http = StatusAndHeaders(f"GET {target} HTTP/1.1", req_headers, protocol="HTTP/1.1", is_http_request=True)
    request = _record(
        [("WARC-Type", "request"), ("WARC-Record-ID", _record_id()), ("WARC-Target-URI", url), ("WARC-Date", date),
         ("WARC-Concurrent-To", resp_id), ("WARC-Payload-Digest", _EMPTY_DIGEST),
         ("Content-Type", "application/http; msgtype=request")],
        _header_block(req_http), b"",
    )  # fmt: skip
    fields = "".join(f"{k}: {_field(v)}\r\n" for k, v in meta.items() if v not in (None, "", [], {}))
    payload = fields.encode("utf-8")
    metadata = _record(
        [("WARC-Type", "metadata"), ("WARC-Record-ID", _record_id()), ("WARC-Target-URI", url), ("WARC-Date", date),
         ("WARC-Concurrent-To", resp_id), ("WARC-Payload-Digest", _sha1(payload)),
         ("Content-Type", "application/warc-fields")],
        b"", payload,
    )  # fmt: skip
    return [response, request, metadata], digest


def _header_block(http: StatusAndHeaders) -> bytes:
    """An HTTP header block as warcio encodes it (non-ASCII values %-encoded, `name="value"`
    parameters as RFC 8187 says), or, where warcio cannot (a non-ASCII header name, a non-ASCII
    value beside parameters, a request path or value carrying undecodable bytes), with every
    non-ASCII character %-encoded as UTF-8: an odd header must not cost the page its capture."""
    try:
        return bytes(http.to_ascii_bytes())
    except UnicodeError:
        pass
    first = " ".join(part for part in (http.protocol, http.statusline) if part)
    lines = [_ascii(first), *(f"{_ascii(name)}: {_ascii(value)}" for name, value in http.headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _ascii(text: str) -> str:
    """`text` with each non-ASCII character %-encoded as UTF-8 (a lone surrogate, from bytes that
    did not decode, as its code point), and line breaks made spaces."""
    if text.isascii():
        return _line(text)
    return _line("".join(c if c.isascii() else _percent(c) for c in text))


def _percent(char: str) -> str:
    """One character %-encoded as UTF-8; a lone surrogate (bytes that did not decode) as its code point."""
    return quote(char.encode("utf-8", "surrogatepass"))


def _sha1(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


_EMPTY_DIGEST = _sha1(b"")


def _record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def _record(warc_headers: list[tuple[str, str]], http_block: bytes, payload: bytes) -> bytes:
    """One uncompressed WARC 1.1 record: its header lines, a block of `http_block` + `payload`."""
    length = len(http_block) + len(payload)
    head = "".join(f"{name}: {_line(value)}\r\n" for name, value in warc_headers)
    head = f"WARC/1.1\r\n{head}Content-Length: {length}\r\n\r\n"
    # The target URI is the only value from outside; a URL is ASCII once requests has prepared it,
    # and warcio wrote any other as UTF-8 too (a lone surrogate is %-encoded: it has no UTF-8).
    try:
        encoded = head.encode("utf-8")
    except UnicodeEncodeError:
        encoded = "".join(_percent(c) if "\ud800" <= c <= "\udfff" else c for c in head).encode("utf-8")
    return b"".join((encoded, http_block, payload, b"\r\n\r\n"))


def _line(value: str) -> str:
    """A header value on one line: a CR or LF would end the header early and forge the next."""
    return value if "\r" not in value and "\n" not in value else " ".join(value.split())


def _field(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return " ".join(text.split())  # one line per field


def host_tag() -> str:
    return _SAFE.sub("_", socket.gethostname() or "host").strip("_")[:60] or "host"


def file_name(now: float, host: str, pid: int, seq: int) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d%H%M%S%f")
    return f"{PREFIX}-{stamp}-{host}-{pid}-{seq:05d}{SUFFIX}"


class _Open:
    """One file being written, its index beside it."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.path = directory / name
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.cdx: BinaryIO = open(cdx_path(self.path), "ab", buffering=0)  # noqa: SIM115 - closed by close()
        self.size = os.fstat(self.fd).st_size
        self.opened = time.time()

    def append(self, data: bytes) -> int:
        offset = self.size
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        self.size += len(data)
        return offset

    def close(self) -> None:
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.cdx.close()


class ArchiveWriter:
    """This process's WARC writer; thread-safe. `write` returns where the response record is, and
    its gzip member (`Capture.member`)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        roll_bytes: int = 1024**3,
        roll_s: float = 3600.0,
        gzip_level: int = 1,
        on_roll: Callable[[], None] | None = None,
        host: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.roll_bytes = roll_bytes
        self.roll_s = roll_s
        self.level = max(0, min(9, gzip_level))
        self.on_roll = on_roll  # retention: called after a file was closed
        self.host = host or host_tag()
        self._lock = threading.Lock()
        self._file: _Open | None = None
        self._pid = os.getpid()
        self._seq = 0

    @property
    def current(self) -> str | None:
        f = self._file
        return f.name if f else None

    def write(
        self,
        url: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        request_headers: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        date: str | None = None,
    ) -> Capture:
        """Append one fetch (response, request, metadata); compression happens outside the lock.
        The returned Capture carries the response's gzip member: parked as the claim check, it
        spares the fetch stage a second compression of the page."""
        date = date or warc_date()
        records, digest = build_records(url, status, headers, body, request_headers or {}, meta or {}, date)
        members = [gzip_member(r, self.level) for r in records]
        blob = b"".join(members)
        mime = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        with self._lock:
            f = self._writable(len(blob))
            offset = f.append(blob)
            entry = {
                "url": url, "date": date, "offset": offset, "length": len(members[0]), "digest": digest,
                "status": status, "mime": mime.split(";", 1)[0].strip().lower(), "id": (meta or {}).get("article_id"),
            }  # fmt: skip
            f.cdx.write(cdx_line(entry))
            return Capture(f.name, offset, len(members[0]), digest, date, member=members[0])

    def _writable(self, incoming: int) -> _Open:
        f = self._file
        if f is not None and os.getpid() != self._pid:  # a forked child: never the parent's file
            self._file, f = None, None
            self._pid = os.getpid()
        full = f is not None and f.size > 0 and f.size + incoming > self.roll_bytes
        if f is not None and (full or time.time() - f.opened >= self.roll_s):
            self._close_locked()
            f = None
        if f is None:
            f = self._open()
        return f

    def _open(self) -> _Open:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        f = _Open(self.directory, file_name(time.time(), self.host, self._pid, self._seq))
        fields = {"software": "newsflow", "format": "WARC File Format 1.1", "hostname": socket.gethostname(),
                  "pid": str(self._pid)}  # fmt: skip
        payload = "".join(f"{k}: {_field(v)}\r\n" for k, v in fields.items()).encode("utf-8")
        info = _record(
            [("WARC-Type", "warcinfo"), ("WARC-Record-ID", _record_id()), ("WARC-Filename", f.name),
             ("WARC-Date", warc_date()), ("Content-Type", "application/warc-fields")],
            b"", payload,
        )  # fmt: skip
        f.append(gzip_member(info, self.level))
        self._file = f
        return f

    def _close_locked(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        f.close()
        if self.on_roll is not None:
            with contextlib.suppress(OSError):  # retention is best effort; the next roll tries again
                self.on_roll()

    def roll(self) -> None:
        """Close the current file now (the next write starts a new one)."""
        with self._lock:
            self._close_locked()

    def close(self) -> None:
        """Flush, fsync and close the current file (worker shutdown). A later write opens a new one."""
        with self._lock:
            f, self._file = self._file, None
            if f is not None and os.getpid() == self._pid:
                f.close()
