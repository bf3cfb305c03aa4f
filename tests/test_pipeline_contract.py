"""The pipeline's contract (newsflow.pipeline): the stage table, the message, where an article re-enters.

The unit tests pin the derived tables and the message's moves. The integration tests send through
a real Redis broker (a database of their own, with no workers on it) and read what lands in the
queue: an article resumed by the reconciler, replayed from its dead letter, or fetched anew after
its input was lost keeps its source, hints and rate.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from newsflow import pipeline
from newsflow.pipeline import FIRST, STAGES, BadMessage, Message, reentry, resume_from
from tests.conftest import TEST_ENV, run_cli

ORIGIN = {"source": "wire", "hints": {"language": "de", "title": "Feed title"}, "rate_per_s": 0.25}


def _article(n: int = 1) -> Message:
    return Message.new(f"https://news.example/story-{n}", f"{n:032x}", **ORIGIN)  # type: ignore[arg-type]


def test_everything_is_derived_from_the_stage_table() -> None:
    assert pipeline.ORDER == ("fetch", "clean", "enrich", "index")
    assert pipeline.STATES == ("discovered", "fetched", "cleaned", "enriched", "indexed", "dead")
    routes = pipeline.task_routes()
    assert {s.task: routes[s.task]["queue"] for s in STAGES} == {s.task: s.queue for s in STAGES}
    assert routes[pipeline.CRAWL_TASK] == routes[pipeline.RECONCILE_TASK] == {"queue": pipeline.CRAWL_QUEUE}
    assert [resume_from(st).name for st in ("discovered", "fetched", "cleaned", "enriched")] == list(pipeline.ORDER)
    assert pipeline.stage_after("indexed") is None and pipeline.stage_after("dead") is None
    assert [pipeline.state_before(s) for s in pipeline.ORDER] == ["discovered", "fetched", "cleaned", "enriched"]
    assert pipeline.reached("enriched", "clean") and not pipeline.reached("cleaned", "enrich")
    assert not pipeline.reached("dead", "fetch") and not pipeline.reached(None, "fetch")
    assert pipeline.beyond("indexed", "clean") and not pipeline.beyond("cleaned", "clean")
    assert not pipeline.beyond("dead", "fetch") and not pipeline.beyond(None, "index")


def test_every_stage_task_is_registered_under_its_name() -> None:
    from config.settings import get_settings
    from tasks.app import app

    app.loader.import_default_modules()
    for s in STAGES:
        assert app.tasks[s.task].stage == s.name
    settings = get_settings()  # the CPU-bound stages are cut off by their soft limits, from the settings
    assert app.tasks["clean.page"].soft_time_limit == settings.clean_time_limit_s
    assert app.tasks["enrich.article"].soft_time_limit == settings.enrich_time_limit_s


def test_the_message_round_trips_and_keeps_its_origin_on_every_move() -> None:
    msg = _article()
    assert Message.from_wire(json.loads(json.dumps(msg.to_wire()))) == msg
    to_clean = msg.forward(blob="k", fetch={"status": 200, "final_url": msg.url})
    assert to_clean.blob == "k" and to_clean.fetch is not None
    to_enrich = to_clean.forward()
    assert to_enrich.blob is None and to_enrich.fetch is None
    for moved in (to_clean, to_enrich, to_enrich.restart("enrich"), to_clean.restart("fetch"), to_enrich.refetch()):
        assert moved.origin() == {**ORIGIN, "submitted_at": moved.submitted_at}, moved
    assert to_enrich.refetch().refetched and to_enrich.refetch().submitted_at == msg.submitted_at
    assert to_clean.restart("fetch").blob is None and to_clean.restart("clean").blob == "k"
    assert Message.from_origin(msg.id, msg.url, msg.origin()).origin() == msg.origin()


@pytest.mark.parametrize(
    "payload",
    [[], {"v": 2, "id": "a", "url": "u"}, {"v": 1, "id": "", "url": "u"}, {"v": 1, "id": "a", "url": 5},
     {"v": 1, "id": "a", "url": "u", "fetch": []}, {"v": 1, "id": "a", "url": "u", "slot_ms": 1.5},
     {"v": 1, "id": "a" * 200, "url": "u"}, {"v": 1, "id": "a", "url": "u", "enqueued_at": 1e400}],
)  # fmt: skip
def test_malformed_messages_are_refused(payload: Any) -> None:
    with pytest.raises(BadMessage):
        Message.from_wire(payload)


def test_an_origin_from_an_older_writer_does_not_stop_a_restart() -> None:
    msg = Message.from_origin("a" * 32, "https://x.example/", {"hints": "not a mapping", "source": "s"})
    assert msg.url == "https://x.example/" and msg.hints is None


class Probe:
    def __init__(self, blobs: set[str] = frozenset(), docs: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.blobs, self.docs = blobs, docs

    def has_blob(self, key: str) -> bool:
        return key in self.blobs

    def has_doc(self, article_id: str) -> bool:
        return article_id in self.docs


def test_reentry_is_the_stage_itself_while_its_input_is_stored_else_fetch() -> None:
    msg = _article()
    with_blob = msg.forward(blob="k", fetch={"status": 200})
    assert reentry("fetch", msg, Probe()).name == "fetch"
    assert reentry("clean", with_blob, Probe(blobs={"k"})).name == "clean"
    assert reentry("clean", with_blob, Probe()).name == "fetch"  # the raw HTML expired
    assert reentry("clean", msg, Probe(blobs={"k"})).name == "fetch"  # no claim check in the message
    for s in ("enrich", "index"):
        assert reentry(s, msg, Probe(docs={msg.id})).name == s
        assert reentry(s, msg, Probe()).name == "fetch"


def test_lost_input_fate() -> None:
    msg = _article()
    assert pipeline.on_lost_input("enrich", "enriched", msg) == "skip"
    assert pipeline.on_lost_input("enrich", "cleaned", msg) == "refetch"
    assert pipeline.on_lost_input("enrich", "dead", msg) == "refetch"
    assert pipeline.on_lost_input("enrich", None, msg.refetch()) == "dead"


# --- integration: what lands in the broker's queue --------------------------------------------------


@pytest.fixture
def lane(redis_url: str) -> Iterator[dict[str, Any]]:
    """A broker and state database of its own (no worker consumes it), emptied before and after."""
    from celery import Celery

    from config.settings import load_settings
    from newsflow.state import connect
    from newsflow.stores import Stores
    from tasks.celeryconfig import celery_config

    env = {**TEST_ENV, "NEWSFLOW_REDIS_URL": re.sub(r"/\d+$", "/11", redis_url)}
    settings = load_settings({**os.environ, **env})
    raw = connect(settings.redis_url)
    raw.flushdb()
    app = Celery("contract-test")
    app.conf.update(celery_config(settings))
    try:
        yield {"env": env, "settings": settings, "app": app, "stores": Stores(raw, settings), "raw": raw}
    finally:
        raw.flushdb()


def _queued(raw: Any, queue: str) -> list[dict[str, Any]]:
    from newsflow.queues import payload_of

    return [p for p in (payload_of(json.loads(m)) for m in raw.lrange(queue, 0, -1)) if p is not None]


def _has_origin(payload: dict[str, Any]) -> bool:
    return all(payload.get(k) == v for k, v in ORIGIN.items())


@pytest.mark.integration
def test_a_reconciled_article_keeps_source_hints_and_rate(lane: dict[str, Any]) -> None:
    from newsflow.reconcile import reconcile

    state = lane["stores"].state
    lost_at_fetch, lost_at_enrich = _article(1), _article(2)
    for msg in (lost_at_fetch, lost_at_enrich):
        state.record(msg.id, msg.url, "discovered", "crawl", origin=msg.origin_json())
    state.record(lost_at_enrich.id, lost_at_enrich.url, "cleaned", "clean")  # the origin stays in the ledger
    state.put_doc(lost_at_enrich.id, {"id": lost_at_enrich.id})
    resumed = reconcile(lane["app"], state, 0)
    want = [(lost_at_fetch.id, "fetch"), (lost_at_enrich.id, "enrich")]
    assert sorted((r.article_id, r.stage) for r in resumed) == want
    [to_fetch] = _queued(lane["raw"], "fetch")
    [to_enrich] = _queued(lane["raw"], "enrich")
    assert to_fetch["id"] == lost_at_fetch.id and _has_origin(to_fetch)
    assert to_enrich["id"] == lost_at_enrich.id and _has_origin(to_enrich)


@pytest.mark.integration
def test_a_replayed_article_keeps_source_hints_and_rate(lane: dict[str, Any]) -> None:
    """`newsflow deadletters replay`: at the failed stage while its input is stored, else at fetch."""
    state = lane["stores"].state
    kept, expired = _article(3), _article(4)
    key = state.put_blob(kept.id, "<html>stored</html>")
    for msg, blob in ((kept, key), (expired, state.blob_key(expired.id))):
        dead_at_clean = msg.forward(blob=blob, fetch={"status": 200, "final_url": msg.url}).to_wire()
        state.dead_letter(msg.id, msg.url, "clean", "no_article", "too short", dead_at_clean)
    proc = run_cli("deadletters", "replay", "--all", "--json", env=lane["env"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    where = {r["article_id"]: r["replay_stage"] for r in json.loads(proc.stdout)}
    assert where == {kept.id: "clean", expired.id: "fetch"}
    [to_clean] = _queued(lane["raw"], "clean")
    [to_fetch] = _queued(lane["raw"], "fetch")
    assert to_clean["id"] == kept.id and _has_origin(to_clean) and to_clean["blob"] == key
    assert to_fetch["id"] == expired.id and _has_origin(to_fetch) and "blob" not in to_fetch


@pytest.mark.integration
def test_a_refetched_article_keeps_source_hints_and_rate(lane: dict[str, Any]) -> None:
    """The stage runner meets lost input (a Redis restart took the document): it fetches anew, once."""
    from newsflow.errors import InputGone
    from newsflow.pipeline import stage
    from tasks.base import StageContext, run_stage

    class Outbox:
        def send(self, to: Any, message: Message) -> None:
            from newsflow.dispatch import send

            send(lane["app"], to, message)

        def retry(self, payload: Any, countdown: float, counted: bool = True) -> Any:
            raise AssertionError("no retry expected")

    def lost(ctx: Any, m: Message) -> None:
        raise InputGone("doc_missing", "the document was lost")

    msg = _article(5)
    ctx = StageContext(stage("enrich"), lane["settings"], lane["stores"], "w@h", "t")
    assert run_stage(ctx, msg.forward().to_wire(), lost, 0, Outbox()) == "refetch"
    [to_fetch] = _queued(lane["raw"], FIRST.queue)
    assert to_fetch["id"] == msg.id and to_fetch["refetched"] is True and _has_origin(to_fetch)


@pytest.mark.integration
def test_an_article_the_reconciler_keeps_resuming_becomes_poison(lane: dict[str, Any]) -> None:
    """Its worker dies or hangs every time (a hard time limit leaves no dead letter): after
    max_resumes resumes it is dead-lettered `poison`, not sent round forever."""
    from newsflow.reconcile import reconcile

    state = lane["stores"].state
    msg = _article(6)
    state.record(msg.id, msg.url, "discovered", "crawl", origin=msg.origin_json())
    stages, sent = [], 0
    for _ in range(3):
        stages.append([r.stage for r in reconcile(lane["app"], state, 0, max_resumes=2)])
        if _queued(lane["raw"], "fetch"):  # while its message waits, it is late, not lost: left alone
            assert reconcile(lane["app"], state, 0, max_resumes=2) == []
        sent += len(_queued(lane["raw"], "fetch"))
        lane["raw"].delete("fetch")  # popped by a worker killed before it recorded the message: lost
    assert stages == [["fetch"], ["fetch"], ["dead"]]
    letter = state.dead_letter_record(msg.id)
    assert letter is not None and letter["reason"] == "poison" and letter["payload"]["source"] == "wire"
    assert sent == 2  # two resumes, then no more messages
