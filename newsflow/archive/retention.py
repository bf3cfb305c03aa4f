"""The archive's files: what is there (`newsflow archive stats`) and what goes (retention).

Retention removes whole files, oldest first (names sort by time), with their index: first those
older than the age limit, then as many as it takes to get under the size limit. A file modified
within the last roll interval may still be written by some worker (on this host or another one
sharing the volume) and is never removed, so the size limit is a soft one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsflow.archive.cdx import SUFFIX as CDX_SUFFIX
from newsflow.archive.cdx import cdx_path, read_cdx
from newsflow.archive.writer import PREFIX, SUFFIX


@dataclass(frozen=True)
class WarcFile:
    name: str
    path: Path
    size: int
    mtime: float
    host: str
    pid: str


def parse_name(name: str) -> tuple[str, str, str] | None:
    """(time stamp, host, pid) of one of our file names, None for any other file."""
    if not (name.startswith(PREFIX + "-") and name.endswith(SUFFIX)):
        return None
    parts = name[len(PREFIX) + 1 : -len(SUFFIX)].split("-")
    if len(parts) < 4:
        return None
    return parts[0], "-".join(parts[1:-2]), parts[-2]


def list_files(directory: str | Path) -> list[WarcFile]:
    """The archive's WARC files, oldest first."""
    root = Path(directory)
    out: list[WarcFile] = []
    if not root.is_dir():
        return out
    for path in root.iterdir():
        parsed = parse_name(path.name)
        if parsed is None:
            continue
        try:
            st = path.stat()
        except FileNotFoundError:  # pruned meanwhile by another host
            continue
        out.append(WarcFile(path.name, path, st.st_size, st.st_mtime, parsed[1], parsed[2]))
    return sorted(out, key=lambda f: f.name)


def stats(directory: str | Path, count_captures: bool = True) -> dict[str, Any]:
    files = list_files(directory)
    total = sum(f.size for f in files)
    index_bytes = sum(_size(cdx_path(f.path)) for f in files)
    captures = sum(1 for f in files for _ in read_cdx(cdx_path(f.path))) if count_captures else None
    hosts: dict[str, int] = {}
    for f in files:
        hosts[f.host] = hosts.get(f.host, 0) + 1
    return {
        "dir": str(directory),
        "files": len(files),
        "bytes": total,
        "index_bytes": index_bytes,
        "captures": captures,
        "oldest": files[0].name if files else None,
        "newest": files[-1].name if files else None,
        "oldest_age_days": round((time.time() - files[0].mtime) / 86400, 2) if files else None,
        "files_per_host": hosts,
    }


def prune(
    directory: str | Path,
    *,
    max_bytes: int = 0,
    max_age_s: float = 0.0,
    busy_s: float = 3600.0,
    dry_run: bool = False,
    now: float | None = None,
) -> list[str]:
    """Remove the oldest files beyond the age and size limits (0: no limit); returns their names."""
    now = time.time() if now is None else now
    files = list_files(directory)
    total = sum(f.size for f in files)
    removed: list[str] = []
    for f in files:  # oldest first
        if now - f.mtime < busy_s:
            continue  # may still be written
        too_old = max_age_s > 0 and now - f.mtime > max_age_s
        too_big = max_bytes > 0 and total > max_bytes
        if not (too_old or too_big):
            continue
        if not dry_run:
            with contextlib.suppress(FileNotFoundError):  # another host's prune got there first
                f.path.unlink()
            with contextlib.suppress(FileNotFoundError):
                cdx_path(f.path).unlink()
        total -= f.size
        removed.append(f.name)
    return removed


def iter_index(directory: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, index entry) of every capture in the archive, oldest file first."""
    for f in list_files(directory):
        for entry in read_cdx(cdx_path(f.path)):
            yield f.name, entry


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


__all__ = ["CDX_SUFFIX", "WarcFile", "iter_index", "list_files", "prune", "stats"]
