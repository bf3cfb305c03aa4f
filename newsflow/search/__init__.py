"""Search: the tantivy index behind one small interface, its query language and tombstones."""

from newsflow.search.engine import Hit, SchemaMismatch, SearchIndex, SearchRequest, SearchResult, iter_sources
from newsflow.search.query import QueryError
from newsflow.search.schema import SCHEMA_VERSION

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
