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

    .venv/bin/python bench/search.py --http                         # also through the HTTP API
    .venv/bin/python bench/search.py --while-ingesting --worker-nice 0,10

--http starts `newsflow serve` on the index, a process of its own on a free loopback port (its rate
limit off: the benchmark is one client asking back to back), and times the same queries through
GET /search on one keep-alive connection: wall time from sending the request to the last byte of
the answer, beside the server's own `took_ms`. --while-ingesting (implies --http) builds the index
in a data dir's layout (<data_dir>/index, where the index worker opens it), then for each
--worker-nice value starts the real deployment (`Deployment(settings, default_layout(settings))`, as
`newsflow up` does, its own redis-server) and submits --ingest-pages pages from a local origin, and
times both paths again while the workers index into that same index. Reported per phase: the
articles indexed per second meanwhile (the index's count, before and after each kind), the workers'
CPU in cores, the load average. The origin stands for the web sites, which run elsewhere: it runs
at the lowest priority in a session of its own.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_FIXTURES, Origin, _serve, free_port, load_sources, private_env, tree_cpu_s  # noqa: E402

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


# --- timing: the library call in this process, and GET /search of `newsflow serve` ----------------
def time_library(reader: SearchIndex, qs: dict[str, list[SearchRequest]]) -> dict[str, dict[str, Any]]:
    """Wall and CPU time per kind through `SearchIndex.search`; the index's count before and after."""
    out: dict[str, dict[str, Any]] = {}
    for kind, reqs in qs.items():
        for req in reqs[:10]:  # warm the page cache and the language cache
            reader.search(req)
        docs0 = reader.num_docs()
        times, hits, cpu_times = [], [], []
        for req in reqs:
            c0, t0 = time.process_time(), time.perf_counter()
            res = reader.search(req)
            times.append((time.perf_counter() - t0) * 1000)
            cpu_times.append((time.process_time() - c0) * 1000)  # what wall time would be on an idle machine
            hits.append(res.total)
        out[kind] = {
            "p50": round(pct(times, 0.5), 2),
            "p95": round(pct(times, 0.95), 2),
            "max": round(max(times), 2),
            "cpu_p50": round(pct(cpu_times, 0.5), 2),
            "cpu_p95": round(pct(cpu_times, 0.95), 2),
            "median_total": statistics.median(hits),
            "docs": [docs0, reader.num_docs()],
        }
    return out


def search_path(req: SearchRequest) -> str:
    """GET /search for a request: the API's parameter names (newsflow.search.backend.SEARCH_PARAMS)."""
    params = [("q", req.query), *(("site", v) for v in req.site), *(("lang", v) for v in req.language)]
    if req.since:
        params.append(("since", req.since))
    if req.sort != "relevance":
        params.append(("sort", req.sort))
    if req.facets:
        params.append(("facets", "1"))
    return "/search?" + urlencode(params)


class Client:
    """One keep-alive HTTP/1.1 connection (http.client: little client-side work per request)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.reconnects = 0

    def get(self, path: str) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except ConnectionError:  # the server closed the connection (idle timeout): once more
                self.conn.close()
                self.reconnects += 1
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def docs(self) -> int:
        status, body = self.get("/health")
        return int(json.loads(body)["docs"]) if status == 200 else -1


class ApiProcess:
    """`newsflow serve` on a free loopback port, as an operator runs it: a process and session of
    its own, nice 0. Its rate limit is off (one client asking back to back); its access log is kept."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = free_port()
        exe = Path(sys.executable).with_name("newsflow")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "workers.cli"]
        env = {**os.environ, "NEWSFLOW_DATA_DIR": str(data_dir), "NEWSFLOW_API_RATE_LIMIT_PER_MIN": "0",
               "NEWSFLOW_API_TOKEN": ""}  # fmt: skip
        self.log = log.open("ab")
        self.proc = subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", str(self.port)], env=env,
                                     cwd=ROOT, stdout=self.log, stderr=self.log, start_new_session=True)  # fmt: skip
        self.client = Client(self.port)
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = self.client.get("/health")
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit(f"newsflow serve did not start; see {log}") from None
                time.sleep(0.2)
                continue
            if status != 200:
                self.stop()
                raise SystemExit(f"newsflow serve: /health answered {status}: {body[:300]!r}")
            break
        self.client.reconnects = 0

    def stop(self) -> None:
        self.client.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def time_http(client: Client, qs: dict[str, list[SearchRequest]]) -> dict[str, dict[str, Any]]:
    """Wall time per kind of GET /search (request sent to last byte read), the server's own took_ms,
    and the index's count (GET /health) before and after each kind."""
    out: dict[str, dict[str, Any]] = {}
    for kind, reqs in qs.items():
        paths = [search_path(r) for r in reqs]
        for path in paths[:10]:  # warm up, as the library timing does
            client.get(path)
        docs0 = client.docs()
        times, took, hits = [], [], []
        for path in paths:
            t0 = time.perf_counter()
            status, body = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
            answer = json.loads(body)
            took.append(float(answer["took_ms"]))
            hits.append(int(answer["total"]))
        out[kind] = {
            "p50": round(pct(times, 0.5), 2),
            "p95": round(pct(times, 0.95), 2),
            "max": round(max(times), 2),
            "took_p50": round(pct(took, 0.5), 2),
            "took_p95": round(pct(took, 0.95), 2),
            "median_total": statistics.median(hits),
            "docs": [docs0, client.docs()],
        }
    return out


class Foreign:
    """CPU the rest of the machine used meanwhile (in cores): all busy time (/proc/stat) minus this
    benchmark's process tree (the API server, the workers, redis and the origin are its children)."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), self.busy(), tree_cpu_s(os.getpid())

    @staticmethod
    def busy() -> float:
        first = Path("/proc/stat").read_text().split("\n", 1)[0]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first.split()[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    def cores(self) -> float:
        own = tree_cpu_s(os.getpid()) - self.own0
        return round(max(0.0, self.busy() - self.busy0 - own) / (time.perf_counter() - self.t0), 2)


# --- the pipeline ingesting into the same index -------------------------------------------------------
def _serve_low(sources: list[str], port: int, ready: Any) -> None:  # pragma: no cover - child process
    from workers.runtime import lower_priority

    os.setsid()
    lower_priority(19)
    _serve(sources, port, ready)


class LowOrigin(Origin):
    """bench/_common's origin, at the lowest CPU priority in a session of its own: it stands for the
    news sites, which do not run on the machine that ingests and serves."""

    def __enter__(self) -> LowOrigin:
        self.port = self.port or free_port()
        ctx = mp.get_context("fork")
        ready = ctx.Event()
        self.proc = ctx.Process(target=_serve_low, args=(self.sources, self.port, ready), daemon=True)
        self.proc.start()
        if not ready.wait(10):
            raise RuntimeError("the origin server did not start")
        return self


def ingest_env(data_dir: Path) -> Any:
    """This process's settings for the deployment (bench/pipeline.py's): a private redis-server on a
    free port (started), the data dir, private addresses allowed, no politeness limit (one origin)."""
    from workers.runtime import PrivateRedis

    redis = PrivateRedis(free_port(), data_dir.parent / "redis")
    os.environ.update(private_env(redis.url, data_dir))
    redis.start()
    return redis


def while_ingesting(
    nice: int,
    phase: int,
    args: argparse.Namespace,
    origin: Origin,
    reader: SearchIndex,
    api: ApiProcess,
    qs: dict[str, list[SearchRequest]],
    work: Path,
) -> dict[str, Any]:
    """Start the deployment with workers at `nice`, feed it, and time both paths while it indexes."""
    from config.settings import load_settings, use_settings
    from newsflow.state import connect
    from newsflow.stores import Stores
    from workers.client import submit
    from workers.runtime import Deployment, default_layout

    settings = load_settings(worker_nice=nice)
    use_settings(settings)
    from workers.app import app  # configures itself from these settings (one broker for every phase)

    r = connect(settings.redis_url)
    r.flushall()  # the previous phase's queues and ledger
    dep = Deployment(settings, default_layout(settings), log_path=work / f"workers-nice{nice}.log")
    print(f"[nice {nice}] starting the deployment ({len(dep.layout)} workers)", file=sys.stderr, flush=True)
    dep.start()
    try:
        first = phase * args.ingest_pages
        urls = [origin.url(i) for i in range(first, first + args.ingest_pages)]
        submitted, _ = submit(app, Stores.from_settings(settings), urls)
        docs0, deadline = reader.num_docs(), time.monotonic() + 300
        while reader.num_docs() == docs0:  # the workers boot, then the first batch commits
            if time.monotonic() > deadline or not dep.alive():
                raise SystemExit(f"the pipeline indexed nothing; see {dep.log_path}")
            time.sleep(0.5)
        t_a, n_a = time.perf_counter(), reader.num_docs()
        time.sleep(args.settle)
        t_b, n_b = time.perf_counter(), reader.num_docs()
        print(f"[nice {nice}] ingesting {(n_b - n_a) / (t_b - t_a):.1f} articles/s before the queries; timing",
              file=sys.stderr, flush=True)  # fmt: skip
        roots = [p.pid for p in dep.procs]
        cpu0, api_cpu0 = sum(tree_cpu_s(p) for p in roots), tree_cpu_s(api.proc.pid)
        foreign, t0 = Foreign(), time.perf_counter()
        http_ms = time_http(api.client, qs)
        t1 = time.perf_counter()
        api_cpu, other_http = tree_cpu_s(api.proc.pid) - api_cpu0, foreign.cores()
        load_http = os.getloadavg()[0]
        foreign = Foreign()
        lib_ms = time_library(reader, qs)
        t2, n_end = time.perf_counter(), reader.num_docs()
        cpu = sum(tree_cpu_s(p) for p in roots) - cpu0
        n_http = [http_ms[k]["docs"] for k in KINDS]
        left = sum(int(r.llen(q)) for q in ("fetch", "clean", "enrich", "index"))
    finally:
        dep.stop()
    return {
        "worker_nice": nice,
        "pages_submitted": len(submitted),
        "rate_before_queries": round((n_b - n_a) / (t_b - t_a), 1),
        "rate_during_http": round((n_http[-1][1] - n_http[0][0]) / (t1 - t0), 1),
        "rate_during_timing": round((n_end - n_b) / (t2 - t_b), 1),
        "docs": [n_b, n_end],
        "http_s": round(t1 - t0, 1),
        "library_s": round(t2 - t1, 1),
        "workers_cores": round(cpu / (t2 - t0), 2),
        "api_cores_during_http": round(api_cpu / (t1 - t0), 2),
        "other_cores_during_http": other_http,
        "other_cores_during_library": foreign.cores(),
        "load_avg_1m_after_http": round(load_http, 2),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "queued_at_end": left,
        "reconnects": api.client.reconnects,
        "http_ms": http_ms,
        "latency_ms": lib_ms,
    }


def show(title: str, lib: dict[str, dict[str, Any]], web: dict[str, dict[str, Any]] | None) -> None:
    print(title)
    head = f"  {'kind':12} {'lib p50':>8} {'lib p95':>8} {'cpu p95':>8}"
    if web:
        head += f" | {'http p50':>8} {'http p95':>8} {'http max':>8} {'took p95':>8} | {'index docs (http)':>17}"
    print(head + f" {'hits':>7}")
    for k, v in lib.items():
        line = f"  {k:12} {v['p50']:8.2f} {v['p95']:8.2f} {v['cpu_p95']:8.2f}"
        if web:
            h = web[k]
            mark = "!" if h["p95"] > 20 else " "
            line += (f" | {h['p50']:8.2f} {h['p95']:7.2f}{mark} {h['max']:8.1f} {h['took_p95']:8.2f} |"
                     f" {h['docs'][0]:>8}→{h['docs'][1]:<8}")  # fmt: skip
        print(line + f" {v['median_total']:7.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000, help="documents per upsert_batch (one commit each)")
    ap.add_argument("--queries", type=int, default=200, help="queries per kind")
    ap.add_argument("--threads", type=int, default=1, help="tantivy indexing threads (the index worker uses 1)")
    ap.add_argument("--index-dir", type=Path, help="keep the index here (default: a temp dir, removed)")
    ap.add_argument("--reuse", action="store_true", help="query the index already in --index-dir (no build)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--http", action="store_true", help="also time the queries through `newsflow serve`")
    ap.add_argument("--while-ingesting", action="store_true",
                    help="then again while the pipeline ingests into the same index (implies --http)")  # fmt: skip
    ap.add_argument("--worker-nice", default=None, metavar="N[,N...]",
                    help="workers' worker_nice; several: a phase each (default: the setting)")  # fmt: skip
    ap.add_argument("--ingest-pages", type=int, default=6000, help="pages submitted per ingesting phase")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds of ingesting before the timing")
    ap.add_argument("--fixtures", type=Path, default=FIXTURES, help="pages the origin serves")
    args = ap.parse_args()
    args.http = args.http or args.while_ingesting

    # Index in a data dir's layout (settings.index_dir is <data_dir>/index): `newsflow serve` and the
    # index worker open it from there. A given --index-dir is linked in; everything else stays in tmp.
    tmp = Path(tempfile.mkdtemp(prefix="newsflow-bench-search-"))
    data_dir = tmp / "data"
    path = args.index_dir or data_dir / "index"
    result: dict[str, Any] = {"docs": args.docs, "batch": args.batch, "threads": args.threads}
    origin: Origin | None = None
    redis: Any = None
    api: ApiProcess | None = None
    try:
        if args.while_ingesting:
            redis = ingest_env(data_dir)
            origin = LowOrigin(load_sources(args.fixtures)).__enter__()  # forks: before any thread starts
        if args.reuse:
            if args.index_dir is None or not (path / "meta.json").exists():
                ap.error("--reuse needs an --index-dir holding a built index")
            result["docs"] = SearchIndex(path).num_docs()
        else:
            result.update(build(path, args))
        result["index_mb"] = round(sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1e6)
        if args.index_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / "index").symlink_to(path.resolve())

        reader = SearchIndex(path)
        qs = queries(Generator(42), args.queries)
        foreign = Foreign()
        result["latency_ms"] = time_library(reader, qs)
        result["other_cores_during_library"] = foreign.cores()
        result["cpus"] = os.cpu_count()
        result["load_avg_1m"] = round(os.getloadavg()[0], 2)
        if args.http:
            api = ApiProcess(data_dir, tmp / "api.log")
            foreign = Foreign()
            result["http_ms"] = time_http(api.client, qs)
            result["other_cores_during_http"] = foreign.cores()
            result["load_avg_1m_after_http"] = round(os.getloadavg()[0], 2)
        if args.while_ingesting:
            assert origin is not None and api is not None
            from config.settings import load_settings

            nices = [int(n) for n in (args.worker_nice or str(load_settings().worker_nice)).split(",")]
            result["ingesting"] = [
                while_ingesting(n, i, args, origin, reader, api, qs, tmp) for i, n in enumerate(nices)
            ]
    finally:
        if api is not None:
            api.stop()
        if origin is not None:
            origin.__exit__(None, None, None)
        if redis is not None:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the index too, unless it is in --index-dir

    if args.json:
        print(json.dumps(result))
        return
    rate = (
        f"upsert_batch({args.batch}), {args.threads} thread(s): {result['index_rate_docs_per_s']}/s; "
        if ("index_rate_docs_per_s" in result)
        else ""
    )
    print(f"{result['docs']} articles, {result['index_mb']} MB; {rate}load average {result['load_avg_1m']}")
    if not args.http:
        print(f"{'kind':12} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} {'cpu p95':>8} {'median hits':>12}")
        for k, v in result["latency_ms"].items():
            print(
                f"{k:12} {v['p50']:8.2f} {v['p95']:8.2f} {v['cpu_p50']:8.2f} {v['cpu_p95']:8.2f} "
                f"{v['median_total']:12.0f}"
            )
        return
    print("ms per query: lib = SearchIndex.search in this process; http = GET /search of `newsflow serve`,")
    print("keep-alive, sent to last byte; took = the server's own search time; ! = p95 over 20 ms")
    print("other = CPU (cores) of processes outside this benchmark meanwhile, library / http timing")
    show(
        f"idle (no pipeline): load average {result['load_avg_1m_after_http']}, other "
        f"{result['other_cores_during_library']} / {result['other_cores_during_http']}",
        result["latency_ms"],
        result["http_ms"],
    )
    for ph in result.get("ingesting", []):
        show(
            f"while ingesting, workers at nice {ph['worker_nice']}: {ph['rate_during_http']} articles/s indexed "
            f"during the HTTP timing, {ph['rate_during_timing']}/s over both ({ph['rate_before_queries']}/s "
            f"before the queries); workers {ph['workers_cores']} cores, API {ph['api_cores_during_http']}, other "
            f"{ph['other_cores_during_library']} / {ph['other_cores_during_http']}; load average "
            f"{ph['load_avg_1m_after_http']}; {ph['queued_at_end']} messages still queued at the end",
            ph["latency_ms"],
            ph["http_ms"],
        )


if __name__ == "__main__":
    main()
