"""`newsflow crawl`: crawl sources now (for a system cron or a Kubernetes CronJob).

Beat (`newsflow up`) crawls on the sources' schedules; this command crawls when you say so, in
this process, with exactly the code the `crawl.source` task runs. Fetching, cleaning and indexing
are done by the running workers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from config.settings import redact_url
from newsflow.logs import configure
from workers.cli.common import SECONDS, emit_json, fail, require_current_ids, settings_or_exit

COUNTERS = ("discovered", "skipped_seen", "enqueued", "indexed", "failed")


class Progress:
    """One status line on stderr, redrawn in place on a terminal; silent elsewhere."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.width = 0

    def show(self, counts: dict[str, int], pending: int | None = None) -> None:
        if not self.enabled:
            return
        done = counts["indexed"] + counts["failed"]
        total = counts["enqueued"]
        filled = int(24 * done / total) if total else 24
        bar = "#" * filled + "-" * (24 - filled)
        line = (
            f"crawl [{bar}] discovered {counts['discovered']} | skipped (seen) {counts['skipped_seen']} | "
            f"enqueued {total} | indexed {counts['indexed']} | failed {counts['failed']}"
        )
        if pending is not None:
            line += f" | pending {pending}"
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()
        self.width = len(line)

    def close(self) -> None:
        if self.enabled and self.width:
            sys.stderr.write("\n")
            sys.stderr.flush()


@click.command()
@click.argument("names", nargs=-1, metavar="[SOURCE]...")
@click.option("--all", "all_sources", is_flag=True, help="Crawl every enabled source of the sources file.")
@click.option(
    "--sources",
    "sources_file",
    metavar="FILE",
    help="Sources file (default: NEWSFLOW_CRAWL_SOURCES_FILE, else the bundled example config/sources.toml).",
)
@click.option(
    "--refresh", is_flag=True, help="Enqueue every URL again: ignore the seen-set and the feeds' ETag/Last-Modified."
)
@click.option("--wait", is_flag=True, help="Block until every enqueued URL is indexed or dead-lettered.")
@click.option("--timeout", type=SECONDS, default=1800.0, show_default=True, help="Seconds --wait waits at most.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-line JSON summary on stdout.")
@click.option("--list", "list_only", is_flag=True, help="List the declared sources and their schedules, then exit.")
def crawl(
    names: tuple[str, ...],
    all_sources: bool,
    sources_file: str | None,
    refresh: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
    list_only: bool,
) -> None:
    """Crawl sources now: read their feeds/sitemaps/URL lists and enqueue what is new.

    URLs seen by an earlier crawl are skipped unless --refresh (or the source says they changed);
    robots.txt and each host's rate limit are obeyed. Needs running workers (`newsflow up`).

    \b
    Exit status: 0 every source was read (even if some pages died), 1 a source could not be read
    (its dead letter says why), 2 usage or sources-file error, or --wait timed out.

    \b
    Cron:        */15 * * * *  newsflow crawl --all --json >> /var/log/newsflow-crawl.jsonl
    Kubernetes:  a CronJob running `newsflow crawl --all --json` (concurrencyPolicy: Forbid)
    """
    from newsflow.sources.config import SourcesFileError, load_sources, select, sources_path

    settings = settings_or_exit()
    configure("WARNING" if not as_json else "ERROR")
    path = sources_path(settings, sources_file)
    try:
        declared = load_sources(path, settings)
        if list_only:
            _list(declared, as_json)
            return
        if not names and not all_sources:
            known = ", ".join(s.name for s in declared) or "none"
            fail(f"name the sources to crawl, or pass --all (declared in {path}: {known})", 2)
        chosen = select(declared, names, all_sources)
    except SourcesFileError as exc:
        fail(str(exc), 2)
        return
    if not chosen:
        fail(f"no enabled sources in {path} (set `enabled = true`, or name a source)", 2)
    require_current_ids(settings)
    code = run_crawls(settings, chosen, refresh=refresh, wait=wait, timeout=timeout, as_json=as_json)
    raise SystemExit(code)


def _list(declared: list[Any], as_json: bool) -> None:
    rows = [
        {
            "name": s.name,
            "kind": s.kind,
            "location": s.location,
            "schedule": s.schedule.describe() if s.schedule else None,
            "enabled": s.enabled,
        }
        for s in declared
    ]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        flag = "" if r["enabled"] else "  (disabled)"
        click.echo(f"{r['name']:24} {r['kind']:8} {r['schedule'] or 'manual':16} {r['location']}{flag}")


def run_crawls(settings: Any, chosen: list[Any], *, refresh: bool, wait: bool, timeout: float, as_json: bool) -> int:
    from newsflow.crawl import CrawlContext, CrawlReport, crawl_source
    from newsflow.dispatch import queue_depth, send_first
    from newsflow.fetcher import make_session
    from newsflow.pipeline import FIRST
    from newsflow.stores import Stores
    from workers.app import app

    stores = Stores.from_settings(settings)
    state = stores.state
    progress = Progress(sys.stderr.isatty() and not as_json)
    started = time.monotonic()

    def one(source: Any) -> CrawlReport:
        ctx = CrawlContext(
            settings=settings,
            stores=stores,
            session=make_session(settings),
            enqueue=lambda messages: send_first(app, messages),
            fetch_queue_depth=lambda: queue_depth(app, FIRST.queue),
        )
        return crawl_source(source, ctx, refresh=refresh)

    try:
        with ThreadPoolExecutor(max_workers=min(4, len(chosen))) as pool:
            reports = list(pool.map(one, chosen))
    except Exception as exc:  # Redis or broker down: say where, and how to fix it
        progress.close()
        fail(f"cannot crawl via {redact_url(settings.redis_url)}: {exc}. Is Redis running (`newsflow up`)?")
        return 1
    rows = [{**r.to_dict(), "indexed": 0, "failed": 0, "pending": 0} for r in reports]
    counts = _totals(rows)
    progress.show(counts)
    timed_out = False
    if wait:
        timed_out = _wait(state, reports, rows, timeout, progress)
    progress.close()
    totals = _totals(rows)
    failed_sources = [r["source"] for r in rows if r["status"] == "failed"]
    summary = {
        "ok": not failed_sources and not timed_out,
        "sources": rows,
        "totals": totals,
        "failed_sources": failed_sources,
        "waited": wait,
        "timed_out": timed_out,
        "duration_s": round(time.monotonic() - started, 3),
    }
    if as_json:
        emit_json(summary)
    else:
        _print(rows, summary)
    return 1 if failed_sources else 2 if timed_out else 0


def _totals(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys((*COUNTERS, "filtered", "left_over", "pending"), 0)
    for r in rows:
        for k in out:
            out[k] += int(r.get(k) or 0)
    return out


def _wait(state: Any, reports: list[Any], rows: list[dict[str, Any]], timeout: float, progress: Progress) -> bool:
    """Follow the ledger until every enqueued article is indexed or dead; True if time ran out."""
    from newsflow.pipeline import TERMINAL_STATES

    since = {r.source: r.started_at for r in reports}
    owner: dict[str, int] = {}
    for i, r in enumerate(reports):
        for _url, aid in r.enqueued_items:
            owner.setdefault(aid, i)
    done: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while True:
        pending = [aid for aid in owner if aid not in done]
        if pending:
            for aid, entry in zip(pending, state.ledgers(pending), strict=True):
                src = reports[owner[aid]].source
                if entry and entry.state in TERMINAL_STATES and entry.updated_at >= since[src]:
                    done[aid] = entry.state
        for i, row in enumerate(rows):
            mine = [aid for aid, o in owner.items() if o == i]
            row["indexed"] = sum(done.get(a) == "indexed" for a in mine)
            row["failed"] = sum(done.get(a) == "dead" for a in mine)
            row["pending"] = len(mine) - row["indexed"] - row["failed"]
        left = len(owner) - len(done)
        progress.show(_totals(rows), left)
        if not left:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.25)


def _print(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    click.echo(f"{'source':24} {'status':13} {'found':>6} {'seen':>6} {'queued':>6} {'indexed':>7} {'failed':>6}")
    for r in rows:
        why = f"  {r['reason']}: {r['detail']}" if r.get("reason") else (f"  {r['detail']}" if r.get("detail") else "")
        click.echo(
            f"{r['source']:24} {r['status']:13} {r['discovered']:>6} {r['skipped_seen']:>6} {r['enqueued']:>6} "
            f"{r['indexed']:>7} {r['failed']:>6}{why}"
        )
    click.echo(f"{summary['duration_s']:.1f} s" + ("; --wait timed out" if summary["timed_out"] else ""), err=True)


COMMANDS = [crawl]
