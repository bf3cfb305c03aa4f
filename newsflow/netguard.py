"""SSRF guard: which addresses the fetcher may talk to.

Checked twice: before a request (resolving the host, for a clear error) and on the connected
socket itself (so a DNS answer that changes between the two cannot sneak through).
"""

from __future__ import annotations

import contextvars
import ipaddress
import socket
from dataclasses import dataclass

from newsflow.errors import PermanentError

ALLOWED_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True)
class NetPolicy:
    allow_private: bool = False
    # `host` or `host:port` entries exempt from the private-address rule.
    allowed_hosts: frozenset[str] = frozenset()

    def host_exempt(self, host: str, port: int) -> bool:
        host = host.lower().strip("[]")
        return host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts


def is_public_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def check_address(ip: str, host: str, port: int, policy: NetPolicy) -> None:
    if policy.allow_private or policy.host_exempt(host, port):
        return
    if not is_public_address(ip):
        raise PermanentError("private_address", f"{host} resolves to {ip}, which is not a public address")


def resolve_and_check(host: str, port: int, policy: NetPolicy) -> None:
    """Resolve `host` and refuse it if any address it maps to is not public."""
    if policy.allow_private or policy.host_exempt(host, port):
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise PermanentError("dns_error", f"cannot resolve {host}: {exc}") from None
    for info in infos:
        check_address(str(info[4][0]), host, port, policy)


# The policy of the fetch running in this thread; read by the guarded connection classes.
current_policy: contextvars.ContextVar[NetPolicy | None] = contextvars.ContextVar("newsflow_net_policy", default=None)


def check_connected_socket(sock: socket.socket, host: str, port: int) -> None:
    policy = current_policy.get()
    if policy is None:
        return
    peer = sock.getpeername()[0]
    check_address(str(peer), host, port, policy)
