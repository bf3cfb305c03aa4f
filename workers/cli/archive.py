"""`newsflow archive stats|prune`, `reprocess` and `backfill`: the WARC archive (docs/archive.md)."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from config.defaults import Settings
from newsflow.logs import configure
from workers.cli.common import SECONDS, Duration, emit_json, fail, read_list, settings_or_exit

EXAMPLES = 5


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from newsflow.search.schema import parse_date

    when = parse_date(value)
    if when is None:
        raise click.UsageError(f"--since {value!r}: expected a date like 2026-01-31 or 2026-01-31T12:00:00Z")
    return when


def _archive_dir(settings: Settings) -> Path:
    if not settings.archive_path:
        fail("archiving is off (NEWSFLOW_ARCHIVE_DIR is empty)", 2)
    return Path(settings.archive_path)


# --- archive stats / prune ----------------------------------------------------------------------


@click.group()
def archive() -> None:
    """The WARC archive of every fetch (NEWSFLOW_ARCHIVE_DIR, default $NEWSFLOW_DATA_DIR/warc)."""


@archive.command()
@click.option("--verify", is_flag=True, help="Also read every file to its end: complete records, torn tails.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stats(verify: bool, as_json: bool) -> None:
    """Files, bytes, captures and hosts of the archive (and, with --verify, whether each file reads)."""
    from newsflow.archive.reader import file_size, iter_records
    from newsflow.archive.retention import list_files
    from newsflow.archive.retention import stats as archive_stats

    settings = settings_or_exit()
    where = _archive_dir(settings)
    out = archive_stats(where)
    out["limits"] = {"max_bytes": settings.archive_max_bytes, "max_age_days": settings.archive_max_age_days}
    if verify:
        records, torn = 0, []
        for f in list_files(where):
            end = 0
            for _type, offset, length in iter_records(f.path):
                records += 1
                end = offset + length
            if end < file_size(f.path):
                torn.append({"file": f.name, "readable_bytes": end, "bytes": file_size(f.path)})
        out["records"], out["torn_files"] = records, torn
    if as_json:
        emit_json(out)
        return
    click.echo(f"archive   {out['dir']}")
    click.echo(f"files     {out['files']} ({out['bytes'] / 1e6:.1f} MB, index {out['index_bytes'] / 1e6:.1f} MB)")
    click.echo(f"captures  {out['captures']}")
    click.echo(f"oldest    {out['oldest'] or '-'} ({out['oldest_age_days'] or 0} days)")
    click.echo(f"newest    {out['newest'] or '-'}")
    click.echo("hosts     " + (", ".join(f"{h}: {n}" for h, n in out["files_per_host"].items()) or "-"))
    if verify:
        click.echo(f"records   {out['records']} readable; {len(out['torn_files'])} file(s) with a torn last record")


@archive.command("prune")
@click.option("--max-bytes", type=int, default=None, help="Size limit [setting archive_max_bytes].")
@click.option("--max-age-days", type=Duration("days"), default=None, help="Age limit [setting archive_max_age_days].")
@click.option("--dry-run", is_flag=True, help="Only list the files that would go.")
@click.option("--json", "as_json", is_flag=True, help="Print what was (or would be) removed as JSON.")
def prune_cmd(max_bytes: int | None, max_age_days: float | None, dry_run: bool, as_json: bool) -> None:
    """Remove the oldest files beyond the size and age limits (files still being written stay)."""
    from newsflow.archive.retention import prune

    settings = settings_or_exit()
    where = _archive_dir(settings)
    limit_b = settings.archive_max_bytes if max_bytes is None else max_bytes
    limit_d = settings.archive_max_age_days if max_age_days is None else max_age_days
    removed = prune(
        where, max_bytes=limit_b, max_age_s=limit_d * 86400, busy_s=settings.archive_roll_s + 60, dry_run=dry_run
    )
    if as_json:
        emit_json({"dry_run": dry_run, "removed": removed})
        return
    click.echo(f"{'would remove' if dry_run else 'removed'} {len(removed)} file(s)")
    for name in removed:
        click.echo(f"  {name}")


# --- reprocess ----------------------------------------------------------------------------------------


def _read_ids(path: str) -> list[str]:
    """The ids (or URLs) listed in `path` ('-': stdin). Read as `ingest --file` reads its list: a
    missing, unreadable or binary file is a usage error (exit 2), not a traceback."""
    lines = read_list(path, "--ids", "article ids or URLs").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _check_source(settings: Settings, name: str | None) -> None:
    """Refuse a --source the sources file does not declare, as `crawl` does (exit 2, the declared
    names listed): an unknown name would select nothing and look like a success."""
    from newsflow.sources.config import SourcesFileError, load_sources, select, sources_path

    if name is None:
        return
    path = sources_path(settings)
    if not path.exists():
        return  # no sources file to check the name against
    try:
        select(load_sources(path, settings), [name], all_enabled=False)
    except SourcesFileError as exc:
        # A source since removed from the file still has its articles: they are selected otherwise.
        fail(f"--source: {exc} (articles of a source no longer declared: select them with --site or --ids)", 2)


@click.command()
@click.option("--source", default=None, metavar="NAME", help="Only articles of this configured source.")
@click.option("--site", default=None, metavar="HOST", help="Only articles of this site (www. ignored).")
@click.option("--since", default=None, metavar="DATE", help="Only articles captured on or after DATE (ISO 8601).")
@click.option("--ids", "ids_file", default=None, metavar="FILE",
              help="Only these articles: ids (or URLs), one per line ('-' for stdin).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Extract each capture here and report what would change; send nothing.")
@click.option("--wait", is_flag=True, help="Block until each article sent is indexed or dead-lettered.")
@click.option("--timeout", type=SECONDS, default=600.0, show_default=True, help="Seconds --wait waits at most.")
@click.option("--examples", type=click.IntRange(0, 1000), default=EXAMPLES, show_default=True,
              help="Changed articles shown by --dry-run.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def reprocess(
    source: str | None,
    site: str | None,
    since: str | None,
    ids_file: str | None,
    dry_run: bool,
    wait: bool,
    timeout: float,
    examples: int,
    as_json: bool,
) -> None:
    """Send indexed articles through clean -> enrich -> index again, from their archived capture.

    Nothing is fetched: each article's capture (its location is kept in the index) is parked in
    the claim-check store as a fetch would, under the same id, with the crawl's backpressure.
    Articles without a readable capture are listed. --dry-run runs this process's extraction
    (NEWSFLOW_CLEAN_EXTRACT_DISABLE and the installed code) on each capture and reports for how
    many articles body, title, author or date would differ, with examples.
    Exit status: 0 done; 1 some article dead or without a capture; 2 timed out or the clean
    queue stayed full; 3 Redis unreachable.
    """
    from newsflow.archive.reprocess import Selection, select
    from newsflow.search import NoIndex

    settings = settings_or_exit()
    configure(settings.log_level)
    selection = Selection(source=source, site=site, since=_since(since))
    _check_source(settings, source)
    ids = _read_ids(ids_file) if ids_file else None
    if not Path(settings.index_dir, "meta.json").exists():
        fail(f"no index at {settings.index_dir}: nothing to reprocess", 1)
    try:
        docs = select(settings.index_dir, selection, ids)
        if dry_run:
            report = _dry_run(settings, docs, examples)
            code = 0
        else:
            report, code = _reprocess(settings, docs, wait, timeout)
    except NoIndex:
        fail(f"no index at {settings.index_dir}: nothing to reprocess", 1)
        return
    report["without_capture_count"] = len(report["without_capture"])
    if as_json:
        emit_json(report)
    else:
        _print_reprocess(report)
    if code == 0 and report["without_capture"]:
        code = 1
    raise SystemExit(code)


def _dry_run(settings: Settings, docs: Any, n_examples: int) -> dict[str, Any]:
    from newsflow.archive.feed import fetch_meta
    from newsflow.archive.reprocess import diff, example
    from newsflow.errors import PermanentError
    from tasks.clean import build_doc, extract_options

    options = extract_options(settings.clean_extract_disable)
    max_html, min_body, max_elements = (
        settings.clean_max_html_bytes,
        settings.clean_min_body_chars,
        settings.clean_max_elements,
    )
    fields: Counter[str] = Counter()
    fails: Counter[str] = Counter()
    out: dict[str, Any] = {"dry_run": True, "selected": 0, "compared": 0, "changed": 0, "unchanged": 0}
    shown: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    for doc, prep in _prepared(settings, docs, "comparing", out, missing):
        msg = prep.message.forward(fetch=fetch_meta(prep.page, prep.capture))
        try:
            new = build_doc(msg, prep.page.html, max_html, min_body, options, max_elements)
        except PermanentError as exc:
            fails[exc.reason] += 1
            if len(shown) < n_examples:
                shown.append({"id": doc["id"], "url": doc.get("url"), "would_fail": exc.reason})
            continue
        out["compared"] += 1
        changed = diff(doc, new)
        if not changed:
            out["unchanged"] += 1
            continue
        out["changed"] += 1
        fields.update(changed)
        if len(shown) < n_examples:
            shown.append(example(doc, new, changed))
    out["changed_fields"] = {f: fields.get(f, 0) for f in ("body", "title", "author", "published")}
    out["would_fail"] = dict(fails)
    out["examples"] = shown
    out["without_capture"] = missing
    return out


def _prepared(
    settings: Settings, docs: Any, label: str, out: dict[str, Any], missing: list[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], Any]]:
    """Each selected article with its capture read back (`reprocess.prepare`), under a progress bar;
    counts them in `out["selected"]` and lists those without a readable capture in `missing`."""
    from newsflow.archive.reader import CaptureUnavailable
    from newsflow.archive.reprocess import prepare
    from newsflow.errors import PermanentError

    with click.progressbar(docs, label=label, file=sys.stderr, show_pos=True) as bar:
        for doc in bar:
            out["selected"] += 1
            try:
                prep = prepare(settings, doc, None)
            except (CaptureUnavailable, PermanentError) as exc:
                missing.append(_missing(doc, exc))
                continue
            yield doc, prep


def _missing(doc: dict[str, Any], exc: Exception) -> dict[str, Any]:
    reason = getattr(exc, "reason", type(exc).__name__)
    return {"id": doc.get("id"), "url": doc.get("url"), "reason": reason, "detail": getattr(exc, "detail", str(exc))}


def _reprocess(settings: Settings, docs: Any, wait: bool, timeout: float) -> tuple[dict[str, Any], int]:
    from newsflow.archive.feed import Backpressure
    from newsflow.stores import Stores
    from workers import client

    stores = Stores.from_settings(settings)
    feeder = _feeder(settings, stores, "reprocess", wait)
    missing: list[dict[str, Any]] = []
    out: dict[str, Any] = {"dry_run": False, "selected": 0}
    code = 0
    started = time.monotonic()
    try:
        for _doc, prep in _prepared(settings, docs, "sending", out, missing):
            feeder.feed(prep.message, prep.page, prep.capture)
        feeder.flush()
    except Backpressure as exc:
        click.echo(f"newsflow: stopped sending: {exc}", err=True)
        code = 2
    out["sent"] = feeder.sent
    out["send_s"] = round(time.monotonic() - started, 2)
    out["backpressure_waited_s"] = round(feeder.waited_s, 2)
    out["without_capture"] = missing
    submitted = [client.Submitted(url, aid, at) for url, aid, at in feeder.sent_items]
    if wait and submitted:
        code = max(code, _wait(stores, submitted, timeout, out))
    return out, code


def _feeder(settings: Settings, stores: Any, reason: str, wait: bool, drop_purged: bool = False) -> Any:
    from newsflow.archive.feed import Feeder
    from newsflow.dispatch import queue_depth, send
    from newsflow.pipeline import BY_NAME, Message
    from newsflow.search.tombstones import site_of_url
    from workers.app import app

    clean = BY_NAME["clean"]

    def send_all(messages: list[Message]) -> None:
        with app.producer_or_acquire() as producer:
            for msg in messages:
                send(app, clean, msg, producer=producer)

    def purged(messages: list[Message]) -> set[str]:
        """Taken down (`newsflow purge`): a backfill does not bring them back."""
        ids, sites = [m.id for m in messages], [[site_of_url(m.url)] for m in messages]
        return set(stores.tombstones.dead_among(ids, sites))

    return Feeder(
        stores.state, settings, send_clean=send_all, clean_queue_depth=lambda: queue_depth(app, clean.queue),
        reason=reason, drop=purged if drop_purged else None, keep_sent=wait,
    )  # fmt: skip


def _wait(stores: Any, submitted: list[Any], timeout: float, out: dict[str, Any]) -> int:
    from workers import client
    from workers.cli.pipeline import progress

    with progress(len(submitted), "indexing") as update:
        outcomes = client.wait(stores.state, submitted, timeout, update)
    states = Counter(o.state for o in outcomes)
    for name in ("indexed", "dead", "pending"):
        out[name] = states.get(name, 0)
    out["dead_articles"] = [o.to_dict() for o in outcomes if o.state == "dead"][:1000]
    return 1 if out["dead"] else 2 if out["pending"] else 0


def _print_reprocess(report: dict[str, Any]) -> None:
    if report.get("dry_run"):
        click.echo(
            f"{report['selected']} selected, {report['compared']} compared: {report['changed']} would change, "
            f"{report['unchanged']} would not"
        )
        click.echo("  fields: " + ", ".join(f"{k} {v}" for k, v in report["changed_fields"].items()))
        if report["would_fail"]:
            click.echo("  would be dead-lettered: " + ", ".join(f"{k} {v}" for k, v in report["would_fail"].items()))
        for ex in report["examples"]:
            click.echo(f"  {ex['id']} {ex.get('url')}")
            for name, change in (ex.get("changed") or {}).items():
                click.echo(f"    {name}: {change['now']!r}\n      -> {change['would_be']!r}")
    else:
        click.echo(f"{report['selected']} selected, {report['sent']} sent in {report['send_s']} s")
        if "indexed" in report:
            click.echo(f"  indexed {report['indexed']}, dead {report['dead']}, pending {report['pending']}")
    for m in report["without_capture"]:
        click.echo(f"  no capture: {m['id']} {m.get('url') or ''} ({m['reason']}: {m['detail']})")


# --- backfill ------------------------------------------------------------------------------------


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--url-filter", default=None, metavar="REGEX", help="Only records whose URL this matches (re.search).")
@click.option("--since", default=None, metavar="DATE", help="Only captures on or after DATE (ISO 8601).")
@click.option("--wait", is_flag=True, help="Block until each page sent is indexed or dead-lettered.")
@click.option("--timeout", type=SECONDS, default=600.0, show_default=True, help="Seconds --wait waits at most.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def backfill(files: tuple[str, ...], url_filter: str | None, since: str | None, wait: bool, timeout: float,
             as_json: bool) -> None:  # fmt: skip
    """Index the HTML pages of WARC files from elsewhere (CC-NEWS, another crawler's archive).

    Each response record with status 200 and an HTML page goes through clean -> enrich -> index
    without a fetch, keeping the capture's URL and date; ids are those a live fetch of the URL
    would get, noindex pages are honoured, taken-down articles stay down. Files are streamed
    (memory does not grow with their size) with the crawl's backpressure. Every other record is
    counted by reason (revisit, not_200, not_html, truncated, malformed, ...).
    Exit status: 0 done; 1 some page dead; 2 timed out, the clean queue stayed full, or no file held a
    readable WARC record; 3 Redis unreachable.
    """
    from newsflow.archive.backfill import read_pages
    from newsflow.archive.feed import Backpressure
    from newsflow.pipeline import Message
    from newsflow.polite.robots import bot_token
    from newsflow.stores import Stores
    from workers import client

    settings = settings_or_exit()
    configure(settings.log_level)
    try:
        pattern = re.compile(url_filter) if url_filter else None
    except re.error as exc:
        raise click.UsageError(f"--url-filter: {exc}") from None
    when = _since(since)
    stores = Stores.from_settings(settings)
    feeder = _feeder(settings, stores, "backfill", wait, drop_purged=True)
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    bot = bot_token(settings.user_agent) if settings.polite_obey_noindex else None
    total = sum(Path(f).stat().st_size for f in files)
    code, started, pages = 0, time.monotonic(), 0
    unreadable: list[str] = []
    try:
        with click.progressbar(length=total, label="backfill", file=sys.stderr, show_pos=True) as bar:
            for path in files:
                moved, before = [0], Counter(counts)

                def on_bytes(pos: int, moved: list[int] = moved) -> None:
                    if pos > moved[0]:
                        bar.update(pos - moved[0])
                        moved[0] = pos

                pages_before = pages
                for page in read_pages(path, counts, max_bytes=settings.fetch_max_bytes, url_filter=pattern,
                                       since=when, noindex_bot=bot, on_bytes=on_bytes):  # fmt: skip
                    pages += 1
                    if page.article_id in seen:
                        counts["duplicate"] += 1
                        continue
                    seen.add(page.article_id)
                    feeder.feed(Message.new(page.url, page.article_id), page.page, page.capture.to_dict())
                if pages == pages_before and set((counts - before).keys()) <= {"malformed"}:
                    # Nothing but unreadable records: not a WARC file (or a damaged one), say so.
                    unreadable.append(path)
                    click.echo(f"newsflow: warning: {path}: no readable WARC record (is it a WARC file?)", err=True)
            feeder.flush()
    except Backpressure as exc:
        click.echo(f"newsflow: stopped sending: {exc}", err=True)
        code = 2
    elapsed = time.monotonic() - started
    if feeder.dropped:
        counts["purged"] += feeder.dropped
    out: dict[str, Any] = {
        "files": list(files),
        "html_200_pages": pages,
        "sent": feeder.sent,
        "skipped": dict(sorted(counts.items())),
        "read_s": round(elapsed, 2),
        "pages_per_s": round(pages / elapsed, 1) if elapsed > 0 else None,
        "backpressure_waited_s": round(feeder.waited_s, 2),
    }
    if unreadable:
        out["unreadable_files"] = unreadable
        if len(unreadable) == len(files):
            code = max(code, 2)
    submitted = [client.Submitted(url, aid, at) for url, aid, at in feeder.sent_items]
    if wait and submitted:
        code = max(code, _wait(stores, submitted, timeout, out))
    if as_json:
        emit_json(out)
    else:
        click.echo(f"{pages} HTML 200 pages read, {out['sent']} sent in {out['read_s']} s")
        click.echo("  skipped: " + (", ".join(f"{k} {v}" for k, v in out["skipped"].items()) or "none"))
        if "indexed" in out:
            click.echo(f"  indexed {out['indexed']}, dead {out['dead']}, pending {out['pending']}")
    raise SystemExit(code)


COMMANDS = [archive, reprocess, backfill]
