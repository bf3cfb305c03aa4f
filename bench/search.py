"""Search benchmark: build an N-article index through `SearchIndex.upsert_batch`, then time queries.

    .venv/bin/python bench/search.py                 # 100,000 articles (about 2-4 min on 2 cores)
    .venv/bin/python bench/search.py --docs 20000 --queries 100 --json

Articles are generated: words drawn by their real frequency from the extraction benchmark's
article bodies (a Zipf-like news vocabulary; synthetic words if the fixtures are missing), 150-1500
words each (log-normal, median ~550), titles, 300 sites, a language mix (85% en, 5% each de/fr/es),
entities from a pool of 600 names, dates over three years, and 15% near-duplicates of an earlier
article (same cluster). Reported: indexing rate (articles/s through upsert_batch, batches of
--batch, queue transport excluded) and p50/p95 latency per query kind through `SearchIndex.search`
as the CLI and API call it (parse, search, collapse by story, snippets, facets when asked).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_FIXTURES  # noqa: E402

from newsflow.search import SearchIndex, SearchRequest  # noqa: E402

FIXTURES = DEFAULT_FIXTURES
KINDS = ("term", "phrase", "boolean", "filtered", "faceted", "date_sorted")


def vocabulary(rng: random.Random) -> tuple[list[str], np.ndarray]:
    """Words and their probabilities, from real article text when available."""
    gt = FIXTURES / "extraction-benchmark" / "ground-truth.json"
    counts: Counter[str] = Counter()
    if gt.exists():
        for page in json.loads(gt.read_text(encoding="utf-8")).values():
            counts.update(w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'-]{1,}", page.get("articleBody") or ""))
    if len(counts) < 2000:  # synthetic Zipf vocabulary
        letters = "etaoinshrdlucmfwypvbgk"
        for rank in range(1, 30_000):
            word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 10)))
            counts[word] += max(1, int(100_000 / rank))
    words = list(counts)
    freq = np.array([counts[w] for w in words], dtype=np.float64)
    return words, freq / freq.sum()


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.words, self.p = vocabulary(self.rng)
        self.sites = [f"news{i}.example" for i in range(300)]
        self.site_p = np.array([1 / (i + 1) for i in range(300)])
        self.site_p /= self.site_p.sum()
        first = ["Anna", "Jens", "Maria", "Olaf", "Ursula", "Pedro", "Chen", "Amara", "Ivan", "Lucia", "Omar", "Ingrid"]
        last = ["Stoltenberg", "Garcia", "Novak", "Okafor", "Schmidt", "Rossi", "Dubois", "Kowalski", "Tanaka", "Silva"]
        self.people = [f"{f} {la}" for f in first for la in last][:120]
        self.orgs = [f"{w.title()} {k}" for w in self.words[200:400:2] for k in ("Group", "Council", "Bank")][:240]
        self.places = [w.title() + "ville" for w in self.words[400:640]]
        self.docs: list[dict[str, Any]] = []

    def text(self, n: int) -> str:
        picks = self.np.choice(len(self.words), size=n, p=self.p)
        out, i = [], 0
        while i < n:
            k = int(self.np.integers(8, 26))
            sent = [self.words[j] for j in picks[i : i + k]]
            sent[0] = sent[0].capitalize()
            out.append(" ".join(sent) + ".")
            i += k
        return " ".join(out)

    def doc(self, i: int) -> dict[str, Any]:
        rng = self.rng
        if self.docs and rng.random() < 0.15:  # a near-duplicate: another site reprints a story
            base = self.docs[rng.randrange(max(0, len(self.docs) - 2000), len(self.docs))]
            body = base["body"] + " " + self.text(30)
            title, lang, cluster = base["title"], base["language"], base["cluster_id"]
        else:
            body = self.text(int(min(1500, max(150, rng.lognormvariate(6.3, 0.5)))))
            title = self.text(rng.randint(6, 12)).rstrip(".")
            lang = rng.choices(["en", "de", "fr", "es"], [85, 5, 5, 5])[0]
            cluster = None
        aid = f"{i:032x}"
        site = self.sites[int(self.np.choice(300, p=self.site_p))]
        day = rng.randrange(3 * 365)
        published = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_640_995_200 + day * 86400 + rng.randrange(86400)))
        doc = {
            "id": aid,
            "url": f"https://www.{site}/story/{aid}",
            "title": title,
            "body": body,
            "description": body[:200],
            "author": rng.choice(self.people),
            "published": published,
            "site_name": site,
            "language": lang,
            "entities": {
                "person": rng.sample(self.people, 2),
                "organization": rng.sample(self.orgs, 1),
                "place": rng.sample(self.places, 2),
            },
            "keywords": body.split()[:5],
            "cluster_id": cluster or aid,
            "word_count": body.count(" ") + 1,
        }
        self.docs.append({"body": body[:2000], "title": title, "language": lang, "cluster_id": doc["cluster_id"]})
        if len(self.docs) > 4000:
            del self.docs[:2000]
        return doc


def batches(gen: Generator, n: int, size: int) -> Iterator[list[dict[str, Any]]]:
    batch = []
    for i in range(n):
        batch.append(gen.doc(i))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def queries(gen: Generator, n: int) -> dict[str, list[SearchRequest]]:
    """n queries per kind, words from the middle of the frequency range (neither stop words nor typos)."""
    rng = random.Random(7)
    ranked = sorted(range(len(gen.words)), key=lambda j: -gen.p[j])
    mid = [gen.words[j] for j in ranked[100:3000] if len(gen.words[j]) > 3]
    common = [gen.words[j] for j in ranked[30:300] if len(gen.words[j]) > 3]
    out: dict[str, list[SearchRequest]] = {k: [] for k in KINDS}
    sample_text = gen.text(20_000).lower().replace(".", "").split()
    top = {gen.words[j] for j in ranked[:100]}
    for _ in range(n):
        a, b, c = rng.sample(mid, 3)
        # 2-3 running words with one outside the 100 most frequent ("of the" alone is no search).
        k = rng.randrange(len(sample_text) - 3)
        n_words = rng.choice((2, 3))
        while all(w in top for w in sample_text[k : k + n_words]):
            k = rng.randrange(len(sample_text) - 3)
        out["term"].append(SearchRequest(query=f"{a} {b}"))
        out["phrase"].append(SearchRequest(query='"' + " ".join(sample_text[k : k + n_words]) + '"'))
        out["boolean"].append(SearchRequest(query=f"({a} OR {b}) NOT {c}"))
        site = gen.sites[rng.randrange(20)]
        out["filtered"].append(SearchRequest(query=f"{rng.choice(common)} site:{site} lang:en", since="2023-01-01"))
        out["faceted"].append(SearchRequest(query=a, facets=True))
        out["date_sorted"].append(SearchRequest(query=rng.choice(common), sort="date"))
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def build(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Generate and index args.docs articles; the rate counts only time spent in upsert_batch."""
    if path.exists():
        shutil.rmtree(path)
    gen = Generator(42)
    index = SearchIndex(path)
    index.writer(256 * 1024 * 1024, args.threads)
    gen_s = index_s = 0.0
    done = 0
    t_gen = time.perf_counter()
    it = batches(gen, args.docs, args.batch)
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        t1 = time.perf_counter()
        gen_s += t1 - t0
        if batch is None:
            break
        index.upsert_batch(batch, 256 * 1024 * 1024)
        index_s += time.perf_counter() - t1
        done += len(batch)
        if done % (args.batch * 10) == 0 or done == args.docs:
            print(f"\r  indexed {done}/{args.docs} ({done / index_s:.0f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    index.close()
    return {
        "index_rate_docs_per_s": round(args.docs / index_s),
        "generate_s": round(gen_s, 1),
        "build_s": round(time.perf_counter() - t_gen, 1),
        "load_avg_1m_after_build": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000, help="documents per upsert_batch (one commit each)")
    ap.add_argument("--queries", type=int, default=200, help="queries per kind")
    ap.add_argument("--threads", type=int, default=1, help="tantivy indexing threads (the index worker uses 1)")
    ap.add_argument("--index-dir", type=Path, help="keep the index here (default: a temp dir, removed)")
    ap.add_argument("--reuse", action="store_true", help="query the index already in --index-dir (no build)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = ap.parse_args()

    path = args.index_dir or Path(tempfile.mkdtemp(prefix="newsflow-bench-search-"))
    result: dict[str, Any] = {"docs": args.docs, "batch": args.batch, "threads": args.threads}
    if args.reuse:
        if args.index_dir is None or not (path / "meta.json").exists():
            ap.error("--reuse needs an --index-dir holding a built index")
        result["docs"] = SearchIndex(path).num_docs()
    else:
        result.update(build(path, args))
    result["index_mb"] = round(sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6)

    reader = SearchIndex(path)
    lat: dict[str, list[float]] = {}
    totals: dict[str, float] = {}
    cpu: dict[str, list[float]] = {}  # CPU time of the query: what wall time would be on an idle machine
    for kind, reqs in queries(Generator(42), args.queries).items():
        for req in reqs[:10]:  # warm the page cache and the language cache
            reader.search(req)
        times, hits, cpu_times = [], [], []
        for req in reqs:
            c0, t0 = time.process_time(), time.perf_counter()
            res = reader.search(req)
            times.append((time.perf_counter() - t0) * 1000)
            cpu_times.append((time.process_time() - c0) * 1000)
            hits.append(res.total)
        lat[kind] = times
        cpu[kind] = cpu_times
        totals[kind] = statistics.median(hits)
    result["latency_ms"] = {
        k: {
            "p50": round(pct(v, 0.5), 2),
            "p95": round(pct(v, 0.95), 2),
            "cpu_p50": round(pct(cpu[k], 0.5), 2),
            "cpu_p95": round(pct(cpu[k], 0.95), 2),
            "median_total": totals[k],
        }
        for k, v in lat.items()
    }
    result["cpus"] = os.cpu_count()
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(result))
    else:
        rate = (
            f"upsert_batch({args.batch}), {args.threads} thread(s): {result['index_rate_docs_per_s']}/s; "
            if ("index_rate_docs_per_s" in result)
            else ""
        )
        print(f"{result['docs']} articles, {result['index_mb']} MB; {rate}load average {result['load_avg_1m']}")
        print(f"{'kind':12} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} {'cpu p95':>8} {'median hits':>12}")
        for k, v in result["latency_ms"].items():
            print(
                f"{k:12} {v['p50']:8.2f} {v['p95']:8.2f} {v['cpu_p50']:8.2f} {v['cpu_p95']:8.2f} "
                f"{v['median_total']:12.0f}"
            )
    if args.index_dir is None:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
