"""URL normalisation and the stable article id.

The article id is the hash of the normalised *requested* URL, so the same link found in a feed,
a sitemap or typed by hand maps to one article, whatever the page later redirects to.

One normaliser, `normalize_url`, makes both the id and the request: the fetcher
(`newsflow.fetcher`) sends exactly the normalised URL, so two URLs share an id only if the same
request is made for both. Its rules (id version 2, `ID_VERSION`; docs/pipeline.md):

- scheme and host lower case; host names IDNA-encoded by UTS 46 (non-transitional, as browsers and
  `requests` do: `faß.de` is `xn--fa-hia.de`, not `fass.de`); a non-ASCII host UTS 46 refuses is
  an InvalidURL; a trailing dot is dropped; IPv6 addresses in their compressed form;
- the default port dropped; user info refused (the fetcher never sends credentials);
- percent-escapes: hex upper case, only unreserved characters decoded (RFC 3986 6.2.2), so `%2F`,
  `%3F`, `%23`, `%26`, `%2B` and bytes that are not UTF-8 stay as they are; characters a URL may
  not hold literally (non-ASCII, space, `"<>[]^{|}` ...) are percent-encoded as UTF-8;
- path dot-segments removed (`/a/./b/../c` is `/a/c`); an empty path is `/`;
- query: tracking parameters and empty `&&` pieces dropped, the rest stably sorted by name, so the
  values of a repeated name keep their order; `a` and `a=` stay different, as do `+` and `%20`;
- the fragment dropped.

Version 1 (`normalize_url_v1`) used IDNA 2003, decoded every escape (`%2F` became `/`) and sorted
query values; it is kept only so `newsflow migrate` can find the ids it gave.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import re
import string
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import idna

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
# The rule that turns a URL into its id. Bump it whenever `normalize_url` may map a URL elsewhere:
# stored ids must then be re-keyed (`newsflow migrate`, newsflow/migrate.py).
ID_VERSION = 2

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# What a path may hold literally (RFC 3986 pchar and "/"); the query may hold "?" too. Everything
# else is percent-encoded, as urllib3 does on the wire, so the request is exactly the normalised URL.
_PATH_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_HEXDIGITS = frozenset(string.hexdigits)
# An ASCII host as sent: letters, digits, "-", "_" (real hostnames have it) and dots.
_ASCII_HOST = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")


class InvalidURL(ValueError):
    """The string is not an absolute http(s) URL."""


def _is_tracking(name: str) -> bool:
    low = name.lower()
    return low in TRACKING_PARAMS or low.startswith(TRACKING_PREFIXES)


def normalize_url(url: str) -> str:
    """The canonical form of an http(s) URL: what its id is made of and what the fetcher requests.

    InvalidURL when it is not an absolute http(s) URL, has user info, control characters, a bad
    port or a host name that cannot be sent (UTS 46 refuses it). The rules: the module docstring.
    """
    raw = url.strip()
    if any(ord(c) < 0x20 or c == "\x7f" for c in raw):
        raise InvalidURL(f"URL contains control characters: {raw[:200]!r}")
    try:
        parts = urlsplit(raw)
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise InvalidURL(f"{exc}: {raw[:200]!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.netloc:
        raise InvalidURL(f"not an absolute http(s) URL: {raw[:200]!r}")
    if "@" in parts.netloc:
        raise InvalidURL(f"URLs with credentials (user info) are not fetched: {raw[:200]!r}")
    host = wire_host(_raw_host(parts.netloc))
    try:
        port = parts.port
    except ValueError:
        raise InvalidURL(f"bad port in URL: {raw[:200]!r}") from None
    shown = f"[{host}]" if ":" in host else host
    netloc = shown if port in (None, DEFAULT_PORTS[scheme]) else f"{shown}:{port}"
    path = remove_dot_segments(_escapes(parts.path, _PATH_SAFE)) or "/"
    return urlunsplit((scheme, netloc, path, _query(parts.query), ""))


def _raw_host(netloc: str) -> str:
    """The host of a netloc without user info, as written (case kept: UTS 46 maps it)."""
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1] if "]" in netloc else netloc
    return netloc.partition(":")[0]


def wire_host(host: str) -> str:
    """A host as the fetcher sends it: lower case, no trailing dot, IDN labels as punycode by UTS 46
    (non-transitional), IPv6 compressed and without brackets. InvalidURL when it cannot be sent."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        try:
            return ipaddress.IPv6Address(h[1:-1]).compressed
        except ValueError:
            raise InvalidURL(f"bad IPv6 address {h[:100]!r}") from None
    if "%" in h:  # percent-escapes in a host name are its characters (as browsers read it)
        h = unquote(h)
    h = h.rstrip(".")
    if not h.isascii():
        try:
            h = idna.encode(h, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise InvalidURL(f"host {h[:100]!r} is not a valid internationalised domain name (UTS 46: {exc})") from None
    h = h.lower()
    if not _ASCII_HOST.match(h):
        raise InvalidURL(f"host {h[:100]!r} is not a valid host name")
    problem = _host_name_problem(h)
    if problem:
        raise InvalidURL(f"host {h[:100]!r} is not a valid host name: {problem}")
    return h


# DNS limits (RFC 1035 2.3.4): what urllib3 refuses at request time (LocationParseError, an internal
# error then) and no resolver answers for, so refused at submit as `bad_url`.
MAX_HOST_CHARS = 253
MAX_LABEL_CHARS = 63


def _host_name_problem(host: str) -> str:
    """What makes an ASCII host name (IDN labels already punycode) unsendable, or ""."""
    for label in host.split("."):
        if len(label) > MAX_LABEL_CHARS:
            return f"a label of {len(label)} characters, more than {MAX_LABEL_CHARS}"
        if label.startswith("-") or label.endswith("-"):  # `-a`, and `xn--` with nothing encoded
            return f"the label {label[:20]!r} starts or ends with '-'"
    if len(host) > MAX_HOST_CHARS:
        return f"{len(host)} characters, more than {MAX_HOST_CHARS}"
    return ""


def _escapes(text: str, safe: frozenset[str]) -> str:
    """Percent-escapes normalised: hex upper case, unreserved characters decoded, everything else
    kept encoded; characters outside `safe` (and a `%` that starts no escape) encoded as UTF-8."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "%":
            pair = text[i + 1 : i + 3]
            if len(pair) == 2 and pair[0] in _HEXDIGITS and pair[1] in _HEXDIGITS:
                ch = chr(int(pair, 16))
                out.append(ch if ch in _UNRESERVED else "%" + pair.upper())
                i += 3
                continue
            out.append("%25")
        elif c in safe:
            out.append(c)
        else:
            try:
                data = c.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError:
                raise InvalidURL(f"URL holds an unencodable character {c!r}") from None
            out.append("".join(f"%{b:02X}" for b in data))
        i += 1
    return "".join(out)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: `/a/./b/../c` -> `/a/c` (what urllib3 sends for it anyway)."""
    if "." not in path:
        return path
    rest, out = path, list[str]()
    while rest:
        if rest.startswith("../"):
            rest = rest[3:]
        elif rest.startswith("./"):
            rest = rest[2:]
        elif rest.startswith("/./") or rest == "/.":
            rest = "/" + rest[3:]
        elif rest.startswith("/../") or rest == "/..":
            rest = "/" + rest[4:]
            if out:
                out.pop()
        elif rest in (".", ".."):
            rest = ""
        else:
            cut = rest.find("/", 1)
            seg, rest = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
            out.append(seg)
    return "".join(out)


def _query(query: str) -> str:
    """Tracking parameters and empty pieces out, escapes normalised, stably sorted by name."""
    items: list[tuple[str, str]] = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, eq, value = piece.partition("=")
        name = _escapes(name, _QUERY_SAFE)
        if _is_tracking(unquote(name)):
            continue
        items.append((name, f"{name}={_escapes(value, _QUERY_SAFE)}" if eq else name))
    items.sort(key=lambda item: item[0])  # stable: a repeated name keeps its values' order
    return "&".join(text for _name, text in items)


def normalize_url_v1(url: str) -> str:
    """The id normalisation of version 1, for `newsflow migrate` only: never use it for a new id.

    IDNA 2003 hosts (`faß.de` became `fass.de`), every escape decoded (`%2F` became `/`) and the
    query sorted by name and value (`a=2&a=1` became `a=1&a=2`).

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
    """Stable id of the article requested at `url` (hex, 128 bits of SHA-256), by `ID_VERSION`."""
    return hashlib.sha256(normalize_url(url).encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def article_id_v1(url: str) -> str:
    """The id version 1 gave `url` (`newsflow migrate` only)."""
    return hashlib.sha256(normalize_url_v1(url).encode("utf-8")).hexdigest()[:ID_HEX_CHARS]


def looks_like_article_id(value: str) -> bool:
    return len(value) == ID_HEX_CHARS and all(c in "0123456789abcdef" for c in value)


def given_article_id(value: str) -> str | None:
    """The article id a person typed or pasted (`show`, `trace`, the API), in the lower case ids are
    kept in; None when `value` is no id (then it may be a URL)."""
    lowered = value.strip().lower()
    return lowered if looks_like_article_id(lowered) else None
