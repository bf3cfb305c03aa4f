"""The state Redis (NEWSFLOW_STATE_REDIS_URL, apart from the broker) down for longer than an
article's whole retry budget, while the broker stays up.

The workers keep taking messages from the broker, and every stage fails on the state store at
once. Those retries wait for newsflow's own infrastructure, not for the article: they must not use
up `max_retries` (before, the backlog went through its retries in seconds and, once the state
Redis was back, came out dead-lettered `poison` or `redis_unavailable`). Real redis-servers
(append-only), real workers, real HTTP.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.hostile.origin import FaultyOrigin
from tests.hostile.rig import (
    RedisProc,
    Rig,
    bench_origin,
    log_events,
    origin_only_env,
    short_delivery_env,
    temp_root,
)

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ARTICLES = 400
OUTAGE_S = 20.0  # against a retry budget of 2 retries at 0.5-1 s: spent ten times over
CONTENT_REASONS = {"noindex", "no_article", "not_html", "too_large", "duplicate"}


@pytest.fixture(scope="module")
def origin() -> Iterator[FaultyOrigin]:
    with bench_origin() as server:
        yield server


@pytest.fixture(scope="module")
def rig(origin: FaultyOrigin) -> Iterator[Rig]:
    env = {
        **origin_only_env(origin.port),
        **short_delivery_env(30),
        "NEWSFLOW_MAX_RETRIES": "2",
        "NEWSFLOW_RETRY_BACKOFF_BASE_S": "0.5",
        "NEWSFLOW_RETRY_BACKOFF_MAX_S": "4",
        "NEWSFLOW_WORKER_CONCURRENCY": "1",
        "NEWSFLOW_FETCH_CONCURRENCY": "4",
        "NEWSFLOW_INDEX_BATCH_MAX_WAIT_S": "0.5",
    }
    with temp_root("state-outage") as root, Rig(root, env, state_redis=RedisProc(root / "state")) as r:
        yield r


def test_a_state_redis_outage_does_not_spend_the_articles_retries(rig: Rig, origin: FaultyOrigin) -> None:
    assert rig.state_redis is not None
    urls = origin.urls("state-outage", ARTICLES)[1:]
    ids = [s.article_id for s in rig.submit(urls)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and rig.count_states(ids)["indexed"] < 5:
        time.sleep(0.1)
    time.sleep(1.5)  # the ledger reaches the append-only file (fsync every second)
    rig.state_redis.kill()
    time.sleep(OUTAGE_S)
    rig.state_redis.start()
    states = rig.wait(ids, timeout_s=180, stall_s=60)
    counts = rig.account(ids)
    print(counts.line("state-outage"))
    missing = [aid for aid in ids if aid not in states]
    assert not missing, "\n".join(rig.diagnose_pending(ids))
    unexpected = set(counts.dead_reasons) - CONTENT_REASONS
    assert not unexpected, f"the outage cost articles: {counts.line('state-outage')}"
    events = log_events(rig.log_path)
    retries = sum(1 for e in events if e.get("event") == "stage_done" and e.get("outcome") == "retry")
    unwritten = sum(1 for e in events if e.get("event") == "dead_letter_not_written")
    print(f"state-outage: {retries} retries, {unwritten} dead letters not written (requeued at once)")
    waits = Counter(
        str(e.get("reason"))
        for e in events
        if e.get("event") == "stage_done" and e.get("outcome") == "retry" and e.get("waits")
    )
    print(f"state-outage: waits for the infrastructure by reason: {dict(waits)}")
    assert waits, "no stage met the outage: the test did not test it"
    rig.check_invariants(ids, "state-outage")
