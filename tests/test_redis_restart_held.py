"""A Redis restart while workers hold retry messages for their countdown (found by the outside test session).

Celery drops the requests it held (prefetched, or waiting for a retry's countdown) with a broken
broker connection; their messages stay in Redis's unacked set, and with a production visibility
timeout (an hour) nothing brought them back for an hour. The transport now puts them back on the
worker's next connection (`tasks.transport.Orphans`). Real redis-server (append-only file), real
workers, real HTTP; the visibility timeout here is an hour, so only that can finish the batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.hostile.origin import FaultyOrigin
from tests.hostile.rig import Rig, bench_origin, log_events, origin_only_env, short_delivery_env, temp_root

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ARTICLES = 12
HOUR_S = 3600


@pytest.fixture(scope="module")
def origin() -> Iterator[FaultyOrigin]:
    with bench_origin() as server:
        yield server


@pytest.fixture(scope="module")
def rig(origin: FaultyOrigin) -> Iterator[Rig]:
    env = {
        **origin_only_env(origin.port),
        **short_delivery_env(HOUR_S),
        "NEWSFLOW_RECONCILE_AFTER_S": str(HOUR_S),  # the reconciler must not be what resumes them
        # Long enough countdowns that Redis is restarted while every retry is still held.
        "NEWSFLOW_RETRY_BACKOFF_BASE_S": "8",
        "NEWSFLOW_RETRY_BACKOFF_MAX_S": "16",
        "NEWSFLOW_WORKER_CONCURRENCY": "1",
        "NEWSFLOW_FETCH_CONCURRENCY": "4",
        "NEWSFLOW_INDEX_BATCH_MAX_WAIT_S": "0.5",
    }
    with temp_root("restart-held") as root, Rig(root, env) as r:
        yield r


def test_retries_held_for_their_countdown_come_back_after_a_redis_restart(rig: Rig, origin: FaultyOrigin) -> None:
    origin.misbehave("http_500", 4.0)
    urls = origin.urls("held", ARTICLES)[1:]  # article pages only
    ids = [s.article_id for s in rig.submit(urls)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(rig.state.retries(aid) for aid in ids):
        time.sleep(0.2)
    assert all(rig.state.retries(aid) for aid in ids), "every fetch should have met the 500s and retried"
    time.sleep(2.0)  # the unacked records reach the append-only file (fsync every second)
    rig.redis.kill()
    time.sleep(1.0)
    rig.redis.start()
    states = rig.wait(ids, timeout_s=90)
    missing = [aid for aid in ids if aid not in states]
    assert not missing, "\n".join(rig.diagnose_pending(ids))
    assert set(states.values()) == {"indexed"}, states
    settled = [e for e in log_events(rig.log_path) if e.get("event") == "orphans_settled"]
    assert sum(int(e.get("restored", 0)) for e in settled) >= 1, "the held retries came back by another way"
    rig.check_invariants(ids, "restart-held")
    for queue in ("fetch", "clean", "enrich", "index"):
        assert rig.worker_proc(queue).poll() is None
