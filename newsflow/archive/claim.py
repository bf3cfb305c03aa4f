"""The WARC response member as the claim check: one compression serves the archive and Redis.

With archiving on, the fetch stage parks the gzip member of a page's WARC `response` record (the
very bytes `ArchiveWriter.write` appended to the file, `Capture.member`) as the page's claim-check
blob, instead of compressing the decoded HTML a second time with zstd (newsflow/state.py). The clean
stage reads the HTML back from it here: gunzip (ISA-L when installed), split the WARC headers, the
HTTP status line and headers, and the body, then decode the body exactly as the fetcher did
(`newsflow.fetcher.decode_html` with the charset of the recorded Content-Type), so the HTML equals
`FetchResult.html` and the clean stage's output does not change.

The parse is direct, not warcio's `ArchiveIterator` (its streams and header parsing cost more than
the gunzip itself), and strict: a member that is not one complete gzip member of one response
record, or whose lengths disagree, raises `BadMember`, an `InputGone`: the clean stage treats it as
a lost claim check (fetch the page anew once, then dead-letter). No payload digest is checked: the
gzip CRC-32 already covers every byte, and a SHA-1 pass would cost more than the decode.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from typing import Any

from newsflow.archive.reader import MAX_RECORD_BYTES, Captured
from newsflow.errors import InputGone
from newsflow.fetcher import decode_html

# The fetcher's reading of a Content-Type's charset (`newsflow.fetcher._content_type`), kept
# identical: a different reading (e.g. `Captured.fetched`'s split on ";") can pick another
# charset for odd headers, and the HTML must come back exactly as the fetcher decoded it.
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w\-:.]+)", re.I)

_lib: Any
try:  # ISA-L inflates a 184 KB page in ~0.3 ms, zlib in ~0.7 ms; same format
    from isal import isal_zlib as _lib

    _ERRORS: tuple[type[Exception], ...] = (zlib.error, _lib.error)
except ImportError:  # pragma: no cover - the wheel is a dependency; zlib reads the same members
    _lib = zlib
    _ERRORS = (zlib.error,)


class BadMember(InputGone):
    """A claim-check blob that is not a readable WARC response member: its HTML is as good as lost."""

    def __init__(self, detail: str) -> None:
        super().__init__("blob_corrupt", detail)


def faithful(headers: Mapping[str, str]) -> bool:
    """Whether the response record keeps what the fetcher decoded by: its Content-Type comes back
    as received. warcio percent-encodes non-ASCII header values, and a line break inside a value
    would split it; for such rare answers the fetch stage parks the HTML itself instead."""
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            return False
        if not value.isascii() and name.lower() == "content-type":
            return False
    return True


def charset_of(content_type: str | None) -> str | None:
    """The charset a Content-Type value declares, read as the fetcher reads it."""
    m = _CHARSET.search(content_type or "")
    return m.group(1) if m else None


def gunzip(member: bytes) -> bytes:
    """The content of exactly one complete gzip member, at most a capture's size; BadMember otherwise."""
    try:
        d = _lib.decompressobj(zlib.MAX_WBITS | 16)
        data = bytes(d.decompress(member, MAX_RECORD_BYTES))
    except _ERRORS as exc:
        raise BadMember(f"not a gzip member: {exc}") from None
    if d.unconsumed_tail:
        raise BadMember(f"the record is over {MAX_RECORD_BYTES} bytes")
    if not d.eof:
        raise BadMember("truncated gzip member")
    if d.unused_data:
        raise BadMember(f"{len(d.unused_data)} bytes after the gzip member")
    return data


def parse_member(member: bytes) -> Captured:
    """The HTTP response a WARC response record's gzip member holds (as `ArchiveWriter` writes it)."""
    record = gunzip(member)
    if not record.startswith(b"WARC/"):
        raise BadMember("not a WARC record")
    head_end = record.find(b"\r\n\r\n")
    if head_end < 0:
        raise BadMember("WARC headers do not end")
    warc = _fields(record[:head_end].decode("utf-8", "replace").split("\r\n")[1:])
    if warc.get("warc-type") != "response":
        raise BadMember(f"a {warc.get('warc-type') or 'untyped'} record, not a response")
    start = head_end + 4
    end = start + _length(warc.get("content-length"), "WARC Content-Length")  # the block's end
    if len(record) != end + 4 or not record.endswith(b"\r\n\r\n"):
        raise BadMember(f"record block is {len(record) - 4 - start} bytes, Content-Length says {end - start}")
    http_end = record.find(b"\r\n\r\n", start, end)
    if http_end < 0:
        raise BadMember("HTTP headers do not end")
    # warcio writes HTTP headers as ASCII (non-ASCII values percent-encoded): latin-1 reads any byte.
    lines = record[start:http_end].decode("latin-1").split("\r\n")
    proto, _, rest = lines[0].partition(" ")
    code = rest.split(" ", 1)[0]
    if not proto.startswith("HTTP/") or not (code.isascii() and code.isdigit()):
        raise BadMember(f"bad HTTP status line {lines[0][:80]!r}")
    headers = _headers(lines[1:])
    body = record[http_end + 4 : end]  # the one copy of the page
    # The writer appends the stored body's Content-Length last (originals are X-Archive-Orig-*).
    declared = next((v for k, v in reversed(headers) if k.lower() == "content-length"), None)
    if declared is not None and _length(declared, "HTTP Content-Length") != len(body):
        raise BadMember(f"body is {len(body)} bytes, Content-Length says {declared.strip()}")
    return Captured(
        url=warc.get("warc-target-uri", ""),
        date=warc.get("warc-date", ""),
        status=int(code),
        headers=headers,
        body=body,
        digest=warc.get("warc-payload-digest", ""),
    )


def html_of(captured: Captured) -> str:
    """The page's HTML as the fetcher decoded it (`FetchResult.html`): same body, same charset rule."""
    return decode_html(captured.body, charset_of(captured.header("Content-Type")))[0]


def html_of_member(member: bytes) -> str:
    """The claim check's HTML (the clean stage's read); BadMember if the member is unreadable."""
    return html_of(parse_member(member))


def _fields(lines: list[str]) -> dict[str, str]:
    """WARC named fields, by lower-cased name (the first of a repeated name)."""
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadMember(f"bad WARC header line {line[:80]!r}")
        out.setdefault(name.strip().lower(), value.strip())
    return out


def _headers(lines: list[str]) -> list[tuple[str, str]]:
    """HTTP header lines as (name, value), in order (no folded lines: `faithful` keeps them out)."""
    out: list[tuple[str, str]] = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise BadMember(f"bad HTTP header line {line[:80]!r}")
        out.append((name, value.strip()))
    return out


def _length(value: str | None, what: str) -> int:
    text = (value or "").strip()
    if not (text.isascii() and text.isdigit()):  # int() refuses some of what isdigit() takes ("²")
        raise BadMember(f"bad {what} {text[:40]!r}")
    return int(text)


__all__ = ["BadMember", "charset_of", "faithful", "gunzip", "html_of", "html_of_member", "parse_member"]
