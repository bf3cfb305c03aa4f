"""A stale delivery never moves the ledger backwards, even when it read its input before the
article moved on (issue #14 §6: a worker frozen past the visibility timeout, then resumed).

Each test runs a real stage handler against a real Redis and, at the moment the stale copy is
"frozen" (after it read its input and state, before its final write), lets the redelivered copy
finish the article: the ledger says `indexed`. The stale copy's final write must then be refused
as a whole (State.commit_unless_beyond): no ledger change, no document, nothing forwarded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from newsflow.errors import PermanentError
from newsflow.fetcher import FetchResult
from newsflow.pipeline import Message, stage
from newsflow.stores import Stores
from newsflow.testing import RecordingOutbox
from tasks import clean, enrich, fetch
from tasks.base import StageContext, run_stage
from tests.conftest import suite_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def stores(redis_url: str) -> Iterator[Stores]:
    settings = suite_settings(redis_url=redis_url, key_prefix=f"stale-{uuid.uuid4().hex[:8]}:")
    made = Stores.from_settings(settings)
    yield made
    made.reset_connections()


def _ctx(stores: Stores, name: str) -> StageContext:
    return StageContext(stage(name), stores.settings, stores, "stale@host", "task-stale")


def _message(stores: Stores, state: str) -> Message:
    msg = Message.new(f"http://127.0.0.1:9/{uuid.uuid4().hex}.html", uuid.uuid4().hex)
    stores.state.record(msg.id, msg.url, state, "test")
    return msg


def _finish_meanwhile(stores: Stores, msg: Message) -> None:
    """What the redelivered copy did while the stale one was frozen: it indexed the article."""
    stores.state.record(msg.id, msg.url, "indexed", "index")


def _assert_untouched(stores: Stores, msg: Message) -> None:
    entry = stores.state.ledger(msg.id)
    assert entry is not None and entry.state == "indexed"
    assert entry.stage == "index" and stores.state.trace(msg.id)[-1]["state"] == "indexed"
    assert stores.state.dead_letter_record(msg.id) is None


def test_clean_frozen_after_reading_its_input_writes_nothing(stores: Stores, monkeypatch: Any, seed_html: str) -> None:
    msg = _message(stores, "fetched")
    key = stores.state.put_blob(msg.id, seed_html)
    real = clean.build_doc

    def frozen(*args: Any, **kwargs: Any) -> dict[str, Any]:
        doc = real(*args, **kwargs)
        _finish_meanwhile(stores, msg)
        return doc

    monkeypatch.setattr(clean, "build_doc", frozen)
    assert clean.handle(_ctx(stores, "clean"), msg.forward(blob=key)) is None  # superseded: nothing forwarded
    _assert_untouched(stores, msg)
    assert stores.state.get_doc(msg.id) is None  # its document was not written either: all or none


def test_enrich_frozen_after_reading_its_input_writes_nothing(stores: Stores, monkeypatch: Any) -> None:
    msg = _message(stores, "cleaned")
    stores.state.put_doc(msg.id, {"id": msg.id, "body": "Words of an article. " * 40, "title": "t"})
    real = enrich.enrich_article

    def frozen(doc: dict[str, Any]) -> dict[str, Any]:
        out = real(doc)
        _finish_meanwhile(stores, msg)
        return out

    monkeypatch.setattr(enrich, "enrich_article", frozen)
    assert enrich.handle(_ctx(stores, "enrich"), msg) is None
    _assert_untouched(stores, msg)
    doc = stores.state.get_doc(msg.id)
    assert doc is not None and "keywords" not in doc  # the enriched document was not written


def test_fetch_frozen_after_downloading_writes_nothing(stores: Stores, monkeypatch: Any) -> None:
    msg = _message(stores, "discovered")

    def frozen(url: str, *args: Any) -> FetchResult:
        _finish_meanwhile(stores, msg)
        html = "<html><p>x</p></html>"
        return FetchResult(url, url, 200, html, "text/html", "utf-8", len(html), None, None, "2026-11-29T00:00:00Z")

    monkeypatch.setattr(fetch, "fetch_page", frozen)
    # Not archived: the page is made up, and the session's archive is other tests' to read back.
    monkeypatch.setattr(fetch, "archive", lambda: None)
    assert fetch.handle(_ctx(stores, "fetch"), msg) is None
    _assert_untouched(stores, msg)
    assert not stores.state.has_blob(stores.state.blob_key(msg.id))


def test_a_late_failure_of_a_stale_copy_is_not_dead_lettered(stores: Stores) -> None:
    msg = _message(stores, "fetched")

    def fails_after_the_article_moved_on(ctx: StageContext, m: Message) -> None:
        _finish_meanwhile(stores, msg)  # between the handler's read and its failure
        raise PermanentError("no_article", "main text too short")

    outbox = RecordingOutbox()
    outcome = run_stage(_ctx(stores, "clean"), msg.to_wire(), fails_after_the_article_moved_on, 0, outbox)
    assert outcome == "superseded" and outbox.sent == []
    _assert_untouched(stores, msg)


def test_a_current_copy_still_writes(stores: Stores, seed_html: str) -> None:
    msg = _message(stores, "fetched")
    key = stores.state.put_blob(msg.id, seed_html)
    nxt = clean.handle(_ctx(stores, "clean"), msg.forward(blob=key))
    assert nxt is not None
    entry = stores.state.ledger(msg.id)
    assert entry is not None and entry.state == "cleaned"
    assert stores.state.get_doc(msg.id) is not None and stores.state.get_blob(key) is None
