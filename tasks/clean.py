"""clean.page: turn the parked HTML into an article document (main text and metadata)."""

from __future__ import annotations

import contextlib
import importlib
from functools import cache
from typing import Any

from celery import signals

from newsflow.domains import trusted_canonical
from newsflow.drift import Observation, drift_key
from newsflow.errors import InputGone, PermanentError
from newsflow.extract import extract_article
from newsflow.extract.article import MAX_ELEMENTS
from newsflow.extract.body import PREFERRED as PREFERRED_BODY
from newsflow.extract.options import DEFAULT_OPTIONS, ExtractOptions
from newsflow.extract.warm import WARM_UP_HTML, warm_caches
from newsflow.pipeline import Message, beyond
from newsflow.search.tombstones import site_of_url
from tasks.app import app
from tasks.base import StageContext, StageTask, commit, stage_task, superseded


@cache
def extract_options(disable: str) -> ExtractOptions:
    """The extraction options with the steps named in `clean_extract_disable` switched off."""
    options = DEFAULT_OPTIONS
    for name in (n.strip() for n in disable.split(",")):
        if name:
            try:
                options = options.without(name)
            except ValueError as exc:
                raise PermanentError("bad_settings", f"NEWSFLOW_CLEAN_EXTRACT_DISABLE: {exc}") from None
    return options


def build_doc(
    msg: Message,
    html: str,
    max_html_bytes: int,
    min_body_chars: int,
    options: ExtractOptions = DEFAULT_OPTIONS,
    max_elements: int = MAX_ELEMENTS,
) -> dict[str, Any]:
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
    article = extract_article(html, final_url, dict(msg.hints) if msg.hints else None, options, max_elements)
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
    if isinstance(fetch.get("capture"), dict):
        doc["capture"] = fetch["capture"]  # where the page is archived: kept by the index (reprocess)
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
    s = ctx.settings
    options = extract_options(s.clean_extract_disable)
    try:
        doc = build_doc(msg, html, s.clean_max_html_bytes, s.clean_min_body_chars, options, s.clean_max_elements)
    except PermanentError as exc:
        if exc.reason == "no_article":  # a template change often shows first as pages with no article
            ctx.stores.drift.observe(_drift_key(msg), Observation(no_article=True))
        raise
    pipe = ctx.state.pipeline()  # the document, the blob's release and the ledger: one round trip
    ctx.state.put_doc(aid, doc, pipe)
    ctx.stores.drift.observe(_drift_key(msg), Observation.of_article(doc, _fallback_body(doc)), pipe)
    ctx.state.delete_blob(key, pipe)
    ctx.state.record(aid, msg.url, "cleaned", ctx.stage.name, worker=ctx.worker, pipe=pipe)
    return commit(ctx, pipe, msg, msg.forward())


def _drift_key(msg: Message) -> str:
    """The drift watch follows a configured source, else the site the page was fetched from."""
    fetch = msg.fetch or {}
    return drift_key(msg.source, site_of_url(fetch.get("final_url") or msg.url))


def _fallback_body(doc: dict[str, Any]) -> bool:
    """Whether the body came from the fallback candidate rather than the preferred one."""
    method = (doc.get("provenance") or {}).get("body") or ""
    return bool(method) and method != PREFERRED_BODY


# Its time limits come from the settings through Celery's task annotations (tasks/celeryconfig.py).
@app.task(**stage_task("clean"))
def clean_task(self: StageTask, payload: Any) -> str:
    return self.run_stage(payload, handle)


def warm_up() -> None:
    """Everything the clean stage builds on first use: one page extracted into a document (rules
    compiled, the public suffix list parsed), the caches that page does not reach, the claim-check
    reader. The worker runs it at start; bench/pipeline.py's loop runs it too, to warm up alike."""
    warm = Message.new("https://warm-up.invalid/", "0" * 32).forward(blob="-", fetch={"status": 200})
    build_doc(warm, WARM_UP_HTML, 1 << 20, 0)
    warm_caches()  # what the page does not reach: month names of every locale
    trusted_canonical("https://www.example.com/a", "https://news.example.org/a")  # loads the suffix list
    importlib.import_module("newsflow.archive.claim")  # reads archived pages' claim checks (warcio)


@signals.celeryd_after_setup.connect
def _warm_up_extractor(sender: str, instance: Any, **_: Any) -> None:
    """Warm up in the clean worker's main process before its pool starts: the first page costs some
    100-500 ms more otherwise, paid once here and shared by the prefork children instead of by each
    child's first articles."""
    if "clean" in instance.app.amqp.queues.consume_from:
        with contextlib.suppress(Exception):  # a warm-up must never keep the worker from starting
            warm_up()
