"""What "a host" is for politeness, and how fast we may talk to it."""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from config.defaults import Settings
from newsflow.domains import normalize_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def host_key(url: str) -> str:
    """`host[:port]`, the host as the fetcher sends it (lower case, IDN labels by UTS 46, so
    `faß.de` and `xn--fa-hia.de` are one host to be polite to), the port only when it is not the
    scheme's default."""
    parts = urlsplit(url)
    host = normalize_host(parts.hostname)
    if ":" in host:  # an IPv6 address: bracketed, as in a URL (robots.txt lives at http://[::1]/...)
        host = f"[{host}]"
    port = parts.port
    if port is None or port == DEFAULT_PORTS.get(parts.scheme.lower()):
        return host
    return f"{host}:{port}"


def origin_of(url: str) -> str:
    """`scheme://host[:port]`: where robots.txt lives for this URL."""
    return f"{urlsplit(url).scheme.lower()}://{host_key(url)}"


@functools.cache
def _host_rates(spec: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in spec.split(","):
        if "=" not in item:
            continue
        host, rate = item.rsplit("=", 1)
        try:
            value = float(rate)
        except ValueError:
            continue
        if value > 0:
            out[host.strip().lower()] = value
    return out


def rate_for(key: str, settings: Settings, source_rate: float | None = None) -> float:
    """Requests/s allowed to `key`: a per-host setting, else the source's, else the global default."""
    rates = _host_rates(settings.polite_host_rates)
    bare = key.rsplit(":", 1)[0] if key.count(":") == 1 else key
    if key in rates:
        return rates[key]
    if bare in rates:
        return rates[bare]
    if source_rate and source_rate > 0:
        return source_rate
    return max(settings.polite_host_rate_per_s, 1e-6)


def interval_s(
    key: str, settings: Settings, source_rate: float | None = None, crawl_delay_s: float | None = None
) -> float:
    """Seconds between two requests to `key`: from the rate, never below robots.txt's Crawl-delay."""
    interval = 1.0 / rate_for(key, settings, source_rate)
    if crawl_delay_s:
        interval = max(interval, min(crawl_delay_s, settings.polite_max_crawl_delay_s))
    return interval
