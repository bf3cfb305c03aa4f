"""crawl.source: one crawl of one source (beat sends these; `newsflow crawl` runs the same code inline).

Not an article stage: it has its own queue (`crawl`) and worker, reads the sources file at each
run (so an edited file takes effect at the next run), and enqueues `fetch.page` messages.
"""

from __future__ import annotations

import functools
from typing import Any

import requests

from newsflow.crawl import CrawlContext, crawl_source
from newsflow.fetcher import make_session
from newsflow.sources.config import SourcesFileError, load_sources, select, sources_path
from tasks import topology
from tasks.base import shared_state
from workers.app import app
from workers.client import queue_depth, send_first_stage
from workers.logging import get_logger
from workers.settings import get_settings

log = get_logger("newsflow.crawl")
_settings = get_settings()


@functools.cache
def session() -> requests.Session:
    return make_session(get_settings())


def crawl_context() -> CrawlContext:
    """What a crawl needs, wired to this process's Celery app and Redis."""
    first_queue = topology.queue_of(topology.FIRST_STAGE)
    return CrawlContext(
        settings=get_settings(),
        state=shared_state(),
        session=session(),
        enqueue=lambda payloads: send_first_stage(app, payloads),
        fetch_queue_depth=lambda: queue_depth(app, first_queue),
    )


@app.task(
    name=topology.CRAWL_TASK,
    bind=True,
    acks_late=True,
    ignore_result=True,
    # A crawl waits on backpressure at most `crawl_backpressure_max_wait_s`; stay under the visibility timeout.
    soft_time_limit=_settings.crawl_time_limit_s,
    time_limit=_settings.crawl_time_limit_s + 30,
)
def crawl_task(self: Any, name: str, sources_file: str | None = None, refresh: bool = False) -> dict[str, Any]:
    settings = get_settings()
    path = sources_path(settings, sources_file)
    try:
        [source] = select(load_sources(path, settings), [name], all_enabled=False)
    except SourcesFileError as exc:
        log.error("crawl_done", source=name, status="failed", reason="sources_file", detail=str(exc))
        return {"source": name, "status": "failed", "reason": "sources_file", "detail": str(exc)}
    report = crawl_source(source, crawl_context(), refresh=refresh)
    summary = report.to_dict()
    level = log.warning if report.status == "failed" else log.info
    level("crawl_done", **{k: v for k, v in summary.items() if k != "source"}, source=name, task_id=self.request.id)
    return summary
