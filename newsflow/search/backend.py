"""The search index's interface: `IndexBackend`, its request and result types, and its errors.

`open_index` (newsflow.search) gives the implementation (tantivy's, in engine.py); nothing outside
newsflow.search needs to know which it is. `SearchRequest` is the one typed request: the CLI
(`newsflow search`) and the HTTP API (`GET /search`) name their parameters alike — q, limit, page,
sort, since, until, site, lang, entity, cluster, facets, expand_clusters — and both build it with
`SearchRequest.from_params`, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SORTS = ("relevance", "date", "date_asc")
MAX_LIMIT = 1000  # hits per page at most (the API narrows it: setting api_max_limit)
MAX_PAGE = 10_000  # the API narrows it too
_TRUE = ("1", "true", "yes", "on")


class SchemaMismatch(RuntimeError):
    """The index on disk was built by another schema version: it must be rebuilt."""


class IndexUnavailable(ValueError):
    """Another process holds the index's writer lock, or the index cannot be written (I/O).
    A ValueError, as the tantivy errors it stands for."""


class NoIndex(LookupError):
    """No index exists at the path (yet): nothing has been indexed."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no index at {path}")
        self.path = path


class ParamError(ValueError):
    """A search parameter has a value it cannot take; the message names it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass
class SearchRequest:
    query: str = ""
    limit: int = 10
    page: int = 1
    sort: str = "relevance"
    since: str | None = None
    until: str | None = None
    site: Sequence[str] = ()
    language: Sequence[str] = ()
    entity: Sequence[str] = ()
    cluster: str | None = None  # only this story's articles (the "+N similar" expander)
    facets: bool = False
    collapse: bool = True

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], max_limit: int = MAX_LIMIT, max_page: int = MAX_PAGE
    ) -> SearchRequest:
        """The request for user-facing parameters; ParamError for a value out of bounds.

        Each value is a string (or int/bool, as a CLI parser gives them), a sequence of them (a
        repeated query parameter: a single-valued one takes the last), or None/absent for the default.
        """

        def one(name: str, default: str = "") -> str:
            value = params.get(name)
            if isinstance(value, list | tuple):
                value = value[-1] if value else None
            return default if value is None else str(value)

        def many(name: str) -> list[str]:
            value = params.get(name)
            values = [value] if isinstance(value, str) else list(value or ())
            return [str(v) for v in values if v]

        def integer(name: str, default: int, hi: int) -> int:
            raw = one(name, str(default))
            try:
                value = int(raw)
            except ValueError:
                raise ParamError(name, f"{name} must be an integer, got {raw!r}") from None
            if not 1 <= value <= hi:
                raise ParamError(name, f"{name} must be between 1 and {hi}, got {value}")
            return value

        sort = one("sort", "relevance")
        if sort not in SORTS:
            raise ParamError("sort", f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
        cluster = one("cluster") or None
        return cls(
            query=one("q"),
            limit=integer("limit", 10, max_limit),
            page=integer("page", 1, max_page),
            sort=sort,
            since=one("since") or None,
            until=one("until") or None,
            site=many("site"),
            language=many("lang"),
            entity=many("entity"),
            cluster=cluster,
            facets=one("facets", "0").lower() in _TRUE,
            collapse=not (one("expand_clusters", "0").lower() in _TRUE or cluster),
        )


@dataclass(frozen=True)
class Hit:
    doc: dict[str, Any]
    score: float | None
    snippet: str
    snippet_html: str = ""
    title_html: str = ""
    similar: int = 0  # other matching articles of the same story, collapsed under this one


@dataclass(frozen=True)
class SearchResult:
    total: int  # matching articles
    hits: list[Hit]
    stories: int | None = None  # matching stories (distinct clusters, approximate); only with facets
    facets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    page: int = 1
    limit: int = 10
    took_ms: float = 0.0


DEFAULT_HEAP_BYTES = 128 * 1024 * 1024


class IndexBackend(Protocol):
    """What the pipeline, the CLI and the API do with the index. One process writes at a time
    (IndexUnavailable for the others); readers see the last commit."""

    def upsert_batch(
        self,
        docs: Iterable[Mapping[str, Any]],
        heap_bytes: int = DEFAULT_HEAP_BYTES,
        delete_ids: Iterable[str] = (),
        rejected: dict[str, str] | None = None,
    ) -> int:
        """Replace-or-add each document by id and drop `delete_ids`, in one commit; the number written."""
        ...

    def delete(self, article_ids: Iterable[str]) -> None: ...

    def get(self, id_or_url: str) -> dict[str, Any] | None:
        """One document by article id, or by its requested, final or canonical URL."""
        ...

    def search(self, req: SearchRequest) -> SearchResult: ...

    def ids_matching(self, query_text: str, site: str | None = None) -> list[str]:
        """Ids of every article the query (and site) selects."""
        ...

    def num_docs(self) -> int: ...

    def close(self) -> None:
        """Release the writer, if this process opened one."""
        ...
