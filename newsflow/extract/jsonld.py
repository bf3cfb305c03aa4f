"""Schema.org JSON-LD: the most explicit metadata a page declares about its article."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from lxml.html import HtmlElement

_ARTICLE_TYPES = {
    "article",
    "newsarticle",
    "reportagenewsarticle",
    "analysisnewsarticle",
    "opinionnewsarticle",
    "backgroundnewsarticle",
    "reviewnewsarticle",
    "blogposting",
    "socialmediaposting",
    "liveblogposting",
    "techarticle",
    "scholarlyarticle",
    "report",
    "posting",
}


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a JSON-LD value, following lists and @graph."""
    if isinstance(value, list):
        for item in value:
            yield from _objects(item)
    elif isinstance(value, dict):
        yield value
        yield from _objects(value.get("@graph"))


def _types(obj: dict[str, Any]) -> set[str]:
    raw = obj.get("@type")
    items = raw if isinstance(raw, list) else [raw]
    return {str(t).rsplit("/", 1)[-1].lower() for t in items if t}


def load_objects(tree: HtmlElement) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for script in tree.iter("script"):
        if "ld+json" not in (script.get("type") or "").lower():
            continue
        try:
            # strict=False: pages often put raw newlines inside strings.
            data = json.loads(script.text or "", strict=False)
        except ValueError:
            continue
        objects.extend(_objects(data))
    return objects


def article_object(objects: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first object typed as an article (NewsArticle, BlogPosting...), if any."""
    for obj in objects:
        if _types(obj) & _ARTICLE_TYPES:
            return obj
    return None


def organization_name(objects: list[dict[str, Any]]) -> str | None:
    for obj in objects:
        if _types(obj) & {"organization", "newsmediaorganization", "website"}:
            name = obj.get("name")
            if isinstance(name, str) and name.strip():
                return name.strip()
    return None


def names(value: Any) -> list[str]:
    """Names from a schema.org person/organization value (string, object, or list of either)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        name = value.get("name")
        return names(name) if name else []
    if isinstance(value, list):
        return [n for item in value for n in names(item)]
    return []


def text_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list) and value:
        return text_value(value[0])
    if isinstance(value, dict):
        return text_value(value.get("@id") or value.get("url") or value.get("name"))
    return None
