"""Search: the tantivy index behind one small interface (`IndexBackend`, from `open_index`), its
query language and tombstones. Nothing outside this package touches tantivy.

The interface (backend.py: request, result, errors, SORTS) loads at once; the engine and tantivy
load on first use of a name that needs them, so `newsflow --help` does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from newsflow.search.backend import (
    SORTS,
    Hit,
    IndexBackend,
    IndexUnavailable,
    NoIndex,
    ParamError,
    SchemaMismatch,
    SearchRequest,
    SearchResult,
)

if TYPE_CHECKING:
    from newsflow.search.engine import SearchIndex, iter_sources, open_index, writer_lock
    from newsflow.search.query import QueryError
    from newsflow.search.schema import SCHEMA_VERSION

_LAZY = {
    "SearchIndex": "engine", "iter_sources": "engine", "open_index": "engine", "writer_lock": "engine",
    "QueryError": "query", "SCHEMA_VERSION": "schema",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"newsflow.search.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "SORTS",
    "Hit",
    "IndexBackend",
    "IndexUnavailable",
    "NoIndex",
    "ParamError",
    "QueryError",
    "SchemaMismatch",
    "SearchIndex",
    "SearchRequest",
    "SearchResult",
    "iter_sources",
    "open_index",
    "writer_lock",
]
