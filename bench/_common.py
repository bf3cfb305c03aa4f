"""Helpers for the pipeline benchmark: the page corpus, its origin server, and process accounting.

Process figures come from /proc (Linux), so the benchmark needs no extra dependency for them.
"""

from __future__ import annotations

import gzip
import multiprocessing as mp
import os
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# The benchmarks' data: the repository's own test fixtures (tests/fixtures/README.md), or NEWSFLOW_FIXTURES_DIR.
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = Path(os.environ.get("NEWSFLOW_FIXTURES_DIR") or ROOT / "tests" / "fixtures")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- corpus -------------------------------------------------------------------------------------
def private_env(redis_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of a benchmark's own deployment: its private redis-server, its data dir, the
    local origin's private address allowed, and no per-host politeness limit: every page comes from one
    origin, and its 1/s default would measure the limiter, not the pipeline (its Redis checks still run
    on every fetch). Set it before any newsflow import reads the settings."""
    return {
        "NEWSFLOW_REDIS_URL": redis_url,
        "NEWSFLOW_STATE_REDIS_URL": "",
        "NEWSFLOW_DATA_DIR": str(data_dir),
        "NEWSFLOW_FETCH_ALLOW_PRIVATE": "1",
        "NEWSFLOW_LOG_LEVEL": "INFO",
        "NEWSFLOW_POLITE_HOST_RATE_PER_S": "1000000",
    }


def load_sources(fixtures: Path) -> list[str]:
    """The 121 extraction-benchmark pages plus the seed page, decoded."""
    pages = [
        gzip.decompress(p.read_bytes()).decode("utf-8", errors="replace")
        for p in sorted((fixtures / "extraction-benchmark" / "html").glob("*.html.gz"))
    ]
    seed = fixtures / "seed" / "kyiv-independent-stoltenberg.html"
    if seed.exists():
        pages.append(seed.read_text(encoding="utf-8"))
    if not pages:
        raise SystemExit(f"no fixture pages under {fixtures}; set --fixtures")
    return pages


def vary(html: str, i: int) -> str:
    """A distinct article per URL: the same page with its number in the title."""
    low = html.lower()
    at = low.find("</title>")
    if at < 0:
        return html
    return f"{html[:at]} (edition {i}){html[at:]}"


def page_path(i: int) -> str:
    return f"/article/{i}.html"


# --- origin server --------------------------------------------------------------------------------
def _serve(sources: list[str], port: int, ready: Any) -> None:
    encoded = [s.encode("utf-8") for s in sources]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1].removesuffix(".html")
            if self.path.startswith("/article/") and name.isdigit():
                i = int(name)
                body = vary(sources[i % len(sources)], i).encode("utf-8") if i >= len(sources) else encoded[i]
                code, ctype = 200, "text/html; charset=utf-8"
            else:
                body, code, ctype = b"not found", 404, "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a worker stopped mid-connection: nothing to report

    httpd = Server(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    ready.set()
    httpd.serve_forever()


@dataclass
class Origin:
    """The article pages on 127.0.0.1, served from memory by a process of their own.

    A separate process keeps the server's CPU out of the benchmark's own process and lets it be
    accounted for separately.
    """

    sources: list[str]
    port: int = 0
    proc: Any = None

    def __enter__(self) -> Origin:
        self.port = self.port or free_port()
        ctx = mp.get_context("fork")
        ready = ctx.Event()
        self.proc = ctx.Process(target=_serve, args=(self.sources, self.port, ready), daemon=True)
        self.proc.start()
        if not ready.wait(10):
            raise RuntimeError("the origin server did not start")
        return self

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}{page_path(i)}"

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --- /proc accounting -------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces: fields start after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def ppid_of(pid: int) -> int | None:
    f = _stat_fields(pid)
    return int(f[1]) if f else None


def cpu_s(pid: int, with_reaped_children: bool = True) -> float:
    """User+system CPU seconds of a process (plus its reaped children's)."""
    f = _stat_fields(pid)
    if not f:
        return 0.0
    ticks = int(f[11]) + int(f[12])
    if with_reaped_children:
        ticks += int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def sys_s(pid: int) -> float:
    """System (kernel) CPU seconds of a process tree: system calls, page faults, I/O on its behalf."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        f = _stat_fields(p)
        if f:
            total += (int(f[12]) + int(f[14])) / CLK_TCK
    return total


def switches(pid: int) -> tuple[int, int]:
    """Context switches of a process tree's live threads: (voluntary: it blocked, on a socket, a
    lock, the GIL; involuntary: the scheduler took the core from it). Threads that already ended
    are not counted (Celery's pools keep theirs)."""
    vol = invol = 0
    for p in [pid, *descendants(pid)]:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                lines = Path(f"/proc/{p}/task/{t}/status").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                if line.startswith("voluntary_ctxt_switches:"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    invol += int(line.split()[1])
    return vol, invol


def rss_bytes(pid: int) -> int:
    f = _stat_fields(pid)
    return int(f[21]) * PAGE_SIZE if f else 0


def anon_bytes(pid: int) -> int:
    """Private (anonymous) resident memory: what a leak grows. RSS also counts file pages mapped
    in, such as the search index's segments, which the kernel can drop at any time."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every live process below pid (prefork children, their helpers)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pp = ppid_of(int(entry))
            if pp is not None:
                parents.setdefault(pp, []).append(int(entry))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU of a process tree: the root with its reaped children, plus the live descendants."""
    return cpu_s(pid) + sum(cpu_s(c) for c in descendants(pid))


def tree_rss(pid: int) -> dict[int, int]:
    return {p: rss_bytes(p) for p in [pid, *descendants(pid)]}


def tree_anon(pid: int) -> int:
    return sum(anon_bytes(p) for p in [pid, *descendants(pid)])


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Sampler(threading.Thread):
    """Calls fn every interval_s seconds in the background until stopped."""

    def __init__(self, fn: Any, interval_s: float) -> None:
        super().__init__(daemon=True)
        self.fn, self.interval_s = fn, interval_s
        self._stop_evt = threading.Event()

    def run(self) -> None:
        while not self._stop_evt.wait(self.interval_s):
            self.fn()

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(5)
