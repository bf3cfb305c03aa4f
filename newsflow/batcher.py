"""Group single-document index requests into one commit.

Tantivy allows one writer and a commit is costly, so the index worker runs many threads, each
holding one message; each thread hands its article to the batcher and waits until the batch that
holds it is committed. Only then does the thread return and Celery acknowledge the message:
nothing is acked before it is durable in the index.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Item:
    article_id: str
    url: str
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


CommitFn = Callable[[Sequence[Item]], None]


class Batcher:
    """Collects items and commits them in batches, adapting to the load.

    A batch is committed when it holds `batch_size` items, or when no new item has come for
    `idle_s` (the burst is over: nobody gains from waiting longer), or `max_wait_s` after its
    first item, whichever comes first. At a trickle an article is searchable about `idle_s` after
    it arrives; under load items keep coming, batches fill, and a commit's fixed cost is shared.
    """

    def __init__(self, commit: CommitFn, batch_size: int, max_wait_s: float, idle_s: float | None = None) -> None:
        self._commit = commit
        self.batch_size = max(1, batch_size)
        self.max_wait_s = max_wait_s
        self.idle_s = max_wait_s if idle_s is None else min(idle_s, max_wait_s)
        self._cond = threading.Condition()
        self._pending: list[Item] = []
        self._thread = threading.Thread(target=self._loop, name="index-batcher", daemon=True)
        self._thread.start()

    def put(self, item: Item) -> None:
        """Add `item` to the next batch and return at once; `item.done` is set once its batch was
        handed to the commit function (which decides each item's fate)."""
        with self._cond:
            self._pending.append(item)
            if len(self._pending) == 1 or len(self._pending) >= self.batch_size:
                self._cond.notify_all()  # a batch starts, or is full: else the loop's timed wait will do

    def submit(self, article_id: str, url: str, timeout_s: float) -> None:
        """Block until the item is committed; re-raise the error its batch met."""
        item = Item(article_id, url)
        self.put(item)
        if not item.done.wait(timeout_s):
            raise TimeoutError(f"index batch not committed within {timeout_s} s")
        if item.error is not None:
            raise item.error

    def _take_batch(self) -> list[Item]:
        with self._cond:
            while not self._pending:
                self._cond.wait()
            deadline = time.monotonic() + self.max_wait_s
            while len(self._pending) < self.batch_size:
                before = len(self._pending)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, self.idle_s))
                if len(self._pending) == before:
                    break  # nothing came for idle_s: commit what there is
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            try:
                self._commit(batch)
            except BaseException as exc:  # every waiter must learn its fate, whatever happened
                for item in batch:
                    item.error = item.error or exc
            finally:
                for item in batch:
                    item.done.set()
