"""A small HTTP server for a folder of pages on 127.0.0.1 (the demo's and the tests' origin).

`.html.gz` files are served decompressed as `.html`, so the benchmark fixtures serve as they are.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


def _resolve(root: Path, url_path: str) -> tuple[bytes, str] | None:
    rel = unquote(urlsplit(url_path).path).lstrip("/")
    if ".." in Path(rel).parts:
        return None
    candidate = root / rel
    if candidate.is_file():
        ctype = "text/html; charset=utf-8" if candidate.suffix in (".html", ".htm") else "application/octet-stream"
        return candidate.read_bytes(), ctype
    gz = root / (rel + ".gz")
    if gz.is_file():
        return gzip.decompress(gz.read_bytes()), "text/html; charset=utf-8"
    return None


class StaticServer:
    """Serves `root` on 127.0.0.1:`port` (0 picks a free one) in a background thread."""

    def __init__(self, root: Path, port: int = 0, on_request: Callable[[str], None] | None = None) -> None:
        self.root = root
        handler = self._handler_class(root, on_request)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="static-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @staticmethod
    def _handler_class(root: Path, on_request: Callable[[str], None] | None) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if on_request:
                    on_request(self.path)
                found = _resolve(root, self.path)
                if found is None:
                    body, ctype, code = b"not found", "text/plain", 404
                else:
                    (body, ctype), code = found, 200
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the pipeline's own logs say what was fetched

        return Handler

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
