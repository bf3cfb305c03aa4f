"""Enrichment cost against input size: every step must cost time linear (or capped) in its input.

Run from the project root: `.venv/bin/python bench/enrich_cost.py` (one core, under ~2 minutes).

For a few kinds of text — real articles, random tokens, capitalised names, one giant word, a repeated
sentence, mixed scripts — it measures the CPU time (time.process_time) of `enrich_article` from 10 kB up
to the clean stage's page limit (`clean_max_html_bytes`), doubling, and fits the slope of log(time)
against log(size): ~1 is linear, below 1 is capped, ~2 is quadratic. The "baseline" column is one plain
regex pass over the text (`\\w+`), the cheapest linear work any step can do. A second table does the
same for the cluster signature (`shingle_hashes` + `signature`), which the enrich task computes on the
whole body, with its peak memory.

A kind stops growing once one run takes more than BUDGET_S seconds (marked "-"): that is how the
quadratic behaviour of an older version shows without the benchmark hanging.
"""

from __future__ import annotations

import math
import re
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from config.defaults import Settings  # noqa: E402
from newsflow.enrich import enrich_article, warm_up  # noqa: E402
from newsflow.enrich.evaluation import load_benchmark  # noqa: E402
from newsflow.enrich.gazetteer import gazetteer  # noqa: E402
from newsflow.enrich.minhash import shingle_hashes, signature  # noqa: E402

LIMIT = Settings().clean_max_html_bytes  # the largest page the clean stage parses; its body is smaller
START = 10_000
BUDGET_S = 5.0  # one run slower than this ends its kind (quadratic code would otherwise run for hours)
MIN_SAMPLE_S = 0.2  # small inputs are repeated until this much CPU time is spent; the fastest run counts
_WORD = re.compile(r"\w+")


def sizes() -> list[int]:
    out = [START]
    while out[-1] * 2 <= LIMIT:
        out.append(out[-1] * 2)
    return out + ([LIMIT] if out[-1] != LIMIT else [])


# --- inputs ---------------------------------------------------------------------------------------
# Each builder makes one text of at least `n` characters; smaller sizes are its prefixes.
def _letters(rng: np.random.Generator, n: int, first: int = 97, last: int = 122) -> str:
    return rng.integers(first, last + 1, size=n, dtype=np.uint8).tobytes().decode("ascii")


def _words(rng: np.random.Generator, n: int) -> list[str]:
    letters = _letters(rng, n)
    lengths = rng.integers(3, 10, size=n // 4)
    ends = np.cumsum(lengths)
    ends = ends[ends <= n]
    starts = np.concatenate(([0], ends[:-1]))
    return [letters[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def prose(n: int) -> str:
    """Real article bodies one after another: what normal input looks like, scaled."""
    bodies = "\n".join(load_benchmark(ROOT).values())
    return (bodies + "\n") * (n // len(bodies) + 1)


def random_tokens(n: int) -> str:
    """Lower-case random words, some commas and full stops, a paragraph break every 100: every phrase is new."""
    rng = np.random.default_rng(1)
    words = _words(rng, n)
    seps = np.array([" ", " ", " ", ", ", ". "])[rng.integers(5, size=len(words))]
    seps[99::100] = ".\n"
    return "".join(w + sep for w, sep in zip(words, seps.tolist(), strict=True))


def capitalised(n: int) -> str:
    """Sentences full of names: given names with random surnames, 'said', organisations, titles."""
    rng = np.random.default_rng(2)
    given = sorted(gazetteer().given_names)
    surnames = [w.capitalize() for w in _words(rng, n)]
    out: list[str] = []
    total = i = 0
    while total < n:
        g = given[int(rng.integers(len(given)))]
        out.append(
            f"{g} {surnames[i]} said {surnames[i + 1]} met President {surnames[i + 2]} of "
            f"{surnames[i + 3]} Bank and {surnames[i]} in {surnames[i + 4]} {surnames[i + 5]}."
        )
        total += len(out[-1]) + 1
        i = (i + 6) % (len(surnames) - 6)
    return " ".join(out)


def giant_word(n: int) -> str:
    """One word, no spaces or punctuation at all."""
    return _letters(np.random.default_rng(3), n)


def repeated_sentence(n: int) -> str:
    """One short sentence, over and over: millions of sentences, one phrase."""
    sentence = "The minister said the new plan would work. "
    return sentence * (n // len(sentence) + 1)


def unicode_mix(n: int) -> str:
    """Words in Cyrillic, Greek, CJK, Arabic and emoji, with combining accents."""
    rng = np.random.default_rng(4)
    blocks = np.array([(0x410, 0x44F), (0x3B1, 0x3C9), (0x4E00, 0x4FFF), (0x627, 0x64A), (0x1F600, 0x1F64F)])
    lengths = rng.integers(2, 9, size=n // 4)
    ends = np.cumsum(lengths + 1)
    word_block = blocks[rng.integers(len(blocks), size=len(lengths))]
    per_char = np.repeat(word_block, lengths + 1, axis=0)
    points = per_char[:, 0] + (rng.random(len(per_char)) * (per_char[:, 1] - per_char[:, 0] + 1)).astype(np.int64)
    points[rng.random(len(points)) < 0.03] = 0x301  # a combining mark, sometimes at a word's start
    points[ends - 1] = 0x20
    return str(points.astype("<u4").tobytes().decode("utf-32-le"))


KINDS: dict[str, Callable[[int], str]] = {
    "prose": prose,
    "random": random_tokens,
    "names": capitalised,
    "giant word": giant_word,
    "repeated": repeated_sentence,
    "unicode": unicode_mix,
}


# --- measuring --------------------------------------------------------------------------------------
def cpu_time(fn: Callable[..., object], *args: Any) -> float:
    """Fastest CPU time of fn(*args) over repeats totalling at least MIN_SAMPLE_S (one run if slower)."""
    best, spent = math.inf, 0.0
    while spent < MIN_SAMPLE_S:
        start = time.process_time()
        fn(*args)
        took = time.process_time() - start
        best, spent = min(best, took), spent + took
        if took > BUDGET_S:
            break
    return best


def slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(time) on log(size), from 40 kB up (below, fixed costs dominate)."""
    pts = [(math.log(s), math.log(max(t, 1e-6))) for s, t in points if s >= 4 * START]
    if len(pts) < 3:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def table(title: str, columns: dict[str, dict[int, str]], slopes: dict[str, float | None]) -> None:
    print(f"\n## {title}")
    width = max(11, *(len(c) + 1 for c in columns))
    print(f"{'size':>10} " + "".join(f"{c:>{width}}" for c in columns))
    for size in sizes():
        print(f"{size:>10,} " + "".join(f"{columns[c].get(size, '-'):>{width}}" for c in columns))
    print(
        f"{'slope':>10} "
        + "".join(f"{(f'{slopes[c]:.2f}' if slopes[c] is not None else '-'):>{width}}" for c in columns)
    )


def bench_enrich() -> None:
    columns: dict[str, dict[int, str]] = {}
    slopes: dict[str, float | None] = {}
    base_text = prose(LIMIT)[:LIMIT]
    base = [(s, cpu_time(_WORD.findall, base_text[:s])) for s in sizes()]
    columns["baseline"] = {s: f"{t:.4f}" for s, t in base}
    slopes["baseline"] = slope(base)
    for kind, build in KINDS.items():
        text = build(LIMIT)[:LIMIT]
        points: list[tuple[int, float]] = []
        for size in sizes():
            article = {"body": text[:size], "title": text[:200]}
            took = cpu_time(enrich_article, article)
            points.append((size, took))
            if took > BUDGET_S:
                break
        columns[kind] = {s: f"{t:.4f}" for s, t in points}
        slopes[kind] = slope(points)
    table(f"enrich_article CPU seconds by body size (characters) — limit {LIMIT:,}", columns, slopes)


def _signature(body: str) -> object:
    return signature(shingle_hashes(body))


def bench_signature() -> None:
    columns: dict[str, dict[int, str]] = {"random s": {}, "random MB": {}, "prose s": {}, "prose MB": {}}
    slopes: dict[str, float | None] = {}
    for kind, build in (("random", random_tokens), ("prose", prose)):
        text = build(LIMIT)[:LIMIT]
        points: list[tuple[int, float]] = []
        for size in sizes():
            body = text[:size]
            took = cpu_time(_signature, body)
            tracemalloc.start()
            _signature(body)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            points.append((size, took))
            columns[f"{kind} s"][size] = f"{took:.4f}"
            columns[f"{kind} MB"][size] = f"{peak / 1e6:.1f}"
            if took > BUDGET_S:
                break
        slopes[f"{kind} s"], slopes[f"{kind} MB"] = slope(points), None
    table("cluster signature (shingle_hashes + signature): CPU seconds and peak MB", columns, slopes)


def main() -> None:
    started = time.monotonic()
    warm_up()
    bench_enrich()
    bench_signature()
    print(f"\n(total {time.monotonic() - started:.0f} s wall)")


if __name__ == "__main__":
    main()
