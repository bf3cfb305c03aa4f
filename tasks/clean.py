"""clean.page: turn the parked HTML into an article document (main text and metadata)."""

from __future__ import annotations

from typing import Any

from newsflow.errors import InputGone, PermanentError
from newsflow.extract import extract_article
from tasks.base import Payload, StageContext, StageTask
from workers.app import app
from workers.settings import get_settings


def build_doc(payload: Payload, html: str, max_html_bytes: int, min_body_chars: int) -> dict[str, Any]:
    """The pure part: HTML and fetch metadata in, article document out."""
    if len(html.encode("utf-8", errors="ignore")) > max_html_bytes:
        raise PermanentError("too_large", f"HTML exceeds {max_html_bytes} bytes; not parsed")
    fetch = payload.get("fetch") or {}
    final_url = fetch.get("final_url") or payload["url"]
    article = extract_article(html, final_url, payload.get("hints"))
    if len(article.body) < min_body_chars:
        raise PermanentError("no_article", f"main text has {len(article.body)} characters (< {min_body_chars})")
    doc = article.to_dict()
    doc.update(
        {
            "id": payload["id"],
            "url": payload["url"],
            "final_url": final_url,
            "canonical_url": article.canonical_url,
            "fetched_at": fetch.get("fetched_at"),
            "http_status": fetch.get("status"),
            "etag": fetch.get("etag"),
            "last_modified": fetch.get("last_modified"),
        }
    )
    if payload.get("source"):
        doc["source_name"] = payload["source"]
    return doc


def handle(ctx: StageContext, payload: Payload) -> Payload | None:
    aid, key = payload["id"], payload.get("blob") or ""
    html = ctx.state.get_blob(key) if key else None
    if html is None:
        if ctx.state.get_doc(aid) is not None:
            return _next(payload)  # redelivered after the doc was written: nothing to redo
        raise InputGone("blob_missing", "raw HTML expired or was lost")
    doc = build_doc(payload, html, ctx.settings.clean_max_html_bytes, ctx.settings.clean_min_body_chars)
    pipe = ctx.state.pipeline()  # the document, the blob's release and the ledger: one round trip
    ctx.state.put_doc(aid, doc, pipe)
    ctx.state.delete_blob(key, pipe)
    ctx.state.record(aid, payload["url"], "cleaned", ctx.stage, worker=ctx.worker, pipe=pipe)
    pipe.execute()
    return _next(payload)


def _next(payload: Payload) -> Payload:
    return {k: v for k, v in payload.items() if k not in ("blob", "fetch", "hints")}


_settings = get_settings()


@app.task(
    name="clean.page",
    base=StageTask,
    bind=True,
    stage="clean",
    soft_time_limit=_settings.clean_time_limit_s,
    time_limit=_settings.clean_time_limit_s + 10,
)
def clean_task(self: StageTask, payload: Any) -> str:
    return self.run_stage(payload, handle)
