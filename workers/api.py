"""The read-only search API and web page (`newsflow serve`): Starlette on uvicorn, HTTP parsed by h11.

The server faces the internet, so everything a client controls is bounded (`Limits`, below):
  - the request line and headers must arrive within `header_timeout_s` of the connection (or of the
    end of the previous response) and fit in `max_header_bytes` (h11's largest incomplete event);
    an idle keep-alive connection closes after `keep_alive_s`;
  - beyond `max_connections` open connections a request is answered 503 at once (uvicorn's
    `limit_concurrency`); a connection stuck half-way is closed by the header timeout;
  - the API is GET-only: a request announcing a body (Content-Length > 0, Transfer-Encoding) gets
    413 and `Connection: close`, and its body is never read, so it can never be taken for a second
    request (no desync behind a proxy); h11 frames every request by the HTTP/1.1 rules;
  - every query parameter is checked (`SearchRequest.from_params`, the query parser's limits): a bad
    value is a 400 that says what and where, never a 500.

Routes: GET / (web page), /static/*, /health, /openapi.json, /search, /articles/{id}, /articles?url=.
/search and /articles need `Authorization: Bearer <api_token>` when the setting is non-empty.
Every client (remote address of the socket) has a token bucket: `api_rate_limit_per_min`, burst
`api_rate_burst`; /, /static/*, /health and /openapi.json are exempt. The OpenAPI document is made
from the route table below and the search parameters' one definition (`SEARCH_PARAMS`).
A deployment facing the internet still puts a reverse proxy (TLS, access logs) in front.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from config.defaults import Settings
from newsflow.search import (
    IndexBackend,
    NoIndex,
    ParamError,
    QueryError,
    SchemaMismatch,
    SearchRequest,
    open_index,
)
from newsflow.search.backend import MAX_PAGE, SEARCH_PARAMS, Param
from newsflow.search.engine import FACETS
from newsflow.search.query import HELP
from newsflow.search.service import HIT_FIELDS, result_dict
from newsflow.urls import given_article_id, normalize_url

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
MAX_CLIENTS = 10_000  # rate-limit buckets kept; the least recently seen are forgotten beyond this
MAX_QUERY_FIELDS = 200  # name=value pairs in one query string
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
JSON_TYPE = "application/json; charset=utf-8"
EXEMPT = ("/", "/index.html", "/health", "/openapi.json")  # and /static/*: no rate limit, no token
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Limits:
    """What one client may hold of the server. Defaults serve `newsflow serve`; tests pass smaller."""

    header_timeout_s: float = 10.0  # request line + headers, from connect or from the last response's end
    keep_alive_s: int = 5  # uvicorn timeout_keep_alive: an idle keep-alive connection is closed
    max_connections: int = 1000  # uvicorn limit_concurrency: more open connections (or requests) get 503
    max_header_bytes: int = 16 * 1024  # h11_max_incomplete_event_size: longer request heads get 400
    backlog: int = 1024  # accepted-but-unserved connections the kernel queues
    graceful_shutdown_s: int = 5  # requests in flight get this long when the server stops


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
    """A file of workers/web by its plain name (no path, no dot first, known type); None otherwise."""
    if not _STATIC_NAME.fullmatch(name) or Path(name).suffix not in STATIC_TYPES:
        return None
    try:
        return resources.files("workers.web").joinpath(name).read_bytes()
    except (OSError, ValueError):
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


# --- responses ---------------------------------------------------------------------------------
def _send_json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return Response(data, status, {"X-Content-Type-Options": "nosniff", **(headers or {})}, JSON_TYPE)


def _error(exc: ApiError, close: bool = False) -> Response:
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="newsflow"'
    if exc.status == 429:
        headers["Retry-After"] = str(exc.body.get("retry_after_s", 1))
    if exc.status == 405:
        headers["Allow"] = "GET, HEAD"
    if close:
        headers["Connection"] = "close"
    return _send_json(exc.status, exc.body, headers)


def _file(name: str) -> Response:
    data = _static(name)
    if data is None:
        raise ApiError(404, "not_found", f"no file {name[:100]!r}")
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
    return Response(data, 200, headers, STATIC_TYPES[Path(name).suffix])


def _log(event: str, **fields: Any) -> None:
    sys.stderr.write(json.dumps({"event": event, **fields}, ensure_ascii=True) + "\n")


# --- the route table: each endpoint carries its OpenAPI operation --------------------------------
def operation(summary: str, *, params: Sequence[Param] = (), ok: str = "ok", ok_schema: str | None = None,
              errors: Sequence[int] = (), public: bool = False) -> Callable[[Any], Any]:  # fmt: skip
    """Attach the OpenAPI facts of an endpoint to it; `openapi()` reads them off the route table."""

    def mark(fn: Any) -> Any:
        fn.openapi = {"summary": summary, "params": tuple(params), "ok": ok, "ok_schema": ok_schema,
                      "errors": tuple(errors), "public": public}  # fmt: skip
        return fn

    return mark


URL_PARAM = Param("url", "str", "the requested, final or canonical URL of the article")


class Api:
    """The endpoints, over one index, rate limiter and token."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service = SearchService(settings)
        self.limiter = RateLimiter(settings.api_rate_limit_per_min, settings.api_rate_burst)
        self.token = settings.api_token.encode()
        self.routes = [
            Route("/", self.page, methods=["GET"], include_in_schema=False),
            Route("/index.html", self.page, methods=["GET"], include_in_schema=False),
            Route("/static/{name:path}", self.static, methods=["GET"], include_in_schema=False),
            Route("/health", self.health, methods=["GET"]),
            Route("/openapi.json", self.openapi_json, methods=["GET"], include_in_schema=False),
            Route("/search", self.search, methods=["GET"]),
            Route("/articles/{id:path}", self.article, methods=["GET"]),
            Route("/articles", self.article_by_url, methods=["GET"]),
        ]
        self._openapi = json.dumps(openapi(settings, self.routes), ensure_ascii=False).encode("utf-8")

    def auth(self, request: Request) -> None:
        if not self.token:
            return
        given = request.headers.get("authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), self.token)):
            raise ApiError(401, "unauthorized", "send `Authorization: Bearer <token>` (the api_token setting)")

    async def page(self, request: Request) -> Response:
        return _file("index.html")

    async def static(self, request: Request) -> Response:
        return _file(request.path_params["name"])

    async def openapi_json(self, request: Request) -> Response:
        return Response(self._openapi, 200, {"X-Content-Type-Options": "nosniff"}, JSON_TYPE)

    @operation("Liveness and index size", ok="ok", errors=(503,), public=True)
    def health(self, request: Request) -> Response:
        try:
            docs = self.service.index().num_docs()
        except ApiError as exc:
            return _send_json(503, {"status": "unavailable", **exc.body})
        from newsflow.search import SCHEMA_VERSION

        return _send_json(200, {"status": "ok", "docs": docs, "schema_version": SCHEMA_VERSION})

    @operation("Search articles", params=SEARCH_PARAMS, ok="hits", ok_schema="SearchResult",
               errors=(400, 401, 429, 503))  # fmt: skip
    def search(self, request: Request) -> Response:
        self.auth(request)
        params = _query(request, SEARCH_PARAMS)
        try:
            req = SearchRequest.from_params(params, self.settings.api_max_limit, MAX_PAGE)
        except ParamError as exc:
            raise ApiError(400, "bad_parameter", str(exc), parameter=exc.name) from None
        try:
            result = self.service.index().search(req)
        except QueryError as exc:
            raise ApiError(400, "bad_query", str(exc), column=exc.column, help=HELP) from None
        return _send_json(200, result_dict(req, result))

    @operation("One article (whole document) by id", ok="the article", errors=(400, 401, 404, 429, 503))
    def article(self, request: Request) -> Response:
        self.auth(request)
        return self._lookup(request.path_params["id"])

    @operation("One article by requested, final or canonical URL", params=(URL_PARAM,), ok="the article",
               errors=(400, 401, 404, 429, 503))  # fmt: skip
    def article_by_url(self, request: Request) -> Response:
        self.auth(request)
        values = _query(request, (URL_PARAM,)).get("url") or [""]
        return self._lookup(values[-1])

    def _lookup(self, key: str) -> Response:
        if not key:
            raise ApiError(400, "bad_parameter", "give an id (/articles/ID) or a URL (/articles?url=...)")
        if len(key) > 4000:
            raise ApiError(400, "bad_parameter", "the id or URL is too long (at most 4000 characters)")
        try:
            if given_article_id(key) is None:
                normalize_url(key)  # a malformed URL is the client's mistake (400), not a miss (404)
            doc = self.service.index().get(key)
        except ValueError as exc:  # InvalidURL, and urlsplit's own complaints ("Invalid IPv6 URL")
            raise ApiError(400, "bad_parameter", f"not an article id or a valid URL: {str(exc)[:200]}") from None
        if doc is None:
            raise ApiError(404, "not_found", f"no indexed article for {key[:200]!r}")
        doc.pop("capture", None)  # where the archive keeps its page: internal (file names carry host names)
        return _send_json(200, doc)


def _query(request: Request, known: Sequence[Param]) -> dict[str, list[str]]:
    """The query parameters; 400 for one the endpoint does not take: a misspelt `sinse=2024` that
    was ignored would answer a different question than the one asked, without saying so."""
    try:
        params = parse_qs(request.scope["query_string"].decode("latin-1"), keep_blank_values=True,
                          max_num_fields=MAX_QUERY_FIELDS)  # fmt: skip
    except ValueError:
        raise ApiError(400, "bad_parameter", f"too many query parameters (at most {MAX_QUERY_FIELDS})") from None
    names = [p.name for p in known]
    unknown = sorted(set(params) - set(names))
    if unknown:
        shown = unknown[0][:40]
        raise ApiError(
            400,
            "bad_parameter",
            f"unknown parameter {shown!r}: {request.url.path} takes {', '.join(names)}",
            parameter=shown,
        )
    return params


class Guard:
    """Outermost middleware: method, body and rate-limit checks before routing; a JSON 500 for a bug;
    one access-log line per request."""

    def __init__(self, app: ASGIApp, api: Api, limits: Limits) -> None:
        self.app = app
        self.api = api
        self.limits = limits

    def refuse(self, scope: Scope) -> Response | None:
        most = self.limits.max_header_bytes  # h11 bounds only a head that arrives in pieces
        size = (
            len(scope["raw_path"]) + len(scope["query_string"]) + sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        )
        if size > most:
            return _error(
                ApiError(431, "headers_too_large", f"request line and headers exceed {most} bytes"), close=True
            )
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0").strip()
        has_body = b"transfer-encoding" in headers or length not in (b"", b"0")
        if scope["method"] not in ("GET", "HEAD"):
            return _error(ApiError(405, "method_not_allowed", "this API is read-only: use GET"), close=has_body)
        if has_body:
            return _error(ApiError(413, "body_not_allowed", "this API takes no request body"), close=True)
        path = scope["path"]
        if path in EXEMPT or path.startswith("/static/"):
            return None
        client = scope.get("client")
        wait = self.api.limiter.take(client[0] if client else "-")
        if wait > 0:
            retry = max(1, round(wait))
            return _error(ApiError(429, "rate_limited", "too many requests: slow down", retry_after_s=retry))
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        t0 = time.perf_counter()
        try:
            refusal = self.refuse(scope)
            if refusal is not None:
                await refusal(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        except Exception as exc:  # a bug must not leak a trace or end the connection without an answer
            _log("http_error", error=repr(exc)[:500], path=scope["path"][:200])
            if status == 0:
                await _send_json(500, {"error": "internal_error", "message": "internal error; see the server log"})(
                    scope, receive, sending
                )
        finally:
            client = scope.get("client")
            _log("http", client=client[0] if client else "-", method=scope["method"], path=scope["path"][:200],
                 status=status, ms=round((time.perf_counter() - t0) * 1000, 1))  # fmt: skip


def create_app(settings: Settings, limits: Limits | None = None) -> Starlette:
    api = Api(settings)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return _error(ApiError(404, "not_found", f"no route {request.url.path[:200]!r}: see /openapi.json"))
        return _error(ApiError(exc.status_code, "http_error", str(exc.detail)))

    app = Starlette(routes=api.routes, exception_handlers={ApiError: api_error, HTTPException: http_error})
    app.router.redirect_slashes = False
    app.add_middleware(Guard, api=api, limits=limits or Limits())
    return app


# --- the server --------------------------------------------------------------------------------
def protocol_class(header_timeout_s: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's head, which uvicorn lacks: from the
    connection's start, and from the end of each response, the next request line and headers must
    arrive within `header_timeout_s` or the connection is closed (a slowloris holds nothing long)."""

    class HeadTimeoutProtocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's head arrived: it is being answered
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeadTimeoutProtocol


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _name, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]  # fmt: skip
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


class ApiServer:
    """`newsflow serve` (`serve_forever`, in the foreground); also usable in a background thread
    (tests): `with ApiServer(s, "127.0.0.1", 0) as srv: ... srv.base_url`. Binds at construction,
    so a busy port is an OSError here."""

    def __init__(self, settings: Settings, host: str | None = None, port: int | None = None,
                 limits: Limits | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.limits = limits or Limits()
        self.app = create_app(settings, self.limits)
        self.sock = _listen(host or settings.api_host, settings.api_port if port is None else port)
        lim = self.limits
        self.config = uvicorn.Config(
            self.app,
            http=protocol_class(lim.header_timeout_s),
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,  # Guard writes one JSON line per request
            proxy_headers=False,  # the rate limit keys on the socket's address, never a header a client sets
            server_header=False,
            headers=[("server", "newsflow")],
            timeout_keep_alive=lim.keep_alive_s,
            limit_concurrency=lim.max_connections,
            h11_max_incomplete_event_size=lim.max_header_bytes,
            backlog=lim.backlog,
            timeout_graceful_shutdown=lim.graceful_shutdown_s,
        )
        self.server = uvicorn.Server(self.config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve until SIGINT/SIGTERM (uvicorn handles them in the main thread: a graceful stop)."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def __enter__(self) -> ApiServer:
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="api-server", daemon=True)  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.sock.close()
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.limits.graceful_shutdown_s + 5)
        self.sock.close()


# --- OpenAPI, from the route table ---------------------------------------------------------------
def _param_schema(p: Param, maximum: int | None) -> dict[str, Any]:
    schema: dict[str, Any]
    if p.kind == "list":
        schema = {"type": "array", "items": {"type": "string"}}
    elif p.kind == "int":
        schema = {"type": "integer", "minimum": 1, **({"maximum": maximum} if maximum else {})}
    elif p.kind == "enum":
        schema = {"type": "string", "enum": list(p.choices)}
    elif p.kind == "bool":
        schema = {"type": "boolean"}
    else:
        schema = {"type": "string"}
    if p.default is not None and p.kind != "list":
        schema["default"] = p.default
    return schema


def openapi(settings: Settings, routes: Sequence[Route] | None = None) -> dict[str, Any]:
    """OpenAPI 3.1 description of the API, made from the routes' endpoints (`operation`) and the
    search parameters' definition (`SEARCH_PARAMS`, the one `SearchRequest.from_params` reads)."""
    routes = Api(settings).routes if routes is None else routes
    bounds = {"limit": settings.api_max_limit, "page": MAX_PAGE}
    err = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    paths: dict[str, Any] = {}
    for route in routes:
        meta: dict[str, Any] | None = getattr(route.endpoint, "openapi", None)
        if meta is None or not route.include_in_schema:
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in route.param_convertors
        ]
        for p in meta["params"]:
            desc = f"{p.description}. {HELP}" if p.name == "q" else p.description
            entry = {"name": p.name, "in": "query", "description": desc, "schema": _param_schema(p, bounds.get(p.name))}
            if p.kind == "list":
                entry["explode"] = True
            parameters.append(entry)
        ok: dict[str, Any] = {"description": meta["ok"]}
        if meta["ok_schema"]:
            ok["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{meta['ok_schema']}"}}}
        op: dict[str, Any] = {
            "summary": meta["summary"],
            "operationId": route.endpoint.__name__,
            "parameters": parameters,
            "responses": {"200": ok, **{str(code): err for code in meta["errors"]}},
        }
        if meta["public"]:
            op["security"] = []
        for method in sorted(route.methods or ()):
            if method == "GET":
                paths.setdefault(path, {})["get"] = op
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
            "description": "Read-only search over indexed news articles. Errors are JSON: "
            '{"error": code, "message": what and where}; any request body is refused (413).',
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "column": {"type": ["integer", "null"], "description": "bad_query: 1-based column"},
                        "parameter": {"type": "string", "description": "bad_parameter: which one"},
                        "help": {"type": "string"},
                        "retry_after_s": {"type": "integer"},
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
                        "facets": {"type": "object", "properties": {k: bucket for k in FACETS}},
                    },
                },
            },
        },
        "security": [{"bearer": []}] if settings.api_token else [],
        "paths": paths,
    }
