"""Enrichment benchmark: cost per step, language accuracy, entity P/R, cluster P/R.

Run from the project root: `.venv/bin/python bench/enrich.py` (one core is enough; it uses one).
Clustering runs against a private redis-server it starts on a free port (skipped if none is found).
"""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis  # noqa: E402
from _common import DEFAULT_FIXTURES  # noqa: E402

from newsflow.enrich import enrich_article  # noqa: E402
from newsflow.enrich.clusters import assign_cluster  # noqa: E402
from newsflow.enrich.entities import extract_entities  # noqa: E402
from newsflow.enrich.evaluation import (  # noqa: E402
    cluster_test_set,
    entity_scores,
    pair_scores,
)
from newsflow.enrich.keywords import extract_keywords  # noqa: E402
from newsflow.enrich.language import detect_language  # noqa: E402
from newsflow.enrich.minhash import shingle_hashes, signature  # noqa: E402
from newsflow.enrich.summary import summarize  # noqa: E402
from newsflow.extract import extract_article  # noqa: E402

FIXTURES = DEFAULT_FIXTURES
DATA = ROOT / "tests" / "data"


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms"


def _timed(samples: list[float], fn: Callable[..., Any], *args: Any) -> Any:
    """Call fn(*args), append its wall time in ms to samples, return its result."""
    start = time.perf_counter()
    result = fn(*args)
    samples.append((time.perf_counter() - start) * 1000)
    return result


def bench_cost(bodies: dict[str, str], r: redis.Redis | None) -> None:
    texts = list(bodies.values())
    # Warm the lazy caches (model, gazetteer, stop words) so the numbers are per-article costs.
    enrich_article({"body": texts[0], "title": "warm up"})
    steps: dict[str, list[float]] = defaultdict(list)
    for i, text in enumerate(texts):
        lang, _ = _timed(steps["language"], detect_language, text)
        _timed(steps["entities"], extract_entities, text, lang)
        keywords = _timed(steps["keywords"], extract_keywords, text, lang)
        _timed(steps["summary"], summarize, text, keywords)
        _timed(steps["minhash"], lambda t: signature(shingle_hashes(t)), text)
        if r is not None:
            _timed(steps["cluster (minhash + Redis)"], assign_cluster, r, "bench:", f"cost{i}", text)
        _timed(steps["enrich_article (all but cluster)"], enrich_article, {"body": text})
    clean: list[float] = []
    for page in sorted((FIXTURES / "extraction-benchmark" / "html").glob("*.html.gz")):
        html = gzip.decompress(page.read_bytes()).decode("utf-8", errors="replace")
        _timed(clean, extract_article, html)
    print(f"\n## Cost per article ({len(texts)} benchmark bodies, one process, caches warm)")
    for name, samples in steps.items():
        print(f"  {name:34s} {_ms(samples)}")
    print(f"  {'cleaning (extract_article)':34s} {_ms(clean)}   <- reference")


def bench_language() -> None:
    rows = [json.loads(line) for line in (DATA / "language_sample.jsonl").read_text().splitlines() if line.strip()]
    by_kind: dict[str, list[bool]] = defaultdict(list)
    wrong = []
    for row in rows:
        got, confidence = detect_language(row["text"])
        by_kind[row["kind"]].append(got == row["lang"])
        if got != row["lang"]:
            wrong.append((row["lang"], got, confidence, row["text"][:40]))
    total = [ok for oks in by_kind.values() for ok in oks]
    langs = len({row["lang"] for row in rows})
    print(f"\n## Language ({len(rows)} texts, {langs} languages)")
    print(
        f"  accuracy {sum(total) / len(total):.3f}  "
        + "  ".join(f"{kind} {sum(v) / len(v):.3f} (n={len(v)})" for kind, v in sorted(by_kind.items()))
    )
    for w in wrong:
        print("  wrong:", w)


def bench_entities(bodies: dict[str, str]) -> None:
    seed_html = (FIXTURES / "seed" / "kyiv-independent-stoltenberg.html").read_text(encoding="utf-8")
    seed_expected = json.loads((FIXTURES / "seed" / "kyiv-independent-stoltenberg.expected.json").read_text())
    seed_body = extract_article(seed_html, seed_expected["url"]).body
    got = extract_entities(seed_body)
    missing = {k: sorted(set(v) - set(got[k])) for k, v in seed_expected["entities_expected"].items()}
    print("\n## Entities")
    print(f"  seed article: {got}  missing: {missing}")
    gold = json.loads((DATA / "entities_gold.json").read_text())["articles"]
    predicted = [extract_entities(bodies[doc["id"]]) for doc in gold]
    for kind, (p, rc) in entity_scores(gold, predicted).items():
        print(f"  {kind:13s} precision {p:.3f}  recall {rc:.3f}")


def bench_clusters(bodies: dict[str, str], r: redis.Redis) -> None:
    items = cluster_test_set(bodies)
    predicted = {item.article_id: assign_cluster(r, "bench:", item.article_id, item.text) for item in items}
    truth = {item.article_id: item.story for item in items}
    precision, recall = pair_scores(truth, predicted)
    stories = len(set(truth.values()))
    copies = sum(item.edit != "original" for item in items)
    print(f"\n## Clusters ({len(items)} articles: {stories} stories, {copies} edited copies)")
    print(f"  pairwise precision {precision:.3f}  recall {recall:.3f}")
    originals = {item.story: predicted[item.article_id] for item in items if item.edit == "original"}
    for edit in sorted({item.edit for item in items} - {"original"}):
        joined = [predicted[i.article_id] == originals[i.story] for i in items if i.edit == edit]
        print(f"  copy '{edit}' joined its original: {sum(joined)}/{len(joined)}")


@contextmanager
def private_redis() -> Iterator[redis.Redis | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        print("(no redis-server: clustering skipped)")
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def load_bodies() -> dict[str, str]:
    """{article id: articleBody} of the extraction benchmark under FIXTURES."""
    truth = json.loads((FIXTURES / "extraction-benchmark" / "ground-truth.json").read_text(encoding="utf-8"))
    return {key: value["articleBody"] for key, value in truth.items()}


def main() -> None:
    bodies = load_bodies()
    with private_redis() as r:
        bench_cost(bodies, r)
        bench_language()
        bench_entities(bodies)
        if r is not None:
            r.flushdb()
            bench_clusters(bodies, r)


if __name__ == "__main__":
    main()
