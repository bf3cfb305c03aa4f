"""Extraction sequence: trafilatura for the body and metadata, then light cleanup.

Each field records the method that produced it in `provenance`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import trafilatura


@dataclass
class Article:
    body: str
    title: str | None = None
    author: str | None = None
    published: str | None = None
    site_name: str | None = None
    language: str | None = None
    canonical_url: str | None = None
    description: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_WS = re.compile(r"[ \t\u00a0]+")


def _tidy(text: str) -> str:
    lines = [_WS.sub(" ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def _drop_leading_title(body: str, title: str | None) -> str:
    """trafilatura often repeats the headline as the body's first line."""
    if not title:
        return body
    first, _, rest = body.partition("\n")
    return rest if first.strip() == title.strip() else body


def extract_article(html: str, url: str | None = None, hints: Mapping[str, Any] | None = None) -> Article:
    """Extract the main text and metadata of one page. Returns an empty body when none is found."""
    doc = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, include_comments=False, include_tables=True, deduplicate=False
    )
    if doc is None:
        return Article(body="", provenance={"body": "none"})
    meta = doc.as_dict()
    title = meta.get("title") or (hints or {}).get("title")
    body = _drop_leading_title(_tidy(meta.get("text") or ""), title)
    prov = {name: "trafilatura" for name in ("body", "title", "author", "published", "site_name", "description") }
    published = meta.get("date") or (hints or {}).get("published")
    return Article(
        body=body,
        title=title,
        author=meta.get("author"),
        published=published,
        site_name=meta.get("sitename"),
        language=meta.get("language"),
        canonical_url=meta.get("url"),
        description=meta.get("description"),
        provenance=prov,
    )
