"""Article revisions: what changed when an indexed article is fetched again with other text.

News articles change after publication (corrections, updated live stories). When the index stage
is about to write an article that is already indexed, `revise(new, old)` compares the two:

- the same title and body after folding whitespace (a recrawl that found nothing new, whatever
  changed in the markup around them), or the same fetch read again (a reprocess of the archived
  page by a newer extractor): the new document keeps the old one's revision history, adds nothing;
- otherwise the new version is added to `revisions`, the list of versions (when each was fetched,
  its title and length, where its capture is archived, so an earlier version can be read again,
  and what changed from the one before: the title, and how much of the body in per cent of
  paragraphs), and the document says `updated: true`, with `revision_count` (versions seen) and
  `updated_at`.

The records are small and capped (`MAX_REVISIONS`, oldest dropped) so a live story updated every
few minutes cannot grow its document without bound; the count keeps counting.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

MAX_REVISIONS = 50  # versions kept per article, newest (the count goes on)
MAX_PARAGRAPHS = 2000  # compared per version: bounds the diff's cost
TITLE_KEPT = 300

REVISION_FIELDS = ("revisions", "revision_count", "updated", "updated_at", "first_fetched_at")
_SPACE = re.compile(r"\s+")


def _fold(text: str | None) -> str:
    return _SPACE.sub(" ", text or "").strip()


def _paragraphs(body: str | None) -> list[str]:
    return [p for p in (_fold(x) for x in (body or "").split("\n")) if p][:MAX_PARAGRAPHS]


def body_change_pct(old: str | None, new: str | None) -> int:
    """How much of the body changed, in per cent of its paragraphs (0 = same, 100 = all new)."""
    a, b = _paragraphs(old), _paragraphs(new)
    if a == b:
        return 0
    ratio = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    return max(1, round(100 * (1 - ratio)))  # changed at all: at least 1 %


def same_text(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return _fold(old.get("title")) == _fold(new.get("title")) and _paragraphs(old.get("body")) == _paragraphs(
        new.get("body")
    )


def same_fetch(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Both versions come from one fetch: a reprocess of the archived page (a new extractor reads
    it differently), or a redelivery: not a revision by the publisher. Where both were archived,
    their WARC records say it (`fetched_at` is to the second: two fetches in one second share it)."""
    old_record, new_record = _record(old), _record(new)
    if old_record is not None and new_record is not None:
        return old_record == new_record
    fetched = old.get("fetched_at")
    return bool(fetched) and fetched == new.get("fetched_at")


def _record(doc: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """Where the document's fetch is archived (WARC file and offset), if it was."""
    capture = doc.get("capture")
    if isinstance(capture, Mapping) and capture.get("file") and capture.get("offset") is not None:
        return capture["file"], capture["offset"]
    return None


def version_record(doc: Mapping[str, Any], before: Mapping[str, Any] | None) -> dict[str, Any]:
    """One version of an article, and what changed from the version `before` it (None: the first)."""
    return {
        "fetched_at": doc.get("fetched_at"),
        "title": (doc.get("title") or "")[:TITLE_KEPT],
        "body_chars": len(doc.get("body") or ""),
        "capture": doc.get("capture"),
        "title_changed": before is not None and _fold(before.get("title")) != _fold(doc.get("title")),
        "body_changed_pct": 0 if before is None else body_change_pct(before.get("body"), doc.get("body")),
    }


def revise(new: dict[str, Any], old: Mapping[str, Any] | None) -> dict[str, Any]:
    """`new` with its revision fields set from the indexed version `old` (None: first version).

    `revisions` lists every version kept, oldest first, the current one last; `revision_count`
    counts every version seen (it goes on past the cap)."""
    if old is None:
        # A first version, or a document that brings its own history (`newsflow reindex` copying
        # stored documents into a new index): what it carries is kept.
        if not new.get("revisions"):
            new["revisions"] = [version_record(new, None)]
        new.setdefault("revision_count", len(new["revisions"]))
        new.setdefault("updated", False)
        new.setdefault("updated_at", None)
        new.setdefault("first_fetched_at", new.get("fetched_at"))
        return new
    # Documents indexed before revisions were kept have no history: they are its first version.
    history = list(old.get("revisions") or [version_record(old, None)])
    count = int(old.get("revision_count") or len(history))
    first = old.get("first_fetched_at") or old.get("fetched_at")
    if same_text(old, new) or same_fetch(old, new):
        new.update(
            revisions=history,
            revision_count=count,
            updated=bool(old.get("updated")),
            updated_at=old.get("updated_at"),
            first_fetched_at=first,
        )
        return new
    history.append(version_record(new, old))
    new.update(
        revisions=history[-MAX_REVISIONS:],
        revision_count=count + 1,
        updated=True,
        updated_at=new.get("fetched_at"),
        first_fetched_at=first,
    )
    return new
