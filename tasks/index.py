"""index.article: the single writer upserts article documents into the search index in batches.

Run exactly one index worker, on the threads pool with as many threads as the batch size
(`newsflow up` does): each thread holds one message until its batch is committed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from newsflow.batcher import Batcher, Item
from newsflow.errors import InputGone, PermanentError, TransientError
from newsflow.search import SchemaMismatch, SearchIndex
from newsflow.search.schema import site_of
from newsflow.search.tombstones import Tombstones, site_of_url
from tasks.base import Payload, StageContext, StageTask, shared_state
from workers.app import app
from workers.logging import get_logger
from workers.settings import get_settings

log = get_logger("newsflow.index")


def commit_batch(items: Sequence[Item]) -> None:
    """Read the documents, upsert them in one commit, then record each article as indexed.

    Tombstoned articles (`newsflow purge`, by id or by site) are deleted instead of written and
    recorded dead with reason `purged`: a takedown outlives any later crawl or redelivery.
    """
    settings, state = get_settings(), shared_state()
    ids = [i.article_id for i in items]
    docs = state.get_docs(ids)
    sites = [site_of(doc) if doc else site_of_url(item.url) for item, doc in zip(items, docs, strict=True)]
    purged = tombstones().dead_among(ids, sites)
    ready: list[dict[str, Any]] = []
    for item, doc in zip(items, docs, strict=True):
        if item.article_id in purged:
            continue
        if doc is None:
            item.error = InputGone("doc_missing", "enriched document expired or was lost")
        else:
            ready.append(doc)
    rejected: dict[str, str] = {}
    if ready or purged:
        try:
            index().upsert_batch(ready, settings.index_writer_heap_bytes, delete_ids=sorted(purged), rejected=rejected)
        except ValueError as exc:  # tantivy reports lock and I/O trouble as ValueError
            raise TransientError("index_unavailable", str(exc)) from exc
        except SchemaMismatch as exc:  # waits (with retries) for `newsflow reindex`
            raise TransientError("index_schema_mismatch", str(exc)) from exc
        except Exception as exc:  # the commit itself failed (disk, I/O): the whole batch retries
            log.exception("index_commit_failed", batch=len(ready))
            raise TransientError("index_error", f"{type(exc).__name__}: {exc}") from exc
    for item in items:
        if item.article_id in rejected:
            item.error = PermanentError("index_rejected", rejected[item.article_id])
            log.error("index_rejected", article_id=item.article_id, url=item.url, error=rejected[item.article_id])
    ready = [doc for doc in ready if doc["id"] not in rejected]
    pipe = state.r.pipeline(transaction=False)
    for doc in ready:
        # Keep the document until a redelivered message can no longer need it, then let it go.
        pipe.expire(state.key("doc", doc["id"]), settings.visibility_timeout_s)
        pipe.zrem(state.key("dead"), doc["id"])
        pipe.delete(state.key("dead", doc["id"]))
    for aid in purged:
        pipe.delete(state.key("doc", aid))
    for item in items:  # the ledger joins the same round trip: one per batch, not one per article
        if item.article_id in purged:
            state.record(item.article_id, item.url, "dead", "index", reason="purged", detail="tombstoned", pipe=pipe)
        elif item.error is None:
            state.record(item.article_id, item.url, "indexed", "index", pipe=pipe)
    pipe.execute()


@functools.cache
def tombstones() -> Tombstones:
    state = shared_state()
    return Tombstones(state.r, get_settings().key_prefix)


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
