"""Article id versions: which URL normalisation the stored ids were made by, and the re-keying
from one version to the next (`newsflow migrate`).

An article id is the hash of its normalised requested URL (newsflow.urls). When the normalisation
changes (`ID_VERSION`), the ids of articles stored before no longer match the ids new code computes
for the same URLs: a recrawl would index duplicates, and a purged URL would come back. So the
version is recorded where every process sees it (the state Redis, `State.id_version`, and the
index's schema file), processes refuse to work on ids of another version (`ensure_current`), and
`migrate` re-keys every store from the URLs they keep:

- tombstones (ids re-keyed; a site the old rule spelt differently is tombstoned under the new
  spelling too): first, so nothing purged comes back at any point;
- the ledger: `article:`, `trace:`, `dead:` (and the dead-letter indexes), `attempts:`, `doc:`,
  `blob:`, the in-flight index;
- the crawl seen-set (ids only: mapped through every URL known to the other stores);
- cluster assignments (copied to the new id);
- the search index: rebuilt from its stored articles under their new ids, with `site` and the
  URL keys recomputed from the requested and final URLs, then swapped in;
- last, the version itself. Each step is idempotent, so an interrupted run is simply run again.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config.defaults import Settings
from newsflow.urls import ID_VERSION, InvalidURL, article_id, article_id_v1

Progress = Callable[[str], None]
_BATCH = 1000


class IdVersionError(RuntimeError):
    """The stored article ids were made by another URL normalisation than this code's."""


@dataclass
class StoreCounts:
    rekeyed: int = 0  # moved to a new id
    unchanged: int = 0  # the same id under both versions
    merged: int = 0  # two old ids are one article now: one was kept
    unmapped: int = 0  # no URL known for it, or its URL is invalid now: left as it was

    def to_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class MigrationReport:
    from_version: int | None
    to_version: int = ID_VERSION
    dry_run: bool = False
    stores: dict[str, StoreCounts] = field(default_factory=dict)
    merges: list[dict[str, Any]] = field(default_factory=list)  # kept / dropped old ids per new id
    sites_added: int = 0  # site tombstones added under the new spelling of a host
    index_tombstoned: int = 0  # documents left out of the rebuilt index: purged
    seconds: float = 0.0

    def counts(self, store: str) -> StoreCounts:
        return self.stores.setdefault(store, StoreCounts())

    def to_dict(self) -> dict[str, Any]:
        return {
            "from_version": self.from_version,
            "to_version": self.to_version,
            "dry_run": self.dry_run,
            "stores": {name: c.to_dict() for name, c in self.stores.items()},
            "merges": self.merges[:100],
            "merges_total": len(self.merges),
            "sites_added": self.sites_added,
            "index_tombstoned": self.index_tombstoned,
            "seconds": round(self.seconds, 2),
        }


# --- which version the stored ids are ----------------------------------------------------------


def stored_id_version(settings: Settings, stores: Any = None) -> int | None:
    """The oldest id version among the stored articles (the state Redis and the index); None for a
    fresh deployment (nothing stored under an article id yet). Redis holding articles but no
    version, or an index without one, predate versioning: version 1 - unless the index records a
    version: then Redis lost its record (a restart without persistence, a failover to a replica
    that had not caught up) while workers still held articles, and wrote those again since."""
    from newsflow.search.engine import count_docs, read_id_version
    from newsflow.stores import Stores

    stores = stores or Stores.from_settings(settings)
    path = Path(settings.index_dir)
    index_version = read_id_version(path)
    indexed = index_version is not None and count_docs(path) > 0
    found: list[int] = [index_version] if indexed and index_version is not None else []
    recorded = stores.state.id_version()
    if recorded is not None:
        found.append(recorded)
    elif not indexed and (stores.state.holds_articles() or stores.tombstones.has_ids() or stores.crawl.seen_count()):
        found.append(1)
    return min(found) if found else None


def ensure_current(settings: Settings, stores: Any = None) -> int:
    """Refuse (IdVersionError) to work on ids made by another normalisation; record this code's
    version on a fresh deployment. Returns the version in force."""
    from newsflow.stores import Stores

    stores = stores or Stores.from_settings(settings)
    version = stored_id_version(settings, stores)
    if version is None:
        stores.state.set_id_version_if_absent(ID_VERSION)
        return ID_VERSION
    if version < ID_VERSION:
        raise IdVersionError(
            f"the stored article ids were made by URL normalisation version {version}, this newsflow "
            f"makes version {ID_VERSION}: stop the workers, let the queues drain and run `newsflow migrate` "
            "(docs/operations.md, 'Upgrade: migrate')"
        )
    if version > ID_VERSION:
        raise IdVersionError(
            f"the stored article ids were made by URL normalisation version {version}, newer than this "
            f"newsflow's {ID_VERSION}: upgrade newsflow"
        )
    if stores.state.id_version() is None:
        stores.state.set_id_version_if_absent(ID_VERSION)
    return version


# --- the migration ----------------------------------------------------------------------------------


def _ids(url: str) -> tuple[str, str | None]:
    """(version 1 id, version 2 id or None when the URL is invalid now)."""
    old = article_id_v1(url)
    try:
        return old, article_id(url)
    except InvalidURL:
        return old, None


def site_v1(host: str) -> str:
    """The site version 1 filed a host under (IDNA 2003, `www.` dropped)."""
    h = (host or "").strip().lower().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h and not h.isascii():
        with contextlib.suppress(UnicodeError):
            h = h.encode("idna").decode("ascii")
    return h[4:] if h.startswith("www.") else h


def _host(url: str) -> str:
    try:
        return urlsplit(str(url).strip()).hostname or ""
    except ValueError:
        return ""


class _UrlMap:
    """Every URL the stores know, with the old and new ids it gives."""

    def __init__(self) -> None:
        self.urls: set[str] = set()
        self.by_key: dict[str, str] = {}  # a stored key (old or new id) -> the URL kept with it
        self.old_to_new: dict[str, set[str]] = {}

    def add(self, key: str | None, url: Any) -> None:
        if not url or not isinstance(url, str):
            return
        self.urls.add(url)
        if key:
            self.by_key.setdefault(key, url)
        try:
            old, new = _ids(url)
        except InvalidURL:
            return
        if new is not None:
            self.old_to_new.setdefault(old, set()).add(new)
            self.by_key.setdefault(new, url)

    def new_id(self, key: str, url: str | None = None) -> str | None:
        """The new id of what is stored under `key` (with `url` if it keeps one); None: unknown."""
        url = url or self.by_key.get(key)
        if url:
            try:
                old, new = _ids(url)
            except InvalidURL:
                return None
            if key in (old, new):
                return new
        news = self.old_to_new.get(key)
        return next(iter(news)) if news and len(news) == 1 else None


def migrate(settings: Settings, *, dry_run: bool = False, progress: Progress | None = None) -> MigrationReport:
    """Re-key every store from the stored id version to ID_VERSION (see the module docstring).

    The caller makes sure nothing else writes meanwhile (workers stopped, queues drained); the
    index's writer lock is held here for the whole run."""
    from newsflow.search.engine import iter_sources, writer_lock
    from newsflow.search.tombstones import Tombstones
    from newsflow.state import connect
    from newsflow.stores import Stores

    say = progress or (lambda _msg: None)
    started = time.monotonic()
    stores = Stores.from_settings(settings)
    # Tombstone changes go to the audit log too, so a replay of it ends at the new ids.
    tombs = Tombstones(connect(settings.state_url), settings.key_prefix, Path(settings.data_dir) / "tombstones.jsonl")
    report = MigrationReport(stored_id_version(settings, stores), dry_run=dry_run)
    path = Path(settings.index_dir)
    # Held until the rebuilt index is swapped in; IndexUnavailable when a writer (the index worker) runs.
    locks: list[object] = [writer_lock(path)] if (path / "meta.json").exists() else []

    say("reading the URLs of every store")
    urls = _UrlMap()
    index_docs = 0
    if locks:
        for doc in iter_sources(path):
            index_docs += 1
            urls.add(str(doc.get("id") or ""), doc.get("url"))
    state = stores.state
    ledger_ids = state.ledger_ids()
    for start in range(0, len(ledger_ids), _BATCH):
        batch = ledger_ids[start : start + _BATCH]
        for aid, entry in zip(batch, state.ledgers(batch), strict=True):
            url = entry.url if entry else (state.dead_letter_record(aid) or {}).get("url")
            urls.add(aid, url)
    tomb_rows = tombs.listing()
    for aid, row in tomb_rows["ids"].items():
        urls.add(aid, row.get("url"))

    _tombstones(tombs, urls, tomb_rows, report, dry_run)
    say(f"tombstones: {report.counts('tombstones').to_dict()}, {report.sites_added} site(s) added")
    moved = _ledger(state, ledger_ids, urls, report, dry_run)
    say(f"ledger: {report.counts('ledger').to_dict()}")
    _seen(stores, urls, report, dry_run)
    say(f"seen-set: {report.counts('seen').to_dict()}")
    clusters = report.counts("clusters")
    for old, new in moved.items():
        if stores.clusters.copy_assignment(old, new, dry_run=dry_run):
            clusters.rekeyed += 1
    if locks:
        say(f"index: rebuilding {index_docs} article(s) under their new ids")
        _rebuild_index(settings, stores, path, urls, report, dry_run, locks)
        say(f"index: {report.counts('index').to_dict()}, {report.index_tombstoned} purged left out")
    if not dry_run:
        state.set_id_version(ID_VERSION)
    report.seconds = time.monotonic() - started
    return report


def _tombstones(tombs: Any, urls: _UrlMap, rows: Mapping[str, Any], report: MigrationReport, dry_run: bool) -> None:
    counts = report.counts("tombstones")
    moves: dict[str, str] = {}
    for aid, row in rows["ids"].items():
        new = urls.new_id(aid, row.get("url") or None)
        if new is None:
            counts.unmapped += 1
        elif new == aid:
            counts.unchanged += 1
        else:
            moves[aid] = new
            counts.rekeyed += 1
    if moves and not dry_run:
        tombs.rekey_ids(moves)
    # A site tombstone names a host as the old rule spelt it (`fass.de` for `faß.de`): every host
    # known to any store whose old spelling is tombstoned is tombstoned under its new one too.
    from newsflow.search.schema import normalize_site

    dead_sites = set(rows["sites"])
    copies: dict[str, str] = {}
    for site in dead_sites:  # a name IDNA 2003 could not encode was kept as written
        if normalize_site(site) != site:
            copies[normalize_site(site)] = site
    for url in urls.urls:
        host = _host(url)
        old = site_v1(host)
        if old in dead_sites:
            new = normalize_site(host)
            if new and new != old and new not in dead_sites:
                copies[new] = old
    report.sites_added = len(copies) if dry_run else tombs.copy_sites(copies)


def _ledger(state: Any, ids: list[str], urls: _UrlMap, report: MigrationReport, dry_run: bool) -> dict[str, str]:
    counts = report.counts("ledger")
    moved: dict[str, str] = {}
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        for aid, entry in zip(batch, state.ledgers(batch), strict=True):
            new = urls.new_id(aid, entry.url if entry else None)
            if new is None:
                counts.unmapped += 1
                continue
            if new == aid:
                counts.unchanged += 1
                continue
            outcome = state.rekey_article(aid, new, dry_run=dry_run)
            if outcome == "missing":
                continue
            moved[aid] = new
            if outcome.startswith("merged"):
                counts.merged += 1
                kept = "old" if outcome == "merged_kept_old" else "new"
                report.merges.append({"store": "ledger", "new_id": new, "old_id": aid, "kept": kept})
            else:
                counts.rekeyed += 1
    return moved


def _seen(stores: Any, urls: _UrlMap, report: MigrationReport, dry_run: bool) -> None:
    counts = report.counts("seen")
    moves: dict[str, set[str]] = {}
    for aid, _at in stores.crawl.seen_entries():
        news = urls.old_to_new.get(aid)
        if news and news != {aid}:
            moves[aid] = news
            counts.rekeyed += 1
        elif news or aid in urls.by_key:
            counts.unchanged += 1
        else:
            counts.unmapped += 1  # no store knows its URL any more: it ages out with the set
    if moves and not dry_run:
        stores.crawl.rekey_seen(moves)


def _rebuild_index(
    settings: Settings,
    stores: Any,
    path: Path,
    urls: _UrlMap,
    report: MigrationReport,
    dry_run: bool,
    locks: list[object],
) -> None:
    """A new index from the stored articles under their new ids (site and URL keys recomputed by
    `to_tantivy`), swapped in for the old one; purged articles left out."""
    from newsflow.search.engine import iter_sources, open_index
    from newsflow.search.tombstones import takedown_sites

    counts = report.counts("index")
    target = path.with_name(f"{path.name}.migrate-{int(time.time())}")
    new_index = None if dry_run else open_index(target)
    written: dict[str, tuple[str, str]] = {}  # new id -> (fetched_at, old id) of the copy kept
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if not batch:
            return
        dead = stores.tombstones.dead_among([d["id"] for d in batch], [takedown_sites(d) for d in batch])
        keep = [d for d in batch if d["id"] not in dead]
        report.index_tombstoned += len(batch) - len(keep)
        if new_index is not None and keep:
            new_index.upsert_batch(keep, settings.index_writer_heap_bytes)
        batch.clear()

    for doc in iter_sources(path):
        old = str(doc.get("id") or "")
        new = urls.new_id(old, doc.get("url")) if doc.get("url") else None
        if new is None:
            counts.unmapped += 1
            new = old
        elif new == old:
            counts.unchanged += 1
        else:
            counts.rekeyed += 1
        stamp = str(doc.get("fetched_at") or "")
        if new in written:  # two old ids are one article now: the copy fetched last wins
            counts.merged += 1
            kept_at, kept_old = written[new]
            newer = stamp > kept_at
            report.merges.append({"store": "index", "new_id": new, "old_ids": sorted({kept_old, old}),
                                  "kept": old if newer else kept_old})  # fmt: skip
            if not newer:
                continue
            batch[:] = [d for d in batch if d["id"] != new]
        written[new] = (stamp, old)
        batch.append({**doc, "id": new})
        if len(batch) >= _BATCH:
            flush()
    flush()
    if new_index is None:
        return
    new_index.close()
    locks.clear()  # the old index's writer lock, released before the directories move
    old_dir = path.with_name(f"{path.name}.pre-migrate-{int(time.time())}")
    path.rename(old_dir)
    target.rename(path)
    shutil.rmtree(old_dir, ignore_errors=True)


def ids_of(urls: Iterable[str]) -> dict[str, str]:
    """url -> its article id by this code (for reports and tests)."""
    return {u: article_id(u) for u in urls}
