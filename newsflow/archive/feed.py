"""Sending captured pages on to clean, as a fetch would: parked in the claim-check store, the
ledger moved to `fetched`, a message to clean. Nothing is fetched.

Backpressure is the crawl's (newsflow.crawl.wait_for_room), on the queue these runs feed: sending
pauses while the clean queue holds more than `archive_max_clean_queue` messages, so a reprocess
or backfill of millions of pages holds at most that many parked pages in Redis at any time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from config.defaults import Settings
from newsflow.fetcher import FetchResult
from newsflow.pipeline import FIRST, Message
from newsflow.state import State

BACKPRESSURE_POLL_S = 0.5
CHUNK = 50  # pages parked and sent together (and one look at the clean queue's depth per chunk)
CHUNK_BYTES = 16 * 1024 * 1024  # ... or fewer, once they hold this much HTML


class Backpressure(Exception):
    """The clean queue stayed too deep for too long (are the clean workers running?)."""


def fetch_meta(page: FetchResult, capture: Mapping[str, Any] | None) -> dict[str, Any]:
    """What clean reads of a fetch (`Message.fetch`), and where the capture is."""
    meta: dict[str, Any] = {
        "final_url": page.final_url,
        "status": page.status,
        "etag": page.etag,
        "last_modified": page.last_modified,
        "fetched_at": page.fetched_at,
        "encoding": page.encoding,
        "bytes": page.n_bytes,
    }
    if capture:
        meta["capture"] = dict(capture)
    return meta


@dataclass
class Feeder:
    """Parks and sends in chunks: one Redis transaction for a chunk's pages and ledger entries, one
    producer for its messages, one look at the clean queue's depth, so a page costs a fraction of
    a round trip. A chunk holds at most CHUNK pages and CHUNK_BYTES of HTML in memory."""

    state: State
    settings: Settings
    send_clean: Callable[[list[Message]], None]  # sends a chunk over one producer
    clean_queue_depth: Callable[[], int]
    reason: str  # recorded with the `fetched` transition: reprocess or backfill
    # Ids among these that must not be sent (tombstoned articles, for backfill); None: send all.
    drop: Callable[[list[Message]], set[str]] | None = None
    keep_sent: bool = False  # remember (url, id, time) of each message sent, for --wait
    sleep: Callable[[float], None] = time.sleep
    sent: int = 0
    dropped: int = 0
    waited_s: float = 0.0
    sent_items: list[tuple[str, str, float]] = field(default_factory=list)
    _pending: list[tuple[Message, FetchResult, Mapping[str, Any] | None]] = field(default_factory=list, repr=False)
    _pending_bytes: int = field(default=0, repr=False)

    def feed(self, msg: Message, page: FetchResult, capture: Mapping[str, Any] | None) -> None:
        self._pending.append((msg, page, capture))
        self._pending_bytes += len(page.html)
        if len(self._pending) >= CHUNK or self._pending_bytes >= CHUNK_BYTES:
            self.flush()

    def flush(self) -> None:
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        if not batch:
            return
        self._wait_for_room()
        if self.drop is not None:
            gone = self.drop([m for m, _p, _c in batch])
            self.dropped += sum(1 for m, _p, _c in batch if m.id in gone)
            batch = [b for b in batch if b[0].id not in gone]
        now = time.time()
        pipe = self.state.pipeline()  # claim checks and ledger, all or none, as fetch does per page
        out: list[Message] = []
        for msg, page, capture in batch:
            key = self.state.put_blob(msg.id, page.html, pipe)
            self.state.record(
                msg.id, msg.url, "fetched", FIRST.name, reason=self.reason,
                extra={"bytes": page.n_bytes}, origin=msg.origin_json(), pipe=pipe,
            )  # fmt: skip
            out.append(msg.forward(blob=key, fetch=fetch_meta(page, capture)))
        pipe.execute()
        self.send_clean(out)
        self.sent += len(out)
        if self.keep_sent:
            self.sent_items.extend((m.url, m.id, now) for m in out)

    def _wait_for_room(self) -> None:
        started = time.monotonic()
        deadline = started + self.settings.crawl_backpressure_max_wait_s
        while self.clean_queue_depth() > self.settings.archive_max_clean_queue:
            if time.monotonic() >= deadline:
                raise Backpressure(
                    f"the clean queue stayed above {self.settings.archive_max_clean_queue} messages for "
                    f"{self.settings.crawl_backpressure_max_wait_s:g} s; are the clean workers running?"
                )
            self.sleep(BACKPRESSURE_POLL_S)
        self.waited_s += time.monotonic() - started
