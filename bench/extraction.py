"""Score `extract_article` beside plain trafilatura on both extraction sets, with CPU cost per page.

    python bench/extraction.py [--reps N] [--json] [--ablation] [--worst N] [--sets bench,dev]

Sets (tests/fixtures, or $NEWSFLOW_FIXTURES_DIR):
- `extraction-benchmark` (121 article pages): the benchmark's shingle metric (newsflow.extract.evaluate);
- `trafilatura-eval-dev` (400 pages): segment F1 (newsflow.extract.devset), printed for all 400, for the 300
  study pages and for the 100 sealed pages of the frozen split (split.json), with F1 per language (>= 10
  pages) and per kind of page (labels.json).
The baseline is `trafilatura.extract(html)` with its defaults; newsflow is `extract_article(html, url)` with
metadata. Both get the same decoded page.

CPU: process time (time.process_time) per page. Each page is first run once by both (untimed: scores come
from this run, and lazy initialisations such as trafilatura's stop lists or dateparser's languages are
paid); then `--reps` timed rounds run both on each page in turn (which one goes first alternates between
rounds), and a page's cost is its minimum over the rounds, which a busy shared machine disturbs least.
--ablation: F1 on the benchmark and on the 300 study pages with each step switched off (the sealed pages
are left out of it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import trafilatura  # noqa: E402
from _common import DEFAULT_FIXTURES  # noqa: E402

from newsflow.extract import extract_article  # noqa: E402
from newsflow.extract.devset import (  # noqa: E402
    DevPage,
    SegmentCounts,
    load_dev_pages,
    load_labels,
    load_split,
    score_segments,
    total,
)
from newsflow.extract.evaluate import BenchmarkPage, load_benchmark, score_page, summarize  # noqa: E402
from newsflow.extract.options import DEFAULT_OPTIONS, ExtractOptions  # noqa: E402

MIN_GROUP_PAGES = 10  # languages and kinds with fewer pages are printed but say little


@dataclass
class Page:
    """One page of either set, with what is needed to score a body."""

    name: str
    url: str | None
    html: str
    score: Callable[[str], Any]  # body -> PageScore (benchmark) or SegmentCounts (dev)
    language: str = ""
    kind: str = ""


@dataclass
class Side:
    """One extractor's results on a list of pages."""

    scores: list[Any]
    cpu_ms: list[float]


def benchmark_pages(directory: Path) -> list[Page]:
    def page(p: BenchmarkPage) -> Page:
        return Page(p.page_id, p.url, p.html(), partial(score_page, p.truth), "en", "news")

    return [page(p) for p in load_benchmark(directory)]


def dev_pages(directory: Path) -> list[Page]:
    labels = load_labels(directory)

    def page(p: DevPage) -> Page:
        label = labels.get(p.name, {})
        return Page(
            p.name, p.url, p.html(), partial(score_segments, p), label.get("language", ""), label.get("kind", "")
        )

    return [page(p) for p in load_dev_pages(directory)]


def plain_trafilatura(page: Page) -> str:
    return trafilatura.extract(page.html) or ""


def newsflow(page: Page, options: ExtractOptions = DEFAULT_OPTIONS) -> str:
    return extract_article(page.html, page.url, options=options).body


def _newsflow_with(options: ExtractOptions, page: Page) -> str:
    return newsflow(page, options)


def score_run(pages: Sequence[Page], extract: Callable[[Page], str]) -> list[Any]:
    return [p.score(extract(p)) for p in pages]


def timed_rounds(pages: Sequence[Page], extractors: Sequence[Callable[[Page], str]], reps: int) -> list[list[float]]:
    """Per extractor, per page: the minimum CPU ms over `reps` rounds.

    Each round runs every extractor on a page before moving to the next page, first one extractor first,
    then (next round) the other: load on the shared machine and the garbage one call leaves to the next
    then fall on both sides alike.
    """
    best = [[float("inf")] * len(pages) for _ in extractors]
    for rep in range(reps):
        order = list(range(len(extractors)))
        if rep % 2:
            order.reverse()
        for i, page in enumerate(pages):
            for k in order:
                start = time.process_time()
                extractors[k](page)
                best[k][i] = min(best[k][i], (time.process_time() - start) * 1000)
    return best


def run_set(pages: list[Page], reps: int) -> tuple[Side, Side]:
    traf_scores = score_run(pages, plain_trafilatura)  # also the warm-up round
    nf_scores = score_run(pages, newsflow)
    traf_ms, nf_ms = timed_rounds(pages, [plain_trafilatura, newsflow], reps) if reps else ([], [])
    return Side(traf_scores, traf_ms), Side(nf_scores, nf_ms)


# --- summaries ---------------------------------------------------------------------------------------------


def summary(scores: Sequence[Any]) -> dict[str, float]:
    if scores and isinstance(scores[0], SegmentCounts):
        c = total(scores)
        return {"f1": c.f1, "precision": c.precision, "recall": c.recall, "pages": len(scores)}
    s = summarize(scores)
    return {"f1": s.f1, "precision": s.precision, "recall": s.recall, "pages": s.pages}


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] if ordered else 0.0


def cpu(ms: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(ms), "p95": p95(ms)} if ms else {}


def by_group(pages: Sequence[Page], traf: Side, nf: Side, key: str) -> list[dict[str, Any]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, page in enumerate(pages):
        groups[getattr(page, key)].append(i)
    rows = []
    for name, idx in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        t, n = summary([traf.scores[i] for i in idx]), summary([nf.scores[i] for i in idx])
        rows.append(
            {
                key: name,
                "pages": len(idx),
                "trafilatura_f1": t["f1"],
                "newsflow_f1": n["f1"],
                "delta": n["f1"] - t["f1"],
            }
        )
    return rows


def report(name: str, pages: Sequence[Page], traf: Side, nf: Side, worst: int) -> dict[str, Any]:
    out: dict[str, Any] = {"set": name, "trafilatura": summary(traf.scores), "newsflow": summary(nf.scores)}
    if traf.cpu_ms and nf.cpu_ms:
        out["cpu_ms"] = {
            "trafilatura": cpu(traf.cpu_ms),
            "newsflow": cpu(nf.cpu_ms),
            "ratio_mean": statistics.fmean(nf.cpu_ms) / statistics.fmean(traf.cpu_ms),
        }
    if len({p.language for p in pages}) > 1:
        out["by_language"] = by_group(pages, traf, nf, "language")
        out["by_kind"] = by_group(pages, traf, nf, "kind")
    if worst:
        ranked = sorted(range(len(pages)), key=lambda i: _page_f1(nf.scores[i]))[:worst]
        out["worst"] = [
            {"page": pages[i].name, "f1": _page_f1(nf.scores[i]), "trafilatura_f1": _page_f1(traf.scores[i])}
            for i in ranked
        ]
    return out


def _page_f1(score: Any) -> float:
    return float(score.f1)


def subset(pages: list[Page], traf: Side, nf: Side, names: set[str]) -> tuple[list[Page], Side, Side]:
    idx = [i for i, p in enumerate(pages) if p.name in names]

    def pick(side: Side) -> Side:
        return Side([side.scores[i] for i in idx], [side.cpu_ms[i] for i in idx] if side.cpu_ms else [])

    return [pages[i] for i in idx], pick(traf), pick(nf)


def ablation(pages_by_set: dict[str, list[Page]]) -> list[dict[str, Any]]:
    """F1 of each set with all steps, then with each step off; gain = what the step buys there."""
    variants: list[tuple[str, ExtractOptions]] = [("all steps", DEFAULT_OPTIONS)]
    variants += [(f"without {f.name}", DEFAULT_OPTIONS.without(f.name)) for f in fields(ExtractOptions)]
    variants.append(
        ("no steps (one trafilatura fast pass)", ExtractOptions(**{f.name: False for f in fields(ExtractOptions)}))
    )
    rows = []
    full: dict[str, float] = {}
    for label, options in variants:
        row: dict[str, Any] = {"variant": label}
        for set_name, pages in pages_by_set.items():
            f1 = summary(score_run(pages, partial(_newsflow_with, options)))["f1"]
            full.setdefault(set_name, f1)
            row[set_name] = f1
            row[f"{set_name} gain"] = full[set_name] - f1
        rows.append(row)
    return rows


# --- main --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument(
        "--sets",
        default="bench,dev",
        help="comma-separated: bench, dev (all 400, study and sealed), study (the 300 only)",
    )
    parser.add_argument("--reps", type=int, default=2, help="timed rounds after the untimed one (0: no timing)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--ablation", action="store_true", help="also print the ablation table")
    parser.add_argument("--worst", type=int, default=0)
    args = parser.parse_args(argv)
    wanted = set(args.sets.split(","))
    reports: list[dict[str, Any]] = []
    ablation_sets: dict[str, list[Page]] = {}
    if "bench" in wanted:
        pages = benchmark_pages(args.fixtures / "extraction-benchmark")
        traf, nf = run_set(pages, args.reps)
        reports.append(report("benchmark (121)", pages, traf, nf, args.worst))
        ablation_sets["benchmark"] = pages
    if "dev" in wanted or "study" in wanted:
        directory = args.fixtures / "trafilatura-eval-dev"
        split = load_split(directory)
        pages = dev_pages(directory)
        if "dev" not in wanted:  # development runs: the sealed pages are neither run nor shown
            pages = [p for p in pages if p.name in set(split["study"])]
        traf, nf = run_set(pages, args.reps)
        parts = ("study", "sealed") if "dev" in wanted else ("study",)
        if "dev" in wanted:
            reports.append(report("dev (all 400)", pages, traf, nf, 0))
        for part in parts:
            sub = subset(pages, traf, nf, set(split[part]))
            reports.append(report(f"dev {part} ({len(sub[0])})", *sub, args.worst if part == "study" else 0))
        ablation_sets["dev study"] = subset(pages, traf, nf, set(split["study"]))[0]
    out: dict[str, Any] = {"sets": reports}
    if args.ablation:
        out["ablation"] = ablation(ablation_sets)
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print_text(out)
    return 0


def print_text(out: dict[str, Any]) -> None:
    for rep in out["sets"]:
        print(f"== {rep['set']}")
        print("   extractor      F1      P       R       CPU ms/page mean   p95")
        for who in ("trafilatura", "newsflow"):
            s, c = rep[who], rep.get("cpu_ms", {}).get(who, {})
            timing = f"   {c['mean']:8.1f}   {c['p95']:7.1f}" if c else ""
            print(f"   {who:12s}  {s['f1']:.4f}  {s['precision']:.4f}  {s['recall']:.4f}{timing}")
        if "cpu_ms" in rep:
            print(f"   CPU ratio newsflow/trafilatura (mean): {rep['cpu_ms']['ratio_mean']:.2f}")
        for key in ("language", "kind"):
            rows = rep.get(f"by_{key}")
            if rows:
                cells = [
                    f"{r[key]}({r['pages']}) {r['trafilatura_f1']:.3f}/{r['newsflow_f1']:.3f}"
                    for r in rows
                    if key == "kind" or r["pages"] >= MIN_GROUP_PAGES
                ]
                print(f"   F1 by {key} (trafilatura/newsflow): " + ", ".join(cells))
        for w in rep.get("worst", []):
            print(f"     worst {w['page'][:16]:16s} newsflow {w['f1']:.3f} trafilatura {w['trafilatura_f1']:.3f}")
    if "ablation" in out:
        names = [k for k in out["ablation"][0] if k != "variant" and not k.endswith("gain")]
        print("\n| variant | " + " | ".join(f"{n} F1 | gain" for n in names) + " |")
        print("|---|" + "---|---|" * len(names))
        for row in out["ablation"]:
            row_cells = " | ".join(f"{row[n]:.4f} | {row[n + ' gain']:+.4f}" for n in names)
            print(f"| {row['variant']} | {row_cells} |")


if __name__ == "__main__":
    raise SystemExit(main())
