"""crawl.source: one crawl of one source (beat sends these; `newsflow crawl` runs the same code inline).

Not an article stage: it has its own queue (`crawl`) and worker, reads the sources file at each
run (so an edited file takes effect at the next run), and enqueues `fetch.page` messages.
"""

from __future__ import annotations

from typing import Any

import requests

from config.settings import get_settings
from newsflow.crawl import CrawlContext, crawl_source
from newsflow.dispatch import queue_depth, send_first
from newsflow.fetcher import make_session
from newsflow.logs import get_logger
from newsflow.pipeline import CRAWL_TASK, FIRST
from newsflow.sources.config import SourcesFileError, load_sources, select, sources_path
from tasks.app import app
from tasks.base import process_stores

log = get_logger("newsflow.crawl")
_session: requests.Session | None = None


def session() -> requests.Session:
    global _session
    if _session is None:
        _session = make_session(get_settings())
    return _session


def crawl_context() -> CrawlContext:
    """What a crawl needs, wired to this process's Celery app and Redis."""
    return CrawlContext(
        settings=get_settings(),
        stores=process_stores(),
        session=session(),
        enqueue=lambda messages: send_first(app, messages),
        fetch_queue_depth=lambda: queue_depth(app, FIRST.queue),
    )


# Its time limits come from the settings through Celery's task annotations (tasks/celeryconfig.py).
@app.task(name=CRAWL_TASK, bind=True, acks_late=True, ignore_result=True)
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
