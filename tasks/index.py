"""index.article: the single writer upserts article documents into the search index in batches.

Run exactly one index worker (`newsflow up` does). Its messages are consumed as batches
(tasks/batch.py): the task's execution strategy buffers each message, one commit takes the batch,
then each message gets its fate and its ack. The worker's prefetch (threads x prefetch multiplier)
is the most a batch can hold: `newsflow up` gives it `index_batch_size`.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Sequence
from typing import Any

from config.settings import get_settings
from newsflow.batcher import Batcher, Item
from newsflow.errors import InputGone, PermanentError, TransientError
from newsflow.logs import get_logger
from newsflow.pipeline import Message
from newsflow.search import IndexBackend, IndexUnavailable, SchemaMismatch, open_index
from newsflow.search.tombstones import site_of_url, takedown_sites
from tasks.app import app
from tasks.base import StageContext, StageTask, process_stores, stage_task

log = get_logger("newsflow.index")


# A full disk under the index is not a bug, and not over in seconds: it waits for an operator (or
# a log rotation) to free space. Each retry waits this long instead of the normal 2-4-8-16-32 s
# schedule (dead within a minute): with max_retries 5 the batch keeps trying for some 10 minutes,
# then is dead-lettered `disk_full`, to replay once there is room. 120 s stays well below the
# runner's cap (half the visibility timeout, and retry_backoff_max_s), so it is used as it is.
DISK_FULL_RETRY_S = 120.0
_ENOSPC_TEXTS = ("no space left on device", f"os error {errno.ENOSPC})", "storagefull")


def _disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, is ENOSPC (tantivy reports OS errors as
    ValueError text, which newsflow.search wraps in IndexUnavailable)."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; a bound, not a loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if any(t in str(seen).lower() for t in _ENOSPC_TEXTS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def commit_batch(items: Sequence[Item]) -> None:
    """Read the documents, upsert them in one commit, then record each article as indexed.

    Tombstoned articles (`newsflow purge`, by id or by site) are deleted instead of written and
    recorded dead with reason `purged`: a takedown outlives any later crawl or redelivery.
    """
    settings, stores = get_settings(), process_stores()
    state = stores.state
    ids = [i.article_id for i in items]
    docs = state.get_docs(ids)
    # Takedowns by what was fetched (the requested and final hosts), never by the page's own claims.
    sites = [takedown_sites(doc) if doc else [site_of_url(item.url)] for item, doc in zip(items, docs, strict=True)]
    purged = stores.tombstones.dead_among(ids, sites)
    by_id: dict[str, dict[str, Any]] = {}  # an article delivered twice in one batch is written once
    for item, doc in zip(items, docs, strict=True):
        if item.article_id in purged:
            continue
        if doc is None:
            item.error = InputGone("doc_missing", "enriched document expired or was lost")
        else:
            by_id[item.article_id] = doc
    ready = list(by_id.values())
    rejected: dict[str, str] = {}
    if ready or purged:
        try:
            index().upsert_batch(ready, settings.index_writer_heap_bytes, delete_ids=sorted(purged), rejected=rejected)
        except SchemaMismatch as exc:  # waits (with retries) for `newsflow reindex`
            raise TransientError("index_schema_mismatch", str(exc)) from exc
        except Exception as exc:
            if _disk_full(exc):  # OSError(ENOSPC), or tantivy's ValueError carrying its text
                log.error("index_disk_full", batch=len(ready), error=str(exc)[:300])
                raise TransientError("disk_full", str(exc)[:300], retry_after_s=DISK_FULL_RETRY_S) from exc
            if isinstance(exc, IndexUnavailable):  # the writer lock is held, or the index could not be written
                raise TransientError("index_unavailable", str(exc)) from exc
            # the commit itself failed (other I/O trouble): the whole batch retries
            log.exception("index_commit_failed", batch=len(ready))
            raise TransientError("index_error", f"{type(exc).__name__}: {exc}") from exc
    for item in items:
        if item.article_id in rejected:
            item.error = PermanentError("index_rejected", rejected[item.article_id])
            log.error("index_rejected", article_id=item.article_id, url=item.url, error=rejected[item.article_id])
    ready = [doc for doc in ready if doc["id"] not in rejected]
    pipe = state.pipeline()
    for doc in ready:
        state.release_indexed(doc["id"], pipe)
    for aid in purged:
        state.delete_doc(aid, pipe)
    recorded: set[str] = set()
    for item in items:  # the ledger joins the same round trip: one per batch, not one per article
        if item.article_id in recorded:
            continue
        recorded.add(item.article_id)
        if item.article_id in purged:
            state.record(item.article_id, item.url, "dead", "index", reason="purged", detail="tombstoned", pipe=pipe)
        elif item.error is None:
            state.record(item.article_id, item.url, "indexed", "index", pipe=pipe)
    pipe.execute()


_index: IndexBackend | None = None
_batcher: Batcher | None = None
_made = threading.Lock()  # the worker's threads must share one writer and one batcher


def index() -> IndexBackend:
    """The index writer of this process (the one index worker), opened on first use."""
    global _index
    with _made:
        if _index is None:
            _index = open_index(get_settings())
        return _index


def batcher() -> Batcher:
    global _batcher
    with _made:
        if _batcher is None:
            s = get_settings()
            _batcher = Batcher(commit_batch, s.index_batch_size, s.index_batch_max_wait_s, s.index_batch_idle_s)
        return _batcher


def handle(ctx: StageContext, msg: Message) -> Message | None:
    timeout = ctx.settings.index_batch_max_wait_s + ctx.settings.index_commit_wait_s
    try:
        batcher().submit(msg.id, msg.url, timeout)
    except TimeoutError as exc:
        raise TransientError("index_timeout", str(exc)) from exc
    return None


# A worker consumes it through tasks/batch.py's strategy (a batch per commit); called any other way
# (a direct call, a test), one message waits for its batch in `handle`.
@app.task(**stage_task("index"), Strategy="tasks.batch:strategy", batch_commit="tasks.index:commit_batch")
def index_task(self: StageTask, payload: Any) -> str:
    return self.run_stage(payload, handle)
