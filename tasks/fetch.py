"""fetch.page: download one page and park its HTML in the claim-check store."""

from __future__ import annotations

import functools
from typing import Any

import requests

from newsflow.fetcher import NotModified, fetch_page, make_session
from tasks.base import Payload, StageContext, StageTask
from workers.app import app
from workers.settings import get_settings


@functools.cache
def session() -> requests.Session:
    """One HTTP session per worker process: connections are reused across tasks."""
    return make_session(get_settings())


def handle(ctx: StageContext, payload: Payload) -> Payload | None:
    try:
        result = fetch_page(payload["url"], ctx.settings, session())
    except NotModified:
        ctx.state.record(payload["id"], payload["url"], "indexed", ctx.stage, reason="not_modified", worker=ctx.worker)
        return None
    key = ctx.state.put_blob(payload["id"], result.html)
    ctx.state.record(
        payload["id"], payload["url"], "fetched", ctx.stage, worker=ctx.worker, extra={"bytes": result.n_bytes}
    )
    fetch_meta = {
        "final_url": result.final_url,
        "status": result.status,
        "etag": result.etag,
        "last_modified": result.last_modified,
        "fetched_at": result.fetched_at,
        "encoding": result.encoding,
        "bytes": result.n_bytes,
    }
    return {**payload, "blob": key, "fetch": fetch_meta}


@app.task(name="fetch.page", base=StageTask, bind=True, stage="fetch")
def fetch_task(self: StageTask, payload: Any) -> str:
    return self.run_stage(payload, handle)
