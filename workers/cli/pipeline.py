"""`newsflow up`, `ingest` and `demo`: run the pipeline and put articles through it."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from config.defaults import Settings
from config.settings import redact_url, use_settings
from newsflow.logs import configure
from workers.cli.common import (
    EXIT_REDIS_UNREACHABLE,
    SECONDS,
    emit_json,
    fail,
    read_list,
    redis_errors,
    require_current_ids,
    settings_or_exit,
    unreachable,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "examples"


@contextmanager
def progress(total: int, label: str) -> Iterator[Any]:
    """A progress bar on stderr; `update(done, total)` moves it to `done`."""
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True) as bar:
        seen = [0]

        def update(done: int, _total: int) -> None:
            if done > seen[0]:
                bar.update(done - seen[0])
                seen[0] = done

        yield update


@click.command()
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes for each CPU-bound stage (clean, enrich). Default: one per core.",
)
def up(concurrency: int | None) -> None:
    """Run a local deployment in the foreground until Ctrl-C.

    Starts the Celery workers (fetch on threads; clean and enrich shared by one solo process per
    core, or a worker per stage with NEWSFLOW_CPU_WORKERS=per-stage; index as the single batching
    writer) against
    NEWSFLOW_REDIS_URL. If no Redis answers there and it is a local address, a private
    redis-server is started under the data dir and stopped on exit.
    """
    from workers.runtime import Deployment, DeploymentError, RedisUnreachable, default_layout, redis_answers

    settings = settings_or_exit()
    configure(settings.log_level)
    held = hold_data_dir(Path(settings.data_dir))  # noqa: F841 - held until this process exits
    if redis_answers(settings.state_url):  # else `up` starts one: its workers check at start
        require_current_ids(settings)
    deployment = Deployment(settings, default_layout(settings, concurrency))
    stop = {"now": False}

    def _stop(signum: int, _frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        deployment.start()
    except DeploymentError as exc:
        deployment.stop()
        # A Redis we may not start (remote, sentinels) is the unreachable Redis of every command: exit 3.
        fail(str(exc), EXIT_REDIS_UNREACHABLE if isinstance(exc, RedisUnreachable) else 1)
    require_current_ids(settings)  # the private redis-server `up` may have started holds data too
    where = redact_url(settings.redis_url) + (" (private redis-server)" if deployment.private_redis else "")
    counts = Counter((s.queue, s.pool, s.concurrency) for s in deployment.layout)
    queues = ", ".join(f"{q}:{pool}x{c}" + (f" ({n} processes)" if n > 1 else "") for (q, pool, c), n in counts.items())
    click.echo(f"newsflow: {len(deployment.procs)} workers ready ({queues}) on {where}; Ctrl-C stops", err=True)
    _supervise(deployment, settings, stop)
    click.echo("newsflow: stopping (running tasks finish, unacked messages return to their queues)", err=True)
    deployment.stop()
    raise SystemExit(0)


def hold_data_dir(data_dir: Path, command: str = "up") -> int:
    """Lock `data_dir` for this `newsflow up` (or `demo`: an open file descriptor whose flock the
    kernel drops when the process ends, however it ends), or exit: a second one on the same data dir
    would start a second index writer on the same index, whose messages could only retry
    `index_unavailable`. The lock file says which command holds it, for the other's message."""
    import fcntl
    import os

    run_dir = data_dir / "run"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / "up.lock", os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        fail(f"cannot use the data dir {data_dir} ({exc.strerror}): set NEWSFLOW_DATA_DIR to a writable directory")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, _, other = os.pread(fd, 64, 0).decode("ascii", "replace").strip().partition(" ")
        os.close(fd)
        fail(
            f"another `newsflow {other or 'up'}` (pid {pid or '?'}) runs on the data dir {data_dir}: stop it "
            "first, or give this one a data dir of its own (NEWSFLOW_DATA_DIR) and its own index"
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {command}".encode(), 0)
    return fd


def _supervise(deployment: Any, settings: Any, stop: dict[str, bool]) -> None:
    """Restart workers that exit, and resume articles whose message was lost, until told to stop."""
    from newsflow.reconcile import reconcile
    from newsflow.state import State
    from workers.app import app

    state = State.from_settings(settings)
    next_sweep = time.monotonic() + settings.reconcile_interval_s
    while not stop["now"]:
        for what in deployment.restart_exited():
            click.echo(f"newsflow: the {what} worker exited; started a new one", err=True)
        if time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + settings.reconcile_interval_s
            try:
                resumed = reconcile(app, state, settings.reconcile_after_s, max_resumes=settings.max_retries)
            except Exception as exc:  # Redis away for a moment: the next sweep tries again
                click.echo(f"newsflow: reconcile failed: {exc}", err=True)
                continue
            if resumed:
                click.echo(f"newsflow: resumed {len(resumed)} article(s) whose message was lost", err=True)
        time.sleep(0.5)


def _read_urls(urls: tuple[str, ...], from_file: str | None) -> list[str]:
    out = list(urls)
    if from_file:
        lines = read_list(from_file).splitlines()
        out.extend(line.strip() for line in lines if line.strip() and not line.startswith("#"))
    return out


@click.command()
@click.argument("urls", nargs=-1)
@click.option(
    "--file", "-f", "from_file", metavar="PATH", help="Also read URLs from PATH, one per line ('-' for stdin)."
)
@click.option("--wait", is_flag=True, help="Block until each URL is indexed or dead-lettered.")
@click.option("--timeout", type=SECONDS, default=300.0, show_default=True, help="Seconds --wait waits at most.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {url, article_id, state, stage, reason}.")
def ingest(urls: tuple[str, ...], from_file: str | None, wait: bool, timeout: float, as_json: bool) -> None:
    """Fetch, clean, enrich and index exactly the URLs given.

    An explicit request always re-fetches and upserts (a crawl skips what it has seen). Needs running
    workers (`newsflow up`). Exit status with --wait: 0 all indexed, 1 any dead, 2 timed out (stderr
    says so; under --json each row has "timed_out").
    """
    from newsflow.stores import Stores
    from workers import client
    from workers.app import app

    settings = settings_or_exit()
    configure(settings.log_level)
    todo = _read_urls(urls, from_file)
    if not todo:
        fail("no URLs given (pass them as arguments or with --file)", 2)
    require_current_ids(settings)
    stores = Stores.from_settings(settings)
    state = stores.state
    try:
        submitted, rejected = client.submit(app, stores, todo)
    except redis_errors() as exc:  # broker or state down, past a short outage: say where, and the fix
        unreachable(exc)
        return
    if not wait:
        outcomes = [client.Outcome(s.url, s.article_id, "queued", None, None) for s in submitted] + rejected
        _report(_in_input_order(outcomes, todo), as_json)
        raise SystemExit(1 if rejected else 0)
    if submitted:
        _warn_if_no_workers(settings)
    with progress(len(submitted), "indexing") as update:
        outcomes = client.wait(state, submitted, timeout, update)
    outcomes = _in_input_order([*outcomes, *rejected], todo)
    pending = sum(o.state == "pending" for o in outcomes)
    _report(outcomes, as_json, waited=True)
    if pending:  # else a script sees exit 2 and a user a list of "pending" rows, and neither knows why
        click.echo(
            f"newsflow: timed out after {timeout:g} s: {pending} of {len(outcomes)} article(s) still in the "
            "pipeline (follow them with `newsflow trace ID`; `newsflow status` shows the queues and workers)",
            err=True,
        )
    states = {o.state for o in outcomes}
    raise SystemExit(1 if "dead" in states else 2 if "pending" in states else 0)


def _in_input_order(outcomes: list[Any], given: list[str]) -> list[Any]:
    """One row per URL in the order they were given (refused ones were listed last)."""
    first = {url: i for i, url in reversed(list(enumerate(given)))}
    return sorted(outcomes, key=lambda o: first.get(o.url, len(given)))


# How long `ingest --wait` asks the workers who is online: the remote-control round `newsflow status`
# makes, once, before a wait that would otherwise run silently into its timeout.
WORKER_CHECK_S = 1.0


def _warn_if_no_workers(settings: Any) -> None:
    """Warn (stderr) when no online worker consumes one of the stage queues: the wait would only
    time out. Never fails the command: workers that cannot be asked are not known to be missing."""
    from newsflow.pipeline import STAGES
    from workers.cli.ops import workers_by_queue

    try:
        online = workers_by_queue(settings, WORKER_CHECK_S)
    except Exception:  # remote control refused or broken: say nothing rather than guess
        return
    idle = [s.queue for s in STAGES if not online.get(s.queue)]
    if not idle:
        return
    what = "no worker is online" if not online else f"no worker consumes the {', '.join(idle)} queue(s)"
    click.echo(f"newsflow: warning: {what}: start them (`newsflow up`), or --wait only times out", err=True)


def _report(outcomes: list[Any], as_json: bool, waited: bool = False) -> None:
    if as_json:
        # Under --wait each row says whether the wait ran out before the article was settled.
        rows = [{**o.to_dict(), "timed_out": o.state == "pending"} if waited else o.to_dict() for o in outcomes]
        emit_json(rows)
        return
    for o in outcomes:
        why = f" ({o.stage}: {_shown(o.reason)})" if o.reason else ""
        click.echo(f"{o.state:8} {o.article_id or '-':32} {_shown(o.url)}{why}")


# How much of a URL or reason a report line shows: a line of a binary or garbled list can be
# kilobytes long; --json has it whole.
SHOWN_CHARS = 300


def _shown(text: str) -> str:
    r"""`text` for a terminal: control characters and undecodable bytes (lone surrogates) escaped
    (\x00, \udcff), so the line prints in any locale and cannot move the cursor; cut to SHOWN_CHARS."""
    safe = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return safe if len(safe) <= SHOWN_CHARS else safe[: SHOWN_CHARS - 1] + "…"


@click.command()
@click.option("--query", "-q", default="Stoltenberg", show_default=True, help="What to search for at the end.")
@click.option(
    "--pages",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=EXAMPLES_DIR,
    show_default=True,
    help="Folder of .html pages to serve and ingest.",
)
@click.option("--timeout", type=SECONDS, default=300.0, show_default=True, help="Seconds the ingestion waits at most.")
def demo(query: str, pages: Path, timeout: float) -> None:
    """Run the whole pipeline once on the bundled example pages.

    Starts a temporary deployment (like `up`) on a private redis-server of its own, whatever
    NEWSFLOW_REDIS_URL says (its workers fetch private addresses, so they must take no one else's
    queued work), serves the pages on 127.0.0.1, ingests them through the real workers, prints a
    search, and shuts everything down. The index stays in the data dir, so `newsflow search` works
    afterwards; like `up`, it refuses a data dir a running `newsflow up` holds (one index writer).
    """
    from workers.runtime import DeploymentError, PrivateRedis, free_port

    settings = settings_or_exit()
    configure("WARNING")
    files = sorted(p.name for p in pages.iterdir() if p.suffix == ".html")
    if not files:
        fail(f"no .html pages in {pages}")
    data_dir = Path(settings.data_dir)
    held = hold_data_dir(data_dir, "demo")  # noqa: F841 - held until this process exits
    # A key space of its own: a fresh server each run, under the data dir but apart from `up`'s.
    # Absolute: redis-server enters its --dir before it opens its --logfile.
    redis = PrivateRedis(free_port(), data_dir.resolve() / "run" / "demo-redis")
    shutil.rmtree(redis.data_dir, ignore_errors=True)
    log_path = data_dir / "demo-workers.log"
    click.echo(f"newsflow demo: starting a private redis-server and workers (logs: {log_path})", err=True)
    try:
        redis.start()
        outcomes, elapsed = _demo_ingest(_demo_settings(settings, redis.url), pages, files, timeout, log_path)
    except DeploymentError as exc:
        fail(str(exc))  # its directory is kept: the redis.log the message names says why
        return
    finally:
        redis.stop()
    shutil.rmtree(redis.data_dir, ignore_errors=True)
    _demo_report(settings, outcomes, elapsed, query)


def _demo_settings(settings: Settings, redis_url: str) -> Settings:
    """The demo's settings: its private Redis for broker and state, private addresses fetched (its
    pages are on 127.0.0.1), no crawl schedule (beat would crawl the sources file's sites into it)."""
    return dataclasses.replace(
        settings, redis_url=redis_url, state_redis_url="", fetch_allow_private=True, crawl_beat=False
    )


def _demo_ingest(
    settings: Settings, pages: Path, files: list[str], timeout: float, log_path: Path
) -> tuple[list[Any], float]:
    """Serve `pages`, run the workers, ingest every page; the outcomes and the seconds it took."""
    from newsflow.stores import Stores
    from workers import client
    from workers.app import app
    from workers.runtime import Deployment, default_layout
    from workers.staticserver import StaticServer

    with StaticServer(pages) as server:
        # The per-host politeness limit protects other people's sites, not our own demo origin.
        origin = server.base_url.split("//", 1)[1]
        settings = dataclasses.replace(settings, polite_host_rates=f"{origin}=500")
        use_settings(settings)  # this process's Celery app (it submits) uses the private broker too
        with Deployment(settings, default_layout(settings), log_path=log_path):
            urls = [f"{server.base_url}/{name}" for name in files]
            stores = Stores.from_settings(settings)
            started = time.monotonic()
            submitted, _ = client.submit(app, stores, urls)
            with progress(len(submitted), f"ingesting {len(urls)} pages") as update:
                outcomes = client.wait(stores.state, submitted, timeout, update)
            return outcomes, time.monotonic() - started


def _demo_report(settings: Settings, outcomes: list[Any], elapsed: float, query: str) -> None:
    """What the demo did, a search of the index it filled, and its exit status."""
    from workers.cli.query import print_search

    indexed = sum(o.state == "indexed" for o in outcomes)
    click.echo(f"\n{indexed}/{len(outcomes)} pages indexed in {elapsed:.1f} s ({indexed / elapsed:.1f} pages/s)")
    for o in outcomes:
        if o.state != "indexed":
            click.echo(f"  {o.state}: {o.url} ({o.stage}: {o.reason})")
    click.echo(f'\nnewsflow search "{query}":')
    print_search(settings, query, limit=5, as_json=False)
    raise SystemExit(0 if indexed == len(outcomes) else 1)


COMMANDS = [up, ingest, demo]
