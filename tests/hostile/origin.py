"""An origin for the fault suite: the benchmark pages under many distinct URLs, with switchable trouble.

`/p/<n>/<page id>.html` serves benchmark page `<page id>` for any `<n>`, so 121 pages make as many
distinct articles as a test wants. `misbehave(kind, seconds)` makes every page answer slowly, hang
past the read timeout, answer 500 or 429 for a while; then the origin is healthy again.
"""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

KINDS = ("slow", "hang", "http_500", "http_429")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up during faults are expected


class FaultyOrigin:
    def __init__(self, bench_html_dir: Path, seed_html: Path | None = None, slow_s: float = 1.5) -> None:
        self.pages: dict[str, bytes] = {
            p.name.removesuffix(".html.gz"): gzip.decompress(p.read_bytes()) for p in bench_html_dir.glob("*.html.gz")
        }
        self.seed = seed_html.read_bytes() if seed_html else None
        self.slow_s = slow_s
        self._fault: tuple[str, float] | None = None
        self.requests = 0
        self.faulted = 0
        lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with lock:
                    origin.requests += 1
                fault = origin.current_fault()
                if fault:
                    with lock:
                        origin.faulted += 1
                    if fault == "hang":
                        time.sleep(30)  # past any read timeout; the client is long gone
                        self.close_connection = True
                        return
                    if fault == "http_500":
                        return self._send(500, b"internal error", "text/plain")
                    if fault == "http_429":
                        return self._send(429, b"slow down", "text/plain", {"Retry-After": "1"})
                    time.sleep(origin.slow_s)  # "slow": answers, late
                body = origin.page_for(urlsplit(self.path).path)
                if body is None:
                    return self._send(404, b"not found", "text/plain")
                self._send(200, body, "text/html; charset=utf-8")

            def _send(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="faulty-origin", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def page_for(self, path: str) -> bytes | None:
        if path == "/seed.html":
            return self.seed
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "p" and parts[2].endswith(".html"):
            return self.pages.get(parts[2].removesuffix(".html"))
        return None

    def urls(self, run: str, n: int) -> list[str]:
        """`n` distinct article URLs (the seed first), cycling through the benchmark pages."""
        ids = sorted(self.pages)
        out = [f"{self.base_url}/seed.html?run={run}"] if self.seed else []
        i = 0
        while len(out) < n:
            out.append(f"{self.base_url}/p/{run}-{i}/{ids[i % len(ids)]}.html")
            i += 1
        return out

    def misbehave(self, kind: str, seconds: float) -> None:
        assert kind in KINDS, kind
        self._fault = (kind, time.monotonic() + seconds)

    def current_fault(self) -> str | None:
        fault = self._fault
        if fault and time.monotonic() < fault[1]:
            return fault[0]
        return None

    def __enter__(self) -> FaultyOrigin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
