"""Hostile input against `newsflow.fetcher.fetch_page`: one test per case, against a real local server.

Private addresses are NOT allowed here: only the hostile origin's own host:port is allow-listed
(and the IDN name pinned to it), so every redirect or URL that points elsewhere meets the guard.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from config.defaults import Settings
from newsflow.errors import PermanentError, TransientError
from newsflow.fetcher import Deadline, FetchResult, fetch_page, looks_binary, make_session
from newsflow.netguard import NetPolicy, check_connected_socket, current_policy, is_public_address, parse_resolve
from tests.hostile.cases import (
    CASES,
    IDN_HOST,
    REBIND_HOST,
    TOTAL_DEADLINE_S,
    Case,
    by_name,
    strict_fetch_settings,
)
from tests.hostile.server import HostileServer


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


def strict_settings(port: int, **overrides: object) -> Settings:
    resolve = f"{IDN_HOST}:{port}:127.0.0.1,{REBIND_HOST}:{port}:127.0.0.1"
    return strict_fetch_settings(f"127.0.0.1:{port},{IDN_HOST}:{port}", **{"fetch_resolve": resolve, **overrides})


@pytest.fixture(scope="module")
def settings(hostile: HostileServer) -> Settings:
    return strict_settings(hostile.port)


@pytest.fixture(scope="module")
def session(settings: Settings) -> Iterator[requests.Session]:
    s = make_session(settings)
    yield s
    s.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case(case: Case, hostile: HostileServer, settings: Settings, session: requests.Session) -> None:
    url = case.url(hostile.port)
    started = time.monotonic()
    if case.fetch == "ok":
        result = fetch_page(url, settings, session)
        assert isinstance(result, FetchResult)
        assert case.must_contain in result.html, result.html[:300]
        assert "\ufffd" not in result.html[:5000] or case.name == "malformed_html", result.encoding
    else:
        expected = TransientError if case.transient else PermanentError
        with pytest.raises(expected) as info:
            fetch_page(url, settings, session)
        assert info.value.reason == case.fetch, f"{type(info.value).__name__}: {info.value}"
    # Nothing hostile may hold a fetch past its total deadline (plus scheduling slack).
    assert time.monotonic() - started < TOTAL_DEADLINE_S + 2.0


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


def test_good_page_after_every_hostile_one(
    hostile: HostileServer, settings: Settings, session: requests.Session
) -> None:
    """The same session (pooled connections, some shut down by the deadline) still fetches fine."""
    for name in ("trickle_body_1_byte_per_s", "gzip_bomb", "too_many_headers"):
        with pytest.raises((PermanentError, TransientError)):
            fetch_page(by_name(name).url(hostile.port), settings, session)
        assert "flood wall" in fetch_page(f"{hostile.base_url}/ok", settings, session).html


def test_trickle_is_cut_by_the_total_deadline_not_the_read_timeout(hostile: HostileServer) -> None:
    s = strict_settings(hostile.port, fetch_read_timeout_s=30.0, fetch_total_timeout_s=2.0)
    started = time.monotonic()
    with make_session(s) as session, pytest.raises(TransientError) as info:
        fetch_page(f"{hostile.base_url}/trickle-body", s, session)
    elapsed = time.monotonic() - started
    assert info.value.reason == "timeout"
    assert 1.5 < elapsed < 4.0, elapsed


def test_redirect_to_private_never_connects(
    hostile: HostileServer, settings: Settings, session: requests.Session
) -> None:
    before = dict(hostile.hits)
    with pytest.raises(PermanentError) as info:
        fetch_page(f"{hostile.base_url}/redirect-loopback-other-port", settings, session)
    assert info.value.reason == "private_address"
    # Exactly one request reached the origin: the redirect itself.
    assert hostile.hits["/redirect-loopback-other-port"] == before.get("/redirect-loopback-other-port", 0) + 1


def test_private_allowed_only_when_configured(hostile: HostileServer) -> None:
    """The same loopback origin, with no allow-list entry: refused; with fetch_allow_private: fetched."""
    url = f"{hostile.base_url}/ok"
    strict = strict_settings(hostile.port, fetch_allow_hosts="")
    with make_session(strict) as session, pytest.raises(PermanentError) as info:
        fetch_page(url, strict, session)
    assert info.value.reason == "private_address"
    loose = strict_settings(hostile.port, fetch_allow_hosts="", fetch_allow_private=True)
    with make_session(loose) as session:
        assert "flood wall" in fetch_page(url, loose, session).html


def test_session_outside_fetch_page_is_guarded_too(hostile: HostileServer) -> None:
    """A caller using the session directly (robots.txt, feeds) meets the settings' policy."""
    strict = strict_settings(hostile.port, fetch_allow_hosts="")
    with make_session(strict) as session, pytest.raises(PermanentError) as info:
        session.get(f"{hostile.base_url}/ok", timeout=2)
    assert info.value.reason == "private_address"


def test_connected_socket_peer_is_checked(hostile: HostileServer) -> None:
    """The last line of defence: whatever DNS said, the connected peer decides."""
    with socket.create_connection(("127.0.0.1", hostile.port), timeout=2) as sock:
        token = current_policy.set(NetPolicy())
        try:
            with pytest.raises(PermanentError) as info:
                check_connected_socket(sock, "public.example", hostile.port)
        finally:
            current_policy.reset(token)
        assert info.value.reason == "private_address"
        token = current_policy.set(NetPolicy(allowed_hosts=frozenset({f"public.example:{hostile.port}"})))
        try:
            check_connected_socket(sock, "public.example", hostile.port)
        finally:
            current_policy.reset(token)


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
        "224.0.0.1", "255.255.255.255", "240.0.0.1", "198.18.0.1", "192.0.0.1", "::1", "::", "fe80::1",
        "fc00::1", "ff02::1", "ff0e::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::",
        "64:ff9b::a00:1", "2001:db8::1", "fe80::1%eth0", "not-an-ip",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(ip: str) -> None:
    assert not is_public_address(ip)


@pytest.mark.parametrize("ip", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(ip: str) -> None:
    assert is_public_address(ip)


def test_parse_resolve() -> None:
    table = parse_resolve(f"{IDN_HOST}:80:127.0.0.1, a.example:443:[::1],a.example:443:127.0.0.2")
    assert table[("xn--bcher-kva.example", 80)] == ("127.0.0.1",)
    assert table[("a.example", 443)] == ("::1", "127.0.0.2")
    for bad in ("a.example:80", "a.example:http:127.0.0.1", "a.example:80:not-an-ip"):
        with pytest.raises(ValueError):
            parse_resolve(bad)


def test_bad_resolve_setting_dead_letters_clearly(hostile: HostileServer) -> None:
    s = strict_settings(hostile.port, fetch_resolve="oops")
    with make_session(Settings()) as session, pytest.raises(PermanentError) as info:
        fetch_page(f"{hostile.base_url}/ok", s, session)
    assert info.value.reason == "bad_settings" and "NEWSFLOW_FETCH_RESOLVE" in info.value.detail


def test_a_stray_nul_byte_does_not_make_a_page_binary() -> None:
    page = b"<html><head><title>Harbour\x00 budget</title></head><body>" + b"<p>text</p>" * 100 + b"</body></html>"
    assert not looks_binary(page)
    assert looks_binary(bytes(range(256)) * 4)  # random or compressed bytes: ~100 control bytes per kB
    assert looks_binary(b"<html>" + b"\x00\x01\x02\x03\x04\x05\x06\x07" + b"</html>")


def test_utf16_declared_or_told_by_its_nuls_is_not_binary() -> None:
    for codec in ("utf-16-le", "utf-16-be"):
        body = "<html><body>hello, harbour council</body></html>".encode(codec)
        assert not looks_binary(body, "utf-16") and not looks_binary(body)  # decode_html sniffs it
    # NULs on both sides of the pairs: not UTF-16, binary.
    assert looks_binary(b"\x00\x00\x01\x00\x00\x02" * 40)


def test_deadline_fires_once_and_cancels() -> None:
    d = Deadline(0.1)
    time.sleep(0.3)
    assert d.fired and d.remaining() < 0
    d2 = Deadline(5)
    d2.cancel()
    assert not d2.fired


def test_deadlines_share_one_watcher_and_fire_in_order() -> None:
    """A later deadline made first does not hold back an earlier one; cancelled ones never fire."""
    before = threading.active_count()
    late, cancelled = Deadline(5), Deadline(0.05)
    cancelled.cancel()
    early = Deadline(0.1)
    time.sleep(0.4)
    assert early.fired and not late.fired and not cancelled.fired
    late.cancel()
    assert threading.active_count() <= max(before, 1) + 1  # at most the one watcher thread was added


def test_deadline_in_a_forked_child() -> None:
    """A forked child cannot use its parent's watcher thread: it makes its own."""
    Deadline(5).cancel()  # the parent's watcher exists
    pid = os.fork()
    if pid == 0:  # the child reports by its exit status
        d = Deadline(0.05)
        time.sleep(0.3)
        os._exit(0 if d.fired else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
