"""What one forward costs its stage: `newsflow.dispatch.send` beside Celery's `send_task`.

Run from the project root: `.venv/bin/python bench/publish.py [--messages N] [--rounds R] [--json]`

Every article is published three times on its way (fetch -> clean -> enrich -> index), so the CPU a
publish costs is paid three times per article by the stage workers. Both ways publish the same task
message (tests/test_dispatch.py checks they are equal) to a private redis-server on a free port:
- `send_task`: `Celery.send_task` with a producer taken from the app's pool for each message (what
  `send` did before; a stage forwarding from inside a task has no producer at hand);
- `send`: newsflow's own (a producer kept per thread, the message built by Celery's `as_task_v2`).
CPU is this process's (time.process_time) per message; the two alternate within each round, and the
figure is the median over the rounds. Run idle, and with `--background-load 1` for a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import loadavg  # noqa: E402
from pipeline import background_load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000, help="messages per way per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--background-load", type=float, default=0.0, metavar="CORES")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from workers.runtime import PrivateRedis, free_port

    with tempfile.TemporaryDirectory(prefix="nf-bench-publish-") as tmp:
        server = PrivateRedis(free_port(), Path(tmp) / "redis")
        server.start()
        try:
            os.environ.update({"NEWSFLOW_REDIS_URL": server.url, "NEWSFLOW_STATE_REDIS_URL": ""})
            with background_load(args.background_load):
                res = measure(args.messages, args.rounds, server.url)
        finally:
            server.stop()
    res["background_load"] = args.background_load
    if args.json:
        print(json.dumps(res))
        return
    print(f"machine  {os.cpu_count()} cores, load {res['load']}; background load {args.background_load:g} cores")
    for way in ("send_task", "send"):
        ms = res[way]
        print(f"{way:10s} {statistics.median(ms) * 1000:6.1f} us CPU per message (rounds: {_us(ms)})")
    print(f"ratio send / send_task CPU: {res['ratio']:.2f}; saved per article (3 publishes): {res['saved_ms']:.2f} ms")


def measure(n: int, rounds: int, url: str) -> dict[str, Any]:
    import redis

    from newsflow import dispatch
    from newsflow.pipeline import Message, stage
    from tasks.app import app

    to = stage("clean")
    msg = Message.new("https://news.example/2026/11/30/a-story", "ab" * 16, source="wire")
    fetched = {"status": 200, "final_url": msg.url, "fetched_at": "2026-11-30T09:00:00Z"}
    msg = msg.forward(blob="nf:blob:ab", fetch=fetched)
    ways = {
        "send_task": lambda: dispatch._send_task(app, to, msg, None, None, None),
        "send": lambda: dispatch.send(app, to, msg),
    }
    client = redis.Redis.from_url(url)
    spent: dict[str, list[float]] = {way: [] for way in ways}
    for fn in ways.values():  # warm: connections made, queue declared
        for _ in range(200):
            fn()
    load = loadavg()
    for r in range(rounds):
        order = list(ways) if r % 2 == 0 else list(reversed(ways))
        for way in order:
            fn = ways[way]
            t = time.process_time()
            for _ in range(n):
                fn()
            spent[way].append((time.process_time() - t) / n * 1000)
            client.delete(to.queue)
    old, new = statistics.median(spent["send_task"]), statistics.median(spent["send"])
    return {"load": load, "messages": n, "rounds": rounds, **spent, "ratio": new / old, "saved_ms": 3 * (old - new)}


def _us(ms: list[float]) -> str:
    return ", ".join(f"{m * 1000:.0f}" for m in ms)


if __name__ == "__main__":
    main()
