"""`newsflow reconcile`: resume articles whose message a killed worker took with it."""

from __future__ import annotations

import click

from workers.cli.common import SECONDS, emit_json, settings_or_exit


@click.command()
@click.option(
    "--older-than",
    "older_than_s",
    type=SECONDS,
    default=None,
    help="Resume articles with no transition for this long (default NEWSFLOW_RECONCILE_AFTER_S).",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be resumed.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {article_id, url, state, stage, idle_s}.")
def reconcile(older_than_s: float | None, dry_run: bool, as_json: bool) -> None:
    """Re-send the next stage's message for articles stuck in flight.

    Celery's Redis transport can lose a message when a worker is killed between taking it and
    recording it as unacknowledged. The ledger still knows such an article is in flight; this
    re-sends it to the stage it was about to enter (fetch again when that stage's input is gone).
    Stages are idempotent, so resuming an article that was merely slow costs work, not duplicates.
    An article a message in the broker still carries (queued or unacked) is late, not lost, and
    left alone; nothing is resumed while Redis is full, nor for the same delay after it was.
    `newsflow up` and beat run this every NEWSFLOW_RECONCILE_INTERVAL_S.
    """
    from newsflow.reconcile import reconcile
    from newsflow.state import State
    from workers.app import app

    settings = settings_or_exit()
    threshold = settings.reconcile_after_s if older_than_s is None else older_than_s
    resumed = reconcile(
        app, State.from_settings(settings), threshold, max_resumes=settings.max_retries, dry_run=dry_run
    )
    if as_json:
        emit_json([r.__dict__ for r in resumed])
        return
    verb = "would resume" if dry_run else "resumed"
    click.echo(f"{verb} {len(resumed)} article(s) idle for more than {threshold:g} s")
    for r in resumed:
        click.echo(f"  {r.article_id}  {r.state:10} -> {r.stage:7} idle {r.idle_s:8.1f} s  {r.url}")


COMMANDS = [reconcile]
