"""Celery settings derived from newsflow's settings (delivery guarantees live here)."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from config.defaults import Settings
from config.settings import SSL_CERT_REQS
from newsflow.pipeline import CRAWL_TASK, stage, task_routes
from newsflow.sentinel import broker_options, is_sentinel_url

# The values config.settings accepts for ssl_cert_reqs, in its order.
_CERT_REQS = dict(zip(SSL_CERT_REQS, (ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL, ssl.CERT_NONE), strict=True))
_SSL_KEYS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def broker_ssl(url: str) -> dict[str, Any] | None:
    """TLS options for a `rediss://` broker URL, verifying the server's certificate by default.

    Without them kombu falls back to `CERT_NONE` (no verification at all). Query parameters of the
    URL are honoured: `ssl_cert_reqs=required|optional|none`, `ssl_ca_certs`, `ssl_certfile`,
    `ssl_keyfile` (the same ones redis-py reads for the state connection).
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = {k.lower(): v for k, v in parse_qsl(parts.query)}
    reqs = query.get("ssl_cert_reqs", "required").lower().removeprefix("cert_")
    if reqs not in _CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={reqs!r} in the Redis URL: use required, optional or none")
    options: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[reqs]}
    options.update({k: query[k] for k in _SSL_KEYS if query.get(k)})
    return options


def time_limits(s: Settings) -> dict[str, dict[str, float]]:
    """Per-task soft and hard time limits from the settings (the rest use `task_time_limit`)."""
    limits: dict[str, dict[str, float]] = {
        stage(name).task: {"soft_time_limit": soft_limit_s(name, s), "time_limit": soft_limit_s(name, s) + 10}
        for name in ("clean", "enrich")  # the prefork stages: Celery enforces these
    }
    return {
        **limits,
        # A crawl waits on backpressure at most `crawl_backpressure_max_wait_s`; stay under the visibility timeout.
        CRAWL_TASK: {"soft_time_limit": s.crawl_time_limit_s, "time_limit": s.crawl_time_limit_s + 30},
    }


def soft_limit_s(stage_name: str, s: Settings) -> float:
    """A stage's soft time limit wherever it runs: Celery applies the annotations above on prefork
    (and tasks/solo.py on solo); the stage runner's watchdog applies this on the threads pool."""
    limits = {
        "fetch": s.fetch_time_limit_s,
        "clean": s.clean_time_limit_s,
        "enrich": s.enrich_time_limit_s,
        # Above the commit wait, so a slow commit ends as a retry (`index_timeout`) first.
        "index": s.index_batch_max_wait_s + s.index_commit_wait_s + 30,
    }
    return limits.get(stage_name, float(s.task_time_limit_s))


RESTORE_PER_SWEEP = 1000


def restore_interval_s(s: Settings) -> int:
    """Seconds between two sweeps of a worker for unacked messages past the visibility timeout."""
    return max(1, min(10, s.visibility_timeout_s // 10))


def restore_lock_expire_s(s: Settings) -> int:
    """How long the lock one sweeper holds (all workers share it) outlives a sweeper that died
    holding it. kombu's default, 300 s, stopped every worker's sweep for five minutes after a
    worker was SIGKILLed in the middle of one: a busy worker's event loop can hold the lock for
    a third of a second while its other threads have the GIL, and the fault suite lost its race
    against that about once in three kills. Shorter is safe: a sweep that outlives the lock and
    meets a second one restores nothing twice (`QoS.restore_visible` checks each message's age
    again in the transaction that restores it)."""
    return max(10, 3 * restore_interval_s(s))


def celery_config(s: Settings) -> dict[str, Any]:
    return {
        "broker_url": s.redis_url,
        # kombu's Redis transport, but a queue entry that is not a message is set aside instead of
        # stopping the worker (tasks/transport.py); its Sentinel variant for `sentinel://` URLs.
        "broker_transport": f"tasks.transport:{'SentinelTransport' if is_sentinel_url(s.redis_url) else 'Transport'}",
        "broker_connection_retry_on_startup": True,
        # Unacked messages come back after this long; every limit and countdown stays below it.
        # Workers sweep for such messages every tenth of it (kombu's default sweep runs only every
        # 100 s, so a lost worker's messages would wait that long whatever the timeout).
        "broker_transport_options": {
            "visibility_timeout": s.visibility_timeout_s,
            "socket_timeout": 30,
            "unacked_restore_interval": restore_interval_s(s),
            "unacked_restore_throttle": 1,
            "unacked_mutex_expire": restore_lock_expire_s(s),
            # At most this many expired messages per sweep: a sweep runs in the worker's event loop,
            # which takes no message and acks nothing meanwhile. kombu's default has no bound; a
            # restore costs ~0.45 ms (5,000 in 2.3 s, measured), so after a long outage one sweep of
            # 100,000 expired messages would stall its worker, lock in hand, for most of a minute.
            "unacked_restore_limit": RESTORE_PER_SWEEP,
            # sentinel:// URLs: the master group and the sentinels' password (newsflow/sentinel.py).
            **broker_options(s.redis_url, s.redis_sentinel_master, s.redis_sentinel_password),
        },
        "broker_use_ssl": broker_ssl(s.redis_url),
        # Results are not used: the ledger in Redis records each article's fate.
        "result_backend": None,
        "task_ignore_result": True,
        # Payloads are small versioned JSON, never pickle.
        "task_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # At-least-once: ack after the task ran; a pool child killed mid-task hands its message back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_retry_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        # One message at a time per process for the CPU-bound stages; the index worker's threads
        # each hold one, which makes the whole batch.
        "worker_prefetch_multiplier": 1,
        "task_time_limit": s.task_time_limit_s,
        "task_routes": task_routes(),
        "task_annotations": time_limits(s),
        "task_default_queue": "fetch",
        "task_create_missing_queues": True,
        # Per-task events cost a Redis PUBLISH each (about a sixth of a CPU-bound worker's time);
        # off unless NEWSFLOW_WORKER_TASK_EVENTS=1. Flower switches them on in running workers.
        "worker_send_task_events": s.worker_task_events,
        "task_send_sent_event": s.worker_task_events,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_max_tasks_per_child": s.worker_max_tasks_per_child,
        "worker_max_memory_per_child": s.worker_max_memory_per_child_kb,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_pool_limit": 32,
    }
