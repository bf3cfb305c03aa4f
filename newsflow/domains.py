"""Hosts and registrable domains: who a URL belongs to.

The registrable domain (eTLD+1) of a host is its public suffix plus one label, by the Public Suffix
List: `news.bbc.co.uk` -> `bbc.co.uk`, `alice.blogspot.com` -> `alice.blogspot.com` (the list's
private section makes `blogspot.com` a suffix, so each blog is its own owner). Two hosts with the
same registrable domain have one owner; anything else is someone else.

The list is the one bundled in the `publicsuffixlist` wheel (a new wheel ships each list update):
read once, on first use (~50 ms), never downloaded at run time.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from functools import cache
from urllib.parse import urlsplit

from publicsuffixlist import PublicSuffixList

from newsflow.urls import InvalidURL, wire_host

# What a host may be made of once IDN labels are punycode ("_" occurs in real hostnames).
_HOST = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$")


@cache
def _psl() -> PublicSuffixList:
    # ICANN and private sections; an unknown TLD counts as a public suffix (so `weather.example`
    # is its own registrable domain, as on the real web).
    return PublicSuffixList()


def normalize_host(host: str | None) -> str:
    """Lower-case, no trailing dot, no IPv6 brackets, IDN labels as punycode by UTS 46 (the rule of
    article ids and of the fetcher: `newsflow.urls.wire_host`); a host that rule refuses is only
    lower-cased. "" for no host."""
    h = (host or "").strip().lower().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h and not h.isascii():
        with contextlib.suppress(InvalidURL):
            h = wire_host(host or "")
    return h


def host_of(url: str | None) -> str:
    """The normalised host of a URL; "" for none or a URL that does not parse."""
    if not url:
        return ""
    try:
        return normalize_host(urlsplit(str(url).strip()).hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return ""


def _ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def registrable_domain(host: str | None) -> str | None:
    """eTLD+1 of a host; an IP address is its own. None for a public suffix itself (`co.uk`,
    `blogspot.com`, `localhost`), an empty host or one that is not a hostname."""
    h = normalize_host(host)
    if not h:
        return None
    if _ip(h):
        return h
    if not _HOST.match(h):
        return None
    return _psl().privatesuffix(h)


def is_public_suffix(name: str | None) -> bool:
    """Whether `name` is a public suffix (`com`, `co.uk`, `github.io`): a name under which unrelated
    parties register sites, so a cookie for it would be shared between them. True for an empty
    name or one that is not a hostname."""
    h = normalize_host(name).lstrip(".")
    if h and _ip(h):
        return False
    if not h or not _HOST.match(h):
        return True
    return bool(_psl().is_public(h))


def same_owner(host_a: str | None, host_b: str | None) -> bool:
    """Same host, or hosts under one registrable domain."""
    a, b = normalize_host(host_a), normalize_host(host_b)
    if not a or not b:
        return False
    if a == b:
        return True
    reg = registrable_domain(a)
    return reg is not None and reg == registrable_domain(b)


def trusted_canonical(canonical: str | None, fetched_url: str | None) -> str | None:
    """The page's declared canonical URL when it may speak for the page, else None.

    `fetched_url` is where the page came from (the final URL after redirects). A canonical is
    trusted only as an absolute http(s) URL on the same host or registrable domain: a page may name
    its own AMP/mobile/www twin, never another site's article.
    """
    if not canonical or not fetched_url:
        return None
    text = str(canonical).strip()
    try:
        scheme = urlsplit(text).scheme.lower()
    except ValueError:
        return None
    if scheme not in ("http", "https"):
        return None
    return text if same_owner(host_of(text), host_of(fetched_url)) else None
