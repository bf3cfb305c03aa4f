"""clean.page: turn the parked HTML into an article document (main text and metadata)."""

from __future__ import annotations

from typing import Any

from newsflow.domains import trusted_canonical
from newsflow.errors import InputGone, PermanentError
from newsflow.extract import extract_article
from newsflow.pipeline import Message, beyond
from tasks.app import app
from tasks.base import StageContext, StageTask, stage_task, superseded


def build_doc(msg: Message, html: str, max_html_bytes: int, min_body_chars: int) -> dict[str, Any]:
    """The pure part: HTML and fetch metadata in, article document out.

    Who the article is rests on what was fetched: `url` (requested) and `final_url` (after
    redirects). The page's declared canonical URL becomes `canonical_url` only on the final URL's
    own host or registrable domain; on any other domain it is kept as `canonical_claimed`, a claim
    nothing looks up, files or takes down by (newsflow.domains.trusted_canonical).
    """
    if len(html.encode("utf-8", errors="ignore")) > max_html_bytes:
        raise PermanentError("too_large", f"HTML exceeds {max_html_bytes} bytes; not parsed")
    fetch = msg.fetch or {}
    final_url = fetch.get("final_url") or msg.url
    article = extract_article(html, final_url, dict(msg.hints) if msg.hints else None)
    if len(article.body) < min_body_chars:
        raise PermanentError("no_article", f"main text has {len(article.body)} characters (< {min_body_chars})")
    doc = article.to_dict()
    canonical = trusted_canonical(article.canonical_url, final_url)
    doc.update(
        {
            "id": msg.id,
            "url": msg.url,
            "final_url": final_url,
            "canonical_url": canonical,
            "canonical_claimed": article.canonical_url if article.canonical_url and not canonical else None,
            "fetched_at": fetch.get("fetched_at"),
            "http_status": fetch.get("status"),
            "etag": fetch.get("etag"),
            "last_modified": fetch.get("last_modified"),
        }
    )
    if msg.source:
        doc["source_name"] = msg.source
    return doc


def handle(ctx: StageContext, msg: Message) -> Message | None:
    aid, key = msg.id, msg.blob or ""
    html, now = ctx.state.blob_and_state(key, aid) if key else (None, None)
    if beyond(now, ctx.stage.name):
        return superseded(ctx, msg, now)  # a stale copy: a later one took the article further
    if html is None:
        if ctx.state.has_doc(aid):
            return msg.forward()  # redelivered after the doc was written: nothing to redo
        raise InputGone("blob_missing", "raw HTML expired or was lost")
    doc = build_doc(msg, html, ctx.settings.clean_max_html_bytes, ctx.settings.clean_min_body_chars)
    pipe = ctx.state.pipeline()  # the document, the blob's release and the ledger: one round trip
    ctx.state.put_doc(aid, doc, pipe)
    ctx.state.delete_blob(key, pipe)
    ctx.state.record(aid, msg.url, "cleaned", ctx.stage.name, worker=ctx.worker, pipe=pipe)
    pipe.execute()
    return msg.forward()


# Its time limits come from the settings through Celery's task annotations (tasks/celeryconfig.py).
@app.task(**stage_task("clean"))
def clean_task(self: StageTask, payload: Any) -> str:
    return self.run_stage(payload, handle)
