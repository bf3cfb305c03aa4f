"""Regression gate: body F1 on the extraction benchmark must stay within 0.005 of the committed baseline."""

from __future__ import annotations

import json
from pathlib import Path

from newsflow.extract import extract_article
from newsflow.extract.evaluate import load_benchmark, score_page, summarize
from tests.conftest import BENCH_DIR

BASELINE = Path(__file__).resolve().parent / "data" / "extraction_baseline.json"
TOLERANCE = 0.005


def test_body_f1_not_below_baseline() -> None:
    # Runs in every CI build (about 3 s): the clean stage decides what people find.
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    pages = list(load_benchmark(BENCH_DIR))
    assert len(pages) == baseline["pages"]
    summary = summarize(score_page(p.truth, extract_article(p.html(), p.url).body) for p in pages)
    floor = baseline["f1"] - TOLERANCE
    assert summary.f1 >= floor, f"F1 {summary.f1:.4f} < baseline {baseline['f1']:.4f} - {TOLERANCE}"
