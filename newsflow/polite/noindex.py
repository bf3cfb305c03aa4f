"""noindex: `<meta name="robots" content="noindex">` (or our bot's name) and `X-Robots-Tag`."""

from __future__ import annotations

import re
from collections.abc import Iterable

_META = re.compile(r"<meta\b[^<>]*>", re.I)  # [^<>]: an unclosed tag ends at the next one (linear)
_ATTR = re.compile(r"""([a-zA-Z_:-]+)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""")
_HEAD_END = re.compile(r"</head\s*>|<body\b", re.I)
_BLOCKING = frozenset({"noindex", "none"})
HEAD_SCAN_CHARS = 200_000


def _directives(value: str) -> set[str]:
    return {d.strip().lower() for d in value.split(",") if d.strip()}


def meta_noindex(html: str, bot: str) -> bool:
    """True if a robots meta tag for every bot or for `bot` says noindex/none."""
    head = html[:HEAD_SCAN_CHARS]
    end = _HEAD_END.search(head)
    if end:
        head = head[: end.start()]
    names = ("robots", bot.lower())
    for tag in _META.findall(head):
        low = tag.lower()
        if not any(name in low for name in names):
            continue  # a page's dozens of other meta tags: not worth parsing (this runs on every fetch)
        attrs = {k.lower(): v.strip("\"'") for k, v in _ATTR.findall(tag)}
        if attrs.get("name", "").lower() in ("robots", bot) and _directives(attrs.get("content", "")) & _BLOCKING:
            return True
    return False


def header_noindex(values: Iterable[str], bot: str) -> bool:
    """X-Robots-Tag: `noindex`, `none`, or `<bot>: noindex` (other bots' lines do not apply to us)."""
    for value in values:
        for part in value.split(","):
            token = part.strip().lower()
            if ":" in token:
                # `otherbot: noindex` is for another bot; `unavailable_after: <date>` is not a noindex.
                agent, _, rest = token.partition(":")
                if agent.strip() != bot:
                    continue
                token = rest.strip()
            if token in _BLOCKING:
                return True
    return False
