"""The SSRF guard on IPv6 forms that embed an IPv4 address (`newsflow.netguard`).

Each form is judged by the IPv4 address it embeds: refused exactly when that IPv4 address would
be, whatever Python's `ipaddress` (whose verdicts differ between releases) says of the IPv6 one.
Unit level: addresses are classified, and URLs and pinned names checked, without any connection
(a test that could connect makes every socket connect fail loudly instead).

The addresses are built here byte by byte from the RFC layouts, independently of the decoder.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest

from newsflow.errors import PermanentError, TransientError
from newsflow.fetcher import check_url, fetch_page, make_session
from newsflow.netguard import (
    NetPolicy,
    check_address,
    check_connected_socket,
    current_policy,
    embedded_ipv4s,
    is_public_address,
    nat64_ipv4,
    resolve_and_check,
)
from newsflow.urls import normalize_url
from tests.hostile.cases import CASES, strict_fetch_settings

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

# Non-public IPv4 addresses of every kind the guard refuses.
PRIVATE_V4 = [
    "127.0.0.1",  # loopback
    "127.1.2.3",
    "10.0.0.1",  # RFC 1918
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # link-local: the cloud metadata service
    "100.64.0.1",  # CGNAT
    "0.0.0.0",  # "this network" (Linux connects it to loopback)
    "0.1.2.3",
    "192.0.0.1",  # IETF protocol assignments
    "192.0.2.45",  # documentation
    "198.18.0.1",  # benchmarking
    "240.0.0.1",  # reserved
    "255.255.255.255",  # broadcast
    "224.0.0.1",  # multicast
    "239.255.255.250",
]
# Public ones; their trailing octets are non-zero, so no NAT64 reading is pure padding.
PUBLIC_V4 = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "9.9.9.9"]

TEREDO_SERVER = "65.54.227.120"  # the public Teredo server of RFC 4380's example
TEREDO_CLIENT = "8.8.4.4"
NAT64_LOCAL = bytes.fromhex("0064ff9b0001")  # 64:ff9b:1::/48 (RFC 8215)


def _v6(raw: bytes) -> str:
    assert len(raw) == 16
    return str(V6(raw))


def mapped(v4: str) -> str:  # ::ffff:a.b.c.d
    return _v6(bytes(10) + b"\xff\xff" + V4(v4).packed)


def compatible(v4: str) -> str:  # ::a.b.c.d (deprecated, RFC 4291 2.5.5.1)
    return _v6(bytes(12) + V4(v4).packed)


def translated(v4: str) -> str:  # ::ffff:0:a.b.c.d (RFC 2765 SIIT)
    return _v6(bytes(8) + b"\xff\xff\x00\x00" + V4(v4).packed)


def nat64_wkp(v4: str) -> str:  # 64:ff9b::/96 (RFC 6052)
    return _v6(bytes.fromhex("0064ff9b") + bytes(8) + V4(v4).packed)


def rfc6052(prefix: bytes, length: int, v4: str) -> str:
    """RFC 6052 figure 1: the IPv4 octets around the u octet (byte 8, always zero)."""
    a = V4(v4).packed
    raw = bytearray(prefix.ljust(16, b"\0")[: length // 8].ljust(16, b"\0"))
    where = {32: (4, 5, 6, 7), 40: (5, 6, 7, 9), 48: (6, 7, 9, 10), 56: (7, 9, 10, 11), 64: (9, 10, 11, 12)}
    for i, pos in enumerate(where.get(length, (12, 13, 14, 15))):
        raw[pos] = a[i]
    assert raw[8] == 0
    return _v6(bytes(raw))


def nat64_local(length: int) -> Callable[[str], str]:
    return lambda v4: rfc6052(NAT64_LOCAL, length, v4)


def sixtofour(v4: str) -> str:  # 2002:AABB:CCDD:<subnet>::<iid>, bits 16-47
    return _v6(b"\x20\x02" + V4(v4).packed + b"\x00\x07" + bytes.fromhex("0000000000000001"))


def teredo(server: str, client: str) -> str:  # 2001:0:<server>:<flags>:<~port>:<~client>
    inverted = bytes(b ^ 0xFF for b in V4(client).packed)
    return _v6(b"\x20\x01\x00\x00" + V4(server).packed + b"\x80\x00" + b"\x63\xbf" + inverted)


def teredo_client(v4: str) -> str:
    return teredo(TEREDO_SERVER, v4)


def teredo_server(v4: str) -> str:
    return teredo(v4, TEREDO_CLIENT)


FORMS: dict[str, Callable[[str], str]] = {
    "ipv4_mapped": mapped,
    "ipv4_compatible": compatible,
    "ipv4_translated": translated,
    "nat64_well_known_96": nat64_wkp,
    "nat64_local_use_48": nat64_local(48),
    "nat64_local_use_56": nat64_local(56),
    "nat64_local_use_64": nat64_local(64),
    "nat64_local_use_96": nat64_local(96),
    "6to4": sixtofour,
    "teredo_client": teredo_client,
    "teredo_server": teredo_server,
}

REFUSED = [(form, v4, build(v4)) for form, build in FORMS.items() for v4 in PRIVATE_V4]
ALLOWED = [(form, v4, build(v4)) for form, build in FORMS.items() for v4 in PUBLIC_V4]


def test_the_builders_write_the_addresses_the_rfcs_show() -> None:
    def same(built: str, written: str) -> bool:  # Python releases print ::ffff:a.b.c.d differently
        return V6(built) == V6(written)

    assert same(mapped("127.0.0.1"), "::ffff:127.0.0.1")
    assert same(compatible("127.0.0.1"), "::127.0.0.1")
    assert same(translated("127.0.0.1"), "::ffff:0:127.0.0.1")
    assert same(nat64_wkp("192.0.2.33"), "64:ff9b::192.0.2.33")
    assert same(sixtofour("192.168.1.1"), "2002:c0a8:101:7::1")
    # RFC 4380 section 4: server 65.54.227.120, client 192.0.2.45, port 40000.
    assert same(teredo(TEREDO_SERVER, "192.0.2.45"), "2001:0:4136:e378:8000:63bf:3fff:fdd2")
    # RFC 6052 section 2.4, 192.0.2.33 under 2001:db8:122:344::/n.
    db8 = bytes.fromhex("20010db801220344")
    assert same(rfc6052(db8, 32, "192.0.2.33"), "2001:db8:c000:221::")
    assert same(rfc6052(db8, 40, "192.0.2.33"), "2001:db8:1c0:2:21::")
    assert same(rfc6052(db8, 48, "192.0.2.33"), "2001:db8:122:c000:2:2100::")
    assert same(rfc6052(db8, 56, "192.0.2.33"), "2001:db8:122:3c0:0:221::")
    assert same(rfc6052(db8, 64, "192.0.2.33"), "2001:db8:122:344:c0:2:2100:0")
    assert same(rfc6052(db8, 96, "192.0.2.33"), "2001:db8:122:344::192.0.2.33")
    assert same(rfc6052(NAT64_LOCAL, 48, "10.0.0.1"), "64:ff9b:1:a00:0:100::")  # a hostile case's host


@pytest.mark.parametrize(
    ("length", "address"),
    [
        (32, "2001:db8:c000:221::"),
        (40, "2001:db8:1c0:2:21::"),
        (48, "2001:db8:122:c000:2:2100::"),
        (56, "2001:db8:122:3c0:0:221::"),
        (64, "2001:db8:122:344:c0:2:2100:0"),
        (96, "2001:db8:122:344::192.0.2.33"),
    ],
)
def test_nat64_decoding_at_every_rfc6052_prefix_length(length: int, address: str) -> None:
    """RFC 6052 section 2.4's own table: the IPv4 address sits elsewhere at each length, around bits 64-71."""
    assert nat64_ipv4(V6(address), length) == V4("192.0.2.33")


def test_nat64_decoding_refuses_what_is_not_the_format() -> None:
    assert nat64_ipv4(V6("2001:db8:122:c000:2:2100::1"), 48) is None  # suffix not zero
    assert nat64_ipv4(V6("2001:db8:122:344:ff00::"), 64) is None  # u octet (bits 64-71) not zero
    with pytest.raises(ValueError):
        nat64_ipv4(V6("64:ff9b::1"), 72)


@pytest.mark.parametrize(("form", "v4", "ip"), REFUSED, ids=[f"{f}-{v}" for f, v, _ in REFUSED])
def test_embedded_non_public_ipv4_is_refused(form: str, v4: str, ip: str) -> None:
    assert not is_public_address(v4)
    inner = embedded_ipv4s(V6(ip))
    assert inner is not None, (form, ip)
    if int(V4(v4)) or not form.startswith("nat64_local"):  # there all-zero bits are padding
        assert V4(v4) in inner, (form, ip)
    assert not is_public_address(ip), (form, ip)


@pytest.mark.parametrize(("form", "v4", "ip"), ALLOWED, ids=[f"{f}-{v}" for f, v, _ in ALLOWED])
def test_embedded_public_ipv4_is_allowed(form: str, v4: str, ip: str) -> None:
    assert is_public_address(v4)
    assert V4(v4) in (embedded_ipv4s(V6(ip)) or ()), (form, ip)
    assert is_public_address(ip), (form, ip)


EXACT_FORMS = ["ipv4_mapped", "ipv4_compatible", "ipv4_translated", "nat64_well_known_96", "nat64_local_use_96"]
EXACT_FORMS += ["6to4", "teredo_client", "teredo_server"]
SAMPLE_V4 = [*PRIVATE_V4, *PUBLIC_V4, "192.0.0.9", "192.88.99.1", "198.51.100.7", "203.0.113.9", "100.63.255.254"]


@pytest.mark.parametrize("form", EXACT_FORMS)
def test_single_address_forms_judge_exactly_as_their_ipv4(form: str) -> None:
    """Where the form says where its one IPv4 address is, the verdict is that address's, both ways."""
    for v4 in SAMPLE_V4:
        assert is_public_address(FORMS[form](v4)) == is_public_address(v4), (form, v4, FORMS[form](v4))


def test_teredo_needs_both_server_and_client_public() -> None:
    assert is_public_address(teredo(TEREDO_SERVER, TEREDO_CLIENT))
    assert not is_public_address(teredo("10.0.0.1", TEREDO_CLIENT))
    assert not is_public_address(teredo(TEREDO_SERVER, "127.0.0.1"))
    assert not is_public_address("2001:0:4136:e378:8000:63bf:3fff:fdd2")  # RFC 4380's client is 192.0.2.45


def test_local_use_nat64_is_read_at_every_length_its_bits_fit() -> None:
    """64:ff9b:1::/48 does not say the operator's prefix length; every reading must be public.

    A /48 address read as /56 and /64 gives other public addresses, and as /96 all zero bits
    (padding, not an address): allowed. A /64 address read as /96 gives `D.0.0.0`: one whose last
    octet is 10 reads as 10.0.0.0 and is refused, a price paid for not guessing the length.
    """
    at48 = V6(rfc6052(NAT64_LOCAL, 48, "93.184.216.34"))
    assert set(embedded_ipv4s(at48) or ()) == {V4("93.184.216.34"), V4("184.216.34.0"), V4("216.34.0.0")}
    assert is_public_address(str(at48))
    assert not is_public_address(rfc6052(NAT64_LOCAL, 64, "93.184.216.10"))
    assert not is_public_address("64:ff9b:1::")  # nothing but the prefix
    assert not is_public_address("64:ff9b:1:0:ff08:808:800:0")  # u octet set: no RFC 6052 reading at all
    # A prefix carrying operator bits, as RFC 8215 allows: 64:ff9b:1:abcd::/64.
    op64 = rfc6052(bytes.fromhex("0064ff9b0001abcd"), 64, "10.1.2.3")
    assert V4("10.1.2.3") in (embedded_ipv4s(V6(op64)) or ()) and not is_public_address(op64)


@pytest.mark.parametrize(
    "ip",
    [
        "::",  # unspecified (reads as 0.0.0.0)
        "::1",  # loopback (reads as 0.0.0.1)
        "64:ff9b::",
        "64:ff9b:2::1",  # the rest of 64:ff9b::/16: IETF reserved, no NAT64 prefix
        "64:ff9b:a00:1::",  # as if 64:ff9b::/32 were a network-specific prefix holding 10.0.0.1
        "fec0::1",  # site-local (deprecated), is_global in Python 3.11
        "3fff::1",  # documentation (RFC 9637), is_global in older Pythons
        "5f00::1",  # SRv6 SIDs (RFC 9602)
        "4000::1",  # outside 2000::/3: unallocated
        "100::1",  # discard-only
        "2001:db8::1",
        "fe80::1%eth0",
        "fd00::1",
        "ff02::1",
        "2001:2::1",  # benchmarking
    ],
)
def test_other_non_public_ipv6_is_refused(ip: str) -> None:
    assert not is_public_address(ip)


@pytest.mark.parametrize("ip", ["2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "2620:fe::fe", "2001:4860::8888"])
def test_public_ipv6_passes(ip: str) -> None:
    assert is_public_address(ip)


def test_embedding_forms_are_told_apart_from_ordinary_addresses() -> None:
    assert embedded_ipv4s(V6("2606:4700:4700::1111")) is None
    assert embedded_ipv4s(V4("10.0.0.1")) is None
    assert embedded_ipv4s(V6("64:ff9b::7f00:1")) == (V4("127.0.0.1"),)
    assert embedded_ipv4s(V6("2002:a9fe:a9fe::1")) == (V4("169.254.169.254"),)


# --- the guard's entry points, without connecting -------------------------------------------------


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket connect is a test failure: refused addresses must be refused before one."""

    def refuse(self: socket.socket, *args: Any) -> Any:
        raise AssertionError(f"tried to connect to {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


REFUSED_URL_HOSTS = [
    compatible("127.0.0.1"),
    translated("127.0.0.1"),
    nat64_wkp("169.254.169.254"),
    rfc6052(NAT64_LOCAL, 48, "10.0.0.1"),
    rfc6052(NAT64_LOCAL, 56, "192.168.0.1"),
    sixtofour("127.0.0.1"),
    teredo_client("169.254.169.254"),
    teredo_server("10.1.1.1"),
]


@pytest.mark.parametrize("host", REFUSED_URL_HOSTS)
def test_urls_with_embedded_private_addresses_are_refused(host: str, no_connect: None) -> None:
    with pytest.raises(PermanentError) as info:
        check_url(f"http://[{host}]:8080/latest/meta-data/", NetPolicy())
    assert info.value.reason == "private_address"
    check_url(f"http://[{host}]:8080/", NetPolicy(allow_private=True))  # the usual escape hatch


def test_fetch_page_refuses_before_connecting(no_connect: None) -> None:
    settings = strict_fetch_settings("")
    with make_session(settings) as session:
        for host in REFUSED_URL_HOSTS:
            with pytest.raises(PermanentError) as info:
                fetch_page(f"http://[{host}]/", settings, session)
            assert info.value.reason == "private_address", host


@pytest.mark.parametrize("pinned", [nat64_wkp("127.0.0.1"), sixtofour("10.0.0.1"), translated("169.254.169.254")])
def test_a_name_resolving_to_an_embedded_private_address_is_refused(pinned: str) -> None:
    """`fetch_resolve` pins stand in for a DNS answer (DNS64, rebinding) without any query."""
    policy = NetPolicy(resolve={("news.example", 443): ("2606:4700:4700::1111", pinned)})
    with pytest.raises(PermanentError) as info:
        resolve_and_check("news.example", 443, policy)
    assert info.value.reason == "private_address" and pinned in info.value.detail


@pytest.mark.parametrize(
    ("code", "error", "reason"),
    [
        (socket.EAI_AGAIN, TransientError, "dns_unavailable"),  # the resolver failed: try again later
        (socket.EAI_NONAME, PermanentError, "dns_error"),  # no such name
    ],
)
def test_a_resolver_failure_is_transient_and_an_unknown_name_permanent(
    monkeypatch: pytest.MonkeyPatch, code: int, error: type[Exception], reason: str
) -> None:
    def failing(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(code, "resolver says no")

    monkeypatch.setattr(socket, "getaddrinfo", failing)
    with pytest.raises(error) as info:
        resolve_and_check("news.example", 443, NetPolicy())
    assert info.value.reason == reason  # type: ignore[attr-defined]


def test_a_name_resolving_to_dns64_of_a_public_address_passes() -> None:
    policy = NetPolicy(resolve={("news.example", 443): (nat64_wkp("93.184.216.34"),)})
    resolve_and_check("news.example", 443, policy)


class _PeerSocket:
    """A socket as far as the last check sees one: only its peer."""

    def __init__(self, peer: str) -> None:
        self.peer = peer

    def getpeername(self) -> tuple[str, int, int, int]:
        return (self.peer, 80, 0, 0)


@pytest.mark.parametrize(("peer", "ok"), [(nat64_wkp("127.0.0.1"), False), (nat64_wkp("8.8.8.8"), True)])
def test_connected_peer_with_an_embedded_address_is_judged_by_it(peer: str, ok: bool) -> None:
    token = current_policy.set(NetPolicy())
    try:
        if ok:
            check_connected_socket(_PeerSocket(peer), "news.example", 80)  # type: ignore[arg-type]
        else:
            with pytest.raises(PermanentError):
                check_connected_socket(_PeerSocket(peer), "news.example", 80)  # type: ignore[arg-type]
    finally:
        current_policy.reset(token)


def test_allow_listed_host_is_exempt_as_before() -> None:
    policy = NetPolicy(allowed_hosts=frozenset({"intranet.example"}))
    check_address(nat64_wkp("10.0.0.1"), "intranet.example", 80, policy)
    with pytest.raises(PermanentError):
        check_address(nat64_wkp("10.0.0.1"), "other.example", 80, policy)


def test_the_hostile_ipv6_cases_survive_url_normalisation() -> None:
    """The pipeline suite submits each case's URL; its host must still be the same address."""
    for case in CASES:
        if case.name.startswith(("ipv4_compatible", "ipv4_translated", "nat64", "sixtofour", "teredo")):
            url = case.url(8080)
            with pytest.raises(PermanentError) as info:
                check_url(normalize_url(url), NetPolicy())
            assert info.value.reason == case.fetch == "private_address", case.name
