"""Which discovered links are worth fetching: on-site article pages, not tags, authors or ads.

Rules are per source (sources file) on top of defaults. A link is kept when
- its scheme is http(s), and
- its host is the source's own site (same registrable domain as the source location, or the
  exact host for IP addresses) or listed in `allow_hosts` (kind `urls` has no site: any host), and
- no `deny_paths` pattern matches its path (defaults below, unless `default_deny = false`), and
- if `allow_paths` is given, one of them matches.
Patterns are Python regular expressions searched in the URL path (lower-cased).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

# Paths that list or sell rather than report. Searched anywhere in the lower-cased path.
DEFAULT_DENY_PATHS: tuple[str, ...] = (
    r"/(tag|tags|topic|topics|author|authors|byline|people|profile|profiles|user|users)(/|$)",
    r"/(category|categories|archive|archives|search|page)(/|$)",
    r"/(login|logout|signin|sign-in|register|signup|subscribe|subscription|account|newsletter|newsletters)(/|$)",
    r"/(ad|ads|adverts?|advertising|advertorial|sponsored|sponsor|promo|promotions|partner-content)(/|$)",
    r"/(feed|feeds|rss|amp/?$)(/|$)",
    r"\.(jpe?g|png|gif|webp|svg|ico|pdf|zip|gz|mp3|mp4|m4a|mov|avi|webm|css|js|json|xml|rss|atom)$",
)
# Second-level labels under which registrations happen (example.co.uk, example.com.au).
_PUBLIC_SECOND_LEVEL = frozenset({"co", "com", "org", "net", "gov", "ac", "edu", "ne", "or", "go", "gob", "nic"})


def site_of(host: str) -> str:
    """A cheap registrable domain: `news.bbc.co.uk` -> `bbc.co.uk`, `www.example.com` -> `example.com`."""
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _PUBLIC_SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


@dataclass(frozen=True)
class LinkRules:
    site: str | None  # None: any host (URL lists)
    allow_hosts: frozenset[str] = frozenset()
    deny_paths: tuple[re.Pattern[str], ...] = ()
    allow_paths: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def build(
        cls,
        location: str | None,
        *,
        allow_hosts: Iterable[str] = (),
        deny_paths: Iterable[str] = (),
        allow_paths: Iterable[str] = (),
        default_deny: bool = True,
    ) -> LinkRules:
        host = urlsplit(location).hostname if location else None
        deny = [*(DEFAULT_DENY_PATHS if default_deny else ()), *deny_paths]
        return cls(
            site=site_of(host) if host else None,
            allow_hosts=frozenset(h.lower() for h in allow_hosts),
            deny_paths=tuple(re.compile(p) for p in deny),
            allow_paths=tuple(re.compile(p) for p in allow_paths),
        )

    def why_not(self, url: str) -> str | None:
        """None when the link is kept, else a short reason (`off_site`, `denied_path`, ...)."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return "not_http"
        host = parts.hostname.lower()
        if self.site is not None and site_of(host) != self.site and host not in self.allow_hosts:
            return "off_site"
        path = (parts.path or "/").lower()
        if any(p.search(path) for p in self.deny_paths):
            return "denied_path"
        if self.allow_paths and not any(p.search(path) for p in self.allow_paths):
            return "not_allowed_path"
        return None
