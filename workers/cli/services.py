"""Long-running operator processes: `newsflow worker STAGE`, `newsflow flower`, `newsflow metrics`.

`worker` and `flower` replace themselves with the `celery` process they start (exec), so a
SIGTERM from docker, systemd or Ctrl-C reaches Celery directly and triggers its warm shutdown.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import signal
import sys
import threading
from typing import Any

import click

from config.defaults import Settings
from config.settings import process_env, redact_url
from newsflow.netguard import is_loopback
from workers.cli.common import fail, require_current_ids, settings_or_exit


def worker_command(
    settings: Settings, queue: str, concurrency: int | None = None, node: str | None = None
) -> list[str]:
    """The `celery worker` command for one worker of `worker_specs` (a stage's queue, or `cpu`),
    with the pool and flags `newsflow up` uses, so compose and a local deployment cannot drift apart."""
    from workers.runtime import worker_specs

    specs = worker_specs(settings)
    if queue not in specs:
        raise click.BadParameter(f"no worker for {queue!r}; choose one of: {', '.join(specs)}", param_hint="STAGE")
    spec = specs[queue]
    if concurrency:
        spec = dataclasses.replace(spec, concurrency=concurrency)
    return spec.command(node or str(os.getpid()), settings.log_level)


@click.command()
@click.argument("stage")
@click.option("--concurrency", "-c", type=click.IntRange(1, 512), help="Override the layout's pool size.")
@click.option("--node", metavar="SUFFIX", help="Node name is STAGE-SUFFIX@host (default: this process id).")
@click.option("--print", "print_only", is_flag=True, help="Print the celery command instead of running it.")
def worker(stage: str, concurrency: int | None, node: str | None, print_only: bool) -> None:
    """Run one Celery worker for the queue of STAGE (fetch, clean, enrich, cpu, index, crawl).

    The pool fits the stage, as in `newsflow up`: fetch on threads (I/O); `cpu` is one solo process
    taking both clean and enrich (what `newsflow up` runs, one per core: the cheapest per article);
    clean or enrich alone run on prefork with children recycled by task count and memory
    (NEWSFLOW_CPU_POOL=solo: one process each, run one per core), to give one stage hosts of its
    own; index is the single batching writer (prefetch = batch size; run exactly one).
    Scale a stage by running more of these (never index).
    SIGTERM: running tasks finish, prefetched messages go back to the queue.
    """
    settings = settings_or_exit()
    cmd = worker_command(settings, stage, concurrency, node)
    if stage == "index" and concurrency:
        note = "the index worker's concurrency is its prefetch, the largest batch: keep it at NEWSFLOW_INDEX_BATCH_SIZE"
        click.echo(f"newsflow: note: {note}", err=True)
    if print_only:
        click.echo(shlex.join(cmd))
        return
    require_current_ids(settings)
    from workers.runtime import lower_priority

    lower_priority(settings.worker_nice)  # as `newsflow up` starts its workers (the search API keeps its share)
    click.echo(f"newsflow: exec {shlex.join(cmd)}", err=True)
    os.execve(cmd[0], cmd, process_env())


def check_basic_auth(value: str) -> str | None:
    """None if `user:password[,user:password...]` is well formed, else what is wrong."""
    for entry in value.split(","):
        user, sep, password = entry.partition(":")
        if not (user and sep and password):
            return f"malformed entry {entry.split(':')[0]!r}:… (expected user:password, comma-separated)"
    return None


def flower_command(settings: Settings, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The Flower command line and its environment. The password travels in the environment
    (FLOWER_BASIC_AUTH), never on the command line, where `ps` would show it."""
    auth = settings.flower_basic_auth
    if auth:
        problem = check_basic_auth(auth)
        if problem:
            raise click.UsageError(f"NEWSFLOW_FLOWER_BASIC_AUTH: {problem}")
    elif not is_loopback(host):
        raise click.UsageError(
            f"Flower would listen on {host!r} without a password. Set NEWSFLOW_FLOWER_BASIC_AUTH=user:password "
            "(it is required beyond loopback), or use --host 127.0.0.1."
        )
    # Flower reads FLOWER_* itself: only the one newsflow sets may reach it.
    env = {k: v for k, v in process_env().items() if not k.startswith("FLOWER_")}
    if auth:
        env["FLOWER_BASIC_AUTH"] = auth
    cmd = [
        sys.executable, "-m", "celery", "-A", "workers.app", "flower",
        f"--address={host}", f"--port={port}",
        # Forget workers that went away (a scaled-down or restarted container) instead of listing them forever.
        "--purge_offline_workers=300",
    ]  # fmt: skip
    return cmd, env


@click.command()
@click.option("--host", help="Address to listen on [default: NEWSFLOW_FLOWER_ADDRESS, 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [default: NEWSFLOW_FLOWER_PORT, 5555].")
@click.option("--print", "print_only", is_flag=True, help="Print the command (no password) instead.")
def flower(host: str | None, port: int | None, print_only: bool) -> None:
    """Run the Flower dashboard (workers, tasks, rates) for this deployment's broker.

    Workers send task events (-E), so Flower lists every worker and every task it sees while it runs.
    HTTP basic auth comes from NEWSFLOW_FLOWER_BASIC_AUTH=user:password and is required whenever
    Flower listens beyond loopback. Its REST API (/api/workers, /api/tasks) needs the same auth
    (without auth, Flower keeps its API closed).
    """
    settings = settings_or_exit()
    host = host or settings.flower_address
    port = port or settings.flower_port
    cmd, env = flower_command(settings, host, port)
    where = f"http://{host}:{port}/"
    if print_only:
        click.echo(shlex.join(cmd) + ("  # with FLOWER_BASIC_AUTH=***" if "FLOWER_BASIC_AUTH" in env else ""))
        return
    auth = "basic auth on" if "FLOWER_BASIC_AUTH" in env else "no auth (loopback only)"
    click.echo(f"newsflow: Flower on {where} ({auth}), broker {redact_url(settings.redis_url)}", err=True)
    os.execve(cmd[0], cmd, env)


@click.command()
@click.option("--host", help="Address to listen on [default: NEWSFLOW_METRICS_ADDRESS, 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [default: NEWSFLOW_METRICS_PORT, 9108].")
@click.option("--once", is_flag=True, help="Print the metrics once to stdout and exit.")
def metrics(host: str | None, port: int | None, once: bool) -> None:
    """Serve Prometheus metrics on http://HOST:PORT/metrics.

    Stage runs by outcome, dead letters and retries by reason, stage durations and submit-to-indexed
    lag (counters every worker keeps in Redis), plus queue depth, oldest message age and unacked
    messages read from the broker on each scrape. Run one exporter per deployment.
    """
    from prometheus_client import CollectorRegistry, generate_latest, start_http_server

    from newsflow.drift import DriftStore
    from newsflow.metrics import PipelineCollector
    from newsflow.pipeline import ORDER
    from newsflow.state import connect
    from workers.cli.ops import queue_names

    settings = settings_or_exit()
    registry = CollectorRegistry(auto_describe=False)
    state_redis = connect(settings.state_url, settings)
    registry.register(
        PipelineCollector(
            state_redis, connect(settings.redis_url, settings), settings.key_prefix,
            list(ORDER), queue_names(), drift=DriftStore(state_redis, settings),
        )
    )  # fmt: skip
    if once:
        sys.stdout.write(generate_latest(registry).decode("utf-8"))
        return
    host = host or settings.metrics_address
    port = port or settings.metrics_port
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}. Pick another --port or stop what uses it.")
    click.echo(f"newsflow: metrics on http://{host}:{port}/metrics (Ctrl-C stops)", err=True)
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()


COMMANDS = [worker, flower, metrics]
