"""SSRF guard: which addresses the fetcher may talk to, and how host names become addresses.

Checked twice: before a request (resolving the host, for a clear error) and on the connected
socket itself (so a DNS answer that changes between the two cannot sneak through). Redirects go
through both checks again, hop by hop (the fetcher follows them by hand).

A public address is one the IANA registries call globally reachable (`ipaddress`'s `is_global`),
minus multicast; addresses that embed an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64) are
judged by the address they embed, so `::ffff:127.0.0.1` or `2002:7f00:1::` cannot reach loopback.

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

from newsflow.errors import PermanentError

ALLOWED_SCHEMES = frozenset({"http", "https"})
# Well-known NAT64 prefix (RFC 6052): its low 32 bits are an IPv4 address.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ascii_host(host: str) -> str:
    """The host as sent on the wire: lower case, IDNA-encoded, without brackets or a trailing dot."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host.isascii():
        return host
    try:
        import idna

        return str(idna.encode(host, uts46=True).decode("ascii"))
    except (ImportError, UnicodeError, ValueError):
        try:
            return host.encode("idna").decode("ascii")
        except UnicodeError:
            raise PermanentError("bad_url", f"host {host[:100]!r} is not a valid domain name") from None


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


def _embedded_v4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]  # the client's address
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def is_public_address(ip: str) -> bool:
    """True for globally reachable unicast addresses only."""
    try:
        addr: IPAddress = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    inner = _embedded_v4(addr)
    if inner is not None and not is_public_address(str(inner)):
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
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


def resolve(host: str, port: int, policy: NetPolicy) -> list[str]:
    """The addresses `host` maps to: the pinned ones, else the system resolver's."""
    pinned = policy.pinned(host, port)
    if pinned:
        return list(pinned)
    try:
        infos = socket.getaddrinfo(ascii_host(host), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
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
