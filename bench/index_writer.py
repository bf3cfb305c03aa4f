"""How many clean workers one index writer keeps up with (issue #18, docs/scaling.md "The next limit").

    .venv/bin/python bench/index_writer.py [--articles 600] [--batch-size 64]

1. A private pipeline (tests/hostile/rig.py: own redis-server, real `celery worker` processes) runs
   fetch, clean and enrich with the index writer stopped, so every article waits, enriched, in the
   index queue; the clean worker's CPU per article is read from /proc.
2. Then one index writer is started on that backlog and timed from its first commit to its last:
   its drain rate is the most articles/s one writer can index, with the batch size given.
3. writer rate / one clean process's rate = the clean processes one writer keeps up with.

The rates are CPU-bound on a shared machine: the ratio is the figure to keep.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile.origin import FaultyOrigin  # noqa: E402
from tests.hostile.rig import Rig, children, temp_root  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its children, living and reaped."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / CLK_TCK  # utime stime cutime cstime
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--articles", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    fixtures = Path(os.environ.get("NEWSFLOW_FIXTURES_DIR") or ROOT / "tests" / "fixtures")
    with FaultyOrigin(fixtures / "extraction-benchmark" / "html") as origin, temp_root("bench-index") as root:
        env = {
            "NEWSFLOW_FETCH_ALLOW_PRIVATE": "1",
            "NEWSFLOW_POLITE_HOST_RATE_PER_S": "100000",
            "NEWSFLOW_POLITE_OBEY_ROBOTS": "0",
            "NEWSFLOW_WORKER_CONCURRENCY": "1",  # one clean process: its rate is the unit
            "NEWSFLOW_FETCH_CONCURRENCY": "8",
            "NEWSFLOW_INDEX_BATCH_SIZE": str(args.batch_size),
            "NEWSFLOW_CRAWL_BEAT": "0",
            "NEWSFLOW_LOG_LEVEL": "WARNING",
        }
        with Rig(root, env) as rig:
            index = rig.worker_proc("index")
            index.terminate()  # warm shutdown: from now on the enriched articles wait in the queue
            index.wait(60)
            clean = rig.worker_proc("clean")
            clean_cpu0 = cpu_s(clean.pid)
            ids = [s.article_id for s in rig.submit(origin.urls("idx", args.articles))]
            t0 = time.monotonic()
            while True:
                states = rig.count_states(ids)
                if states["enriched"] + states["dead"] >= len(ids):
                    break
                assert time.monotonic() - t0 < 1800, states
                time.sleep(1)
            upstream_s = time.monotonic() - t0
            clean_cpu = cpu_s(clean.pid) - clean_cpu0
            enriched = states["enriched"]
            rig.replace_worker("index")
            writer = rig.worker_proc("index")
            writer_cpu0 = cpu_s(writer.pid)
            done = rig.wait(ids, 900)
            writer_cpu = cpu_s(writer.pid) - writer_cpu0
            stamps = sorted(e.updated_at for e in rig.state.ledgers(ids) if e and e.state == "indexed")
            span = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
            writer_rate = (len(stamps) - 1) / span
            clean_rate_cpu = enriched / clean_cpu if clean_cpu else float("nan")
            print(f"articles={len(ids)} enriched={enriched} indexed={len(stamps)} terminal={len(done)}")
            print(f"upstream (fetch+clean+enrich, 1 clean process) {upstream_s:.1f} s = {len(ids) / upstream_s:.1f}/s")
            clean_ms = 1000 * clean_cpu / max(1, enriched)
            print(f"clean CPU {clean_ms:.1f} ms/article -> {clean_rate_cpu:.1f} articles/s per core")
            writer_ms = 1000 * writer_cpu / max(1, len(stamps))
            print(
                f"index writer (batch {args.batch_size}): {len(stamps)} in {span:.1f} s = "
                f"{writer_rate:.1f} articles/s, CPU {writer_ms:.1f} ms/article"
            )
            print(f"one index writer keeps up with {writer_rate / clean_rate_cpu:.1f} clean processes (at a core each)")


if __name__ == "__main__":
    main()
