"""Programs tests/test_multihost.py runs *inside* its namespace hosts (tests/netns.py):

python -m tests.multihost_tools origin --listen NAME=ADDRESS,... --port P --per-host N --log FILE
    the test news site on several addresses: /sitemap.xml (N article URLs of that host), the
    benchmark pages under /p/<n>/<page>.html (tests/hostile/origin.py), an access log line per
    request: `time local_address client_address path status`;
python -m tests.multihost_tools account --urls FILE [--since T]
    the accounting of tests/hostile/rig.py (Rig.account, diagnose_pending, check_invariants)
    for those URLs, as one JSON line, through the deployment's own Redis and index (the test
    process, in the root namespace, reaches neither).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit


def bench_html_dir() -> Path:
    """tests.conftest.BENCH_DIR / "html", without importing conftest (it starts a test session's setup)."""
    root = Path(__file__).resolve().parents[1]
    return (
        Path(os.environ.get("NEWSFLOW_FIXTURES_DIR") or root / "tests" / "fixtures") / "extraction-benchmark" / "html"
    )


def page_ids_in(html_dir: Path) -> list[str]:
    return sorted(p.name.removesuffix(".html.gz") for p in html_dir.glob("*.html.gz"))


def article_urls(name: str, port: int, n: int, page_ids: list[str]) -> list[str]:
    """The `n` article URLs origin host `name` lists in its sitemap."""
    return [f"http://{name}:{port}/p/{name}-{i}/{page_ids[i % len(page_ids)]}.html" for i in range(n)]


def serve_origin(listen: dict[str, str], port: int, per_host: int, log_path: Path) -> None:
    from tests.hostile.origin import FaultyOrigin

    pages = FaultyOrigin(bench_html_dir())
    page_ids = page_ids_in(bench_html_dir())
    lock = threading.Lock()
    log = log_path.open("a", buffering=1)
    sitemaps = {
        addr: (
            '<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            + "".join(f"<url><loc>{u}</loc></url>\n" for u in article_urls(name, port, per_host, page_ids))
            + "</urlset>\n"
        ).encode()
        for name, addr in listen.items()
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            t = time.time()
            local = self.connection.getsockname()[0]
            path = urlsplit(self.path).path
            if path == "/sitemap.xml":
                code, body, ctype = 200, sitemaps[local], "application/xml"
            else:
                page = pages.page_for(path)
                code, body, ctype = (200, page, "text/html; charset=utf-8") if page else (404, b"no", "text/plain")
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            with lock:
                log.write(f"{t:.6f} {local} {self.client_address[0]} {path} {code}\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    servers = [Server((addr, port), Handler) for addr in listen.values()]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for th in threads:
        th.start()
    print(f"origin listening on {', '.join(f'{n}={a}:{port}' for n, a in listen.items())}", flush=True)
    for th in threads:
        th.join()


def account(urls: list[str], since: float) -> dict[str, Any]:
    from config.settings import get_settings
    from newsflow.stores import Stores
    from newsflow.urls import article_id
    from tests.hostile.rig import Rig

    settings = get_settings()
    rig = Rig.__new__(Rig)  # only its accounting: the deployment is the hosts', not the rig's
    rig.settings = settings
    rig.stores = Stores.from_settings(settings)
    rig.state = rig.stores.state
    rig.redis = SimpleNamespace(url=settings.redis_url)
    ids = sorted({article_id(u) for u in urls})
    entries = rig.state.ledgers(ids)
    states = Counter(e.state if e else "missing" for e in entries)
    after = [e.updated_at for e in entries if e and e.state == "indexed" and e.updated_at > since]
    out: dict[str, Any] = {"ids": len(ids), "states": dict(states), "first_indexed_after": min(after, default=None)}
    if states["indexed"] + states["dead"] < len(ids):
        out["pending"] = rig.diagnose_pending(ids)[:20]
        return out
    counts = rig.account(ids)
    out["counts"] = {
        "submitted": counts.submitted, "indexed": counts.indexed, "dead": counts.dead, "pending": counts.pending,
        "index_docs": counts.in_index, "distinct_in_index": counts.distinct_in_index,
        "dead_reasons": dict(counts.dead_reasons), "dead_letters": counts.dead_letters,
        "line": counts.line("multihost"),
    }  # fmt: skip
    try:
        rig.check_invariants(ids, "multihost")
        out["invariants"] = "ok"
    except AssertionError as exc:
        out["invariants"] = f"FAILED: {exc}"
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="tests.multihost_tools")
    sub = parser.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("origin")
    o.add_argument("--listen", required=True)
    o.add_argument("--port", type=int, required=True)
    o.add_argument("--per-host", type=int, required=True)
    o.add_argument("--log", type=Path, required=True)
    a = sub.add_parser("account")
    a.add_argument("--urls", type=Path, required=True)
    a.add_argument("--since", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.cmd == "origin":
        listen = dict(item.split("=", 1) for item in args.listen.split(","))
        serve_origin(listen, args.port, args.per_host, args.log)
    else:
        urls = json.loads(args.urls.read_text())
        sys.stdout.write(json.dumps(account(urls, args.since)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
