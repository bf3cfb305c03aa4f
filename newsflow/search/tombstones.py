"""Tombstones: articles and sites taken down on purpose, so no later crawl or ingest brings them back.

Kept in the state Redis, shared by every worker and client:
- `{prefix}tombstone:ids`    hash article id → JSON {url, reason, at}
- `{prefix}tombstone:sites`  hash host → JSON {reason, at}
An article is taken down with a site when any host it was fetched from (the requested URL, the
final URL after redirects) or its site (`schema.site_of`) is that site: a page cannot escape a
takedown by declaring a canonical URL on someone else's domain.
No TTL: a takedown is permanent until lifted (`newsflow purge --lift`); the hashes grow only with
takedowns. Every change is also appended to `<data_dir>/tombstones.jsonl`, an audit trail that
`newsflow purge --replay FILE` re-applies to a new or restored Redis.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from newsflow.domains import host_of
from newsflow.jsonlines import record_problem
from newsflow.search.schema import normalize_site, site_of
from newsflow.urls import looks_like_article_id


def site_of_url(url: str | None) -> str:
    return normalize_site(host_of(url))


def takedown_sites(doc: Mapping[str, Any]) -> list[str]:
    """Every site a site takedown of this article may name: the hosts of its requested and final
    URLs, and its site. Not the host of a canonical URL the page claims on another domain."""
    found = {site_of_url(doc.get("url")), site_of_url(doc.get("final_url")), site_of(doc)}
    return sorted(s for s in found if s)


class BadAuditLog(ValueError):
    """A file `replay` refuses: the message names the file, the line and what is wrong with it."""


def read_audit_log(path: Path) -> list[dict[str, Any]]:
    """Every change of a tombstones.jsonl audit log, all checked before any is applied: a stray file
    or one bad line must not half-apply. BadAuditLog names the first bad line; OSError if unreadable."""
    rows: list[dict[str, Any]] = []
    for n, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        if raw.strip():
            rows.append(_audit_row(path, n, raw))
    return rows


def _audit_row(path: Path, n: int, raw: bytes) -> dict[str, Any]:
    row, problem = record_problem(raw, _change_problem)
    if problem:
        raise BadAuditLog(f"{path} line {n} is not a tombstone change: {problem}")
    return dict(row)


def _change_problem(row: Any) -> str | None:
    """What keeps `row` from being a change `_log` writes ({"op": "add"|"lift", "id"|"site": ...}), or None."""
    if not isinstance(row, dict):
        return "it is not a JSON object"
    if row.get("op") not in ("add", "lift"):
        return 'its "op" is not "add" or "lift"'
    named = [key for key in ("id", "site") if key in row]
    if len(named) != 1:
        return 'it names neither an article "id" nor a "site"' if not named else 'it names both an "id" and a "site"'
    value = row[named[0]]
    if named[0] == "id" and not (isinstance(value, str) and looks_like_article_id(value)):
        return f'its "id" {json.dumps(value)[:80]} is not an article id (32 hex digits)'
    if named[0] == "site" and not (isinstance(value, str) and normalize_site(value)):
        return f'its "site" {json.dumps(value)[:80]} is not a host name'
    wrong = [key for key in ("url", "reason") if row.get(key) is not None and not isinstance(row[key], str)]
    return f'its "{wrong[0]}" is not a string' if wrong else None


class Tombstones:
    def __init__(self, r: redis.Redis, prefix: str, log_path: Path | None = None) -> None:
        self.r = r
        self.ids_key = f"{prefix}tombstone:ids"
        self.sites_key = f"{prefix}tombstone:sites"
        self.log_path = log_path

    def check_log(self) -> None:
        """OSError when the audit log cannot be appended to. Asked before Redis is changed: a
        takedown the log misses would be lost by the next `purge --replay` to a new Redis."""
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8"):
            pass

    def _log(self, rows: Iterable[dict[str, Any]]) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def add_ids(self, entries: Sequence[tuple[str, str]], reason: str) -> None:
        """Tombstone (article id, url) pairs."""
        if not entries:
            return
        self.check_log()
        now = time.time()
        self.r.hset(
            self.ids_key, mapping={aid: json.dumps({"url": url, "reason": reason, "at": now}) for aid, url in entries}
        )
        self._log({"op": "add", "id": aid, "url": url, "reason": reason, "at": now} for aid, url in entries)

    def add_site(self, host: str, reason: str) -> None:
        self.check_log()
        now = time.time()
        self.r.hset(self.sites_key, normalize_site(host), json.dumps({"reason": reason, "at": now}))
        self._log([{"op": "add", "site": normalize_site(host), "reason": reason, "at": now}])

    def lift(self, ids: Sequence[str] = (), sites: Sequence[str] = ()) -> int:
        self.check_log()
        n = 0
        if ids:
            n += int(self.r.hdel(self.ids_key, *ids))
        if sites:
            n += int(self.r.hdel(self.sites_key, *[normalize_site(s) for s in sites]))
        now = time.time()
        self._log(
            [{"op": "lift", "id": i, "at": now} for i in ids] + [{"op": "lift", "site": s, "at": now} for s in sites]
        )
        return n

    def dead_among(self, ids: Sequence[str], sites: Sequence[str | Collection[str]]) -> set[str]:
        """Which of these articles are tombstoned, by id or by site.

        sites[i] is the site of ids[i], or all of them (`takedown_sites(doc)`): the article is dead
        when any one is tombstoned."""
        if not ids:
            return set()
        per_article = [
            {normalize_site(s) for s in ([group] if isinstance(group, str) else group) if s} for group in sites
        ]
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.ids_key, list(ids))
        hosts = sorted({h for own in per_article for h in own})
        if hosts:
            pipe.hmget(self.sites_key, hosts)
        got = pipe.execute()
        dead = {aid for aid, v in zip(ids, got[0], strict=True) if v is not None}
        if hosts:
            dead_sites = {h for h, v in zip(hosts, got[1], strict=True) if v is not None}
            dead |= {aid for aid, own in zip(ids, per_article, strict=True) if own & dead_sites}
        return dead

    def listing(self) -> dict[str, dict[str, Any]]:
        ids: dict[bytes, bytes] = self.r.hgetall(self.ids_key)  # type: ignore[assignment]
        sites: dict[bytes, bytes] = self.r.hgetall(self.sites_key)  # type: ignore[assignment]
        return {
            "ids": {k.decode(): json.loads(v) for k, v in ids.items()},
            "sites": {k.decode(): json.loads(v) for k, v in sites.items()},
        }

    def has_ids(self) -> bool:
        return bool(self.r.hlen(self.ids_key))

    def rekey_ids(self, moves: Mapping[str, str]) -> int:
        """Re-key article tombstones (old id -> new id, `newsflow migrate`), each row kept as it was
        plus `migrated_from`. The new one is written before the old one goes, in one transaction,
        so the article is never untombstoned; the audit log records both. Returns the ids moved."""
        moves = {old: new for old, new in moves.items() if old != new}
        if not moves:
            return 0
        olds = list(moves)
        rows = self.r.hmget(self.ids_key, olds)
        found = {old: json.loads(raw) for old, raw in zip(olds, rows, strict=True) if raw is not None}
        if not found:
            return 0
        self.check_log()
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        rows_new = {moves[o]: json.dumps({**row, "migrated_from": o}) for o, row in found.items()}
        pipe.hset(self.ids_key, mapping=rows_new)  # type: ignore[arg-type]
        pipe.hdel(self.ids_key, *found)
        pipe.execute()
        self._log(
            [{"op": "add", "id": moves[o], "url": row.get("url", ""), "reason": row.get("reason", "purged"), "at": now,
              "migrated_from": o} for o, row in found.items()]
            + [{"op": "lift", "id": o, "at": now, "migrated_to": moves[o]} for o in found]
        )  # fmt: skip
        return len(found)

    def copy_sites(self, copies: Mapping[str, str]) -> int:
        """Tombstone each new site name like the tombstoned site it is copied from (`newsflow
        migrate`: a host the old normalisation spelt differently). Returns the sites added."""
        copies = {new: old for new, old in copies.items() if new and new != old}
        if not copies:
            return 0
        olds = sorted(set(copies.values()))
        rows: dict[str, Any] = dict(zip(olds, self.r.hmget(self.sites_key, olds), strict=True))
        mapping = {new: json.dumps({**json.loads(rows[old]), "migrated_from": old})
                   for new, old in copies.items() if rows.get(old) is not None}  # fmt: skip
        if not mapping:
            return 0
        self.check_log()
        self.r.hset(self.sites_key, mapping=mapping)  # type: ignore[arg-type]
        now = time.time()
        self._log(
            {"op": "add", "site": new, "reason": json.loads(row).get("reason", "purged"), "at": now,
             "migrated_from": copies[new]} for new, row in mapping.items()
        )  # fmt: skip
        return len(mapping)

    def replay(self, path: Path) -> int:
        """Re-apply an audit log (after Redis was lost or replaced). Returns the rows applied.

        BadAuditLog (nothing applied) when any line is not a change `_log` writes; OSError when
        the file cannot be read."""
        rows = read_audit_log(path)
        saved, self.log_path = self.log_path, None  # replaying must not duplicate the log
        try:
            for row in rows:
                self._apply(row)
        finally:
            self.log_path = saved
        return len(rows)

    def _apply(self, row: Mapping[str, Any]) -> None:
        """One checked audit log row (`_change_problem`), done again."""
        reason = row.get("reason") or "purged"
        if row["op"] == "add" and "id" in row:
            self.add_ids([(row["id"], row.get("url") or "")], reason)
        elif row["op"] == "add":
            self.add_site(row["site"], reason)
        else:
            self.lift([row["id"]] if "id" in row else [], [row["site"]] if "site" in row else [])
