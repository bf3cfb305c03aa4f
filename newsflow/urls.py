"""URL normalisation and the stable article id.

The article id is the hash of the normalised *requested* URL, so the same link found in a feed,
a sitemap or typed by hand maps to one article, whatever the page later redirects to.
"""

from __future__ import annotations

import contextlib
import hashlib
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

# Query parameters that only track where a click came from; they never change the article.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "yclid",
        "_ga",
        "_gl",
        "ocid",
        "cmpid",
        "ncid",
        "smid",
        "smtyp",
        "ref_src",
        "ref_url",
        "mkt_tok",
        "s_cid",
        "sr_share",
        "__twitter_impression",
        "at_medium",
        "at_campaign",
    }
)
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "pk_", "mtm_", "hsa_", "oly_")
DEFAULT_PORTS = {"http": 80, "https": 443}
ID_HEX_CHARS = 32


class InvalidURL(ValueError):
    """The string is not an absolute http(s) URL."""


def _is_tracking(name: str) -> bool:
    low = name.lower()
    return low in TRACKING_PARAMS or low.startswith(TRACKING_PREFIXES)


def normalize_url(url: str) -> str:
    """Canonical form used for ids and lookups.

    Lower-cases scheme and host, drops default ports, the fragment, tracking parameters and
    user info, sorts the remaining query parameters and normalises percent-escapes.
    """
    raw = url.strip()
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise InvalidURL(f"not an absolute http(s) URL: {raw[:200]!r}")
    host = parts.hostname.lower().rstrip(".")
    # Odd hosts stay as they are; the fetcher refuses what it cannot resolve.
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    try:
        port = parts.port
    except ValueError:
        raise InvalidURL(f"bad port in URL: {raw[:200]!r}") from None
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" if port in (None, DEFAULT_PORTS[scheme]) else f"[{host}]:{port}"
    path = quote(unquote(parts.path or "/"), safe="/%:@!$&'()*+,;=-._~")
    query_items = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    query = urlencode(sorted(query_items), doseq=True)
    return urlunsplit((scheme, netloc, path, query, ""))


def article_id(url: str) -> str:
    """Stable id of the article requested at `url` (hex, 128 bits of SHA-256)."""
    return hashlib.sha256(normalize_url(url).encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def looks_like_article_id(value: str) -> bool:
    return len(value) == ID_HEX_CHARS and all(c in "0123456789abcdef" for c in value)
