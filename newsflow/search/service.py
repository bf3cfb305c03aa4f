"""Search results as JSON-ready dicts: one shape for the CLI's --json and the HTTP API."""

from __future__ import annotations

from typing import Any

from newsflow.search.backend import Hit, SearchRequest, SearchResult
from newsflow.search.schema import site_of

HIT_FIELDS = ("id", "url", "title", "published", "site_name", "language")


def hit_dict(hit: Hit) -> dict[str, Any]:
    doc = hit.doc
    out: dict[str, Any] = {name: doc.get(name) for name in HIT_FIELDS}
    out["score"] = None if hit.score is None else round(hit.score, 4)
    out["snippet"] = hit.snippet
    out["snippet_html"] = hit.snippet_html
    out["title_html"] = hit.title_html
    out["site"] = site_of(doc)
    out["author"] = doc.get("author")
    out["cluster_id"] = doc.get("cluster_id") or doc.get("id")
    out["similar"] = hit.similar
    out["updated"] = bool(doc.get("updated"))
    out["revision_count"] = int(doc.get("revision_count") or 1)
    return out


def result_dict(req: SearchRequest, result: SearchResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "total": result.total,
        "hits": [hit_dict(h) for h in result.hits],
        "page": result.page,
        "limit": result.limit,
        "sort": req.sort,
        "collapsed": req.collapse,
        "stories": result.stories,
        "took_ms": result.took_ms,
    }
    if req.facets:
        out["facets"] = result.facets
    return out
