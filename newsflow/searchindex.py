"""Compatibility module: the search index now lives in the `newsflow.search` package."""

from newsflow.search import (
    SCHEMA_VERSION,
    Hit,
    QueryError,
    SchemaMismatch,
    SearchIndex,
    SearchRequest,
    SearchResult,
    iter_sources,
)

__all__ = [
    "SCHEMA_VERSION",
    "Hit",
    "QueryError",
    "SchemaMismatch",
    "SearchIndex",
    "SearchRequest",
    "SearchResult",
    "iter_sources",
]
