"""Every branch of the stage runner's fate rules (tasks.base.run_stage), against in-memory stores.

Fast unit tests of the decision logic only: the integration suites run the same code in real
workers against a real Redis.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded

import tasks.base
from config.defaults import Settings
from newsflow.errors import InputGone, PermanentError, TransientError
from newsflow.pipeline import FIRST, Message, stage
from newsflow.testing import MemoryState, MemoryStores, Retried
from newsflow.testing import RecordingOutbox as Outbox
from tasks.base import INFRA_WAITS_MAX, StageContext, run_stage, stalled

SETTINGS = Settings(max_retries=2, retry_backoff_base_s=1.0, retry_backoff_max_s=30.0, visibility_timeout_s=40)


def _msg() -> Message:
    return Message.new("https://news.example/a", "a" * 32, source="wire", hints={"language": "de"}, rate_per_s=0.5)


def _run(stage_name: str, handler: Any, payload: Any = None, attempt: int = 0, stores: MemoryStores | None = None):
    stores = stores or MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    ctx = StageContext(stage(stage_name), SETTINGS, stores, "w1@host", "task-1")  # type: ignore[arg-type]
    outbox = Outbox()
    wire = _msg().to_wire() if payload is None else payload
    outcome = run_stage(ctx, wire, handler, attempt, outbox)
    return outcome, outbox, stores


def test_a_result_goes_to_the_next_stage() -> None:
    outcome, outbox, _ = _run("enrich", lambda ctx, m: m.forward())
    assert outcome == "ok"
    assert [(to, m.id) for to, m in outbox.sent] == [("index", "a" * 32)]
    assert outbox.sent[0][1].origin()["source"] == "wire"  # the origin rides along


def test_the_last_stage_sends_nothing_and_is_ok() -> None:
    outcome, outbox, _ = _run("index", lambda ctx, m: None)
    assert outcome == "ok" and outbox.sent == []


def test_no_result_before_the_last_stage_is_a_skip() -> None:
    outcome, outbox, _ = _run("fetch", lambda ctx, m: None)
    assert outcome == "skipped" and outbox.sent == []


@pytest.mark.parametrize(
    "payload",
    [
        "not a dict",
        {"v": 99, "id": "x", "url": "https://a/"},
        {"v": 1, "url": "https://a/"},
        {"v": 1, "id": "x", "url": "https://a/", "hints": "not a mapping"},
        {"v": 1, "id": "x", "url": "https://a/", "submitted_at": float("nan")},
        {"v": 1, "id": "x", "url": "https://a/", "rate_per_s": True},
    ],
)
def test_a_malformed_message_is_dead_lettered_bad_payload(payload: Any) -> None:
    outcome, outbox, stores = _run("clean", lambda ctx, m: pytest.fail("handler must not run"), payload)
    assert outcome == "dead" and outbox.sent == []
    [letter] = stores.state.dead.values()
    assert letter["reason"] == "bad_payload" and letter["stage"] == "clean"


def test_a_transient_error_retries_with_capped_backoff() -> None:
    def fail(ctx: Any, m: Message) -> None:
        raise TransientError("timeout", "read timed out")

    with pytest.raises(Retried) as caught:
        _run("fetch", fail, attempt=1)
    assert 0 < caught.value.countdown <= min(SETTINGS.retry_backoff_max_s, SETTINGS.visibility_timeout_s / 2)
    assert caught.value.payload["id"] == "a" * 32


def test_a_retry_is_noted_for_trace_and_a_failing_note_costs_only_the_note() -> None:
    def fail(ctx: Any, m: Message) -> None:
        raise TransientError("http_429", "slow down")

    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    with pytest.raises(Retried):
        _run("fetch", fail, attempt=1, stores=stores)
    assert stores.state.retry_notes == [("a" * 32, "fetch", "http_429", 2)]  # the second start's failure

    class Refusing(MemoryState):
        def note_retry(self, *args: Any, **kwargs: Any) -> None:
            raise redis.exceptions.OutOfMemoryError("full")

    refusing = MemoryStores(settings=SETTINGS, state=Refusing(settings=SETTINGS))
    with pytest.raises(Retried):  # the retry still goes out
        _run("fetch", fail, stores=refusing)


def test_retry_after_from_the_server_sets_the_countdown() -> None:
    def fail(ctx: Any, m: Message) -> None:
        raise TransientError("http_429", "slow down", retry_after_s=7)

    with pytest.raises(Retried) as caught:
        _run("fetch", fail)
    assert 7 <= caught.value.countdown <= 8


def test_a_transient_error_past_max_retries_is_dead_with_its_reason() -> None:
    def fail(ctx: Any, m: Message) -> None:
        raise TransientError("timeout", "read timed out")

    outcome, _, stores = _run("fetch", fail, attempt=SETTINGS.max_retries)
    assert outcome == "dead"
    assert stores.state.dead["a" * 32]["reason"] == "timeout"
    assert "gave up after 3 attempts" in stores.state.dead["a" * 32]["detail"]


@pytest.mark.parametrize(
    ("exc", "reason"),
    [(redis.ConnectionError("gone"), "redis_unavailable"), (redis.exceptions.OutOfMemoryError("full"), "redis_full")],
)
def test_redis_trouble_is_transient(exc: Exception, reason: str) -> None:
    def fail(ctx: Any, m: Message) -> None:
        raise exc

    with pytest.raises(Retried) as first:
        _run("clean", fail)
    # Waiting for newsflow's own Redis is not the article's failure: not counted, even at the last retry.
    assert not first.value.counted and first.value.payload["waits"] == 1
    with pytest.raises(Retried) as last:
        _run("clean", fail, attempt=SETTINGS.max_retries)
    assert not last.value.counted
    # ... up to INFRA_WAITS_MAX waits; then it counts like any transient error.
    worn = {**_msg().to_wire(), "waits": INFRA_WAITS_MAX}
    outcome, _, stores = _run("clean", fail, payload=worn, attempt=SETTINGS.max_retries)
    assert outcome == "dead" and stores.state.dead["a" * 32]["reason"] == reason


def test_a_locked_index_is_waited_for_without_using_up_retries() -> None:
    """Another writer holds the index (the index worker of an `up` killed with SIGKILL, still
    finishing): the article waits for it, even past its last retry (a batch of them died before)."""

    def locked(ctx: Any, m: Message) -> None:
        raise TransientError("index_unavailable", "Failed to acquire Lockfile: LockBusy")

    with pytest.raises(Retried) as last:
        _run("index", locked, attempt=SETTINGS.max_retries)
    assert not last.value.counted and last.value.payload["waits"] == 1


def test_infrastructure_waits_back_off_on_their_own_count() -> None:
    def fail(ctx: Any, m: Message) -> None:
        raise redis.ConnectionError("Connection refused")

    countdowns = []
    for waits in (0, 3, 6):
        with pytest.raises(Retried) as info:
            _run("enrich", fail, payload={**_msg().to_wire(), "waits": waits} if waits else None)
        assert info.value.payload["waits"] == waits + 1
        countdowns.append(info.value.countdown)
    assert countdowns[0] <= 2 * SETTINGS.retry_backoff_base_s < countdowns[1] < countdowns[2]


def test_a_permanent_error_is_dead_at_once() -> None:
    def fail(ctx: Any, m: Message) -> None:
        raise PermanentError("http_404", "not found")

    outcome, outbox, stores = _run("fetch", fail)
    assert outcome == "dead" and outbox.sent == []
    assert stores.state.ledger("a" * 32).state == "dead"  # type: ignore[union-attr]
    assert stores.state.dead["a" * 32]["payload"]["source"] == "wire"  # replay has the whole message


def test_the_soft_time_limit_is_dead_time_limit_and_drops_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(ctx: Any, m: Message) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks.base, "stalled", lambda waited, cpu: False)  # the stage was computing
    outcome, _, stores = _run("clean", slow)
    assert outcome == "dead" and stores.state.dead["a" * 32]["reason"] == "time_limit"
    assert stores.connection_resets == 1


def test_a_soft_time_limit_spent_waiting_is_retried_as_stalled(monkeypatch: pytest.MonkeyPatch) -> None:
    def waits(ctx: Any, m: Message) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(tasks.base, "stalled", lambda waited, cpu: True)  # e.g. on a frozen Redis
    with pytest.raises(Retried):
        _run("clean", waits)


@pytest.mark.parametrize(
    ("waited_s", "cpu_s", "is_stalled"),
    [(20.0, 0.3, True), (20.0, 9.9, True), (20.0, 10.0, False), (20.0, 19.5, False), (0.0, 0.0, False)],
)
def test_stalled_means_mostly_off_the_cpu(waited_s: float, cpu_s: float, is_stalled: bool) -> None:
    assert stalled(waited_s, cpu_s) is is_stalled


def test_a_bug_is_dead_internal_error_and_the_worker_goes_on() -> None:
    def bug(ctx: Any, m: Message) -> None:
        raise KeyError("oops")

    outcome, _, stores = _run("enrich", bug)
    assert outcome == "dead" and stores.state.dead["a" * 32]["reason"] == "internal_error"
    assert "KeyError" in stores.state.dead["a" * 32]["detail"]


def test_a_poison_message_that_killed_its_worker_too_often_is_dead_poison() -> None:
    outcome, _, stores = _run("clean", lambda ctx, m: pytest.fail("must not run again"), attempt=3)
    assert outcome == "dead" and stores.state.dead["a" * 32]["reason"] == "poison"


def test_without_redis_a_dead_letter_becomes_a_retry() -> None:
    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS, down=True))

    def fail(ctx: Any, m: Message) -> None:
        raise PermanentError("http_404", "not found")

    with pytest.raises(Retried):
        _run("fetch", fail, stores=stores)


def _gone(ctx: Any, m: Message) -> None:
    raise InputGone("doc_missing", "cleaned document expired")


def test_lost_input_of_work_already_done_is_skipped() -> None:
    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    stores.state.record("a" * 32, "https://news.example/a", "indexed", "index")
    outcome, outbox, _ = _run("enrich", _gone, stores=stores)
    assert outcome == "skipped" and outbox.sent == []


def test_lost_input_is_fetched_anew_once_with_its_origin() -> None:
    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    stores.state.record("a" * 32, "https://news.example/a", "fetched", "fetch")  # clean not done yet
    sent = _msg().forward(blob="blob:x", fetch={"status": 200}).to_wire()
    outcome, outbox, _ = _run("clean", _gone, payload=sent, stores=stores)
    assert outcome == "refetch"
    [(to, again)] = outbox.sent
    assert to == FIRST.name and again.refetched
    assert (again.source, dict(again.hints or {}), again.rate_per_s) == ("wire", {"language": "de"}, 0.5)
    assert again.blob is None and again.fetch is None
    assert stores.state.ledger("a" * 32).state == "discovered"  # type: ignore[union-attr]


def test_lost_input_after_a_refetch_is_dead() -> None:
    payload = _msg().refetch().to_wire()
    outcome, outbox, stores = _run("enrich", _gone, payload=payload)
    assert outcome == "dead" and outbox.sent == []
    letter = stores.state.dead["a" * 32]
    assert letter["reason"] == "doc_missing" and "again after fetching the page anew" in letter["detail"]


def test_index_commit_failures_decide_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed commit retries the whole batch; a document the index refuses is dead alone."""
    from newsflow.batcher import Item
    from newsflow.search import IndexUnavailable
    from tasks import base, index

    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    for aid in ("a1", "a2"):
        stores.state.put_doc(aid, {"id": aid, "url": f"https://news.example/{aid}", "site_name": "news.example"})

    class Tombs:
        def dead_among(self, ids: Any, sites: Any) -> set[str]:
            return set()

    class Index:
        def __init__(self, exc: Exception | None = None, reject: str | None = None) -> None:
            self.exc, self.reject = exc, reject

        def upsert_batch(self, docs: Any, heap: int, delete_ids: Any = (), rejected: Any = None) -> None:
            if self.exc:
                raise self.exc
            if self.reject:
                rejected[self.reject] = "document too large"

    stores.tombstones = Tombs()  # type: ignore[attr-defined]
    monkeypatch.setattr(base, "_stores", stores)
    items = [Item("a1", "https://news.example/a1"), Item("a2", "https://news.example/a2")]
    for exc, reason in ((OSError("disk full"), "index_error"), (IndexUnavailable("locked"), "index_unavailable")):
        monkeypatch.setattr(index, "_index", Index(exc))
        with pytest.raises(TransientError) as caught:
            index.commit_batch(items)
        assert caught.value.reason == reason
        assert stores.state.ledger("a1") is None  # nothing recorded indexed
    monkeypatch.setattr(index, "_index", Index(reject="a2"))
    index.commit_batch(items)
    assert stores.state.ledger("a1").state == "indexed"  # type: ignore[union-attr]
    assert isinstance(items[1].error, PermanentError) and items[1].error.reason == "index_rejected"


@pytest.mark.parametrize("failure", [SoftTimeLimitExceeded(), PermanentError("http_404", "gone"), KeyError("bug")])
def test_a_stale_duplicate_does_not_move_the_ledger_backwards(failure: BaseException) -> None:
    """A worker frozen past the visibility timeout resumes and fails after a redelivered copy
    indexed the article: its failure is superseded, not a dead letter over `indexed`."""
    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    stores.state.record("a" * 32, "https://news.example/a", "indexed", "index")

    def late(ctx: Any, m: Message) -> None:
        raise failure

    outcome, _, _ = _run("clean", late, stores=stores)
    assert outcome == "superseded" and stores.state.dead == {}
    assert stores.state.ledger("a" * 32).state == "indexed"  # type: ignore[union-attr]


def test_a_failure_at_the_stage_the_ledger_last_saw_is_still_dead() -> None:
    """Fetched, then the worker died before forwarding; the redelivery fails: dead, not superseded."""
    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    stores.state.record("a" * 32, "https://news.example/a", "fetched", "fetch")

    def fail(ctx: Any, m: Message) -> None:
        raise PermanentError("http_404", "gone")

    outcome, _, _ = _run("fetch", fail, stores=stores)
    assert outcome == "dead" and stores.state.dead["a" * 32]["reason"] == "http_404"


def test_a_redelivered_message_counts_as_another_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker hands a message back when its worker was SIGKILLed or hung past the visibility
    timeout; Celery's retry counter does not see that, so the start is counted in the stores (shared
    by every worker) and the message becomes poison after max_retries such starts."""
    from tasks import base
    from tasks.app import app

    app.loader.import_default_modules()
    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    monkeypatch.setattr(base, "_stores", stores)
    task = app.tasks["clean.page"]
    payload = _msg().to_wire()
    seen = []
    for redelivered in (False, True, True, True):
        task.push_request(retries=0, delivery_info={"redelivered": redelivered})
        try:
            seen.append(task._attempt(payload))
        finally:
            task.pop_request()
    assert seen == [0, 1, 2, 3]  # the third redelivery is past max_retries (2): run_stage dead-letters it poison


@pytest.mark.parametrize("stage_name", ["clean", "enrich"])
def test_a_stale_copy_that_would_succeed_leaves_the_article_alone(stage_name: str) -> None:
    """The frozen worker's copy resumes after a redelivered copy indexed the article: the stage reads
    the ledger with its input and does nothing (no backwards `cleaned`/`enriched`, no re-send)."""
    from tasks import clean, enrich

    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    state, msg = stores.state, _msg()
    key = state.put_blob(msg.id, "<html><body><p>" + "A real article sentence. " * 40 + "</p></body></html>")
    state.put_doc(msg.id, {"id": msg.id, "url": msg.url, "body": "A real article sentence. " * 40})
    state.record(msg.id, msg.url, "indexed", "index")
    before = list(state.transitions)
    handler = clean.handle if stage_name == "clean" else enrich.handle
    payload = msg.forward(blob=key, fetch={"status": 200, "final_url": msg.url}) if stage_name == "clean" else msg
    outcome, outbox, _ = _run(stage_name, handler, payload=payload.to_wire(), stores=stores)
    assert outcome == "skipped" and outbox.sent == []
    assert state.transitions == before and state.ledger(msg.id).state == "indexed"  # type: ignore[union-attr]
    assert key in state.blobs  # nothing written, nothing released


def test_lost_input_while_redis_goes_away_is_retried_not_lost() -> None:
    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))

    def gone_and_down(ctx: Any, m: Message) -> None:
        stores.state.down = True  # the ledger read that decides skip / refetch / dead fails
        raise InputGone("doc_missing", "the document was lost")

    with pytest.raises(Retried):
        _run("enrich", gone_and_down, stores=stores)


def test_the_stage_done_line_says_the_cpu_the_handler_took_beside_its_wall_time() -> None:
    from structlog.testing import capture_logs

    def busy(ctx: Any, m: Message) -> Message:
        end = time.thread_time() + 0.03
        while time.thread_time() < end:  # 30 ms of CPU
            pass
        time.sleep(0.05)  # and 50 ms of waiting, which is not CPU
        return m.forward()

    with capture_logs() as logs:
        assert _run("enrich", busy)[0] == "ok"
    done = [e for e in logs if e["event"] == "stage_done"]
    assert len(done) == 1
    assert 30 <= done[0]["cpu_ms"] < 60 and done[0]["duration_ms"] >= 80
