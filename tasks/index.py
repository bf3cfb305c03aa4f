"""index.article: the single writer upserts article documents into the search index in batches.

Run exactly one index worker, on the threads pool with as many threads as the batch size
(`newsflow up` does): each thread holds one message until its batch is committed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from newsflow.batcher import Batcher, Item
from newsflow.errors import PermanentError, TransientError
from newsflow.searchindex import SearchIndex
from tasks.base import Payload, StageContext, StageTask, shared_state
from workers.app import app
from workers.settings import get_settings


def commit_batch(items: Sequence[Item]) -> None:
    """Read the documents, upsert them in one commit, then record each article as indexed."""
    settings, state = get_settings(), shared_state()
    docs = state.get_docs([i.article_id for i in items])
    ready: list[dict[str, Any]] = []
    for item, doc in zip(items, docs, strict=True):
        if doc is None:
            item.error = PermanentError(
                "doc_missing", "enriched document expired or was never stored; replay from fetch"
            )
        else:
            ready.append(doc)
    if ready:
        try:
            index().upsert_batch(ready, settings.index_writer_heap_bytes)
        except ValueError as exc:  # tantivy reports lock and I/O trouble as ValueError
            raise TransientError("index_unavailable", str(exc)) from exc
    pipe = state.r.pipeline(transaction=False)
    for doc in ready:
        # Keep the document until a redelivered message can no longer need it, then let it go.
        pipe.expire(state.key("doc", doc["id"]), settings.visibility_timeout_s)
        pipe.zrem(state.key("dead"), doc["id"])
        pipe.delete(state.key("dead", doc["id"]))
    pipe.execute()
    for item in items:
        if item.error is None:
            state.record(item.article_id, item.url, "indexed", "index")


@functools.cache
def index() -> SearchIndex:
    return SearchIndex(get_settings().index_dir)


@functools.cache
def batcher() -> Batcher:
    s = get_settings()
    return Batcher(commit_batch, s.index_batch_size, s.index_batch_max_wait_s)


def handle(ctx: StageContext, payload: Payload) -> Payload | None:
    timeout = ctx.settings.index_batch_max_wait_s + 120
    try:
        batcher().submit(payload["id"], payload["url"], timeout)
    except TimeoutError as exc:
        raise TransientError("index_timeout", str(exc)) from exc
    return None


@app.task(name="index.article", base=StageTask, bind=True, stage="index")
def index_task(self: StageTask, payload: Any) -> str:
    return self.run_stage(payload, handle)
