"""Regression gates: body F1 on both extraction sets must stay within 0.005 of the committed baselines.

- the 121-page extraction benchmark (shingle F1, newsflow.extract.evaluate), about 4 s;
- the 400-page trafilatura-eval-dev set (segment F1, newsflow.extract.devset), about 25 s.
Both run in every CI build: the clean stage decides what people find. The baselines are measured with
`python bench/extraction.py` and written to tests/data/ by hand with the figures it prints.
"""

from __future__ import annotations

import json
from pathlib import Path

from newsflow.extract import extract_article
from newsflow.extract.devset import load_dev_pages, score_segments, total
from newsflow.extract.evaluate import load_benchmark, score_page, summarize
from tests.conftest import BENCH_DIR, FIXTURES

DATA = Path(__file__).resolve().parent / "data"
BASELINE = DATA / "extraction_baseline.json"
DEV_BASELINE = DATA / "extraction_dev_baseline.json"
DEV_DIR = FIXTURES / "trafilatura-eval-dev"
TOLERANCE = 0.005


def test_body_f1_not_below_baseline() -> None:
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    pages = list(load_benchmark(BENCH_DIR))
    assert len(pages) == baseline["pages"]
    summary = summarize(score_page(p.truth, extract_article(p.html(), p.url).body) for p in pages)
    floor = baseline["f1"] - TOLERANCE
    assert summary.f1 >= floor, f"F1 {summary.f1:.4f} < baseline {baseline['f1']:.4f} - {TOLERANCE}"


def test_dev_set_segment_f1_not_below_baseline() -> None:
    baseline = json.loads(DEV_BASELINE.read_text(encoding="utf-8"))
    pages = list(load_dev_pages(DEV_DIR))
    assert len(pages) == baseline["pages"]
    counts = total(score_segments(p, extract_article(p.html(), p.url).body) for p in pages)
    floor = baseline["f1"] - TOLERANCE
    assert counts.f1 >= floor, f"F1 {counts.f1:.4f} < baseline {baseline['f1']:.4f} - {TOLERANCE}"
