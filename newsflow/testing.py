"""Test doubles shipped beside the code: in-memory stand-ins for the stores, for unit tests of decision
logic (the stage runner's fate rules, the index batch). Integration tests use the real `State` on a
real Redis; these only mimic what the decision logic reads and writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from config.defaults import Settings
from newsflow.pipeline import TERMINAL_STATES, Message, Stage, beyond
from newsflow.queues import Room
from newsflow.state import LedgerEntry


class MemoryPipe:
    """Collects a pipeline's writes; they take effect on `execute()`, all at once, like MULTI/EXEC."""

    def __init__(self) -> None:
        self.ops: list[Any] = []

    def execute(self) -> list[Any]:
        ops, self.ops = self.ops, []
        return [op() for op in ops]


@dataclass
class MemoryState:
    """The parts of `newsflow.state.State` that stages and the stage runner use, in memory."""

    settings: Settings = field(default_factory=Settings)
    blobs: dict[str, str | bytes] = field(default_factory=dict)  # HTML, or a WARC member (put_blob_member)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    dead: dict[str, dict[str, Any]] = field(default_factory=dict)
    transitions: list[tuple[str, str, str, str]] = field(default_factory=list)  # (id, state, stage, reason)
    retry_notes: list[tuple[str, str, str, int]] = field(default_factory=list)  # (id, stage, reason, attempt)
    sources: dict[str, int] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    down: bool = False  # True: every call raises redis.ConnectionError, as with Redis away
    full: bool = False  # what `room()` says: the Redis is at maxmemory
    marks: dict[str, str] = field(default_factory=dict)
    carried: list[tuple[Any, ...]] = field(default_factory=list)  # commit_unless_beyond's `also`

    def _check(self) -> None:
        if self.down:
            import redis

            raise redis.ConnectionError("Redis is down (MemoryState.down)")

    # claim check and documents
    def blob_key(self, article_id: str) -> str:
        return f"blob:{article_id}"

    def put_blob(self, article_id: str, data: str, pipe: MemoryPipe | None = None) -> str:
        key = self.blob_key(article_id)
        self._do(pipe, lambda: self.blobs.__setitem__(key, data))
        return key

    def put_blob_member(self, article_id: str, member: bytes, pipe: MemoryPipe | None = None) -> str:
        key = self.blob_key(article_id)
        self._do(pipe, lambda: self.blobs.__setitem__(key, member))
        return key

    def get_blob(self, key: str) -> str | None:
        self._check()
        blob = self.blobs.get(key)
        if isinstance(blob, bytes):  # read back as State reads it; BadMember (InputGone) if unreadable
            from newsflow.archive.claim import html_of_member

            return html_of_member(blob)
        return blob

    def blob_and_state(self, key: str, article_id: str) -> tuple[str | None, str | None]:
        entry = self.ledger(article_id)
        return self.get_blob(key), entry.state if entry else None

    def doc_and_state(self, article_id: str) -> tuple[dict[str, Any] | None, str | None]:
        entry = self.ledger(article_id)
        return self.get_doc(article_id), entry.state if entry else None

    def has_blob(self, key: str) -> bool:
        self._check()
        return key in self.blobs

    def delete_blob(self, key: str, pipe: MemoryPipe | None = None) -> None:
        self._do(pipe, lambda: self.blobs.pop(key, None))

    def put_doc(self, article_id: str, doc: Mapping[str, Any], pipe: MemoryPipe | None = None) -> None:
        self._do(pipe, lambda: self.docs.__setitem__(article_id, dict(doc)))

    def get_doc(self, article_id: str) -> dict[str, Any] | None:
        self._check()
        doc = self.docs.get(article_id)
        return None if doc is None else dict(doc)

    def get_docs(self, article_ids: list[str]) -> list[dict[str, Any] | None]:
        return [self.get_doc(a) for a in article_ids]

    def has_doc(self, article_id: str) -> bool:
        self._check()
        return article_id in self.docs

    def delete_doc(self, article_id: str, pipe: MemoryPipe | None = None) -> None:
        self._do(pipe, lambda: self.docs.pop(article_id, None))

    def release_indexed(self, article_id: str, pipe: MemoryPipe) -> None:
        self.clear_dead(article_id, pipe)

    def pipeline(self) -> MemoryPipe:
        self._check()
        return MemoryPipe()

    def commit_unless_beyond(
        self, pipe: MemoryPipe, article_id: str, stage: str, also: Sequence[Sequence[Any]] = ()
    ) -> str | None:
        self._check()
        entry = self.entries.get(article_id)
        if entry is not None and beyond(entry.state, stage):
            pipe.ops = []
            return entry.state
        pipe.execute()
        self.carried.extend(tuple(command) for command in also)  # the broker's commands: kept, not run
        return None

    # ledger
    def record(
        self,
        article_id: str,
        url: str,
        state: str,
        stage: str,
        *,
        reason: str = "",
        detail: str = "",
        worker: str = "",
        extra: Mapping[str, Any] | None = None,
        origin: str | None = None,
        pipe: MemoryPipe | None = None,
    ) -> None:
        def write() -> None:
            import json

            before = self.entries.get(article_id)
            kept = json.loads(origin) if origin else (before.origin if before else {})
            self.entries[article_id] = LedgerEntry(article_id, url, state, stage, reason, time.time(), kept)
            self.transitions.append((article_id, state, stage, reason))

        self._do(pipe, write)

    def ledger(self, article_id: str) -> LedgerEntry | None:
        self._check()
        return self.entries.get(article_id)

    def note_retry(
        self, article_id: str, stage: str, reason: str, detail: str, attempt: int, countdown_s: float, worker: str = ""
    ) -> None:
        self._check()
        self.retry_notes.append((article_id, stage, reason, attempt))

    def ledgers(self, article_ids: Iterable[str]) -> list[LedgerEntry | None]:
        return [self.ledger(a) for a in article_ids]

    def stuck(self, older_than_s: float, limit: int = 1000) -> list[LedgerEntry]:
        now = time.time()
        live = [e for e in self.entries.values() if e.state not in TERMINAL_STATES]
        return [e for e in live if now - e.updated_at >= older_than_s][:limit]

    # dead letters
    def dead_letter(
        self,
        article_id: str,
        url: str,
        stage: str,
        reason: str,
        detail: str,
        payload: Mapping[str, Any],
        worker: str = "",
        *,
        unless_beyond: bool = False,
    ) -> bool:
        self._check()
        entry = self.entries.get(article_id)
        if unless_beyond and entry is not None and beyond(entry.state, stage):
            return False
        self.dead[article_id] = {
            "article_id": article_id,
            "url": url,
            "stage": stage,
            "reason": reason,
            "detail": detail,
            "payload": dict(payload),
        }
        self.record(article_id, url, "dead", stage, reason=reason, detail=detail, worker=worker)
        return True

    def dead_letter_record(self, article_id: str) -> dict[str, Any] | None:
        return self.dead.get(article_id)

    def clear_dead(self, article_id: str, pipe: MemoryPipe | None = None) -> None:
        self._do(pipe, lambda: self.dead.pop(article_id, None))

    def count_attempt(self, stage: str, article_id: str) -> int:
        self._check()
        key = f"{stage}|{article_id}"
        self.attempts[key] = self.attempts.get(key, 0) + 1
        return self.attempts[key]

    def room(self) -> Room:
        self._check()
        return Room(self.full, 0)

    def reconcile_marks(self) -> dict[str, str]:
        self._check()
        return dict(self.marks)

    def set_reconcile_marks(self, marks: Mapping[str, str]) -> None:
        self._check()
        self.marks.update(marks)

    def count_source(self, source: str, state: str, sink: Any = None) -> None:
        key = f"{source}|{state}"
        self.sources[key] = self.sources.get(key, 0) + 1

    def _do(self, pipe: MemoryPipe | None, op: Any) -> None:
        self._check()
        if pipe is None:
            op()
        else:
            pipe.ops.append(op)


class Retried(Exception):
    """What `RecordingOutbox.retry` raises in place of Celery's Retry."""

    def __init__(self, payload: Any, countdown: float, counted: bool = True) -> None:
        super().__init__(countdown)
        self.payload, self.countdown, self.counted = payload, countdown, counted


@dataclass
class RecordingOutbox:
    """A `tasks.base.Outbox` that keeps what a stage sent, and raises `Retried` for a retry."""

    sent: list[tuple[str, Message]] = field(default_factory=list)

    def send(self, to: Stage, message: Message) -> None:
        self.sent.append((to.name, message))

    def retry(self, payload: Any, countdown: float, counted: bool = True) -> NoReturn:
        raise Retried(payload, countdown, counted)


class MemoryCounters:
    """A `newsflow.metrics.CounterSink` that keeps the counts in a dict."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], float] = {}

    def hincrby(self, name: str, key: str, amount: int = 1) -> None:
        self.counts[(name, key)] = self.counts.get((name, key), 0) + amount

    def hincrbyfloat(self, name: str, key: str, amount: float = 1.0) -> None:
        self.counts[(name, key)] = self.counts.get((name, key), 0) + amount

    def maybe_flush(self) -> None:
        pass

    def flush(self) -> None:
        pass


@dataclass
class MemoryStores:
    """What `newsflow.stores.Stores` gives the stage runner, in memory."""

    settings: Settings = field(default_factory=Settings)
    state: MemoryState = field(default_factory=MemoryState)
    counters: MemoryCounters = field(default_factory=MemoryCounters)
    connection_resets: int = 0

    def reset_connections(self) -> None:
        self.connection_resets += 1
