"""A queue entry that is not a message (tasks/transport.py): set aside with its reason, and the
worker that popped it goes on (stock kombu stops the whole worker: "Unrecoverable error")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tasks.transport import QUARANTINE_BYTES, envelope
from tests.conftest import run_cli

GARBAGE = [
    (b"not json at all", "not JSON"),
    (b"\xff\xfe\x00", "not JSON"),
    (b"[]", "a JSON list"),
    (b'"just a string"', "a JSON str"),
    (b'{"foo": 1}', "no properties.delivery_tag"),
    (b'{"body": "x", "headers": {}, "properties": {}}', "no properties.delivery_tag"),
    (b'{"body": "x", "headers": [], "properties": {"delivery_tag": "t"}}', "headers is not an object"),
    (b"{" * 100_000, "not JSON"),  # deeply nested: the decoder's recursion limit, not ours
]


@pytest.mark.parametrize(("entry", "why"), GARBAGE)
def test_what_is_not_a_message_envelope(entry: bytes, why: str) -> None:
    payload, reason = envelope(entry)
    assert payload is None and why in reason


def test_a_real_envelope_passes() -> None:
    entry = json.dumps({"body": "e30=", "headers": {}, "properties": {"delivery_tag": "t", "delivery_info": {}}})
    payload, reason = envelope(entry.encode())
    assert payload is not None and reason == ""


@pytest.mark.integration
def test_workers_set_garbage_aside_and_keep_working(deployment: Any, origin: Any, redis_url: str) -> None:
    from config.settings import get_settings
    from newsflow.pipeline import STAGES
    from newsflow.state import connect
    from tasks.transport import quarantine_key

    broker = connect(redis_url)
    broker.delete(quarantine_key())
    for stage in STAGES:  # every stage's worker pops one of each
        for entry, _why in GARBAGE:
            broker.lpush(stage.queue, entry[: QUARANTINE_BYTES * 8])
    # The workers are still there and still work: a page goes through all four stages.
    proc = run_cli("ingest", f"{origin.base_url}/seed.html?after-garbage", "--wait", "--json", "--timeout", "120")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [row["state"] for row in json.loads(proc.stdout)] == ["indexed"]
    assert deployment.alive()
    records = [json.loads(x) for x in broker.lrange(quarantine_key(), 0, -1)]
    assert len(records) == len(STAGES) * len(GARBAGE)
    assert {r["queue"] for r in records} == {s.queue for s in STAGES}
    assert all(r["reason"] and r["bytes"] > 0 and len(r["entry"]) <= QUARANTINE_BYTES for r in records)
    assert quarantine_key().startswith(get_settings().key_prefix)
    status = json.loads(run_cli("status", "--json").stdout)
    assert status["quarantined"] == len(records)
