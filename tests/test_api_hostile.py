"""The API against hostile clients, over real sockets on 127.0.0.1: half-sent requests (slowloris),
bodies that hide a second request (desync), too many connections, oversized heads, malformed
parameters (Hypothesis: never a 500), and the OpenAPI document made from the code."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsflow.search.backend import SEARCH_PARAMS
from tests.conftest import suite_settings
from tests.test_api import get
from tests.test_search import sample_data_dir
from workers.api import ApiServer, Limits
from workers.cli.query import search as search_command

HEAD_TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_data_dir(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[ApiServer]:
    settings_ = suite_settings(data_dir=str(data_dir), api_rate_limit_per_min=600_000, api_rate_burst=100_000)
    with ApiServer(settings_, "127.0.0.1", 0, Limits(header_timeout_s=HEAD_TIMEOUT_S, keep_alive_s=1)) as srv:
        yield srv


def connect(srv: ApiServer) -> socket.socket:
    host, port = srv.sock.getsockname()[:2]
    return socket.create_connection((host, port), timeout=10)


def exchange(srv: ApiServer, data: bytes, wait_s: float = 5.0) -> bytes:
    """Send raw bytes; everything the server answers until it closes (or `wait_s` of silence)."""
    with connect(srv) as s:
        s.settimeout(wait_s)
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


# --- desync: a body is refused, never read as a request -----------------------------------------------
SMUGGLED = b"GET /search?q=smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED), b"413"),
        (b"GET /search?q=a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"413"),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"413",
        ),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n", b"400"),
        (b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED), b"405"),
    ],
)
def test_a_body_is_refused_and_never_answered_as_a_second_request(
    server: ApiServer, head: bytes, status: bytes
) -> None:
    reply = exchange(server, head + SMUGGLED)
    assert reply.startswith(b"HTTP/1.1 " + status)
    assert reply.count(b"HTTP/1.1 ") == 1 and b"smuggled" not in reply
    assert b"connection: close" in reply.lower()


def test_pipelined_requests_without_bodies_still_work(server: ApiServer) -> None:
    one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    reply = exchange(server, one + one.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert reply.count(b"HTTP/1.1 200 OK") == 2


# --- timeouts and connection limits -----------------------------------------------------------------
def test_slowloris_does_not_starve_health_and_is_cut_off(server: ApiServer) -> None:
    slow = []
    try:
        for _ in range(400):
            s = connect(server)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
            slow.append(s)
        t0 = time.monotonic()
        status, _h, body = get(f"{server.base_url}/health")
        assert status == 200 and body["status"] == "ok" and time.monotonic() - t0 < 2
        deadline = time.monotonic() + HEAD_TIMEOUT_S + 10
        for s in slow:  # each is closed by the server once the head timeout passes
            s.settimeout(max(0.1, deadline - time.monotonic()))
            assert s.recv(100) == b""
    finally:
        for s in slow:
            s.close()


def test_idle_and_dribbling_connections_are_closed(server: ApiServer) -> None:
    t0 = time.monotonic()
    assert exchange(server, b"", wait_s=HEAD_TIMEOUT_S + 5) == b""  # connects, sends nothing
    with connect(server) as s:  # one byte at a time, each before uvicorn's keep-alive would fire
        s.settimeout(0.5)
        closed = False
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n" * 4:
            try:
                s.sendall(bytes([byte]))
                closed = s.recv(1) == b""
            except TimeoutError:
                pass
            except OSError:
                closed = True
            if closed:
                break
        assert closed
    assert time.monotonic() - t0 < 4 * (HEAD_TIMEOUT_S + 2)


def test_connection_limit_answers_503_then_recovers(data_dir: Path) -> None:
    with ApiServer(suite_settings(data_dir=str(data_dir)), "127.0.0.1", 0, Limits(max_connections=4)) as srv:
        held = [connect(srv) for _ in range(4)]
        time.sleep(0.3)  # the server has accepted them
        assert exchange(srv, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", wait_s=2).startswith(b"HTTP/1.1 503")
        for s in held:
            s.close()
        time.sleep(0.3)
        assert get(f"{srv.base_url}/health")[0] == 200


def test_oversized_head_is_refused(server: ApiServer) -> None:
    big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    assert exchange(server, big).split(b" ")[1] in (b"400", b"431")
    assert get(f"{server.base_url}/search?q=" + "a" * 20_000)[0] in (400, 431)


def test_rate_limit_and_token_still_hold(data_dir: Path) -> None:
    settings_ = suite_settings(data_dir=str(data_dir), api_token="tok", api_rate_limit_per_min=60, api_rate_burst=2)
    with ApiServer(settings_, "127.0.0.1", 0) as srv:
        assert get(f"{srv.base_url}/search?q=a", token="nope")[0] == 401
        assert get(f"{srv.base_url}/search?q=(", token="tok")[0] == 400
        status, headers, body = get(f"{srv.base_url}/articles/x", token="tok")
        assert status == 429 and body["error"] == "rate_limited" and int(headers["Retry-After"]) >= 1
        assert get(f"{srv.base_url}/health")[0] == 200  # exempt


# --- malformed input: 400s that say where, never a 500 ---------------------------------------------------
@pytest.mark.parametrize(
    ("query", "status", "fragment"),
    [
        ({"q": "(" * 400 + "a" + ")" * 400}, 400, "levels of parentheses"),
        ({"q": "NOT " * 3000 + "a"}, 400, "at most 2000 characters"),
        ({"q": "-" * 1999 + "a"}, 400, "levels of parentheses"),
        ({"q": " OR ".join(["a"] * 300)}, 400, "at most 256 words"),
        ({"q": "published:0001"}, 400, "out of range"),
        ({"q": "published:9999"}, 400, "out of range"),
        ({"q": "published:99999"}, 400, "bad date"),
        ({"q": "published:2024-02-30"}, 400, "bad date"),
        ({"q": "a", "since": "0001"}, 400, "--since"),
        ({"q": "a", "until": "9999-12-31"}, 400, "--until"),
        ({"q": "a", "since": "0001-01-01T00:00:00+14:00"}, 400, "out of range"),
        ({"q": "url:http://[::1"}, 400, "Invalid IPv6 URL"),
        ({"q": "a", "site": ["x"] * 100}, 400, "repeated too often"),
        ({"q": "a", "lang": "x" * 3000}, 400, "too long"),
        ({"q": "a", "limit": "9" * 5000}, 400, "too long"),
    ],
)
def test_malformed_search_is_a_400_that_says_why(server: ApiServer, query: dict[str, object], status: int,
                                                 fragment: str) -> None:  # fmt: skip
    code, _h, body = get(f"{server.base_url}/search?{urlencode(query, doseq=True)}")
    assert code == status and body["error"] in ("bad_query", "bad_parameter") and fragment in body["message"]


@pytest.mark.parametrize(
    ("path", "statuses"),
    [
        ("/articles?url=http://[x", (400,)),
        ("/articles?url=%5B", (400,)),  # neither an id nor a URL: the client's mistake
        ("/articles?url=" + quote("http://a/\x00"), (400,)),
        ("/articles/" + quote("http://[::1", safe=""), (400,)),
        ("/static/%00", (404,)),
        ("/static/app.js%00.css", (404,)),
        ("/static/../api.py", (404,)),
        ("/static/..%2F..%2Fapi.py", (404,)),
        ("/static/.hidden", (404,)),
        ("/health/", (404,)),
    ],
)
def test_malformed_lookups_and_paths_are_4xx(server: ApiServer, path: str, statuses: tuple[int, ...]) -> None:
    code, headers, body = get(server.base_url + path)
    assert code in statuses and body["error"] in ("not_found", "bad_parameter") and headers["X-Content-Type-Options"]


TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(['(', ')', '"', "-", ":", "AND", "OR", "NOT ", "published:", "url:", "[", "..",
                              "2024", "-02-30", "0001", "9999", " ", "a", "%", "\x00", "é"]),
             max_size=40).map("".join),
)  # fmt: skip
PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "q": TEXT, "since": TEXT, "until": TEXT, "site": st.lists(TEXT, max_size=3),
        "lang": st.lists(TEXT, max_size=3), "entity": st.lists(TEXT, max_size=2), "cluster": TEXT,
        "sort": st.one_of(st.sampled_from(["relevance", "date", "date_asc"]), TEXT),
        "limit": st.one_of(st.integers(-5, 200).map(str), TEXT),
        "page": st.one_of(st.integers(-5, 2000).map(str), TEXT),
        "facets": st.sampled_from(["1", "0", "yes", ""]), "expand_clusters": st.sampled_from(["1", "true", "x"]),
    },
)  # fmt: skip
HTTP_EXAMPLES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HTTP_EXAMPLES
@given(PARAMS)
def test_any_search_parameters_give_200_or_400(server: ApiServer, params: dict[str, object]) -> None:
    code, _h, body = get(f"{server.base_url}/search?{urlencode(params, doseq=True)}")
    assert code in (200, 400), body
    if code == 400:
        assert body["error"] in ("bad_query", "bad_parameter") and body["message"]


@HTTP_EXAMPLES
@given(TEXT)
def test_any_lookup_gives_200_400_or_404(server: ApiServer, key: str) -> None:
    for path in (f"/articles?url={quote(key, safe='')}", f"/articles/{quote(key, safe='')}"):
        code, _h, body = get(server.base_url + path)
        assert code in (200, 400, 404), body


# --- OpenAPI from the code --------------------------------------------------------------------------
def test_openapi_is_generated_from_the_routes_and_the_parameter_list(server: ApiServer) -> None:
    _s, _h, spec = get(f"{server.base_url}/openapi.json")
    assert spec["openapi"].startswith("3.") and spec["info"]["title"]
    assert set(spec["paths"]) == {"/search", "/articles/{id}", "/articles", "/health"}
    search = spec["paths"]["/search"]["get"]
    assert [p["name"] for p in search["parameters"]] == [p.name for p in SEARCH_PARAMS]
    limit = next(p for p in search["parameters"] if p["name"] == "limit")
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}
    assert spec["paths"]["/articles/{id}"]["get"]["parameters"][0] == {
        "name": "id", "in": "path", "required": True, "schema": {"type": "string"}}  # fmt: skip
    for path in spec["paths"].values():
        for op in path.values():
            assert op["responses"]["200"]["description"] and op["operationId"]
            for p in op["parameters"]:
                assert {"name", "in", "schema"} <= set(p) and p["in"] in ("query", "path")
    # The CLI's options are the same parameters.
    cli = {opt.name for opt in search_command.params} - {"as_json"}
    assert cli == {p.name for p in SEARCH_PARAMS}
