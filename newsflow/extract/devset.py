"""The trafilatura-eval-dev set: loading, the frozen study/sealed split, labels and the segment scorer.

Scoring (the set's README): fold runs of whitespace to one space in the segment and the extracted body;
a `with` segment present is a true positive, absent a false negative; a `without` segment present is a
false positive, absent a true negative. Precision, recall and F1 over all segments of all pages.

Split (frozen before any tuning on the set, committed as split.json): each file name is hashed with
sha256(f"{SPLIT_SEED}:{name}"); the SEALED_SIZE names with the smallest digests are sealed (scored only
at the end of a piece of work), the rest are for study. Hashing the name, not the position, keeps a
page's side fixed whatever else is added or removed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPLIT_SEED = "newsflow-issue-15"
SEALED_SIZE = 100
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class DevPage:
    name: str
    url: str | None
    with_segments: tuple[str, ...]
    without_segments: tuple[str, ...]
    path: Path

    def raw(self) -> bytes:
        return gzip.decompress(self.path.read_bytes())

    def html(self) -> str:
        """The page decoded as the crawler decodes a response (no charset header known here)."""
        from newsflow.fetcher import decode_html  # the fetcher's imports are heavy; only pages need it

        return decode_html(self.raw(), None)[0]


@dataclass
class SegmentCounts:
    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0

    def add(self, other: SegmentCounts) -> None:
        self.tp, self.fn, self.fp, self.tn = (
            self.tp + other.tp,
            self.fn + other.fn,
            self.fp + other.fp,
            self.tn + other.tn,
        )

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def fold_spaces(text: str) -> str:
    return _SPACES.sub(" ", text or "").strip()


def score_segments(page: DevPage, body: str) -> SegmentCounts:
    text = fold_spaces(body)
    found_with = sum(fold_spaces(s) in text for s in page.with_segments)
    found_without = sum(fold_spaces(s) in text for s in page.without_segments)
    return SegmentCounts(
        tp=found_with,
        fn=len(page.with_segments) - found_with,
        fp=found_without,
        tn=len(page.without_segments) - found_without,
    )


def total(counts: Iterable[SegmentCounts]) -> SegmentCounts:
    result = SegmentCounts()
    for c in counts:
        result.add(c)
    return result


def load_dev_pages(directory: Path) -> Iterator[DevPage]:
    """Pages in file-name order. `url` is None where the set gives a label instead of an address."""
    entries: dict[str, dict[str, Any]] = json.loads((directory / "evaldata.json").read_text(encoding="utf-8"))
    for name in sorted(entries):
        entry = entries[name]
        url = entry.get("url") or ""
        yield DevPage(
            name=name,
            url=url if url.startswith(("http://", "https://")) else None,
            with_segments=tuple(entry.get("with") or ()),
            without_segments=tuple(entry.get("without") or ()),
            path=directory / "html" / name,
        )


# --- the split --------------------------------------------------------------------------------------------


def split_key(name: str, seed: str = SPLIT_SEED) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def compute_split(names: Iterable[str], seed: str = SPLIT_SEED, sealed_size: int = SEALED_SIZE) -> dict[str, Any]:
    ranked = sorted(names, key=lambda n: split_key(n, seed))
    return {
        "seed": seed,
        "rule": f"sha256('{seed}:' + file name); the {sealed_size} smallest hex digests are sealed, the rest study",
        "sealed": sorted(ranked[:sealed_size]),
        "study": sorted(ranked[sealed_size:]),
    }


def load_split(directory: Path) -> dict[str, list[str]]:
    data: dict[str, list[str]] = json.loads((directory / "split.json").read_text(encoding="utf-8"))
    return {"study": data["study"], "sealed": data["sealed"]}


def load_labels(directory: Path) -> dict[str, dict[str, str]]:
    """Per page: `language` (ISO 639-1 of the main text) and `kind` (news, blog, forum, other)."""
    data: dict[str, dict[str, str]] = json.loads((directory / "labels.json").read_text(encoding="utf-8"))["pages"]
    return data


if __name__ == "__main__":  # python -m newsflow.extract.devset DIR: (re)write DIR/split.json
    import sys

    folder = Path(sys.argv[1])
    names = json.loads((folder / "evaldata.json").read_text(encoding="utf-8"))
    (folder / "split.json").write_text(json.dumps(compute_split(names), indent=1) + "\n", encoding="utf-8")
