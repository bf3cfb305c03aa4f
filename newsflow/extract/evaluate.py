"""Body-extraction metric of Scrapinghub's article-extraction-benchmark, so our figures compare with published ones.

Definition (fixtures README): `\\w+` tokens, overlapping 4-token shingles counted as multisets, per-page
tp/fp/fn normalised to sum 1, precision and recall averaged over pages, F1 from the two averages.
The bench script and the regression-gate test both import this module, so they cannot drift apart.
"""

from __future__ import annotations

import gzip
import json
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsflow.extract.text import fold

_TOKEN = re.compile(r"\w+", re.UNICODE)
SHINGLE_SIZE = 4


@dataclass(frozen=True)
class PageScore:
    """Normalised shingle counts of one page: tp + fp + fn == 1 unless both texts are empty."""

    tp: float
    fp: float
    fn: float

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.fp, self.fn)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.fn, self.fp)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class Summary:
    f1: float
    precision: float
    recall: float
    pages: int


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text or "")


def shingles(text: str, n: int = SHINGLE_SIZE) -> Counter[tuple[str, ...]]:
    """Overlapping n-token shingles; a text shorter than n tokens is one (possibly empty-free) shingle."""
    tokens = tokenize(text)
    grams = (tuple(tokens[i : i + n]) for i in range(max(1, len(tokens) - n + 1)))
    return Counter(g for g in grams if g)


def score_page(truth: str, prediction: str) -> PageScore:
    expected, predicted = shingles(truth), shingles(prediction)
    tp = sum((expected & predicted).values())
    fp = sum((predicted - expected).values())
    fn = sum((expected - predicted).values())
    total = tp + fp + fn
    if total == 0:
        return PageScore(0.0, 0.0, 0.0)
    return PageScore(tp / total, fp / total, fn / total)


def _ratio(hit: float, miss: float, other_miss: float) -> float:
    # The benchmark's convention: a perfect match is 1 even for empty texts; nothing right is 0.
    if miss == other_miss == 0:
        return 1.0
    if hit == miss == 0:
        return 0.0
    return hit / (hit + miss)


def summarize(scores: Iterable[PageScore]) -> Summary:
    """Average precision over pages that predicted something, recall over pages with a truth."""
    pages = list(scores)
    precisions = [s.precision for s in pages if s.tp + s.fp > 0]
    recalls = [s.recall for s in pages if s.tp + s.fn > 0]
    p = statistics.fmean(precisions) if precisions else 0.0
    r = statistics.fmean(recalls) if recalls else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return Summary(f1=f1, precision=p, recall=r, pages=len(pages))


@dataclass(frozen=True)
class BenchmarkPage:
    page_id: str
    url: str
    truth: str
    path: Path

    def html(self) -> str:
        raw = gzip.decompress(self.path.read_bytes()) if self.path.suffix == ".gz" else self.path.read_bytes()
        return raw.decode("utf-8", errors="replace")


def load_benchmark(directory: Path) -> Iterator[BenchmarkPage]:
    """Pages of a folder in the benchmark's layout: ground-truth.json plus html/<id>.html[.gz]."""
    truth = json.loads((directory / "ground-truth.json").read_text(encoding="utf-8"))
    for page_id in sorted(truth):
        entry = truth[page_id]
        path = directory / "html" / f"{page_id}.html.gz"
        if not path.exists():
            path = directory / "html" / f"{page_id}.html"
        yield BenchmarkPage(page_id, entry.get("url", ""), entry.get("articleBody", ""), path)


# --- metadata against a hand-checked gold set ------------------------------------------------------------

METADATA_FIELDS = ("title", "author", "published", "site_name", "language")


def metadata_matches(field: str, expected: Any, predicted: str | None) -> bool:
    """Whether one extracted field agrees with the gold value (a value, None, or a list of accepted values)."""
    accepted = expected if isinstance(expected, list) else [expected]
    return any(_field_equal(field, want, predicted) for want in accepted)


def _field_equal(field: str, want: str | None, got: str | None) -> bool:
    if want is None or got is None:
        return want is None and got is None
    if field == "published":
        return got[:10] == want[:10]
    # Titles and names: quotes, dashes and case vary between a page's declarations; words must not.
    return fold(want) == fold(got)


def metadata_accuracy(gold: dict[str, dict[str, Any]], extracted: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per-field share of judged gold pages where the extracted value is right."""
    result: dict[str, float] = {}
    for name in METADATA_FIELDS:
        judged = [(pid, page[name]) for pid, page in gold.items() if name in page]
        right = sum(metadata_matches(name, want, extracted.get(pid, {}).get(name)) for pid, want in judged)
        result[name] = right / len(judged) if judged else 0.0
    return result
