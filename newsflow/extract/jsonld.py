"""Schema.org JSON-LD: the most explicit metadata a page declares about its article."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
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

# Bounds on the work one page's JSON-LD may cost. JSON-LD is metadata, never needed to index a
# page: a block beyond a bound is skipped (as if absent), the page goes on with its other metadata.
# A block longer than this is not parsed: real ones are a few kB (a live blog's, some 100 kB);
# parsing megabytes of it would cost seconds and memory for nothing we read.
MAX_BLOCK_CHARS = 1_000_000
# Real JSON-LD nests a handful of levels (article > author > image). Deeper blocks are refused
# before parsing: CPython's json raises RecursionError near 1,000 levels, and the walkers below
# recurse too. Checked by a linear scan of the brackets outside strings.
MAX_DEPTH = 64
# At most this many objects are kept from one page, all blocks together (`@graph` lists of
# thousands of products or breadcrumbs carry nothing about the article).
MAX_OBJECTS = 5_000
# At most this many ld+json scripts of a page are read.
MAX_BLOCKS = 100

# A JSON string (to skip: brackets inside it do not nest) or one bracket. The closing quote is
# optional and the quantifiers possessive, so an unterminated string ends at the end of the text in
# one pass instead of failing and being tried again from every later quote (quadratic: a 200 kB
# block of escaped quotes held a worker for its whole time limit).
_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+"?|[\[\]{}]', re.DOTALL)


def _objects(value: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every dict in a JSON-LD value, following lists and @graph (at most MAX_DEPTH levels down).

    Parsed JSON is a tree: `@id` references are not followed, so a "cycle" of them is just text.
    """
    if depth > MAX_DEPTH:
        return
    if isinstance(value, list):
        for item in value:
            yield from _objects(item, depth + 1)
    elif isinstance(value, dict):
        yield value
        yield from _objects(value.get("@graph"), depth + 1)


def nesting_within(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays and objects at most `limit` deep (brackets inside strings
    do not count). Linear, no recursion: it runs before `json.loads` could overflow the stack."""
    depth = 0
    for m in _TOKENS.finditer(text):
        c = text[m.start()]
        if c in "[{":
            depth += 1
            if depth > limit:
                return False
        elif c != '"':
            depth -= 1
    return True


def _finite(text: str) -> float | None:
    """JSON numbers beyond a float (1e999) become None, as NaN and Infinity do."""
    value = float(text)
    return value if math.isfinite(value) else None


def parse_block(text: str) -> Any:
    """One ld+json script's value, or None when it is too big, too deep or not JSON."""
    if not text or len(text) > MAX_BLOCK_CHARS or not nesting_within(text):
        return None
    try:
        # strict=False: pages often put raw newlines inside strings.
        return json.loads(text, strict=False, parse_constant=lambda _: None, parse_float=_finite)
    except (ValueError, RecursionError):
        return None


def _types(obj: dict[str, Any]) -> set[str]:
    raw = obj.get("@type")
    items = raw if isinstance(raw, list) else [raw]
    return {str(t).rsplit("/", 1)[-1].lower() for t in items if t}


def load_objects(tree: HtmlElement) -> list[dict[str, Any]]:
    return objects_of_scripts(tree.iter("script"))


def objects_of_scripts(scripts: Iterable[HtmlElement]) -> list[dict[str, Any]]:
    """`load_objects` given the page's <script> elements in document order (a caller that walks the tree
    for other elements too passes them, and the tree is not walked again for these)."""
    objects: list[dict[str, Any]] = []
    blocks = 0
    for script in scripts:
        if "ld+json" not in str(script.get("type") or "").lower():
            continue
        blocks += 1
        if blocks > MAX_BLOCKS or len(objects) >= MAX_OBJECTS:
            break
        data = parse_block(script.text or "")
        for obj in _objects(data):
            objects.append(obj)
            if len(objects) >= MAX_OBJECTS:
                break
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


def resolve(value: Any, objects: list[dict[str, Any]]) -> Any:
    """Replace bare {"@id": ...} references by the object of the graph with that @id (Yoast and similar
    plugins write the author as a reference to a Person node)."""
    if isinstance(value, list):
        return [resolve(item, objects) for item in value]
    if isinstance(value, dict) and "name" not in value and isinstance(value.get("@id"), str):
        for obj in objects:
            if obj.get("@id") == value["@id"] and obj is not value:
                return obj
    return value


def text_value(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list) and value:
        return text_value(value[0])
    if isinstance(value, dict):
        return text_value(value.get("@id") or value.get("url") or value.get("name"))
    return None
