"""Archive benchmark (issue #16): what keeping every fetch as WARC costs, and how fast backfill reads.

Run from the project root:
    .venv/bin/python bench/archive.py                  # both parts
    .venv/bin/python bench/archive.py --rounds 6 --records 2000

1. Fetch CPU per page, archive off and on: `fetch_page` against the 122 fixture pages served from
   memory on 127.0.0.1 (bench/_common.Origin, another process), then the fetch stage's own archive
   call (`tasks.fetch._archive_page`: build the WARC records with warcio, gzip each, append under
   the lock, index line). Rounds alternate off/on so load drift hits both. The denominator is
   `fetch_page` alone, without the stage's Celery and Redis work, so the share printed is an upper
   bound of what archiving adds to the fetch stage. CPU (process time) is printed beside wall time.
2. Backfill: the bench builds a WARC of at least --records records (HTML 200 responses with their
   request records, plus 404s, revisits and PDFs, as a crawler writes them), then runs the real
   `newsflow backfill FILE --json` against a private redis-server (no workers: it measures reading,
   parking and sending), and reports pages per second and the command's peak resident memory,
   for that file and for one four times larger (memory must not grow with the file). Nothing
   consumes what it sends, so every page stays in Redis (append-only file on): the larger file's
   rate includes Redis growing by ~150 MB. `read_pages` alone (no Redis) is timed beside it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_FIXTURES, Origin, load_sources, loadavg, vary  # noqa: E402


def fetch_cost(rounds: int, pages: int, levels: list[int]) -> None:
    sources = load_sources(DEFAULT_FIXTURES)
    tmp = Path(tempfile.mkdtemp(prefix="nf-bench-archive-"))
    print(f"== fetch CPU per page, archive off/on ({pages} pages x {rounds} rounds each; load {loadavg()})")
    print(f"   corpus: {len(sources)} pages, median {statistics.median(len(s) for s in sources) / 1024:.0f} KiB")
    try:
        _fetch_rounds(sources, tmp, rounds, pages, levels)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch_rounds(sources: list[str], tmp: Path, rounds: int, pages: int, levels: list[int]) -> None:
    from config.settings import load_settings, use_settings
    from newsflow.fetcher import fetch_page, make_session
    from newsflow.pipeline import Message
    from tasks import fetch as fetch_stage

    with Origin(sources) as origin:
        results: dict[str, list[tuple[float, float]]] = {"off": []}
        for level in levels:
            results[f"on (gzip {level})"] = []
        for r in range(rounds):
            for mode in results:
                level = int(mode.split("gzip ")[1].rstrip(")")) if "gzip" in mode else 6
                settings = load_settings(
                    {}, data_dir=str(tmp), fetch_allow_private=True, archive_gzip_level=level,
                    archive_dir=str(tmp / f"warc-{r}-{level}") if mode != "off" else "",
                )  # fmt: skip
                use_settings(settings)
                fetch_stage._archive = None
                fetch_stage._session = None
                session = make_session(settings)
                for i in range(20):  # warm connections and caches
                    fetch_page(origin.url(i), settings, session)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                for i in range(pages):
                    url = origin.url(i)
                    result = fetch_page(url, settings, session)
                    if mode != "off":
                        fetch_stage._archive_page(Message.new(url, f"{i:032x}"), result)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                results[mode].append((cpu / pages * 1000, wall / pages * 1000))
                if fetch_stage._archive is not None:
                    fetch_stage._archive.close()
    base_cpu = statistics.median(c for c, _w in results["off"])
    base_wall = statistics.median(w for _c, w in results["off"])
    sizes = {}
    for level in levels:
        files = list(tmp.glob(f"warc-*-{level}/*.warc.gz"))
        sizes[level] = sum(f.stat().st_size for f in files) / max(1, rounds * pages)
    raw = statistics.mean(len(s.encode()) for s in sources)
    print(f"   {'mode':16} {'CPU ms/page':>12} {'wall ms/page':>13} {'CPU added':>10} {'bytes/page on disk':>19}")
    for mode, rows in results.items():
        cpu = statistics.median(c for c, _w in rows)
        wall = statistics.median(w for _c, w in rows)
        added = f"{(cpu / base_cpu - 1) * 100:+.1f}%" if mode != "off" else "-"
        level = int(mode.split("gzip ")[1].rstrip(")")) if "gzip" in mode else None
        size = f"{sizes[level] / 1024:.1f} KiB" if level is not None else f"({raw / 1024:.1f} KiB raw)"
        print(f"   {mode:16} {cpu:12.3f} {wall:13.3f} {added:>10} {size:>19}")
    print(f"   (fetch_page alone: {base_cpu:.3f} ms CPU, {base_wall:.3f} ms wall per page)")


def build_warc(path: Path, n_pages: int) -> int:
    """A WARC as a crawler writes it; returns its number of records."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    sources = load_sources(DEFAULT_FIXTURES)
    records = 0
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        w.write_record(w.create_warcinfo_record(path.name, {"software": "bench/archive.py"}))
        records += 1
        date = "2024-03-01T10:00:00Z"
        for i in range(n_pages):
            url = f"https://news{i % 17}.example/story/{i}"
            body = vary(sources[i % len(sources)], i).encode("utf-8")
            http = StatusAndHeaders(
                "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
                protocol="HTTP/1.1",
            )  # fmt: skip
            resp = w.create_warc_record(
                url, "response", payload=io.BytesIO(body), length=len(body), http_headers=http,
                warc_headers_dict={"WARC-Date": date},
            )  # fmt: skip
            req = w.create_warc_record(
                url, "request",
                http_headers=StatusAndHeaders("GET / HTTP/1.1", [("Host", "x")], is_http_request=True),
            )  # fmt: skip
            w.write_request_response_pair(req, resp)
            records += 2
            if i % 20 == 0:  # a 404, a PDF and a revisit every 20 pages
                nf = StatusAndHeaders("404 Not Found", [("Content-Type", "text/html")], protocol="HTTP/1.1")
                w.write_record(w.create_warc_record(url + "/gone", "response", payload=io.BytesIO(b"<html>no</html>"),
                                                   length=15, http_headers=nf))  # fmt: skip
                pdf = StatusAndHeaders("200 OK", [("Content-Type", "application/pdf")], protocol="HTTP/1.1")
                w.write_record(w.create_warc_record(url + ".pdf", "response", payload=io.BytesIO(b"%PDF-1.7\n" * 100),
                                                    length=900, http_headers=pdf))  # fmt: skip
                digest = resp.rec_headers.get_header("WARC-Payload-Digest")
                w.write_record(w.create_revisit_record(url, digest, url, date))
                records += 3
    return records


def read_only(path: Path) -> float:
    """Pages per second of `read_pages` alone (parse, decode, noindex check): the reading side."""
    from collections import Counter

    from newsflow.archive.backfill import read_pages

    started = time.perf_counter()
    n = sum(1 for _ in read_pages(path, Counter(), max_bytes=8 * 1024 * 1024, noindex_bot="newsflow"))
    return n / (time.perf_counter() - started)


def backfill_cost(records_wanted: int) -> None:
    from workers.runtime import PrivateRedis, free_port

    tmp = Path(tempfile.mkdtemp(prefix="nf-bench-backfill-"))
    port = free_port()
    redis_server = PrivateRedis(port, tmp / "redis")
    redis_server.start()
    print(f"\n== backfill: `newsflow backfill FILE --json` (no workers; private Redis; load {loadavg()})")
    print(f"   {'records':>8} {'file MB':>8} {'HTML 200':>9} {'s':>7} {'pages/s':>8} {'peak RSS MB':>12}  skipped")
    try:
        # Pages per record: 2 (response + request) plus 3 per 20 pages.
        base = int(records_wanted / (2 + 3 / 20)) + 1
        for scale in (1, 4):
            path = tmp / f"bench-{scale}.warc.gz"
            n_records = build_warc(path, base * scale)
            env = {
                **os.environ, "NEWSFLOW_REDIS_URL": f"redis://127.0.0.1:{port}/0", "NEWSFLOW_DATA_DIR": str(tmp),
                "NEWSFLOW_ARCHIVE_MAX_CLEAN_QUEUE": str(10 * base * scale), "NEWSFLOW_LOG_LEVEL": "WARNING",
            }  # fmt: skip
            started = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-m", "workers.cli", "backfill", str(path), "--json"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            assert proc.stdout is not None
            out = proc.stdout.read()
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - started
            report = json.loads(out)
            peak_mb = usage.ru_maxrss / 1024
            pages = report["html_200_pages"]
            skipped = ", ".join(f"{k} {v}" for k, v in report["skipped"].items())
            print(
                f"   {n_records:8d} {path.stat().st_size / 1e6:8.1f} {pages:9d} {wall:7.1f} "
                f"{pages / wall:8.1f} {peak_mb:12.1f}  {skipped}"
            )
            print(f"   (inside the command: {report['pages_per_s']} pages/s over {report['read_s']} s; "
                  f"whole command incl. start-up: {pages / wall:.1f}; reading alone, no Redis: "
                  f"{read_only(path):.1f} pages/s)")  # fmt: skip
            subprocess.run(["redis-cli", "-p", str(port), "flushall"], capture_output=True, check=False)
    finally:
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", type=int, default=122, help="Pages fetched per round and mode.")
    parser.add_argument("--levels", default="1,6", help="gzip levels to measure, comma-separated.")
    parser.add_argument("--records", type=int, default=2000, help="Records of the backfill WARC (at least).")
    parser.add_argument("--skip-fetch", action="store_true")
    parser.add_argument("--skip-backfill", action="store_true")
    args = parser.parse_args()
    if not args.skip_fetch:
        fetch_cost(args.rounds, args.pages, [int(x) for x in args.levels.split(",")])
    if not args.skip_backfill:
        backfill_cost(args.records)


if __name__ == "__main__":
    main()
