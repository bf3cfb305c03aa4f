"""The index stage consumed as batches (tasks/batch.py): one commit per batch, then each message's
own fate (ok, retry, dead letter) and its ack, and nothing acked before its batch is committed.

Unit tests drive `BatchStage._run` with the in-memory stores; the integration tests send messages
straight to the index queue of real workers (real Redis, a real index)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded

import tasks.batch
from config.defaults import Settings
from newsflow.batcher import Item
from newsflow.errors import PermanentError, TransientError
from newsflow.pipeline import LAST, Message
from newsflow.testing import MemoryState, MemoryStores
from tests.conftest import wait_for

SETTINGS = Settings()


def _msg(i: int) -> Message:
    return Message.new(f"https://news.example/{i}", f"{i:032x}", source="wire")


class Broker:
    """What the consumer would do with each settled message: acked, or rejected (requeued or not)."""

    def __init__(self) -> None:
        self.settled: dict[str, str] = {}

    def delivery(self, payload: Any, task_id: str, *, retries: int = 0, redelivered: bool = False) -> Any:
        from tasks.batch import Delivery

        def ack(_log: Any, _errors: Any) -> None:
            self.settled[task_id] = "ack"

        def reject(_log: Any, _errors: Any, requeue: bool = False) -> None:
            self.settled[task_id] = "requeue" if requeue else "reject"

        return Delivery(
            article_id="", url="", payload=payload, task_id=task_id, retries=retries,
            redelivered=redelivered, ack=ack, reject=reject,
        )  # fmt: skip


@pytest.fixture
def batch(monkeypatch: pytest.MonkeyPatch) -> Any:
    from tasks import base, batch

    stores = MemoryStores(settings=SETTINGS, state=MemoryState(settings=SETTINGS))
    monkeypatch.setattr(base, "_stores", stores)
    sent: list[tuple[str, str, float | None, int | None]] = []

    messages: list[Message] = []

    def fake_send(app: Any, to: Any, message: Message, **kw: Any) -> None:
        sent.append((to.name, message.id, kw.get("countdown"), kw.get("retries")))
        messages.append(message)

    monkeypatch.setattr(batch, "send", fake_send)  # forwards
    monkeypatch.setattr(base, "send", fake_send)  # retries (tasks.base.resend)
    committed: list[list[str]] = []
    behaviour: dict[str, Any] = {}

    def commit(items: Sequence[Item]) -> None:
        committed.append([i.article_id for i in items])
        if behaviour.get("raise") is not None:
            raise behaviour["raise"]
        for item in items:
            if item.article_id in behaviour.get("errors", {}):
                item.error = behaviour["errors"][item.article_id]

    owner = batch.BatchStage(LAST.name, commit, "index@test")
    return {"owner": owner, "stores": stores, "sent": sent, "messages": messages, "committed": committed,
            "behaviour": behaviour}  # fmt: skip


def test_one_commit_for_the_batch_then_one_ack_each(batch: dict[str, Any]) -> None:
    broker = Broker()
    deliveries = [broker.delivery(_msg(i).to_wire(), f"t{i}") for i in range(5)]
    batch["owner"]._run(deliveries)
    assert batch["committed"] == [[f"{i:032x}" for i in range(5)]]
    assert broker.settled == {f"t{i}": "ack" for i in range(5)}
    assert batch["sent"] == []


def test_a_bad_payload_and_a_poison_message_stay_out_of_the_commit(batch: dict[str, Any]) -> None:
    broker = Broker()
    good, poison = _msg(1), _msg(2)
    deliveries = [
        broker.delivery(good.to_wire(), "good"),
        broker.delivery({"v": 1, "id": 7}, "bad"),
        broker.delivery("not a dict", "junk"),
        broker.delivery(poison.to_wire(), "poison", retries=SETTINGS.max_retries + 1),
    ]
    batch["owner"]._run(deliveries)
    assert batch["committed"] == [[good.id]]
    dead = batch["stores"].state.dead
    assert dead[poison.id]["reason"] == "poison"
    assert {d["reason"] for d in dead.values()} == {"poison", "bad_payload"}
    assert set(broker.settled.values()) == {"ack"}  # dead letters are written, so each is done


def test_a_failed_commit_retries_every_message_of_the_batch(batch: dict[str, Any]) -> None:
    broker = Broker()
    batch["behaviour"]["raise"] = TransientError("index_error", "OSError: commit failed")
    deliveries = [broker.delivery(_msg(i).to_wire(), f"t{i}", retries=1) for i in range(3)]
    batch["owner"]._run(deliveries)
    assert [(to, retries) for to, _, _, retries in batch["sent"]] == [("index", 2)] * 3
    assert all(0 < countdown <= SETTINGS.visibility_timeout_s / 2 for _, _, countdown, _ in batch["sent"])
    assert set(broker.settled.values()) == {"ack"}  # each retry was published: the original is done


def test_one_rejected_document_is_dead_alone(batch: dict[str, Any]) -> None:
    broker = Broker()
    bad = _msg(2)
    batch["behaviour"]["errors"] = {bad.id: PermanentError("index_rejected", "document too large")}
    batch["owner"]._run([broker.delivery(_msg(i).to_wire(), f"t{i}") for i in range(4)])
    assert list(batch["stores"].state.dead) == [bad.id]
    assert batch["stores"].state.dead[bad.id]["reason"] == "index_rejected"
    assert batch["sent"] == []


def test_a_commit_past_its_time_limit_dead_letters_the_batch(
    batch: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks.batch, "stalled", lambda waited, cpu: False)  # the commit was computing
    broker = Broker()
    batch["behaviour"]["raise"] = SoftTimeLimitExceeded()
    batch["owner"]._run([broker.delivery(_msg(i).to_wire(), f"t{i}") for i in range(2)])
    assert {d["reason"] for d in batch["stores"].state.dead.values()} == {"time_limit"}


def test_a_commit_past_its_time_limit_while_waiting_is_retried(
    batch: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks.batch, "stalled", lambda waited, cpu: True)  # e.g. Redis frozen mid-commit
    broker = Broker()
    batch["behaviour"]["raise"] = SoftTimeLimitExceeded()
    batch["owner"]._run([broker.delivery(_msg(i).to_wire(), f"t{i}") for i in range(2)])
    assert batch["stores"].state.dead == {}
    # A wait for the infrastructure: sent again with the article's retry count unchanged.
    assert [(to, retries) for to, _, _, retries in batch["sent"]] == [("index", 0)] * 2
    assert {m.waits for m in batch["messages"]} == {1}


def test_a_retry_that_cannot_be_published_requeues_the_original(
    batch: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis

    from tasks import base as module  # the retry is published by tasks.base.resend

    def refuse(*_: Any, **__: Any) -> None:
        raise redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'.")

    monkeypatch.setattr(module, "send", refuse)
    broker = Broker()
    batch["behaviour"]["raise"] = TransientError("index_unavailable", "writer lock held")
    batch["owner"]._run([broker.delivery(_msg(1).to_wire(), "t1")])
    assert broker.settled == {"t1": "requeue"}


def test_eta_and_headers_are_read_from_the_message() -> None:
    from tasks.batch import _eta, _int

    assert _eta(None) is None and _eta("not a date") is None
    assert abs((_eta("2030-01-01T00:00:00+00:00") or 0) - 1893456000.0) < 1
    assert _int("3") == 3 and _int(None) == 0 and _int("x") == 0 and _int(-2) == 0


# --- real workers --------------------------------------------------------------------------------------
def _doc(msg: Message, title: str) -> dict[str, Any]:
    return {
        "id": msg.id, "url": msg.url, "final_url": msg.url, "title": title, "language": "en",
        "body": f"{title}. " + "The harbour council met on Tuesday to settle the budget. " * 20,
        "site_name": "news.example", "entities": {"person": [], "organization": [], "place": []}, "keywords": [],
    }  # fmt: skip


@pytest.mark.integration
def test_real_index_worker_commits_batches_and_settles_each_message(deployment: Any) -> None:
    from newsflow.dispatch import send
    from newsflow.stores import Stores
    from workers.app import app

    stores = Stores.from_settings(deployment.settings)
    state = stores.state
    stamp = int(time.time() * 1000)
    msgs = [Message.new(f"https://batch.example/{stamp}/{i}", f"{stamp:016x}{i:016x}") for i in range(20)]
    for i, msg in enumerate(msgs):
        state.put_doc(msg.id, _doc(msg, f"Batch article {stamp} number {i}"))
        state.record(msg.id, msg.url, "enriched", "enrich")
    later = msgs[-1]
    for msg in msgs[:-1]:
        send(app, LAST, msg)
    send(app, LAST, msgs[0])  # a duplicate delivery in the same stream: written once, both settled
    send(app, LAST, later, countdown=2.0)  # a retry's countdown: held until due, then indexed
    app.send_task(LAST.task, args=({"v": 1, "id": 5},), queue=LAST.queue)  # a malformed payload
    sent_at = time.time()

    def state_of(m: Message) -> str | None:
        entry = state.ledger(m.id)
        return entry.state if entry else None

    assert wait_for(lambda: all(state_of(m) == "indexed" for m in msgs[:-1]), 60), [state_of(m) for m in msgs]
    assert wait_for(lambda: state_of(later) == "indexed", 60)
    indexed_at = next(e["t"] for e in reversed(state.trace(later.id)) if e["state"] == "indexed")
    assert indexed_at >= sent_at + 1.5  # not before its countdown
    assert wait_for(lambda: any(d["reason"] == "bad_payload" for d in state.dead_letters(50)), 30)
    # Every message was acked: nothing is left in the queue or in the broker's unacked set.
    raw = state._r  # the test's own look at the broker's bookkeeping (same Redis)

    def index_unacked() -> int:
        return sum(1 for v in raw.hvals("unacked") if json.loads(v)[-1] == LAST.queue)

    assert wait_for(lambda: raw.llen(LAST.queue) == 0 and index_unacked() == 0, 30)


class Dispatcher:
    """A stand-in for Celery's event dispatcher: records what would be published."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.sent: list[tuple[str, str]] = []

    def send(self, kind: str, uuid: str, **fields: Any) -> None:
        if self.enabled == "broken":
            raise ConnectionError("event publish failed")
        # Celery's dispatcher adds these itself: passing them again is a TypeError there.
        assert not {"pid", "hostname", "clock", "type"} & set(fields), fields
        self.sent.append((kind, uuid))


def test_task_events_follow_each_message_while_events_are_on(batch: dict[str, Any]) -> None:
    """Flower follows tasks by their events: a batched message reports started and succeeded (or
    retried) like any task; with events off (the default) nothing is sent."""
    from tasks.batch import TaskEvents

    class Task:
        name, send_events = LAST.task, True

    on, off = Dispatcher(enabled=True), Dispatcher(enabled=False)
    broker = Broker()
    deliveries = [broker.delivery(_msg(i).to_wire(), f"t{i}") for i in range(2)]
    deliveries[0].events, deliveries[1].events = TaskEvents(on, Task()), TaskEvents(off, Task())
    batch["owner"]._run(deliveries)
    assert on.sent == [("task-started", "t0"), ("task-succeeded", "t0")] and off.sent == []
    on.sent.clear()
    batch["behaviour"]["raise"] = TransientError("index_unavailable", "writer lock held")
    again = broker.delivery(_msg(3).to_wire(), "t3")
    again.events = TaskEvents(on, Task())
    batch["owner"]._run([again])
    assert on.sent == [("task-started", "t3"), ("task-retried", "t3")]


def test_events_that_fail_to_send_and_a_bug_before_the_commit_still_settle_every_message(
    batch: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.batch import BatchStage, TaskEvents

    class Task:
        name, send_events = LAST.task, True

    broker = Broker()
    d = broker.delivery(_msg(1).to_wire(), "t1")
    d.events = TaskEvents(Dispatcher(enabled="broken"), Task())  # type: ignore[arg-type]
    batch["owner"]._run([d])
    assert broker.settled == {"t1": "ack"} and batch["committed"] == [[_msg(1).id]]

    def bug(self: Any, d: Any) -> int:
        raise RuntimeError("a bug before the commit")

    monkeypatch.setattr(BatchStage, "_attempt", bug)
    broker = Broker()
    batch["owner"]._run([broker.delivery(_msg(i).to_wire(), f"b{i}") for i in range(3)])
    assert broker.settled == {f"b{i}": "ack" for i in range(3)}  # each dead-lettered, none left unacked
    assert {batch["stores"].state.dead[_msg(i).id]["reason"] for i in range(3)} == {"internal_error"}


def test_a_locked_index_retries_the_batch_without_counting(batch: dict[str, Any]) -> None:
    """Another writer holds the index: a wait for the infrastructure, not one of the articles' retries."""
    broker = Broker()
    batch["behaviour"]["raise"] = TransientError("index_unavailable", "writer lock held")
    batch["owner"]._run([broker.delivery(_msg(i).to_wire(), f"t{i}", retries=1) for i in range(3)])
    assert [(to, retries) for to, _, _, retries in batch["sent"]] == [("index", 1)] * 3
    assert set(broker.settled.values()) == {"ack"}
