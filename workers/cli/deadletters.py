"""`newsflow deadletters list|replay`: see what died where and why, and send it round again."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import click

from config.settings import redact_url
from newsflow.pipeline import BY_NAME, CRAWL_QUEUE, FIRST, ORDER, BadMessage, Message, reentry, state_before
from workers.cli.common import emit_json, fail, settings_or_exit

# The stages a dead letter can name: the pipeline's, and `crawl` (a source document that could not
# be read, newsflow/crawl.py). Any other --stage is a typo that would match nothing.
DEAD_STAGES = (*ORDER, CRAWL_QUEUE)


@dataclass
class Replay:
    article_id: str
    url: str
    dead_stage: str
    reason: str
    replay_stage: str | None  # None: could not be replayed
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_replay(state: Any, record: dict[str, Any], dry_run: bool = False) -> tuple[Replay, Message | None]:
    """Where the article re-enters, and with which message: the failed stage if its input is still
    there, else fetch (a fresh start from the URL); either way with its origin (source, hints, rate).
    With `dry_run` the note says what would happen (nothing is sent)."""
    payload = record.get("payload") or {}
    aid, url = str(record.get("article_id") or ""), str(record.get("url") or "")
    stage, reason = str(record.get("stage") or ""), str(record.get("reason") or "")
    rep = Replay(aid, url, stage, reason, None, "")
    try:
        message = Message.from_wire(payload)
    except BadMessage as exc:
        rep.note = f"no usable payload ({exc.detail}): cannot replay"
        return rep, None
    rep.url = rep.url or message.url
    at = reentry(stage, message, state) if stage in BY_NAME else FIRST
    rep.replay_stage = at.name
    enter, fetched = ("would re-enter", "would be re-fetched") if dry_run else ("re-entered", "re-fetched")
    if at.name == stage:
        rep.note = f"{enter} at fetch" if at == FIRST else f"input still stored: {enter} at the failed stage"
    else:
        rep.note = f"input of {stage} gone (expired or deleted): {fetched} from the URL"
    return rep, message.restart(at.name)


def _records(state: Any, stage: str | None, reason: str | None, ids: tuple[str, ...], limit: int) -> list[Any]:
    if ids:
        found = [state.dead_letter_record(i) for i in ids]
        return [r for r in found if r and (stage is None or r.get("stage") == stage) and
                (reason is None or r.get("reason") == reason)]  # fmt: skip
    return list(state.dead_letters(limit, stage=stage, reason=reason))


@click.group()
def deadletters() -> None:
    """Articles that died: list them by stage and reason, replay them.

    Every dead letter keeps the payload of the stage that failed, so a replay re-enters the
    pipeline right there (or at fetch, if that stage's input has expired).
    """


@deadletters.command("list")
@click.option("--stage", type=click.Choice(DEAD_STAGES), help="Only dead letters of this stage.")
@click.option("--reason", help="Only this reason (e.g. http_404, no_article, timeout).")
@click.option("--limit", "-n", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of dead-letter records (newest first).")
def list_cmd(stage: str | None, reason: str | None, limit: int, as_json: bool) -> None:
    """Newest dead letters first, with a count by stage and reason."""
    from newsflow.state import State

    settings = settings_or_exit()
    state = State.from_settings(settings)
    records = _records(state, stage, reason, (), limit)
    if as_json:
        emit_json(records)
        return
    counts = [c for c in state.dead_letter_counts() if stage in (None, c["stage"]) and reason in (None, c["reason"])]
    total = sum(c["count"] for c in counts)
    click.echo(f"{total} dead letter(s) on file" + (f"; newest {len(records)}:" if records else ""))
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.get("time", 0)))
        click.echo(f"{when}  {r['stage']:7} {r['reason']:22} {r['article_id']}  {r['url']}")
        if r.get("detail"):
            click.echo(f"{'':21}{str(r['detail'])[:160]}")
    if counts:
        click.echo("\nby stage and reason:")
        for c in counts:
            click.echo(f"  {c['stage']:8} {c['reason']:28} {c['count']:>7}")


@deadletters.command("replay")
@click.option("--stage", type=click.Choice(DEAD_STAGES), help="Replay the dead letters of this stage.")
@click.option("--reason", help="Replay the dead letters with this reason.")
@click.option("--id", "ids", multiple=True, metavar="ARTICLE_ID", help="Replay this article (repeatable).")
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter (up to --limit).")
@click.option("--limit", "-n", type=click.IntRange(1, 100_000), default=10_000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of what was done per article.")
def replay(
    stage: str | None, reason: str | None, ids: tuple[str, ...], replay_all: bool, limit: int, dry_run: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """Send dead articles round again, from the stage that failed, and clear their dead letters.

    Needs running workers to make progress (`newsflow up`); follow them with `newsflow trace ID`.
    Exit status 1 if some could not be replayed (an --id with no dead letter counts as one), 2 usage.
    """
    from newsflow.dispatch import send
    from newsflow.state import State
    from workers.cli.ops import control_app

    if not (stage or reason or ids or replay_all):
        fail("say what to replay: --stage, --reason, --id, or --all", 2)
    settings = settings_or_exit()
    state = State.from_settings(settings)
    ids = tuple(dict.fromkeys(ids))  # an id named twice is replayed once
    records = _records(state, stage, reason, ids, limit)
    app = control_app(settings)
    done: list[Replay] = []
    for record in records:
        rep, message = plan_replay(state, record, dry_run)
        done.append(rep)
        if message is None or rep.replay_stage is None or dry_run:
            continue
        state.clear_dead(rep.article_id)
        # Recorded before the send: a fast worker's verdict on the replay must not be overwritten.
        state.record(
            rep.article_id, rep.url, state_before(rep.replay_stage), "replay",
            detail=f"re-entered at {rep.replay_stage} (was dead at {rep.dead_stage}: {rep.reason})",
        )  # fmt: skip
        try:
            send(app, BY_NAME[rep.replay_stage], message)
        except Exception as exc:  # broker down: put the dead letter back as it was, then say so
            state.dead_letter(rep.article_id, rep.url, rep.dead_stage, rep.reason, str(record.get("detail")),
                              record.get("payload") or {})  # fmt: skip
            fail(f"cannot enqueue on {redact_url(settings.redis_url)}: {exc}; dead letter kept")
    done += _not_found(ids, records, stage, reason)
    if as_json:
        emit_json([r.to_dict() for r in done])
    else:
        verb = "would replay" if dry_run else "replayed"
        for r in done:
            what = f"{verb} at {r.replay_stage}" if r.replay_stage else "NOT replayed"
            was = f"was {r.dead_stage}/{r.reason}: " if r.dead_stage else ""
            click.echo(f"{r.article_id}  {what:20} {was}{r.note}  {r.url}".rstrip())
        n = sum(1 for r in done if r.replay_stage)
        click.echo(f"{verb} {n} of {len(done)} dead letter(s)", err=True)
    raise SystemExit(0 if all(r.replay_stage for r in done) else 1)


def _not_found(ids: tuple[str, ...], records: list[Any], stage: str | None, reason: str | None) -> list[Replay]:
    """A row for each --id that has no dead letter (or none of --stage/--reason): asked for and
    not replayed, so it shows in the output and makes the exit status 1, never a silent success."""
    found = {str(r.get("article_id")) for r in records}
    filtered = " matching --stage/--reason" if stage or reason else ""
    return [Replay(i, "", "", "", None, f"no dead letter for this id{filtered}") for i in ids if i not in found]


COMMANDS = [deadletters]
