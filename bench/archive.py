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
   A second table sets the stage's archive work beside its claim check (docs/archive.md): the old
   way (the write, then the HTML compressed again with zstd for Redis) and the new way (the write;
   its response record's gzip member parked as is), each timed per page with its MULTI/EXEC to a
   private redis-server, with the clean stage's read of each blob and the bytes it takes in Redis.
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
    from workers.runtime import PrivateRedis, free_port

    sources = load_sources(DEFAULT_FIXTURES)
    tmp = Path(tempfile.mkdtemp(prefix="nf-bench-archive-"))
    redis_server = PrivateRedis(free_port(), tmp / "redis")  # where the claim checks are parked
    redis_server.start()
    print(f"== fetch CPU per page, archive off/on ({pages} pages x {rounds} rounds each; load {loadavg()})")
    print(f"   corpus: {len(sources)} pages, median {statistics.median(len(s) for s in sources) / 1024:.0f} KiB")
    try:
        _fetch_rounds(sources, tmp, rounds, pages, levels, redis_server.url)
    finally:
        redis_server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# Timed parts of one page, each summed over a round (CPU and wall): the fetch, the archive write
# (`_archive_page`), the claim check parked the old way (zstd of the HTML, `put_blob`) and the new
# way (the record's gzip member, `put_blob_member`), each with its MULTI/EXEC, and the clean stage's
# read of each (`get_blob`: GET, then zstd + UTF-8, or gunzip + parse + the fetcher's decoding).
_PARTS = ("fetch", "write", "park_zstd", "park_member", "read_zstd", "read_member")


def _fetch_rounds(sources: list[str], tmp: Path, rounds: int, pages: int, levels: list[int], redis_url: str) -> None:
    from config.settings import load_settings, use_settings
    from newsflow.fetcher import fetch_page, make_session
    from newsflow.pipeline import Message
    from newsflow.state import State, connect
    from tasks import fetch as fetch_stage

    def clock() -> tuple[float, float]:
        return time.process_time(), time.perf_counter()

    with Origin(sources) as origin:
        results: dict[str, list[dict[str, tuple[float, float]]]] = {"off": []}
        for level in levels:
            results[f"on (gzip {level})"] = []
        redis_bytes: dict[str, list[int]] = {}
        for r in range(rounds):
            for mode in results:
                level = int(mode.split("gzip ")[1].rstrip(")")) if "gzip" in mode else 6
                settings = load_settings(
                    {}, data_dir=str(tmp), fetch_allow_private=True, archive_gzip_level=level,
                    archive_dir=str(tmp / f"warc-{r}-{level}") if mode != "off" else "",
                    redis_url=redis_url, key_prefix="nf-bench-archive:",
                )  # fmt: skip
                use_settings(settings)
                state = State(connect(redis_url), settings)
                fetch_stage._archive = None
                fetch_stage._session = None
                session = make_session(settings)
                for i in range(20):  # warm connections and caches
                    fetch_page(origin.url(i), settings, session)
                spent = {part: [0.0, 0.0] for part in _PARTS}

                def timed(part: str, t0: tuple[float, float], spent: dict[str, list[float]] = spent) -> None:
                    cpu, wall = clock()
                    spent[part][0] += cpu - t0[0]
                    spent[part][1] += wall - t0[1]

                for i in range(pages):
                    url, aid = origin.url(i), f"{i:032x}"
                    t0 = clock()
                    result = fetch_page(url, settings, session)
                    timed("fetch", t0)
                    ways = ["zstd"] if mode == "off" else ["zstd", "member"]
                    for way in ways if i % 2 else reversed(ways):  # alternate: neither way always goes first
                        t0 = clock()
                        if way == "zstd":  # as before, and as with archiving off
                            pipe = state.pipeline()
                            key = state.put_blob(aid, result.html, pipe)
                            pipe.execute()
                        else:  # the archive write gives the member; it is parked as is
                            _capture, member = fetch_stage._archive_page(Message.new(url, aid), result)
                            timed("write", t0)
                            assert member is not None
                            t0 = clock()
                            pipe = state.pipeline()
                            key = state.put_blob_member(aid + "m", member, pipe)
                            pipe.execute()
                        timed(f"park_{way}", t0)
                        t0 = clock()
                        html = state.get_blob(key)
                        timed(f"read_{way}", t0)
                        assert html == result.html  # the clean stage gets the page the fetcher decoded
                        redis_bytes.setdefault(way if way == "zstd" else mode, []).append(int(state._r.strlen(key)))
                        state._r.delete(key)
                results[mode].append({part: (c / pages * 1000, w / pages * 1000) for part, (c, w) in spent.items()})
                if fetch_stage._archive is not None:
                    fetch_stage._archive.close()

    def med(mode: str, *parts: str, wall: bool = False) -> float:
        return statistics.median(sum(row[p][1 if wall else 0] for p in parts) for row in results[mode])

    base_cpu, base_wall = med("off", "fetch"), med("off", "fetch", wall=True)
    sizes = {}
    for level in levels:
        files = list(tmp.glob(f"warc-*-{level}/*.warc.gz"))
        sizes[level] = sum(f.stat().st_size for f in files) / max(1, rounds * pages)
    raw = statistics.mean(len(s.encode()) for s in sources)
    print(f"   {'mode':16} {'CPU ms/page':>12} {'wall ms/page':>13} {'CPU added':>10} {'bytes/page on disk':>19}")
    for mode in results:
        cpu = med(mode, "fetch", "write")
        wall = med(mode, "fetch", "write", wall=True)
        added = f"{(cpu / base_cpu - 1) * 100:+.1f}%" if mode != "off" else "-"
        level = int(mode.split("gzip ")[1].rstrip(")")) if "gzip" in mode else None
        size = f"{sizes[level] / 1024:.1f} KiB" if level is not None else f"({raw / 1024:.1f} KiB raw)"
        print(f"   {mode:16} {cpu:12.3f} {wall:13.3f} {added:>10} {size:>19}")
    print(f"   (fetch_page alone: {base_cpu:.3f} ms CPU, {base_wall:.3f} ms wall per page)")

    # The fetch stage's own work after fetch_page, as it was and as it is: the archive write plus
    # the claim check parked in Redis. Off: zstd of the HTML, as before. Old way: the write, then
    # zstd again for the claim check. New way: the write; its response member is the claim check.
    print("\n== fetch stage: archive + claim-check park, CPU ms/page (medians over rounds; Redis round trip incl.)")
    print(f"   {'way':34} {'write':>7} {'park':>7} {'total':>7} {'/ fetch_page':>13} "
          f"{'clean read':>11} {'KiB in Redis':>13}")  # fmt: skip
    zstd_kib = statistics.mean(redis_bytes["zstd"]) / 1024
    off_total = med("off", "park_zstd")
    rows = [("off: zstd blob (as before)", "off", (), ("park_zstd",), "read_zstd", zstd_kib)]
    for level in levels:
        mode = f"on (gzip {level})"
        member_kib = statistics.mean(redis_bytes[mode]) / 1024
        rows.append((f"gzip {level}, old: write + zstd blob", mode, ("write",), ("park_zstd",), "read_zstd", zstd_kib))
        rows.append((f"gzip {level}, new: write, member parked", mode, ("write",), ("park_member",), "read_member",
                     member_kib))  # fmt: skip
    for label, mode, write, park, read, kib in rows:
        w, pk = (med(mode, *write) if write else 0.0), med(mode, *park)
        total = w + pk
        print(f"   {label:34} {w:7.3f} {pk:7.3f} {total:7.3f} {total / base_cpu * 100:12.1f}% "
              f"{med(mode, read):11.3f} {kib:13.1f}")  # fmt: skip
    print(f"   archiving adds (total minus the off row's {off_total:.3f} ms), against fetch_page's {base_cpu:.3f} ms:")
    for level in levels:
        mode = f"on (gzip {level})"
        old = med(mode, "write") + med(mode, "park_zstd") - off_total
        new = med(mode, "write") + med(mode, "park_member") - off_total
        print(f"     gzip {level}: old {old:+.3f} ms ({old / base_cpu * 100:+.1f}%), "
              f"new {new:+.3f} ms ({new / base_cpu * 100:+.1f}%)")  # fmt: skip


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
