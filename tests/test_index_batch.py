"""The index batch: one document the index cannot take never sinks the rest of its batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsflow.search import SearchIndex

GOOD = {"id": "a" * 32, "url": "https://example.com/a", "title": "Good", "body": "NATO met.", "language": "en"}
BAD = {"id": "b" * 32, "url": "https://example.com/b", "title": "Bad", "body": {"not": "text"}, "language": "en"}


def test_a_rejected_document_is_reported_and_the_rest_committed(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path)
    rejected: dict[str, str] = {}
    assert index.upsert_batch([GOOD, BAD], rejected=rejected) == 1
    assert list(rejected) == [BAD["id"]] and "body" in rejected[BAD["id"]]
    assert index.num_docs() == 1
    assert index.get(GOOD["id"]) is not None and index.get(BAD["id"]) is None


def test_a_failed_batch_leaves_nothing_behind_for_the_next_commit(tmp_path: Path) -> None:
    index = SearchIndex(tmp_path)
    with pytest.raises(ValueError):
        index.upsert_batch([{**GOOD, "id": "c" * 32}, BAD])  # without `rejected`, the batch fails ...
    index.upsert_batch([GOOD])
    assert index.num_docs() == 1  # ... and its first document was rolled back, not committed later
    assert index.get("c" * 32) is None
