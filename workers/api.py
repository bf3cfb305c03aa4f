"""The read-only search API and web page (`newsflow serve`), on the standard library's HTTP server.

Why http.server: the API is a handful of GET routes over one local index; ThreadingHTTPServer
serves them with no dependency, and the work per request is tantivy's (which runs without the GIL).
A deployment facing the internet puts a reverse proxy (TLS, access logs) in front.

Routes: GET / (web page), /static/*, /health, /openapi.json, /search, /articles/{id}, /articles?url=.
/search and /articles need `Authorization: Bearer <api_token>` when the setting is non-empty.
Every client (remote address) has a token bucket: `api_rate_limit_per_min`, burst `api_rate_burst`.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from config.defaults import Settings
from newsflow.search import (
    SORTS,
    IndexBackend,
    NoIndex,
    ParamError,
    QueryError,
    SchemaMismatch,
    SearchRequest,
    open_index,
)
from newsflow.search.engine import FACETS
from newsflow.search.query import HELP
from newsflow.search.service import HIT_FIELDS, result_dict

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
MAX_CLIENTS = 10_000  # rate-limit buckets kept; the least recently seen are forgotten beyond this
MAX_PAGE = 1000  # deeper pages are refused (the CLI allows newsflow.search.backend.MAX_PAGE)
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "message": message, **extra}


class RateLimiter:
    """Token bucket per client: `rate_per_min` sustained, `burst` at once."""

    def __init__(self, rate_per_min: int, burst: int) -> None:
        self.rate = rate_per_min / 60.0
        self.burst = float(max(1, burst))
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > MAX_CLIENTS:
                self._buckets.popitem(last=False)
            return wait


def _static(name: str) -> bytes | None:
    if "/" in name or name.startswith("."):
        return None
    try:
        return resources.files("workers.web").joinpath(name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, OSError):
        return None


class SearchService:
    """The index, opened lazily (the server may start before the first article is indexed)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._index: IndexBackend | None = None
        self._lock = threading.Lock()

    def index(self) -> IndexBackend:
        with self._lock:
            if self._index is None:
                try:
                    self._index = open_index(self.settings, create=False)
                except NoIndex as exc:
                    raise ApiError(503, "no_index", f"{exc} yet: ingest some articles first") from None
                except SchemaMismatch as exc:
                    raise ApiError(503, "schema_mismatch", str(exc)) from None
            return self._index


def make_handler(settings: Settings, service: SearchService, limiter: RateLimiter) -> type[BaseHTTPRequestHandler]:
    token = settings.api_token.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "newsflow"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # one compact line per request
            sys.stderr.write(
                json.dumps({"event": "http", "client": self.client_address[0], "line": format % args}) + "\n"
            )

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            try:
                self._route()
            except ApiError as exc:
                headers = {}
                if exc.status == 401:
                    headers["WWW-Authenticate"] = 'Bearer realm="newsflow"'
                if exc.status == 429:
                    headers["Retry-After"] = str(exc.body.get("retry_after_s", 1))
                self._json(exc.status, exc.body, headers)
            except Exception as exc:  # a bug must not kill the connection silently or leak a trace
                sys.stderr.write(json.dumps({"event": "http_error", "error": repr(exc)}) + "\n")
                self._json(500, {"error": "internal_error", "message": "internal error; see the server log"})

        def _not_allowed(self) -> None:
            self._json(405, {"error": "method_not_allowed", "message": "this API is read-only: use GET"},
                       {"Allow": "GET, HEAD"})  # fmt: skip

        do_POST = do_PUT = do_DELETE = do_PATCH = _not_allowed

        def _route(self) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            params = parse_qs(url.query, keep_blank_values=True)
            if path in ("/", "/index.html"):
                return self._file("index.html")
            if path.startswith("/static/"):
                return self._file(path[len("/static/") :])
            if path == "/health":
                return self._health()
            if path == "/openapi.json":
                return self._json(200, openapi(settings))
            wait = limiter.take(self.client_address[0])
            if wait > 0:
                raise ApiError(429, "rate_limited", "too many requests: slow down", retry_after_s=max(1, round(wait)))
            if path == "/search":
                self._auth()
                try:
                    req = SearchRequest.from_params(params, settings.api_max_limit, MAX_PAGE)
                except ParamError as exc:
                    raise ApiError(400, "bad_parameter", str(exc)) from None
                try:
                    result = service.index().search(req)
                except QueryError as exc:
                    raise ApiError(400, "bad_query", str(exc), column=exc.column, help=HELP) from None
                return self._json(200, result_dict(req, result))
            if path == "/articles" or path.startswith("/articles/"):
                self._auth()
                key = path[len("/articles/") :] if path.startswith("/articles/") else params.get("url", [""])[-1]
                if not key:
                    raise ApiError(400, "bad_parameter", "give an id (/articles/ID) or a URL (/articles?url=...)")
                doc = service.index().get(key)
                if doc is None:
                    raise ApiError(404, "not_found", f"no indexed article for {key!r}")
                return self._json(200, doc)
            raise ApiError(404, "not_found", f"no route {path!r}: see /openapi.json")

        def _auth(self) -> None:
            if not token:
                return
            given = self.headers.get("Authorization", "")
            if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token)):
                raise ApiError(401, "unauthorized", "send `Authorization: Bearer <token>` (the api_token setting)")

        def _health(self) -> None:
            try:
                docs = service.index().num_docs()
            except ApiError as exc:
                return self._json(503, {"status": "unavailable", **exc.body})
            from newsflow.search import SCHEMA_VERSION

            self._json(200, {"status": "ok", "docs": docs, "schema_version": SCHEMA_VERSION})

        def _file(self, name: str) -> None:
            data = _static(name)
            if data is None:
                raise ApiError(404, "not_found", f"no file {name!r}")
            ctype = STATIC_TYPES.get(Path(name).suffix, "application/octet-stream")
            self._send(200, data, ctype, {"Cache-Control": "no-cache", "Content-Security-Policy": CSP})

        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self._send(status, data, "application/json; charset=utf-8", headers or {})

        def _send(self, status: int, data: bytes, ctype: str, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler


def _text(value: str | bytes | bytearray) -> str:
    return bytes(value).decode() if isinstance(value, bytes | bytearray) else value


class ApiServer:
    """`newsflow serve`; also usable in a background thread (tests): `with ApiServer(s, port=0) as srv`."""

    def __init__(self, settings: Settings, host: str | None = None, port: int | None = None) -> None:
        self.settings = settings
        limiter = RateLimiter(settings.api_rate_limit_per_min, settings.api_rate_burst)
        handler = make_handler(settings, SearchService(settings), limiter)
        bind = (host or settings.api_host, settings.api_port if port is None else port)
        self.httpd = ThreadingHTTPServer(bind, handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{_text(host)}:{port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def __enter__(self) -> ApiServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="api-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def openapi(settings: Settings) -> dict[str, Any]:
    """OpenAPI 3.1 description of the API."""

    def q(name: str, desc: str, schema: dict[str, Any], many: bool = False) -> dict[str, Any]:
        s = {"type": "array", "items": schema} if many else schema
        return {"name": name, "in": "query", "description": desc, "schema": s, "explode": True}

    err = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    hit_props: dict[str, Any] = {k: {"type": ["string", "null"]} for k in
                 (*HIT_FIELDS, "snippet", "snippet_html", "title_html", "site", "author", "cluster_id")}  # fmt: skip
    hit_props["score"] = {"type": ["number", "null"], "description": "relevance; null when sorted by date"}
    hit_props["similar"] = {"type": "integer", "description": "near-duplicates collapsed under this hit"}
    bucket = {"type": "array", "items": {"type": "object", "properties": {"value": {}, "count": {"type": "integer"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "newsflow search API",
            "version": "1",
            "description": "Read-only search over indexed news articles.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "column": {"type": ["integer", "null"]},
                    },
                },
                "Hit": {"type": "object", "properties": hit_props},
                "SearchResult": {
                    "type": "object",
                    "properties": {
                        "total": {"type": "integer", "description": "matching articles"},
                        "stories": {"type": ["integer", "null"], "description": "matching stories (approximate)"},
                        "page": {"type": "integer"},
                        "limit": {"type": "integer"},
                        "sort": {"type": "string"},
                        "collapsed": {"type": "boolean"},
                        "took_ms": {"type": "number"},
                        "hits": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                        "facets": {
                            "type": "object",
                            "properties": {k: bucket for k in FACETS},
                        },
                    },
                },
            },
        },
        "security": [{"bearer": []}] if settings.api_token else [],
        "paths": {
            "/search": {
                "get": {
                    "summary": "Search articles",
                    "parameters": [
                        q("q", HELP, {"type": "string"}),
                        q(
                            "limit",
                            "hits per page",
                            {"type": "integer", "minimum": 1, "maximum": settings.api_max_limit},
                        ),
                        q("page", "1-based page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                        q(
                            "sort",
                            "relevance, date (newest first) or date_asc",
                            {"type": "string", "enum": list(SORTS)},
                        ),
                        q("since", "published on/after: YYYY, YYYY-MM, YYYY-MM-DD or ISO time", {"type": "string"}),
                        q("until", "published on/before (whole day/month included)", {"type": "string"}),
                        q("site", "only these sites", {"type": "string"}, many=True),
                        q("lang", "only these languages (ISO 639-1)", {"type": "string"}, many=True),
                        q("entity", "only articles naming these entities", {"type": "string"}, many=True),
                        q("cluster", "only this story's articles (expands '+N similar')", {"type": "string"}),
                        q("facets", "include facet counts", {"type": "boolean"}),
                        q("expand_clusters", "do not collapse near-duplicates", {"type": "boolean"}),
                    ],
                    "responses": {
                        "200": {
                            "description": "hits",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchResult"}}},
                        },
                        "400": err,
                        "401": err,
                        "429": err,
                        "503": err,
                    },
                }
            },
            "/articles/{id}": {
                "get": {
                    "summary": "One article (whole document) by id",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "the article"}, "404": err, "401": err, "429": err},
                }
            },
            "/articles": {
                "get": {
                    "summary": "One article by requested, final or canonical URL",
                    "parameters": [q("url", "the URL", {"type": "string"})],
                    "responses": {"200": {"description": "the article"}, "404": err, "401": err, "429": err},
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness and index size",
                    "security": [],
                    "responses": {"200": {"description": "ok"}, "503": err},
                }
            },
        },
    }
