"""`newsflow migrate`: re-key stored articles after the article id rule changed (newsflow/migrate.py)."""

from __future__ import annotations

from typing import Any

import click

from config.defaults import Settings
from workers.cli.common import emit_json, fail, settings_or_exit


def _pending(settings: Settings) -> int:
    """Messages waiting in, or taken from and not yet acknowledged by, any queue: they carry old ids."""
    from newsflow import queues
    from newsflow.state import connect
    from workers.cli.ops import queue_names

    infos = queues.inspect_queues(connect(settings.redis_url), queue_names())
    return sum(q.depth + q.unacked for q in infos)


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--force", is_flag=True, help="Run although messages are still queued (they carry old ids).")
def migrate(dry_run: bool, as_json: bool, force: bool) -> None:
    """Re-key stored articles to this newsflow's article id rule (URL normalisation version).

    Needed once after an upgrade that changes how URLs are normalised (a command refusing to run
    says so). Re-keys the tombstones, the ledger and dead letters, the crawl seen-set, cluster
    assignments and the search index (rebuilt under the new ids, with `site` recomputed from the
    requested and final URLs). Idempotent: run it again after an interruption.

    \b
    Before: stop crawls and ingests, let the queues drain (`newsflow status`), stop the workers.
    Progress goes to stderr; counts per store to stdout.
    """
    from newsflow.migrate import migrate as run
    from newsflow.search import IndexUnavailable

    settings = settings_or_exit()
    waiting = _pending(settings)
    if waiting and not dry_run and not force:
        fail(
            f"{waiting} message(s) are still queued or unacknowledged, with ids of the old rule: stop crawls "
            "and ingests, let the workers drain the queues (`newsflow status`), stop them, then migrate "
            "(or pass --force)"
        )

    def progress(message: str) -> None:
        click.echo(f"migrate: {message}", err=True)

    try:
        report = run(settings, dry_run=dry_run, progress=progress)
    except IndexUnavailable as exc:
        fail(f"the index at {settings.index_dir} is locked by a writer ({exc}): stop the workers and retry")
        return
    out: dict[str, Any] = report.to_dict()
    out["queued_messages"] = waiting
    if as_json:
        emit_json(out)
        return
    verb = "would re-key" if dry_run else "re-keyed"
    dry = " (dry run)" if dry_run else ""
    click.echo(f"article ids: version {report.from_version or '-'} -> {report.to_version}{dry}")
    for store, counts in out["stores"].items():
        click.echo(
            f"  {store:<11} {verb} {counts['rekeyed']}, unchanged {counts['unchanged']}, "
            f"merged {counts['merged']}, unmapped {counts['unmapped']}"
        )
    click.echo(f"  site tombstones added: {report.sites_added}; purged articles left out of the index: "
               f"{report.index_tombstoned}")  # fmt: skip
    for merge in report.merges[:20]:
        click.echo(f"  merged ({merge['store']}): {merge}")


COMMANDS = [migrate]
