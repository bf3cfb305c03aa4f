"""Regression gate: body F1 on the extraction benchmark must stay within 0.005 of the committed baseline."""

from __future__ import annotations

import json
import os
from pathlib import Path

from newsflow.extract import extract_article
from newsflow.extract.evaluate import load_benchmark, score_page, summarize
from tests.conftest import need

BASELINE = Path(__file__).resolve().parent / "data" / "extraction_baseline.json"
# CI runs in a fresh clone with ../shared beside it; NEWSFLOW_FIXTURES_DIR points elsewhere when needed.
_DEFAULT_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
FIXTURES = Path(os.environ.get("NEWSFLOW_FIXTURES_DIR") or _DEFAULT_FIXTURES)
BENCHMARK = FIXTURES / "extraction-benchmark"
TOLERANCE = 0.005


def test_body_f1_not_below_baseline() -> None:
    # Runs in every CI build (about 3 s): the clean stage decides what people find.
    need(BENCHMARK.exists(), f"extraction benchmark not found at {BENCHMARK}")
    baseline = json.loads(BASELINE.read_text(encoding="utf-8"))
    pages = list(load_benchmark(BENCHMARK))
    assert len(pages) == baseline["pages"]
    summary = summarize(score_page(p.truth, extract_article(p.html(), p.url).body) for p in pages)
    floor = baseline["f1"] - TOLERANCE
    assert summary.f1 >= floor, f"F1 {summary.f1:.4f} < baseline {baseline['f1']:.4f} - {TOLERANCE}"
