"""The index batcher's adaptive commit policy (newsflow/batcher.py): soon at a trickle, full
batches under load. Plain threads and a recording commit function; no index, no broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from newsflow.batcher import Batcher, Item


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, items: Sequence[Item]) -> None:
        self.batches.append([i.article_id for i in items])


def _submit_all(batcher: Batcher, ids: list[str], gap_s: float = 0.0) -> list[float]:
    """Submit each id from its own thread (as the index worker's threads do); their wait times."""
    waits: list[float] = [0.0] * len(ids)
    threads = []
    for n, aid in enumerate(ids):

        def run(n: int = n, aid: str = aid) -> None:
            t0 = time.monotonic()
            batcher.submit(aid, f"http://x/{aid}", timeout_s=10)
            waits[n] = time.monotonic() - t0

        t = threading.Thread(target=run)
        t.start()
        threads.append(t)
        if gap_s:
            time.sleep(gap_s)
    for t in threads:
        t.join(10)
    return waits


def test_at_a_trickle_each_article_is_committed_about_idle_s_after_it_came() -> None:
    rec = Recorder()
    batcher = Batcher(rec, batch_size=64, max_wait_s=2.0, idle_s=0.05)
    waits = _submit_all(batcher, ["a", "b", "c"], gap_s=0.3)
    assert rec.batches == [["a"], ["b"], ["c"]]
    assert max(waits) < 0.5  # not the 2 s a fixed wait would take


def test_a_burst_is_committed_as_full_batches() -> None:
    rec = Recorder()
    batcher = Batcher(rec, batch_size=10, max_wait_s=2.0, idle_s=0.2)
    ids = [f"i{n}" for n in range(30)]
    _submit_all(batcher, ids)
    assert sorted(a for b in rec.batches for a in b) == sorted(ids)
    assert len(rec.batches) <= 4 and max(len(b) for b in rec.batches) == 10


def test_a_steady_stream_waits_at_most_max_wait() -> None:
    rec = Recorder()
    batcher = Batcher(rec, batch_size=1000, max_wait_s=0.3, idle_s=0.2)
    waits = _submit_all(batcher, [f"s{n}" for n in range(20)], gap_s=0.05)  # never idle for 0.2 s
    assert len(rec.batches) >= 2 and max(waits) < 1.0
