"""Article revisions (newsflow/revisions.py) and what a revision does to syndication clusters.

The end-to-end case (serve, ingest, change the title and a paragraph, ingest again) is in
tests/test_revisions_pipeline.py; these are the rules themselves.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis

from newsflow.enrich.clusters import assign_cluster_detail
from newsflow.revisions import MAX_REVISIONS, body_change_pct, revise

PARAS = [
    "The council approved the harbour budget on Tuesday after a long debate about the river works.",
    "Engineers said the new bridge would open next spring, weather permitting, and cost less than planned.",
    "Farmers near the reservoir asked for compensation for the land the tunnel will cross.",
    "The mayor said the vote showed the city could still agree on what matters for the coast.",
]


def _doc(title: str, paras: list[str], fetched_at: str, **extra: Any) -> dict[str, Any]:
    return {"title": title, "body": "\n".join(paras), "fetched_at": fetched_at, **extra}


def test_a_first_version_has_no_revisions() -> None:
    doc = revise(_doc("Budget passes", PARAS, "2026-11-01T10:00:00Z"), None)
    assert doc["revision_count"] == 1 and doc["updated"] is False
    [only] = doc["revisions"]
    assert only["fetched_at"] == "2026-11-01T10:00:00Z" and only["body_changed_pct"] == 0
    assert doc["first_fetched_at"] == "2026-11-01T10:00:00Z"


def test_a_changed_title_and_paragraph_make_a_revision() -> None:
    v1 = revise(_doc("Budget passes", PARAS, "2026-11-01T10:00:00Z", capture={"file": "a.warc.gz"}), None)
    paras = [*PARAS[:2], "Farmers near the reservoir will be compensated, the council said late on Tuesday.", PARAS[3]]
    v2 = revise(_doc("Budget passes after late deal", paras, "2026-11-01T14:00:00Z"), v1)
    assert v2["revision_count"] == 2 and v2["updated"] is True
    assert v2["updated_at"] == "2026-11-01T14:00:00Z" and v2["first_fetched_at"] == "2026-11-01T10:00:00Z"
    first, second = v2["revisions"]  # both versions, oldest first
    assert first["title"] == "Budget passes" and first["capture"] == {"file": "a.warc.gz"}  # readable again
    assert second["title"] == "Budget passes after late deal" and second["title_changed"] is True
    assert 20 <= second["body_changed_pct"] <= 40  # one paragraph of four


def test_the_same_text_in_other_markup_or_spacing_adds_nothing() -> None:
    v1 = revise(_doc("Budget passes", PARAS, "2026-11-01T10:00:00Z"), None)
    spaced = [p.replace(" ", "  ") + "  " for p in PARAS]
    again = revise(_doc(" Budget  passes ", spaced, "2026-11-02T10:00:00Z"), v1)
    assert again["revision_count"] == 1 and again["updated"] is False and len(again["revisions"]) == 1


def test_the_same_fetch_read_again_is_not_a_revision() -> None:
    # `newsflow reprocess` with a newer extractor: other text, but the publisher changed nothing.
    v1 = revise(_doc("Budget passes", PARAS, "2026-11-01T10:00:00Z"), None)
    reread = revise(_doc("Budget passes", PARAS[:3], "2026-11-01T10:00:00Z"), v1)
    assert reread["revision_count"] == 1 and reread["updated"] is False


def test_two_fetches_in_one_second_are_told_apart_by_their_captures() -> None:
    # fetched_at is to the second: a publisher's edit fetched within it is still a revision, and
    # the same archived record read again (reprocess, redelivery) still is not.
    v1 = _doc("Budget passes", PARAS, "2026-11-01T10:00:00Z")
    v1["capture"] = {"file": "a.warc.gz", "offset": 0}
    v1 = revise(v1, None)
    edited = _doc("Budget passes after a late deal", PARAS[:3], "2026-11-01T10:00:00Z")
    edited["capture"] = {"file": "a.warc.gz", "offset": 4096}
    assert revise(dict(edited), v1)["revision_count"] == 2
    reread = _doc("Budget passes", PARAS[:3], "2026-11-01T10:00:00Z")
    reread["capture"] = {"file": "a.warc.gz", "offset": 0}
    assert revise(reread, v1)["revision_count"] == 1


def test_history_is_capped_but_the_count_goes_on() -> None:
    doc = revise(_doc("Live: storm", ["start"], "t0"), None)
    for i in range(MAX_REVISIONS + 10):
        doc = revise(_doc("Live: storm", [f"update {i}"], f"t{i + 1}"), doc)
    assert doc["revision_count"] == MAX_REVISIONS + 11 and len(doc["revisions"]) == MAX_REVISIONS
    assert doc["revisions"][-1]["fetched_at"] == f"t{MAX_REVISIONS + 10}"  # the newest kept


def test_body_change_is_a_share_of_paragraphs() -> None:
    assert body_change_pct("a\nb\nc\nd", "a\nb\nc\nd") == 0
    assert body_change_pct("a\nb\nc\nd", "w\nx\ny\nz") == 100
    assert 1 <= body_change_pct("a\nb\nc\nd", "a\nb\nc\nd\ne") <= 20


# --- clusters (real Redis) ---------------------------------------------------------------------------

STORY = " ".join(PARAS * 3)
OTHER = (
    "The orchestra announced its winter season with three premieres and a festival of chamber music "
    "in the old library, and the museum opened a glacier exhibition with satellite photographs. " * 4
)


def _client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_a_revised_copy_stays_in_its_story_while_it_is_still_a_copy(redis_url: str) -> None:
    r, prefix = _client(redis_url), f"rev-{uuid.uuid4().hex[:8]}:"
    founder, copy = "f" * 32, "c" * 32
    assert assign_cluster_detail(r, prefix, founder, STORY)[:2] == (founder, "new")
    assert assign_cluster_detail(r, prefix, copy, STORY + " Reporting by the wire.")[:2] == (founder, "joined")
    revised = STORY.replace("Tuesday", "Wednesday") + " Updated with the mayor's comment."
    assert assign_cluster_detail(r, prefix, copy, revised)[:2] == (founder, "existing")


def test_a_copy_revised_into_another_story_leaves_and_joins_nothing(redis_url: str) -> None:
    r, prefix = _client(redis_url), f"rev-{uuid.uuid4().hex[:8]}:"
    founder, copy, other = "f" * 32, "c" * 32, "o" * 32
    assign_cluster_detail(r, prefix, founder, STORY)
    assign_cluster_detail(r, prefix, other, OTHER)
    assert assign_cluster_detail(r, prefix, copy, STORY)[0] == founder
    # Rewritten into the other outlet's story: not a copy of its own story any more, and a revision
    # never joins another story on its own: it stands alone.
    assert assign_cluster_detail(r, prefix, copy, OTHER)[:2] == (copy, "left")


def test_revisions_of_a_founder_keep_it_its_own_story(redis_url: str) -> None:
    r, prefix = _client(redis_url), f"rev-{uuid.uuid4().hex[:8]}:"
    founder, other = "f" * 32, "o" * 32
    assign_cluster_detail(r, prefix, other, OTHER)
    assign_cluster_detail(r, prefix, founder, STORY)
    assert assign_cluster_detail(r, prefix, founder, OTHER)[0] == founder  # not pulled into `other`'s


def test_an_article_indexed_before_revisions_were_kept_gets_its_first_version_listed() -> None:
    legacy = _doc("Budget passes", PARAS, "2026-10-01T10:00:00Z")  # no revision fields at all
    v2 = revise(_doc("Budget passes, updated", PARAS, "2026-10-02T10:00:00Z"), legacy)
    assert v2["revision_count"] == 2 and [r["fetched_at"] for r in v2["revisions"]] == [
        "2026-10-01T10:00:00Z",
        "2026-10-02T10:00:00Z",
    ]


def test_reindexing_a_stored_document_keeps_its_history() -> None:
    v1 = revise(_doc("A", PARAS, "t1"), None)
    v2 = revise(_doc("B", PARAS, "t2"), v1)
    copied = revise(dict(v2), None)  # `newsflow reindex` into a new index
    assert copied["revision_count"] == 2 and len(copied["revisions"]) == 2 and copied["updated"] is True
