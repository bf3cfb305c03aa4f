"""The trafilatura-eval-dev set's frozen split, labels and segment scorer (newsflow.extract.devset)."""

from __future__ import annotations

import json
from pathlib import Path

from newsflow.extract.devset import (
    SEALED_SIZE,
    SPLIT_SEED,
    DevPage,
    compute_split,
    load_labels,
    load_split,
    score_segments,
    total,
)
from tests.conftest import FIXTURES

DEV_DIR = FIXTURES / "trafilatura-eval-dev"
KINDS = {"news", "blog", "forum", "other"}


def _names() -> list[str]:
    return sorted(json.loads((DEV_DIR / "evaldata.json").read_text(encoding="utf-8")))


def test_committed_split_is_the_seeded_hash_split() -> None:
    committed = json.loads((DEV_DIR / "split.json").read_text(encoding="utf-8"))
    recomputed = compute_split(_names())
    assert committed["seed"] == SPLIT_SEED
    assert committed["sealed"] == recomputed["sealed"]
    assert committed["study"] == recomputed["study"]


def test_split_is_a_partition_of_the_set() -> None:
    split = load_split(DEV_DIR)
    assert len(split["sealed"]) == SEALED_SIZE
    assert not set(split["sealed"]) & set(split["study"])
    assert sorted(split["sealed"] + split["study"]) == _names()


def test_split_depends_on_names_only_not_on_their_order() -> None:
    names = _names()
    assert compute_split(list(reversed(names))) == compute_split(names)
    assert compute_split(names, seed="another seed")["sealed"] != compute_split(names)["sealed"]


def test_every_page_has_a_language_and_a_kind() -> None:
    labels = load_labels(DEV_DIR)
    assert set(labels) == set(_names())
    assert all(label["kind"] in KINDS and label["language"] for label in labels.values())


def test_segment_scoring_folds_whitespace() -> None:
    page = DevPage("x", None, ("main  text\nhere", "missing"), ("menu item", "absent"), Path("x"))
    counts = score_segments(page, "Some main text here. menu   item")
    assert (counts.tp, counts.fn, counts.fp, counts.tn) == (1, 1, 1, 1)
    both = total([counts, counts])
    assert both.precision == 0.5 and both.recall == 0.5 and both.f1 == 0.5
