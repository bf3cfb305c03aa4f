"""Sitemaps: index files, urlsets (plain or gzip), and Google News entries.

https://www.sitemaps.org/protocol.html and the Google News sitemap extension
(`<news:news><news:publication><news:language/></news:publication><news:publication_date/>
<news:title/></news:news>`). Namespaces are matched by local name: sites get them wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin
from xml.etree.ElementTree import Element

from newsflow.sources.dates import iso_and_ts
from newsflow.sources.model import Discovered, SourceError
from newsflow.sources.safexml import child, children, local_name, parse_xml, text_of


@dataclass(frozen=True)
class Sitemap:
    """A parsed sitemap: either child sitemaps (an index) or page entries (a urlset)."""

    children: list[tuple[str, float | None]]
    entries: list[Discovered]

    @property
    def is_index(self) -> bool:
        return bool(self.children)


def parse_sitemap(data: bytes, base_url: str, max_bytes: int, max_entries: int) -> Sitemap:
    root = parse_xml(data, max_bytes, "sitemap")
    kind = local_name(root.tag)
    if kind == "sitemapindex":
        maps = children(root, "sitemap")
        _check_count(len(maps), max_entries)
        found = []
        for m in maps:
            loc = text_of(child(m, "loc"))
            if loc:
                found.append((urljoin(base_url, loc), iso_and_ts(text_of(child(m, "lastmod")) or None)[1]))
        return Sitemap(found, [])
    if kind == "urlset":
        urls = children(root, "url")
        _check_count(len(urls), max_entries)
        return Sitemap([], [e for e in (_entry(u, base_url) for u in urls) if e is not None])
    if kind in ("rss", "feed", "rdf"):
        raise SourceError("bad_sitemap", f'this is a feed (<{kind}>): declare the source with kind = "feed"')
    raise SourceError("bad_sitemap", f"not a sitemap: the root element is <{kind}>")


def _check_count(n: int, max_entries: int) -> None:
    if n > max_entries:
        raise SourceError("too_many_entries", f"the sitemap lists {n} entries (limit {max_entries})")


def _entry(url_el: Element, base_url: str) -> Discovered | None:
    loc = text_of(child(url_el, "loc"))
    if not loc:
        return None
    hints: dict[str, str] = {}
    lastmod = iso_and_ts(text_of(child(url_el, "lastmod")) or None)[1]
    news = child(url_el, "news")
    if news is not None:
        title = text_of(child(news, "title"))
        if title:
            hints["title"] = title[:500]
        iso, ts = iso_and_ts(text_of(child(news, "publication_date")) or None)
        if iso:
            hints["published"] = iso
            lastmod = max(lastmod or 0.0, ts or 0.0) or None
        publication = child(news, "publication")
        language = text_of(child(publication, "language")) if publication is not None else ""
        if language:
            hints["language"] = language[:16]
    return Discovered(urljoin(base_url, loc), hints, lastmod)
