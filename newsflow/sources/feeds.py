"""RSS 2.0 (and 1.0), Atom and JSON Feed: the item links, with title/date/language as hints."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin
from xml.etree.ElementTree import Element

from newsflow.sources.dates import iso_and_ts
from newsflow.sources.model import Discovered, SourceError
from newsflow.sources.safexml import child, children, local_name, maybe_gunzip, parse_xml, text_of

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def parse_feed(data: bytes, base_url: str, max_bytes: int, max_items: int = 100_000) -> list[Discovered]:
    """Any of the three feed formats; the format is told by the content, not the content type."""
    data = maybe_gunzip(data, max_bytes)
    if data.lstrip()[:1] == b"{":
        return parse_json_feed(data, base_url, max_items)
    root = parse_xml(data, max_bytes, "feed")
    kind = local_name(root.tag)
    if kind == "rss":
        channel = child(root, "channel")
        if channel is None:
            raise SourceError("bad_feed", "RSS without a <channel>")
        return _rss_items(children(channel, "item"), base_url, text_of(child(channel, "language")), max_items)
    if kind == "rdf":  # RSS 1.0: items are siblings of the channel
        return _rss_items(children(root, "item"), base_url, "", max_items)
    if kind == "feed":
        return _atom_entries(root, base_url, max_items)
    if kind in ("urlset", "sitemapindex"):
        raise SourceError("bad_feed", f'this is a sitemap (<{kind}>): declare the source with kind = "sitemap"')
    raise SourceError("bad_feed", f"not a feed: the root element is <{kind}>")


def _hints(title: str, date: str | None, language: str) -> tuple[dict[str, Any], float | None]:
    iso, ts = iso_and_ts(date)
    hints: dict[str, Any] = {}
    if title:
        hints["title"] = title[:500]
    if iso:
        hints["published"] = iso
    if language:
        hints["language"] = language[:16]
    return hints, ts


def _check_count(n: int, max_items: int) -> None:
    if n > max_items:
        raise SourceError("too_many_entries", f"the feed lists {n} items (limit {max_items})")


def _rss_items(items: list[Element], base_url: str, language: str, max_items: int) -> list[Discovered]:
    _check_count(len(items), max_items)
    out: list[Discovered] = []
    for item in items:
        link = text_of(child(item, "link"))
        if not link:
            guid = child(item, "guid")
            if guid is not None and guid.get("isPermaLink", "true").lower() != "false":
                link = text_of(guid)
        if not link:
            continue
        date = text_of(child(item, "pubdate")) or text_of(child(item, "date")) or None  # dc:date
        hints, ts = _hints(text_of(child(item, "title")), date, language)
        out.append(Discovered(urljoin(base_url, link), hints, ts))
    return out


def _atom_link(entry: Element) -> str:
    fallback = ""
    for link in children(entry, "link"):
        rel = (link.get("rel") or "alternate").lower()
        href = link.get("href") or ""
        if rel == "alternate" and href:
            if (link.get("type") or "text/html").lower() in ("text/html", "application/xhtml+xml"):
                return href
            fallback = fallback or href
    return fallback


def _atom_entries(root: Element, base_url: str, max_items: int) -> list[Discovered]:
    entries = children(root, "entry")
    _check_count(len(entries), max_items)
    feed_lang = root.get(XML_LANG) or ""
    out: list[Discovered] = []
    for entry in entries:
        href = _atom_link(entry)
        if not href:
            continue
        date = text_of(child(entry, "published")) or text_of(child(entry, "updated")) or None
        hints, ts = _hints(text_of(child(entry, "title")), date, entry.get(XML_LANG) or feed_lang)
        updated = iso_and_ts(text_of(child(entry, "updated")) or None)[1]
        out.append(Discovered(urljoin(base_url, href), hints, updated or ts))
    return out


def parse_json_feed(data: bytes, base_url: str, max_items: int) -> list[Discovered]:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org/version/1.1)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise SourceError("bad_feed", f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise SourceError("bad_feed", "JSON without a JSON Feed `version`")
    items = doc.get("items")
    if not isinstance(items, list):
        raise SourceError("bad_feed", "JSON Feed without an `items` list")
    _check_count(len(items), max_items)
    language = str(doc.get("language") or "")
    out: list[Discovered] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        url = item.get("url") or item.get("external_url")
        if not isinstance(url, str) or not url:
            continue
        date = item.get("date_published") or item.get("date_modified")
        hints, ts = _hints(
            str(item.get("title") or ""), str(date) if date else None, str(item.get("language") or language)
        )
        modified = iso_and_ts(str(item["date_modified"]))[1] if item.get("date_modified") else None
        out.append(Discovered(urljoin(base_url, url), hints, modified or ts))
    return out
