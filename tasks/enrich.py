"""enrich.article: add what is known about the article beyond its text."""

from __future__ import annotations

from typing import Any

from celery import signals

from newsflow.enrich import enrich_article, warm_up
from newsflow.errors import InputGone
from newsflow.pipeline import Message, beyond
from tasks.app import app
from tasks.base import StageContext, StageTask, commit, stage_task, superseded


def handle(ctx: StageContext, msg: Message) -> Message | None:
    aid = msg.id
    doc, now = ctx.state.doc_and_state(aid)
    if beyond(now, ctx.stage.name):
        return superseded(ctx, msg, now)  # a stale copy: a later one took the article further
    if doc is None:
        raise InputGone("doc_missing", "cleaned document expired or was lost")
    doc.update(enrich_article(doc))
    doc["cluster_id"] = ctx.stores.clusters.assign(aid, doc.get("body") or "")
    pipe = ctx.state.pipeline()  # document and ledger in one round trip
    ctx.state.put_doc(aid, doc, pipe)
    ctx.state.record(aid, msg.url, "enriched", ctx.stage.name, worker=ctx.worker, pipe=pipe)
    return commit(ctx, pipe, msg, msg.forward())


@app.task(**stage_task("enrich"))
def enrich_task(self: StageTask, payload: Any) -> str:
    return self.run_stage(payload, handle)


@signals.celeryd_after_setup.connect
def _warm_up_models(sender: str, instance: Any, **_: Any) -> None:
    """Load models once in the enrich worker's main process; prefork children share them."""
    if "enrich" in instance.app.amqp.queues.consume_from:
        warm_up()
