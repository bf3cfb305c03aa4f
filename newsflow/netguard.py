"""SSRF guard: which addresses the fetcher may talk to, and how host names become addresses.

Checked twice: before a request (resolving the host, for a clear error) and on the connected
socket itself (so a DNS answer that changes between the two cannot sneak through). Redirects go
through both checks again, hop by hop (the fetcher follows them by hand).

A public address is one the IANA registries call globally reachable (`ipaddress`'s `is_global`),
minus multicast. An IPv6 address that embeds an IPv4 address is judged by the IPv4 address(es) it
embeds and by nothing else, whatever `ipaddress` (whose verdicts differ between Python releases)
thinks of it: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, IPv4-translated
`::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96` and the local-use NAT64 block `64:ff9b:1::/48`, 6to4
`2002::/16` and Teredo `2001::/32` (server and client). The local-use block does not say which
RFC 6052 prefix length the operator chose, so it is read at every length whose format its bits
fit, and every reading must be public (`embedded_ipv4s`). So `::ffff:127.0.0.1`, `2002:7f00:1::` or
`64:ff9b::a9fe:a9fe` cannot reach loopback, a private network or the cloud metadata service,
while `64:ff9b::808:808` (what DNS64 hands an IPv6-only host for 8.8.8.8) is fetched. Any other
IPv6 address must also lie in 2000::/3, the only block IANA allocates as global unicast.

`NetPolicy.resolve` pins host names to addresses, like curl's `--resolve host:port:addr`: the
guard checks the pinned addresses and the connection goes to them. Tests use it so that IDN and
other made-up host names reach a server on 127.0.0.1 without any DNS query leaving the machine.
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from newsflow.errors import PermanentError, TransientError
from newsflow.urls import InvalidURL, wire_host

ALLOWED_SCHEMES = frozenset({"http", "https"})

_V6 = ipaddress.IPv6Network
# The only IPv6 block IANA allocates as global unicast; everything else (::/8 beyond the special
# forms below, fec0::/10 site-local, 5f00::/16 SRv6, unallocated space) is never a public server.
_GLOBAL_UNICAST = _V6("2000::/3")
# Inside 2000::/3 but never global: the documentation prefixes (3fff::/20 is RFC 9637, 2024, and
# unknown to older Python releases' `ipaddress`).
_NOT_GLOBAL_V6 = (_V6("3fff::/20"), _V6("2001:db8::/32"))  # documentation (RFC 9637, RFC 3849)
# NAT64 (RFC 6052 / RFC 8215): the well-known prefix is /96 only; the local-use block holds an
# operator's prefix of any RFC 6052 length, which the address alone does not tell.
_NAT64_WKP = _V6("64:ff9b::/96")
_NAT64_LOCAL = _V6("64:ff9b:1::/48")
NAT64_PREFIX_LENGTHS = (32, 40, 48, 56, 64, 96)
_U_OCTET_MASK = 0xFF << 56  # bits 64-71 of an RFC 6052 address: always zero, never part of the IPv4

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ascii_host(host: str) -> str:
    """The host as sent on the wire: `newsflow.urls.wire_host` (lower case, IDNA by UTS 46, without
    brackets or a trailing dot), the rule article ids are made by. PermanentError `bad_url` when it
    cannot be sent."""
    host = host.strip()
    if host.startswith("[") or ":" in host:  # an IPv6 address, with or without its brackets
        host = "[" + host.strip("[]") + "]"
    try:
        return wire_host(host)
    except InvalidURL as exc:
        raise PermanentError("bad_url", str(exc)[:300]) from None


def parse_resolve(spec: str) -> dict[tuple[str, int], tuple[str, ...]]:
    """Parse `host:port:addr,host:port:addr,...` (IPv6 addresses in brackets) into a pin table.

    Several entries for one host:port give several addresses, tried in order by the connection.
    """
    table: dict[tuple[str, int], tuple[str, ...]] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, sep1, rest = entry.partition(":")
        port, sep2, addr = rest.partition(":")
        if not (sep1 and sep2 and host and port.isdigit() and addr):
            raise ValueError(f"fetch_resolve entry {entry!r} is not host:port:address")
        ip = ipaddress.ip_address(addr.strip("[]"))  # ValueError names the bad address
        key = (ascii_host(host), int(port))
        table[key] = (*table.get(key, ()), str(ip))
    return table


def normalize_allow_entry(entry: str) -> str:
    """`host`, `host:port`, `[v6]:port` or a bare IPv6 address, with the host in wire form."""
    entry = entry.strip()
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.lstrip(":")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""
    return ascii_host(host) + (f":{port}" if port else "")


@dataclass(frozen=True)
class NetPolicy:
    allow_private: bool = False
    # `host` or `host:port` entries exempt from the private-address rule.
    allowed_hosts: frozenset[str] = frozenset()
    # (ascii host, port) -> addresses to use instead of DNS.
    resolve: Mapping[tuple[str, int], tuple[str, ...]] = field(default_factory=dict)

    def host_exempt(self, host: str, port: int) -> bool:
        host = ascii_host(host)
        return host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts

    def pinned(self, host: str, port: int) -> tuple[str, ...] | None:
        return self.resolve.get((ascii_host(host), port)) if self.resolve else None


def nat64_ipv4(addr: ipaddress.IPv6Address, prefix_len: int) -> ipaddress.IPv4Address | None:
    """The IPv4 address `addr` embeds if its NAT64 prefix is `prefix_len` bits long (RFC 6052 §2.2).

    None if `addr` is not in that format: bits 64-71 (the "u" octet) must be zero, and so must
    every bit after the IPv4 address. Bits 64-71 are skipped, so for /40, /48 and /56 the IPv4
    address is split around them.
    """
    if prefix_len not in NAT64_PREFIX_LENGTHS:
        raise ValueError(f"RFC 6052 prefixes are /32, /40, /48, /56, /64 or /96, not /{prefix_len}")
    value = int(addr)
    if value & _U_OCTET_MASK:
        return None
    # The 120 bits left once the u octet is taken out; the IPv4 address starts right after the
    # prefix (for /96 the prefix itself spans the u octet, so 8 bits earlier).
    packed = ((value >> 64) << 56) | (value & ((1 << 56) - 1))
    start = prefix_len if prefix_len <= 64 else prefix_len - 8
    after = 120 - start - 32  # bits of suffix after the IPv4 address
    if packed & ((1 << after) - 1):
        return None
    return ipaddress.IPv4Address((packed >> after) & 0xFFFFFFFF)


def embedded_ipv4s(addr: IPAddress) -> tuple[ipaddress.IPv4Address, ...] | None:
    """The IPv4 addresses an IPv6 address stands for; None if it is not a form that embeds one.

    An empty tuple is a form that embeds an IPv4 address but holds no usable one (a local-use
    NAT64 address in no RFC 6052 format). Several addresses: Teredo (server and client), and the
    local-use NAT64 block, read at every prefix length its bits fit (the operator's length is
    not in the address); an all-zero reading there is the format's zero padding, not an address.
    """
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    value = int(addr)
    low = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    high = value >> 32
    if addr.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return (addr.ipv4_mapped,)
    if high == 0:  # ::a.b.c.d, IPv4-compatible (deprecated); :: and ::1 read as 0.0.0.0 and 0.0.0.1
        return (low,)
    if high == 0xFFFF0000:  # ::ffff:0:a.b.c.d, IPv4-translated (RFC 2765)
        return (low,)
    if addr in _NAT64_WKP:
        return (low,)
    if addr in _NAT64_LOCAL:
        readings = {nat64_ipv4(addr, n) for n in NAT64_PREFIX_LENGTHS}
        return tuple(sorted(v for v in readings if v is not None and int(v) != 0))
    if addr.sixtofour is not None:  # 2002:AABB:CCDD::/48, bits 16-47
        return (addr.sixtofour,)
    if addr.teredo is not None:  # 2001:0:SSSS:SSSS:flags:port:~CCCC:~CCCC
        server, client = addr.teredo  # the client's address comes back un-inverted
        return (server, client)
    return None


def _is_public_v4(addr: ipaddress.IPv4Address) -> bool:
    return bool(addr.is_global) and not addr.is_multicast


def is_public_address(ip: str) -> bool:
    """True for globally reachable unicast addresses only; IPv6 forms embedding IPv4 by their IPv4."""
    try:
        addr: IPAddress = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv4Address):
        return _is_public_v4(addr)
    inner = embedded_ipv4s(addr)
    if inner is not None:
        return bool(inner) and all(_is_public_v4(v) for v in inner)
    if addr not in _GLOBAL_UNICAST or any(addr in net for net in _NOT_GLOBAL_V6):
        return False
    return bool(addr.is_global) and not addr.is_multicast


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback addresses: where a listening service (`newsflow serve`,
    `newsflow flower`) may go without auth. A host name may resolve anywhere: False."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(ip: str, host: str, port: int, policy: NetPolicy) -> None:
    if policy.allow_private or policy.host_exempt(host, port):
        return
    if not is_public_address(ip):
        raise PermanentError("private_address", f"{host} resolves to {ip}, which is not a public address")


# getaddrinfo's "temporary failure in name resolution" (a resolver down or timing out): the name may
# well exist. Every other failure (no such name, no address) is the URL's, and permanent.
_DNS_TRY_AGAIN = frozenset({socket.EAI_AGAIN})


def resolve(host: str, port: int, policy: NetPolicy) -> list[str]:
    """The addresses `host` maps to: the pinned ones, else the system resolver's."""
    pinned = policy.pinned(host, port)
    if pinned:
        return list(pinned)
    try:
        infos = socket.getaddrinfo(ascii_host(host), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _DNS_TRY_AGAIN:  # the resolver failed, not the name: ask again later
            raise TransientError("dns_unavailable", f"cannot resolve {host} now: {exc}") from None
        raise PermanentError("dns_error", f"cannot resolve {host}: {exc}") from None
    except (UnicodeError, OSError) as exc:
        raise PermanentError("dns_error", f"cannot resolve {host}: {exc}") from None
    return [str(info[4][0]) for info in infos]


def resolve_and_check(host: str, port: int, policy: NetPolicy) -> None:
    """Resolve `host` and refuse it if any address it maps to is not public."""
    if (policy.allow_private or policy.host_exempt(host, port)) and policy.pinned(host, port) is None:
        return  # nothing to check; the connection resolves for itself
    for ip in resolve(host, port, policy):
        check_address(ip, host, port, policy)


# The policy of the fetch running in this thread; read by the guarded connection classes.
current_policy: contextvars.ContextVar[NetPolicy | None] = contextvars.ContextVar("newsflow_net_policy", default=None)


def check_connected_socket(sock: socket.socket, host: str, port: int) -> None:
    """Refuse a socket whose peer is not allowed (the last word: after DNS, after connect)."""
    policy = current_policy.get()
    if policy is None:
        return
    peer = sock.getpeername()[0]
    check_address(str(peer), host, port, policy)
