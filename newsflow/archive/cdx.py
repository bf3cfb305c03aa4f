"""The CDX-style index beside each WARC file: one JSON line per captured response.

`<name>.warc.gz.cdxj` holds, per response record, its URL, WARC date, offset and length in the
file (the gzip member: seek there, read that many bytes, and one record comes out), payload digest,
HTTP status, MIME type and the article id. A line is appended only once its record is written
and flushed, so a line never points at a torn record; a torn last line (a killed writer) is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUFFIX = ".cdxj"
FIELDS = ("url", "date", "offset", "length", "digest", "status", "mime", "id")


def cdx_path(warc: str | Path) -> Path:
    return Path(f"{warc}{SUFFIX}")


def cdx_line(entry: dict[str, Any]) -> bytes:
    return (json.dumps({k: entry.get(k) for k in FIELDS}, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def read_cdx(path: str | Path) -> Iterator[dict[str, Any]]:
    """The entries of one index; a line that is not complete JSON (torn by a kill) is skipped."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                return  # the torn last line of a killed writer
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("offset"), int):
                yield entry


def lookup(path: str | Path, url: str) -> list[dict[str, Any]]:
    """Every capture of `url` in one file's index (newest last)."""
    return [e for e in read_cdx(path) if e.get("url") == url]
