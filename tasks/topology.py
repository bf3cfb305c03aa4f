"""What follows what: the one place the pipeline's shape is written down.

Task and queue names are a wire protocol shared by every worker and client: renaming one is a
breaking change for messages already queued.
"""

from __future__ import annotations

from typing import Any

# Stage → (task name, queue), in pipeline order.
STAGES: dict[str, tuple[str, str]] = {
    "fetch": ("fetch.page", "fetch"),
    "clean": ("clean.page", "clean"),
    "enrich": ("enrich.article", "enrich"),
    "index": ("index.article", "index"),
}
ORDER: tuple[str, ...] = tuple(STAGES)
# Message schema version every stage accepts; bump it when a payload's meaning changes.
PAYLOAD_VERSION = 1
FIRST_STAGE = ORDER[0]
# Not an article stage: a crawl reads one source and feeds the first stage (docs/crawling.md).
CRAWL_TASK, CRAWL_QUEUE = "crawl.source", "crawl"
# Housekeeping (resuming articles whose message was lost) rides the light crawl queue.
RECONCILE_TASK = "maintenance.reconcile"


def next_stage(stage: str) -> str | None:
    i = ORDER.index(stage)
    return ORDER[i + 1] if i + 1 < len(ORDER) else None


def task_name(stage: str) -> str:
    return STAGES[stage][0]


def queue_of(stage: str) -> str:
    return STAGES[stage][1]


def task_routes() -> dict[str, dict[str, Any]]:
    routes = {name: {"queue": queue} for name, queue in STAGES.values()}
    routes[CRAWL_TASK] = {"queue": CRAWL_QUEUE}
    routes[RECONCILE_TASK] = {"queue": CRAWL_QUEUE}
    return routes


def task_modules() -> list[str]:
    """Modules that define the stage tasks (one per stage), the crawl and the maintenance tasks."""
    return [*(f"tasks.{stage}" for stage in ORDER), "tasks.crawl", "tasks.maintenance"]
