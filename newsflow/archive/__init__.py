"""The WARC archive: every fetch kept as WARC 1.1, read back by offset, and other archives read in.

- `writer`: rolling, gzip-per-record WARC files of one process, a lock around appends (fetch stage)
- `claim`: the claim check of an archived page is its response record's gzip member (one compression)
- `cdx`: the CDX-style index (JSON lines) beside each file: URL, date, offset, length, digest
- `reader`: one capture read back by file, offset and length; whole files walked record by record
- `retention`: the archive's files, their totals (`newsflow archive stats`) and pruning
- `backfill`: pages out of any WARC file (CC-NEWS, another crawler's), counted by why not
- `feed`: parking a captured page in the claim-check store and sending it on to clean, with backpressure
- `reprocess`: which indexed articles to send through again, and what would change (--dry-run)

docs/archive.md describes the layout, the commands and what several hosts need.
"""

from newsflow.archive.reader import CaptureUnavailable, read_capture
from newsflow.archive.writer import ArchiveWriter, Capture

__all__ = ["ArchiveWriter", "Capture", "CaptureUnavailable", "read_capture"]
