"""`newsflow reindex`, `backup` and `purge`: index lifecycle and takedowns.

Where articles live durably: the `source` stored field of the index (each article's whole JSON).
`reindex` rebuilds the index from it (or from a `backup` file) without fetching anything again;
`backup` writes it out as gzipped JSON lines. See docs/search.md.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from config.defaults import Settings
from config.settings import redact_url
from newsflow.jsonlines import record_problem
from newsflow.search import IndexBackend
from workers.cli.common import (
    EXIT_REDIS_UNREACHABLE,
    emit_json,
    fail,
    json_line,
    require_current_ids,
    settings_or_exit,
)

REINDEX_BATCH = 1000


def _tombstones(settings: Settings) -> Any:
    from newsflow.search.tombstones import Tombstones
    from newsflow.state import connect

    log = Path(settings.data_dir) / "tombstones.jsonl"
    return Tombstones(connect(settings.state_url, settings), settings.key_prefix, log)


def _redis_or_fail(settings: Settings, what: str) -> None:
    import redis

    from newsflow.state import connect

    try:
        connect(settings.state_url, settings).ping()
    except redis.RedisError as exc:
        where = redact_url(settings.state_url)
        fail(
            f"cannot reach the state Redis at {where} ({exc}) to {what}: start it (`newsflow up`)",
            EXIT_REDIS_UNREACHABLE,
        )


class BadBackup(Exception):
    """A rebuild that must not replace the index; the message names the file (and line) at fault."""


def _read_backup(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each record of a `newsflow backup` file with its line number. BadBackup at the first line
    that is not an article, or when the file cannot be read (named .gz but not gzip, truncated)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
            for n, raw in enumerate(f, 1):
                if raw.strip():
                    yield n, _backup_record(path, n, raw)
    except gzip.BadGzipFile:
        raise BadBackup(f"{path} is not gzip-compressed though its name ends in .gz") from None
    except (OSError, EOFError, zlib.error) as exc:  # EOFError: a gzip file cut short
        raise BadBackup(f"cannot read {path}: {exc}") from None


def _backup_record(path: Path, n: int, raw: bytes) -> dict[str, Any]:
    row, problem = record_problem(raw, _article_problem)
    if problem:
        raise BadBackup(f"{path} line {n} is not a newsflow backup record: {problem}")
    return dict(row)


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _article_problem(row: Any) -> str | None:
    """What keeps `row` from being an article as `backup` writes it (the index keys it by its id,
    the tombstones and `show` by its URL), or None."""
    from newsflow.urls import looks_like_article_id

    if not isinstance(row, dict):
        return f"it is a JSON {_JSON_KINDS.get(type(row), 'value')}, not an article object"
    aid = row.get("id")
    if not (isinstance(aid, str) and looks_like_article_id(aid)):
        return f'its "id" {json.dumps(aid)[:80]} is not an article id (32 hex digits)' if "id" in row else 'no "id"'
    if not (isinstance(row.get("url"), str) and row["url"]):
        return 'no article "url"'
    return None


@click.command()
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Rebuild from a `newsflow backup` file instead of the index's own stored articles.")  # fmt: skip
@click.option("--keep-old", is_flag=True, help="Keep the previous index directory as index.old-<time>.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary to stdout.")
def reindex(source: Path | None, keep_old: bool, as_json: bool) -> None:
    """Rebuild the search index from stored article documents, without fetching anything.

    Use after a schema change (a newer newsflow says so) or to restore a backup. Tombstoned
    (purged) articles are left out. Stop the index worker first: the rebuild holds the index lock
    so no article is written to the old index while the new one is built. The index is replaced
    only once the rebuild succeeded: a bad backup file (any line not an article) changes nothing.
    """
    from newsflow.search import iter_sources

    settings = settings_or_exit()
    _redis_or_fail(settings, "read the tombstones")
    require_current_ids(settings)  # a rebuilt index is marked with this code's id version
    path = Path(settings.index_dir)
    old_lock = _lock_for_rebuild(path, source)
    docs: Iterator[tuple[int, dict[str, Any]]] = _read_backup(source) if source else enumerate(iter_sources(path), 1)
    started = time.monotonic()
    target = path.with_name(f"{path.name}.rebuild-{int(time.time())}")
    try:
        written, skipped = _rebuild(target, docs, _tombstones(settings), settings, source)
    except BadBackup as exc:
        shutil.rmtree(target, ignore_errors=True)
        fail(f"{exc}; the index at {path} is left as it was (restore a file `newsflow backup` wrote)")
        return
    except BaseException:  # a bug, or Ctrl-C: the live index stays, the half-built one goes
        shutil.rmtree(target, ignore_errors=True)
        raise
    del old_lock  # release the lock before the directory moves
    old = _swap_in(path, target, keep_old)
    out = {"indexed": written, "skipped_tombstoned": skipped, "seconds": round(time.monotonic() - started, 2),
           "path": str(path), "previous": str(old) if keep_old else None}  # fmt: skip
    if as_json:
        emit_json(out)
    else:
        click.echo(f"rebuilt {path}: {written} article(s), {skipped} tombstoned left out, {out['seconds']} s")


def _lock_for_rebuild(path: Path, source: Path | None) -> object | None:
    """The old index's writer lock, held for the whole rebuild (None when there is no index)."""
    from newsflow.search import IndexUnavailable, writer_lock

    if (path / "meta.json").exists():
        try:
            return writer_lock(path)
        except IndexUnavailable as exc:
            fail(f"the index at {path} is locked by a writer ({exc}): stop the index worker (`newsflow up`) and retry")
    elif source is None:
        fail(f"no index at {path} to rebuild from: pass --from BACKUP.jsonl.gz")
    return None


def _rebuild(
    target: Path, docs: Iterator[tuple[int, dict[str, Any]]], tombs: Any, settings: Settings, source: Path | None
) -> tuple[int, int]:
    """Build a new index at target from (line, article) pairs, tombstoned ones left out:
    (written, skipped). BadBackup when an article is refused or a backup holds none."""
    from newsflow.search import open_index

    new = open_index(target)
    written = skipped = 0
    batch: list[tuple[int, dict[str, Any]]] = []
    try:
        with click.progressbar(docs, label="reindex", file=sys.stderr, show_pos=True) as bar:
            for item in bar:
                batch.append(item)
                if len(batch) >= REINDEX_BATCH:
                    written, skipped = _sum((written, skipped), _flush(new, batch, tombs, settings, source))
        written, skipped = _sum((written, skipped), _flush(new, batch, tombs, settings, source))
    finally:
        new.close()
    if source is not None and written + skipped == 0:  # an empty file would leave an empty index
        raise BadBackup(f"{source} holds no article")
    return written, skipped


def _sum(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return a[0] + b[0], a[1] + b[1]


def _flush(
    new: IndexBackend, batch: list[tuple[int, dict[str, Any]]], tombs: Any, settings: Settings, source: Path | None
) -> tuple[int, int]:
    """Index the batch's live articles, then empty it: (written, skipped as tombstoned)."""
    from newsflow.search.tombstones import takedown_sites

    docs = [doc for _n, doc in batch]
    dead = tombs.dead_among([d["id"] for d in docs], [takedown_sites(d) for d in docs])
    keep = [(n, d) for n, d in batch if d["id"] not in dead]
    rejected: dict[str, str] = {}
    written = new.upsert_batch([d for _n, d in keep], settings.index_writer_heap_bytes, rejected=rejected)
    if rejected:  # a restore that left an article out would lose it when the old index goes
        aid, why = next(iter(rejected.items()))
        line = next(n for n, d in keep if str(d["id"]) == aid)
        where = f"{source} line {line}" if source else f"article {aid} of the index"
        raise BadBackup(f"{where} cannot be indexed: {why}")
    skipped = len(batch) - len(keep)
    batch.clear()
    return written, skipped


def _swap_in(path: Path, target: Path, keep_old: bool) -> Path:
    """Put the rebuilt index at path; the previous one is kept as the returned path, or deleted."""
    old = path.with_name(f"{path.name}.old-{int(time.time())}")
    if path.exists():
        path.rename(old)
    target.rename(path)
    if not keep_old and old.exists():
        shutil.rmtree(old)
    return old


@click.command()
@click.argument("out", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary to stdout (not with OUT '-').")
def backup(out: str, as_json: bool) -> None:
    """Write every indexed article (its stored JSON) to OUT as JSON lines (gzip if OUT ends in .gz;
    '-' for stdout, uncompressed).

    Reads one consistent commit, so it is safe while the index worker runs. Restore with
    `newsflow reindex --from OUT`.
    """
    settings = settings_or_exit()
    if out == "-" and as_json:  # the summary would land in the middle of the backup
        raise click.UsageError("--json prints to stdout, where OUT '-' writes the backup: drop one of them")
    path = Path(settings.index_dir)
    if not (path / "meta.json").exists():
        fail(f"no index at {path}")
    n = _backup_to_stdout(path) if out == "-" else _backup_to_file(path, Path(out))
    if as_json:
        emit_json({"written": n, "path": out})
    else:
        click.echo(f"wrote {n} article(s) to {'stdout' if out == '-' else out}", err=True)


def _write_sources(index: Path, write: Any) -> int:
    """Each stored article as one JSON line (json_line: a lone surrogate cannot break the encoding)."""
    from newsflow.search import iter_sources

    n = 0
    for doc in iter_sources(index):
        write(json_line(doc))
        n += 1
    return n


def _backup_to_file(index: Path, out: Path) -> int:
    """The backup written to a .part file first, renamed over OUT only once it is whole."""
    opener = gzip.open if out.suffix == ".gz" else open
    tmp = out.with_name(out.name + ".part")
    try:
        with opener(tmp, "wt", encoding="utf-8") as f:
            n = _write_sources(index, f.write)
        tmp.rename(out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        fix = f"create {out.parent} first" if not out.parent.is_dir() else "pass a path you can write to"
        fail(f"cannot write the backup to {out}: {exc.strerror or exc}: {fix}")
        return 0
    return n


def _backup_to_stdout(index: Path) -> int:
    try:
        n = _write_sources(index, lambda line: sys.stdout.buffer.write(line.encode("utf-8")))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early: the backup it got is not whole
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        fail("stdout was closed before the backup was written whole")
        return 0
    return n


@click.command()
@click.argument("targets", nargs=-1, metavar="[URL_OR_ID]...")
@click.option("--site", "sites", multiple=True, metavar="HOST", help="Purge every article of this site, now and later.")
@click.option("--reason", default="purged", show_default=True, help="Why (kept with the tombstone).")
@click.option("--lift", is_flag=True, help="Remove the tombstones instead (the articles may be ingested again).")
@click.option("--list", "listing", is_flag=True, help="List the tombstones.")
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Re-apply a tombstones.jsonl audit log (e.g. to a new Redis).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result (or the list) as JSON to stdout.")
def purge(
    targets: tuple[str, ...], sites: tuple[str, ...], reason: str, lift: bool, listing: bool, replay: Path | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Take articles down: remove them from the index and tombstone them so no later crawl or
    ingest brings them back (they are recorded dead with reason `purged`).

    \b
      newsflow purge https://example.com/story-1 0123456789abcdef
      newsflow purge --site spam.example
      newsflow purge --lift https://example.com/story-1
    """
    settings = settings_or_exit()
    sites = tuple(_site_host(host) for host in sites)  # before anything is touched
    _redis_or_fail(settings, "keep the tombstones")
    tombs = _tombstones(settings)
    if listing:
        emit_json(tombs.listing()) if as_json else _print_listing(tombs.listing())
        return
    if replay:
        _replay(tombs, replay, as_json)
        return
    if not targets and not sites:
        raise click.UsageError("name at least one URL_OR_ID or --site HOST")
    _audit_log_or_fail(tombs)
    require_current_ids(settings)  # a URL is tombstoned under the id this code gives it
    entries = _resolve(settings, targets)
    if lift:
        n = tombs.lift([aid for aid, _u in entries], list(sites))
        emit_json({"lifted": n}) if as_json else click.echo(f"lifted {n} tombstone(s)")
        return
    entries = _with_urls(settings, list(dict.fromkeys(entries + _site_articles(settings, sites))))
    tombs.add_ids(entries, reason)
    for host in sites:
        tombs.add_site(host, reason)
    mode = _remove(settings, entries)
    out = {"purged": [aid for aid, _u in entries], "sites": list(sites), "mode": mode}
    if as_json:
        emit_json(out)
    elif mode == "queued":
        click.echo(f"tombstoned {len(entries)} article(s); the running index worker removes them from the index")
    else:
        click.echo(f"purged {len(entries)} article(s) from the index and tombstoned them")


def _replay(tombs: Any, path: Path, as_json: bool) -> None:
    from newsflow.search.tombstones import BadAuditLog

    try:
        n = tombs.replay(path)
    except BadAuditLog as exc:
        fail(f"{exc}; nothing was re-applied (pass a tombstones.jsonl audit log)")
        return
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
        return
    if as_json:
        emit_json({"replayed": n, "path": str(path)})
    else:
        click.echo(f"re-applied {n} tombstone change(s) from {path}", err=True)


def _audit_log_or_fail(tombs: Any) -> None:
    """Before any change: a takedown the audit log misses is lost by the next `purge --replay`."""
    try:
        tombs.check_log()
    except OSError as exc:
        fail(f"cannot write the tombstone audit log {tombs.log_path} ({exc.strerror or exc}): point "
             "NEWSFLOW_DATA_DIR at a directory you can write to; nothing was purged or lifted")  # fmt: skip


def _site_host(raw: str) -> str:
    """The host of a --site, normalised as the tombstones and the index's site filter spell it.

    An empty one is refused above all: the index reads an empty site as "no filter", so `--site
    "$UNSET"` would take down every article."""
    from newsflow.search.schema import normalize_site
    from newsflow.urls import InvalidURL, wire_host

    example = "name a host, e.g. --site spam.example"
    host = raw.strip()
    if not host:
        raise click.BadParameter(f"the site is empty: {example}", param_hint="--site")
    if "/" in host or host.count(":") == 1:  # a URL, or host:port
        raise click.BadParameter(f"{raw[:100]!r} is not a host (no scheme, port or path): {example}",
                                 param_hint="--site")  # fmt: skip
    if ":" in host:  # an IPv6 address, with or without its brackets
        host = "[" + host.strip("[]") + "]"
    try:
        site = normalize_site(wire_host(host))
    except InvalidURL as exc:
        raise click.BadParameter(f"{raw[:100]!r} is not a host name ({exc}): {example}", param_hint="--site") from None
    if not site or len(site) > 253:  # the DNS limit
        raise click.BadParameter(f"{raw[:100]!r} is not a host name: {example}", param_hint="--site")
    return site


def _print_listing(listing: dict[str, dict[str, Any]]) -> None:
    for host, row in sorted(listing["sites"].items()):
        click.echo(f"site {host}  ({row.get('reason')})")
    for aid, row in sorted(listing["ids"].items()):
        click.echo(f"{aid}  {row.get('url') or '-'}  ({row.get('reason')})")


def _resolve(settings: Settings, targets: tuple[str, ...]) -> list[tuple[str, str]]:
    """(article id, url) per target: ids as given; URLs by the index (final/canonical too) or hashed."""
    from newsflow.urls import InvalidURL, article_id, looks_like_article_id

    index = _reader(settings)
    out: list[tuple[str, str]] = []
    for target in targets:
        doc = index.get(target) if index is not None else None
        if doc is not None:
            out.append((doc["id"], doc.get("url") or target))
        elif looks_like_article_id(target):
            out.append((target, ""))
        else:
            try:
                out.append((article_id(target), target))
            except InvalidURL as exc:
                fail(f"{target!r} is neither an article id nor a URL ({exc})")
    return list(dict.fromkeys(out))


def _reader(settings: Settings) -> IndexBackend | None:
    from newsflow.search import NoIndex, SchemaMismatch, open_index

    try:
        return open_index(settings, create=False)
    except NoIndex:
        return None
    except SchemaMismatch as exc:
        fail(str(exc))
    return None


def _site_articles(settings: Settings, sites: tuple[str, ...]) -> list[tuple[str, str]]:
    """(article id, url) of every indexed article of these (non-empty, checked) sites: the URL from
    the stored document, so a message to the index worker names the article it deletes."""
    index = _reader(settings)
    if index is None or not sites:
        return []
    out: list[tuple[str, str]] = []
    for host in sites:
        if not host:  # _site_host refuses it first; the index would read it as "every article"
            raise ValueError("an empty site selects every article")
        out.extend(index.urls_matching("", site=host))
    return out


def _with_urls(settings: Settings, entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Fill in the URL of ids given bare (not in the index) from the ledger, where an article in
    flight or recently dead is known; "" stays only for ids newsflow has no record of."""
    from newsflow.state import State

    missing = [aid for aid, url in entries if not url]
    if not missing:
        return entries
    known = {e.article_id: e.url for e in State.from_settings(settings).ledgers(missing) if e is not None and e.url}
    return [(aid, url or known.get(aid, "")) for aid, url in entries]


def _remove(settings: Settings, entries: list[tuple[str, str]]) -> str:
    """Delete now when no index worker holds the lock; else let the worker do it ('queued')."""
    from newsflow.search import IndexUnavailable, open_index
    from newsflow.state import State

    state = State.from_settings(settings)
    index = open_index(settings)
    try:
        index.delete([aid for aid, _u in entries])
        index.close()
    except IndexUnavailable:  # the index worker holds the writer: send it the articles
        _queue_removal([(aid, url) for aid, url in entries if url])
        # No URL anywhere (index, ledger): never indexed, nothing in flight, so nothing for the worker
        # to delete; a message without a URL would only be dead-lettered `bad_payload`.
        _settle(state, [(aid, url) for aid, url in entries if not url])
        return "queued"
    _settle(state, entries)
    return "direct"


def _queue_removal(entries: list[tuple[str, str]]) -> None:
    """Have the running index worker delete these articles: it finds them tombstoned (added before
    this), deletes them in its next commit and records them dead `purged` (tasks/index.py)."""
    if not entries:
        return
    from newsflow.dispatch import send
    from newsflow.pipeline import LAST, Message
    from workers.app import app

    for aid, url in entries:
        send(app, LAST, Message.new(url, aid))


def _settle(state: Any, entries: list[tuple[str, str]]) -> None:
    """What the index worker would do for a purged article, done here: its document and ledger."""
    if not entries:
        return
    state.delete_docs([aid for aid, _u in entries])
    for aid, url in entries:
        state.record(aid, url, "dead", "purge", reason="purged", detail="tombstoned")


@click.command()
@click.option("--host", default=None, help="Address to listen on [setting api_host, default 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [setting api_port, default 8080].")
@click.option("--no-auth", is_flag=True, help="Allow a non-loopback address without NEWSFLOW_API_TOKEN.")
def serve(host: str | None, port: int | None, no_auth: bool) -> None:
    """Serve the read-only search API and the web page (http://127.0.0.1:8080/).

    GET /search, /articles/{id}, /health, /openapi.json. Needs no broker, only the index.
    """
    from newsflow.netguard import is_loopback
    from workers.api import ApiServer

    settings = settings_or_exit()
    host = host or settings.api_host
    if not is_loopback(host) and not settings.api_token and not no_auth:
        fail(f"refusing to serve on {host} without a token: set NEWSFLOW_API_TOKEN (clients then send "
             "`Authorization: Bearer <token>`), or pass --no-auth if a proxy in front authenticates")  # fmt: skip
    try:
        server = ApiServer(settings, host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{settings.api_port if port is None else port}: {exc}")
        return
    click.echo(f"newsflow search on {server.base_url}/ (API: {server.base_url}/openapi.json); Ctrl-C stops", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


COMMANDS = [reindex, backup, purge, serve]
