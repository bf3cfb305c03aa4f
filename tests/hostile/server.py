"""A hostile origin on 127.0.0.1: every route misbehaves in one documented way.

Big and nasty bodies (a 50 MB page, a gzip bomb) are generated at start-up or on the fly, never
committed. Every slow route is bounded in time, so a test that forgets it cannot hang the suite.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

ARTICLE_EN = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Harbour council approves flood wall</title></head>"
    "<body><nav>Home | News | Sport</nav><article><h1>Harbour council approves flood wall</h1>"
    + "".join(
        f"<p>Paragraph {i}: the harbour council voted on Tuesday to build a new flood wall along the "
        "eastern quay, after two winters of storms left shops and homes under water. Engineers say the "
        "wall will be finished within three years and paid for by a regional fund.</p>"
        for i in range(8)
    )
    + "</article><footer>Contact us</footer></body></html>"
)
RU_TEXT = (
    "Городской совет утвердил новый бюджет на следующий год. Депутаты обсуждали расходы на школы, "
    "больницы и ремонт дорог почти шесть часов, а затем проголосовали за документ большинством голосов. "
)
JA_TEXT = "市議会は来年度の予算案を可決した。学校や病院、道路の補修にかかる費用について六時間近く議論が続いた。"
TRICKLE_MAX_S = 40.0  # a trickling response stops by itself after this long
HANG_MAX_S = 40.0


def article_in(text: str, title: str, head_extra: str = "") -> str:
    body = "".join(f"<p>{text} ({i})</p>" for i in range(10))
    return (
        f"<!doctype html><html><head>{head_extra}<title>{title}</title></head><body>"
        f"<article><h1>{title}</h1>{body}</article></body></html>"
    )


def _gzip_bomb(decompressed_mb: int) -> bytes:
    """gzip of `decompressed_mb` MB of zeros: about 1000:1, built in a stream."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    block = b"\0" * (1024 * 1024)
    parts = [comp.compress(block) for _ in range(decompressed_mb)]
    parts.append(comp.flush())
    return b"".join(parts)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on a hostile route is expected, not news


Route = Callable[[BaseHTTPRequestHandler], None]


class RouteServer:
    """A threaded HTTP/1.1 origin on 127.0.0.1 that dispatches GETs by path and counts hits.

    Subclasses give `routes` (path -> handler) and may override `route` (patterns) and `seen`.
    """

    name = "route-server"

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                with server._lock:
                    server.hits[path] = server.hits.get(path, 0) + 1
                    server.seen(path, self)
                route = server.route(path)
                try:
                    if route is None:
                        send(self, 404, b"not found", "text/plain")
                    else:
                        route(self)
                except OSError:  # BrokenPipe, ConnectionReset: the client gave up on a slow route
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=self.name, daemon=True)

    def route(self, path: str) -> Route | None:
        return self.routes.get(path)

    def seen(self, path: str, request: BaseHTTPRequestHandler) -> None:
        """Called under the lock for every request, before its route runs."""

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RouteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class HostileServer(RouteServer):
    """Every route misbehaves in one documented way; `/endless/...` redirects forever."""

    name = "hostile-server"

    def __init__(self) -> None:
        self.bomb = _gzip_bomb(256)
        super().__init__(self._routes())

    def route(self, path: str) -> Route | None:
        found = self.routes.get(path)
        if found is None and path.startswith("/endless/"):
            return self._endless
        return found

    def __enter__(self) -> HostileServer:
        super().__enter__()
        return self

    # --- routes -----------------------------------------------------------------------------
    def _routes(self) -> dict[str, Route]:
        html = "text/html"
        u8 = "text/html; charset=utf-8"
        return {
            "/ok": lambda h: send(h, 200, ARTICLE_EN.encode(), u8),
            "/malformed": lambda h: send(h, 200, _malformed(), html),
            "/deep-nesting": lambda h: send(h, 200, _deep(100_000), u8),
            "/deep-nesting-200": lambda h: send(h, 200, _deep(200), u8),
            "/deep-nesting-1000": lambda h: send(h, 200, _deep(1000), u8),
            "/many-elements": lambda h: send(h, 200, _many_elements(280_000), u8),
            "/unclosed-comment": lambda h: send(h, 200, _unclosed_comment(), u8),
            "/huge-declared": lambda h: _huge(h, 50 * 1024 * 1024, declared=True),
            "/huge-chunked": lambda h: _huge(h, 50 * 1024 * 1024, declared=False),
            "/gzip-bomb": lambda h: send(h, 200, self.bomb, u8, {"Content-Encoding": "gzip"}),
            "/bad-gzip": lambda h: send(
                h, 200, b"\x1f\x8b\x08\x00garbage-not-gzip" * 50, u8, {"Content-Encoding": "gzip"}
            ),
            "/pdf-as-html": lambda h: send(h, 200, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 50, u8),
            "/png-as-html": lambda h: send(h, 200, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, u8),
            "/binary-no-type": lambda h: send(h, 200, bytes(range(256)) * 16, ""),
            "/json": lambda h: send(h, 200, b'{"title": "not a page"}', "application/json"),
            "/cp1251": lambda h: send(
                h, 200, article_in(RU_TEXT, "Совет утвердил бюджет").encode("cp1251"), "text/html; charset=windows-1251"
            ),
            "/cp1251-meta-only": lambda h: send(
                h,
                200,
                article_in(RU_TEXT, "Совет утвердил бюджет", "<meta charset='windows-1251'>").encode("cp1251"),
                html,
            ),
            "/cp1251-wrong-header": lambda h: send(
                h,
                200,
                article_in(RU_TEXT, "Совет утвердил бюджет", "<meta charset='windows-1251'>").encode("cp1251"),
                "text/html; charset=utf-8",
            ),
            "/cp1251-no-charset": lambda h: send(
                h, 200, article_in(RU_TEXT * 3, "Совет утвердил бюджет").encode("cp1251"), html
            ),
            "/shift-jis": lambda h: send(
                h, 200, article_in(JA_TEXT, "市議会が予算案を可決").encode("shift_jis"), "text/html; charset=Shift_JIS"
            ),
            "/utf16-bom": lambda h: send(
                h, 200, b"\xff\xfe" + article_in(RU_TEXT, "Совет утвердил бюджет").encode("utf-16-le"), html
            ),
            "/utf16-declared": lambda h: send(
                h, 200, article_in(RU_TEXT, "Совет утвердил бюджет").encode("utf-16-le"), "text/html; charset=utf-16le"
            ),
            "/codec-trick": lambda h: send(h, 200, ARTICLE_EN.encode(), "text/html; charset=zlib_codec"),
            "/unknown-charset": lambda h: send(h, 200, ARTICLE_EN.encode(), "text/html; charset=x-no-such-charset"),
            "/plain-with-markup": lambda h: send(h, 200, ARTICLE_EN.encode(), "text/plain"),
            "/empty": lambda h: send(h, 200, b"", u8),
            "/blank": lambda h: send(h, 200, b" \r\n\t " * 100, u8),
            "/gone": lambda h: send(h, 410, b"gone", "text/plain"),
            "/error-500": lambda h: send(h, 500, b"oops", "text/plain"),
            "/rate-limited": lambda h: send(h, 429, b"slow down", "text/plain", {"Retry-After": "1"}),
            "/unconditional-304": lambda h: send(h, 304, b"", u8),
            "/no-content": lambda h: send(h, 204, b"", u8),
            "/loop-a": lambda h: redirect(h, "/loop-b"),
            "/loop-b": lambda h: redirect(h, "/loop-a"),
            "/self-redirect": lambda h: redirect(h, "/self-redirect"),
            "/redirect-metadata": lambda h: redirect(h, "http://169.254.169.254/latest/meta-data/"),
            "/redirect-private-10": lambda h: redirect(h, "http://10.0.0.1/admin"),
            "/redirect-loopback-other-port": lambda h: redirect(h, "http://127.0.0.1:1/"),
            "/redirect-localhost": lambda h: redirect(h, f"http://localhost:{self.port}/ok"),
            "/redirect-file": lambda h: redirect(h, "file:///etc/passwd"),
            "/redirect-gopher": lambda h: redirect(h, "gopher://127.0.0.1:70/_stats"),
            "/redirect-ok": lambda h: redirect(h, "/ok"),
            "/trickle-body": _trickle_body,
            "/trickle-headers": _trickle_headers,
            "/hang": _hang,
            "/close-no-answer": _close,
            "/too-many-headers": _many_headers,
            "/meta-spam": lambda h: send(
                h, 200, ARTICLE_EN.replace("<head>", "<head>" + "<meta" * 40_000, 1).encode(), u8
            ),
            "/rate-limited-odd-retry-after": lambda h: send(
                h, 429, b"slow down", "text/plain", {"Retry-After": "\u00b2"}
            ),
            "/redirect-bad-ipv6": lambda h: redirect(h, "http://[::1/x"),
            "/conflicting-length": _conflicting_length,
            "/utf16-no-bom": lambda h: send(
                h, 200, article_in(RU_TEXT, "Совет утвердил бюджет").encode("utf-16-le"), html
            ),
        }

    def _endless(self, h: BaseHTTPRequestHandler) -> None:
        n = int(urlsplit(h.path).path.rsplit("/", 1)[1] or 0)
        redirect(h, f"/endless/{n + 1}")


def send(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
    h.send_response(code)
    if ctype:
        h.send_header("Content-Type", ctype)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if code not in (204, 304):
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if code not in (204, 304):
        h.wfile.write(body)


def redirect(h: BaseHTTPRequestHandler, location: str) -> None:
    h.send_response(302)
    h.send_header("Location", location)
    h.send_header("Content-Length", "0")
    h.end_headers()


def _conflicting_length(h: BaseHTTPRequestHandler) -> None:
    """Two Content-Length headers that disagree: no client can tell where the body ends."""
    body = ARTICLE_EN.encode()
    h.send_response(200)
    h.send_header("Content-Type", "text/html; charset=utf-8")
    h.send_header("Content-Length", str(len(body)))
    h.send_header("Content-Length", str(len(body) + 1))
    h.end_headers()
    h.wfile.write(body)
    h.close_connection = True


def _varied(n: int, topic: str) -> str:
    return "".join(
        f"<p>{topic} {i}: the harbour council voted on Tuesday to build a new flood wall along the eastern "
        f"quay after storm number {i * 7 + 3} left shops under water; engineers expect {i + 2} years of work.</p>"
        for i in range(n)
    )


def _malformed() -> bytes:
    # Unclosed and misnested tags, a stray </html> in the middle, attributes without quotes, a
    # lone invalid UTF-8 byte, tags split by garbage: a browser shows it; our pipeline must too.
    paras = "".join(
        f"<p class=x{i}><b><i>Unclosed paragraph {i}: the harbour council voted on Tuesday to build a new "
        f"flood wall, after storm number {i * 7 + 3} left shops under water</b></i>"
        + ("<div>" if i % 2 else "</span></td>")
        for i in range(12)
    )
    return (
        b"<html><head><title>Broken <b>markup</title><body><article><h1>Council approves wall</h1>"
        + paras.encode()
        + b"</html><p>after the end \xff bytes</p><<<>>><p <p>x</p><script>document.write('<p>'"
    )


def _unclosed_comment() -> bytes:
    # Everything after "<!--" is a comment to a browser too: no article, said clearly.
    return f"<html><head><title>Hidden</title></head><body><!-- never closed {_varied(10, 'Hidden')}".encode()


def _deep(depth: int) -> bytes:
    return (
        b"<html><head><title>Deep</title></head><body>"
        + b"<div>" * depth
        + b"<p>buried</p>"
        + b"</div>" * depth
        + f"<article><h1>Deep nesting survives</h1>{_varied(8, 'Deep nesting survives')}</article>".encode()
        + b"</body></html>"
    )


def _many_elements(n: int) -> bytes:
    return b"<html><head><title>Many</title></head><body>" + b"<p>Word here.</p>" * n + b"</body></html>"


def _huge(h: BaseHTTPRequestHandler, size: int, declared: bool) -> None:
    chunk = (b"<p>" + b"filler text " * 5000 + b"</p>\n")[:65536]
    h.send_response(200)
    h.send_header("Content-Type", "text/html; charset=utf-8")
    if declared:
        h.send_header("Content-Length", str(size))
    else:
        h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    sent = 0
    while sent < size:
        part = chunk[: size - sent]
        if declared:
            h.wfile.write(part)
        else:
            h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sent += len(part)
    if not declared:
        h.wfile.write(b"0\r\n\r\n")


def trickle(h: BaseHTTPRequestHandler, ctype: str, every_s: float, max_s: float = TRICKLE_MAX_S) -> None:
    """Headers at once, then a byte every `every_s`: never a read timeout, never an end (until `max_s`)."""
    h.send_response(200)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", "100000")
    h.end_headers()
    h.wfile.flush()
    end = time.monotonic() + max_s
    while time.monotonic() < end:
        h.wfile.write(b"<")
        h.wfile.flush()
        time.sleep(every_s)
    h.close_connection = True


def _trickle_body(h: BaseHTTPRequestHandler) -> None:
    trickle(h, "text/html; charset=utf-8", 1.0)


def _trickle_headers(h: BaseHTTPRequestHandler) -> None:
    """The status line and headers themselves, one byte a second."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Padding: " + b"a" * 1000 + b"\r\n\r\n"
    end = time.monotonic() + TRICKLE_MAX_S
    for byte in raw:
        if time.monotonic() > end:
            break
        h.wfile.write(bytes([byte]))
        h.wfile.flush()
        time.sleep(1.0)
    h.close_connection = True


def _hang(h: BaseHTTPRequestHandler) -> None:
    time.sleep(HANG_MAX_S)
    h.close_connection = True


def _close(h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True  # read the request, answer nothing, close


def _many_headers(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    for i in range(500):
        h.send_header(f"X-Header-{i}", "x")
    h.send_header("Content-Length", str(len(ARTICLE_EN)))
    h.end_headers()
    h.wfile.write(ARTICLE_EN.encode())
