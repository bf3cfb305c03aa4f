"""Score `extract_article` on a folder in the extraction benchmark's format.

    python bench/extraction.py [DIR] [--json] [--ablation] [--worst N]

DIR defaults to the repository's copy of the benchmark (tests/fixtures/extraction-benchmark, or
$NEWSFLOW_FIXTURES_DIR/extraction-benchmark). Prints F1/precision/recall with the benchmark's own metric
(newsflow.extract.evaluate), median and p95 milliseconds per page (wall clock, and CPU time of this process,
which a busy shared machine disturbs less), and the worst pages.
--ablation reruns with each step of the sequence switched off and prints what each step buys.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_FIXTURES  # noqa: E402

from newsflow.extract import extract_article  # noqa: E402
from newsflow.extract.evaluate import (  # noqa: E402
    BenchmarkPage,
    PageScore,
    Summary,
    load_benchmark,
    score_page,
    summarize,
)
from newsflow.extract.options import DEFAULT_OPTIONS, ExtractOptions  # noqa: E402


def default_dir() -> Path:
    return DEFAULT_FIXTURES / "extraction-benchmark"


@dataclass
class Run:
    summary: Summary
    scores: list[tuple[BenchmarkPage, PageScore, str]]
    ms: list[float]
    cpu_ms: list[float]

    def percentile(self, q: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def run(pages: list[tuple[BenchmarkPage, str]], options: ExtractOptions = DEFAULT_OPTIONS) -> Run:
    scores: list[tuple[BenchmarkPage, PageScore, str]] = []
    ms: list[float] = []
    cpu_ms: list[float] = []
    for page, html in pages:
        start, cpu_start = time.perf_counter(), time.process_time()
        article = extract_article(html, page.url, options=options)
        ms.append((time.perf_counter() - start) * 1000)
        cpu_ms.append((time.process_time() - cpu_start) * 1000)
        scores.append((page, score_page(page.truth, article.body), article.provenance.get("body", "")))
    return Run(summarize(s for _, s, _ in scores), scores, ms, cpu_ms)


def report(result: Run, worst: int) -> dict[str, Any]:
    s = result.summary
    ranked = sorted(result.scores, key=lambda x: x[1].f1)[:worst]
    return {
        "pages": s.pages,
        "f1": round(s.f1, 4),
        "precision": round(s.precision, 4),
        "recall": round(s.recall, 4),
        "ms_median": round(statistics.median(result.ms), 1),
        "ms_p95": round(result.percentile(0.95), 1),
        "cpu_ms_median": round(statistics.median(result.cpu_ms), 1),
        "worst": [
            {"id": p.page_id, "url": p.url, "f1": round(sc.f1, 3), "p": round(sc.precision, 3),
             "r": round(sc.recall, 3), "method": method}
            for p, sc, method in ranked
        ],
    }


def ablation(pages: list[tuple[BenchmarkPage, str]]) -> list[dict[str, Any]]:
    """F1 with all steps, then with each step off; delta = what the step buys."""
    full = run(pages).summary
    rows = [{"variant": "all steps", "f1": full.f1, "precision": full.precision, "recall": full.recall, "delta": 0.0}]
    for f in fields(ExtractOptions):
        s = run(pages, DEFAULT_OPTIONS.without(f.name)).summary
        rows.append({"variant": f"without {f.name}", "f1": s.f1, "precision": s.precision, "recall": s.recall,
                     "delta": full.f1 - s.f1})
    bare = ExtractOptions(**{f.name: False for f in fields(ExtractOptions)})
    s = run(pages, bare).summary
    rows.append({"variant": "no steps (trafilatura fast only)", "f1": s.f1, "precision": s.precision,
                 "recall": s.recall, "delta": full.f1 - s.f1})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--ablation", action="store_true", help="also print the ablation table")
    parser.add_argument("--worst", type=int, default=10)
    args = parser.parse_args(argv)
    directory = args.dir or default_dir()
    pages = [(p, p.html()) for p in load_benchmark(directory)]
    out = report(run(pages), args.worst)
    if args.ablation:
        out["ablation"] = ablation(pages)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print_text(out)
    return 0


def print_text(out: dict[str, Any]) -> None:
    print(f"pages {out['pages']}  F1 {out['f1']:.4f}  P {out['precision']:.4f}  R {out['recall']:.4f}  "
          f"ms/page median {out['ms_median']}  p95 {out['ms_p95']}  CPU ms/page median {out['cpu_ms_median']}")
    print("worst pages:")
    for w in out["worst"]:
        print(f"  {w['f1']:.3f} (P {w['p']:.2f} R {w['r']:.2f}) {w['method']:22s} {w['id'][:12]} {w['url'][:70]}")
    if "ablation" in out:
        print("\n| variant | F1 | P | R | F1 lost |\n|---|---|---|---|---|")
        for row in out["ablation"]:
            print(f"| {row['variant']} | {row['f1']:.4f} | {row['precision']:.4f} | {row['recall']:.4f} | "
                  f"{row['delta']:+.4f} |")


if __name__ == "__main__":
    raise SystemExit(main())
