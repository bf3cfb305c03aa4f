"""Where the workers' time goes: py-spy raw stacks (bench/pipeline.py --profile DIR) by category.

Usage: .venv/bin/python bench/profile_summary.py DIR
Each sample is put in the first category (in the order below) whose marker is on its stack.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (category, markers): a marker is a function name as py-spy prints it.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("pure: fetch_page", ("fetch_page",)),
    ("pure: extract (build_doc)", ("build_doc",)),
    ("pure: enrich_article", ("enrich_article",)),
    ("pure: assign_cluster", ("assign_cluster",)),
    ("pure: index upsert", ("upsert_batch",)),
    ("claim-check + docs (state)", ("put_blob", "get_blob", "put_doc", "get_doc", "get_docs", "delete_blob")),
    ("ledger record", ("record",)),
    ("stage handler: Redis reads, pipelined writes, other", ("handle",)),
    ("metrics", ("_observe", "observe_stage", "count_source", "CounterBuffer.flush", "CounterBuffer._run")),
    ("politeness gate", ("polite_gate",)),
    ("forward (publish next)", ("forward",)),
    ("logging", ("_proxy_to_logger", "emit", "ProcessorFormatter.format", "info", "warning")),
    ("celery: task events", ("EventDispatcher.send", "EventDispatcher._publish", "send_event")),
    ("celery: trace/ack", ("trace_task", "fast_trace_task")),
    (
        "celery: prefork IPC",
        (
            "_write_job",
            "send_job",
            "Connection._send",
            "_recv",
            "on_result_readable",
            "_SimpleQueue",
            "Worker.workloop",
            "ResultHandler",
        ),
    ),
    (
        "celery: consume (kombu)",
        (
            "on_readable",
            "_brpop_read",
            "_deliver",
            "basic_consume",
            "Hub.create_loop",
            "asynloop",
            "on_task_received",
            "task_message_handler",
        ),
    ),
]


def categorize(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        names = {frame.split(" (")[0].rsplit(".", 1)[-1] for frame in stack.split(";")}
        full = {frame.split(" (")[0] for frame in stack.split(";")}
        for cat, markers in CATEGORIES:
            if any(m in names or m in full for m in markers):
                counts[cat] += int(n)
                break
        else:
            counts["other"] += int(n)
    return counts


def main(argv: list[str]) -> int:
    total: Counter[str] = Counter()
    for path in sorted(Path(argv[0]).glob("*.txt")):
        c = categorize(path)
        total += c
        n = sum(c.values()) or 1
        print(f"{path.name}: {sum(c.values())} samples")
        for cat, v in c.most_common():
            print(f"  {100 * v / n:5.1f}%  {cat}")
    n = sum(total.values()) or 1
    print(f"all workers: {n} samples")
    for cat, v in total.most_common():
        print(f"  {100 * v / n:5.1f}%  {cat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
