"""Which indexed articles to send through clean -> enrich -> index again, from their captures.

The index is the list: every indexed article carries where its capture is (`capture` in its
stored source, written by clean from what fetch archived), and the index keeps it for as long as
it keeps the article, long after the ledger forgot it. `--dry-run` extracts each capture with
this process's code and settings and compares with what is indexed (`diff`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from config.defaults import Settings
from newsflow.archive.reader import CaptureUnavailable, capture_of, read_capture
from newsflow.fetcher import FetchResult
from newsflow.pipeline import FIRST, Message
from newsflow.search.engine import iter_sources, open_index
from newsflow.search.schema import parse_date, site_of
from newsflow.state import LedgerEntry

# What --dry-run compares: the fields an extractor change moves and a reader notices.
DIFF_FIELDS = ("body", "title", "author", "published")


@dataclass(frozen=True)
class Selection:
    source: str | None = None
    site: str | None = None
    since: datetime | None = None

    def matches(self, doc: Mapping[str, Any]) -> bool:
        if self.source is not None and doc.get("source_name") != self.source:
            return False
        if self.site is not None:
            want = self.site.lower().removeprefix("www.")
            if site_of(doc) != want:
                return False
        if self.since is not None:
            when = captured_at(doc)
            if when is None or when < self.since:
                return False
        return True


def captured_at(doc: Mapping[str, Any]) -> datetime | None:
    cap = doc.get("capture") if isinstance(doc.get("capture"), Mapping) else {}
    return parse_date((cap or {}).get("date")) or parse_date(doc.get("fetched_at"))


def select(index_dir: str | Path, selection: Selection, ids: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """The indexed articles selected: by id (an id not in the index yields `{"id": id}` alone), or
    every article matching `selection`. Streams the index; nothing is held beyond one article."""
    if ids is not None:
        index = open_index(index_dir, create=False)
        try:
            for aid in ids:
                doc = index.get(aid)
                if doc is None:
                    yield {"id": aid}
                elif selection.matches(doc):
                    yield doc
        finally:
            index.close()
        return
    for doc in iter_sources(index_dir):
        if selection.matches(doc):
            yield doc


@dataclass(frozen=True)
class Prepared:
    message: Message  # for clean's predecessor: origin kept, fresh times
    page: FetchResult
    capture: dict[str, Any]


def prepare(settings: Settings, doc: Mapping[str, Any], ledger: LedgerEntry | None) -> Prepared:
    """Read an indexed article's capture back as the page a fetch would hand to clean.

    CaptureUnavailable (no_capture, not_indexed, missing_file, unreadable, not_response) or the
    fetcher's PermanentError (the capture is not a page any more, e.g. `empty_body`)."""
    if "url" not in doc:
        raise CaptureUnavailable("not_indexed", "no article with this id in the index")
    cap = capture_of(doc)
    if cap is None:
        raise CaptureUnavailable("no_capture", "indexed before archiving, or archiving was off")
    if not settings.archive_path and not Path(cap["file"]).is_absolute():
        raise CaptureUnavailable("missing_file", "archiving is off here (NEWSFLOW_ARCHIVE_DIR is empty)")
    captured = read_capture(settings.archive_path, cap)
    page = captured.page(str(doc["url"]))
    origin: dict[str, Any] = dict(ledger.origin) if ledger is not None and ledger.origin else {}
    if not origin:  # the ledger expired: what the capture kept of where the article came from
        origin = {k: v for k, v in (("source", doc.get("source_name")), ("hints", cap.get("hints"))) if v}
    msg = Message.from_origin(str(doc["id"]), str(doc["url"]), origin).restart(FIRST.name)
    return Prepared(msg, page, cap)


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split()) or None
    return value if value not in ("", [], {}) else None


def diff(old: Mapping[str, Any], new: Mapping[str, Any], fields: Iterable[str] = DIFF_FIELDS) -> list[str]:
    """The fields whose value would change (whitespace runs count as one space)."""
    out = []
    for name in fields:
        a, b = _norm(old.get(name)), _norm(new.get(name))
        if name == "published":
            da, db = parse_date(a), parse_date(b)
            if (da, db) != (None, None):
                a, b = da, db
        if a != b:
            out.append(name)
    return out


def example(doc: Mapping[str, Any], new: Mapping[str, Any], changed: list[str], width: int = 160) -> dict[str, Any]:
    """One changed article for the report: its id, URL and each changed field before and after."""

    def short(value: Any) -> Any:
        if isinstance(value, str) and len(value) > width:
            return value[:width] + f"… ({len(value)} chars)"
        return value

    return {
        "id": doc.get("id"),
        "url": doc.get("url"),
        "changed": {f: {"now": short(doc.get(f)), "would_be": short(new.get(f))} for f in changed},
    }


Build = Callable[[Message, str], dict[str, Any]]
