"""maintenance.reconcile: resume articles whose message a killed worker took with it.

Beat runs it every `reconcile_interval_s` on the light crawl queue; `newsflow reconcile` runs the
same sweep by hand.
"""

from __future__ import annotations

from typing import Any

from config.settings import get_settings
from newsflow.logs import get_logger
from newsflow.pipeline import RECONCILE_TASK
from newsflow.reconcile import reconcile
from tasks.app import app
from tasks.base import process_stores

log = get_logger("newsflow.reconcile")


@app.task(name=RECONCILE_TASK, bind=True, ignore_result=True)
def reconcile_task(self: Any) -> int:
    settings = get_settings()
    resumed = reconcile(app, process_stores().state, settings.reconcile_after_s, max_resumes=settings.max_retries)
    for r in resumed:
        log.warning(
            "article_resumed", article_id=r.article_id, url=r.url, state=r.state, stage=r.stage, idle_s=r.idle_s
        )
    return len(resumed)
