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

from config.settings import FALSE_WORDS, TRUE_WORDS

SORTS = ("relevance", "date", "date_asc", "updated")
MAX_LIMIT = 1000  # hits per page at most (the API narrows it: setting api_max_limit)
MAX_PAGE = 1000  # the deepest page, for the HTTP API and `newsflow search` alike


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


@dataclass(frozen=True)
class Param:
    """One user-facing search parameter: the API's query parameter and the CLI's option of that name.

    `kind` is str, int (1..the caller's bound), enum (one of `choices`), list (repeatable) or bool.
    The API's OpenAPI document is generated from SEARCH_PARAMS; `from_params` reads exactly these."""

    name: str
    kind: str
    description: str
    choices: tuple[str, ...] = ()
    default: str | int | bool | None = None


SEARCH_PARAMS: tuple[Param, ...] = (
    Param("q", "str", "the query (see the query language); empty lists everything the filters select", default=""),
    Param("limit", "int", "hits per page", default=10),
    Param("page", "int", "1-based page", default=1),
    Param("sort", "enum", "relevance, date (newest first), date_asc, updated (last revised first)", SORTS, "relevance"),
    Param("since", "str", "published on/after: YYYY, YYYY-MM, YYYY-MM-DD or ISO time"),
    Param("until", "str", "published on/before (whole day/month included)"),
    Param("site", "list", "only these sites"),
    Param("lang", "list", "only these languages (ISO 639-1)"),
    Param("entity", "list", "only articles naming these entities"),
    Param("cluster", "str", "only this story's articles (expands '+N similar')"),
    Param("updated", "bool", "only articles revised after they were first indexed", default=False),
    Param("facets", "bool", "include facet counts", default=False),
    Param("expand_clusters", "bool", "do not collapse near-duplicates", default=False),
)
MAX_VALUE_CHARS = 2000  # any one parameter value (the query's own limits are newsflow.search.query's)
MAX_VALUES = 64  # values of one repeatable parameter (site=a&site=b...)


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
    updated: bool = False  # only articles with revisions
    facets: bool = False
    collapse: bool = True

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], max_limit: int = MAX_LIMIT, max_page: int = MAX_PAGE
    ) -> SearchRequest:
        """The request for user-facing parameters (SEARCH_PARAMS); ParamError for a value out of bounds.

        Each value is a string (or int/bool, as a CLI parser gives them), a sequence of them (a
        repeated query parameter: a single-valued one takes the last), or None/absent for the default.
        """
        bounds = {"limit": max_limit, "page": max_page}
        v = {p.name: _value(p, params.get(p.name), bounds.get(p.name, 1)) for p in SEARCH_PARAMS}
        cluster = v["cluster"] or None
        return cls(
            query=v["q"],
            limit=v["limit"],
            page=v["page"],
            sort=v["sort"],
            since=v["since"] or None,
            until=v["until"] or None,
            site=v["site"],
            language=v["lang"],
            entity=v["entity"],
            cluster=cluster,
            updated=v["updated"],
            facets=v["facets"],
            collapse=not (v["expand_clusters"] or cluster),
        )


def _text(name: str, value: Any) -> str:
    text = str(value)
    if name == "q":  # the query parser checks it (length, undecodable bytes) and names the column
        return text
    if len(text) > MAX_VALUE_CHARS:
        raise ParamError(name, f"{name} is too long: at most {MAX_VALUE_CHARS} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParamError(name, f"{name} is not valid text (an undecodable byte)") from None
    return text


def _value(p: Param, value: Any, hi: int) -> Any:
    """One parameter's value, checked and converted by its kind."""
    if p.kind == "list":
        values = [value] if isinstance(value, str) else list(value or ())
        values = [v for v in values if v]
        if len(values) > MAX_VALUES:
            raise ParamError(p.name, f"{p.name} is repeated too often: at most {MAX_VALUES} values")
        return [_text(p.name, v) for v in values]
    if isinstance(value, list | tuple):
        for each in value[:-1]:  # a repeated choice: every value is checked, the last is taken
            _checked_choice(p, _text(p.name, each))
        value = value[-1] if value else None
    default = "" if p.default is None else str(p.default)
    raw = default if value is None else _text(p.name, value)
    if p.kind == "int":
        try:
            number = int(raw)
        except ValueError:
            raise ParamError(p.name, f"{p.name} must be an integer, got {raw[:40]!r}") from None
        if not 1 <= number <= hi:
            raise ParamError(p.name, f"{p.name} must be between 1 and {hi}, got {number}")
        return number
    _checked_choice(p, raw)
    if p.kind == "bool":
        return raw.lower() in TRUE_WORDS
    return raw


def _checked_choice(p: Param, raw: str) -> None:
    """ParamError unless `raw` is a value the bool or enum parameter `p` takes (other kinds pass).
    A bool is spelled as a setting is (any case; empty is the default): anything else, a typo like
    `facets=ture` or `updated=maybe`, would quietly mean "no", so it is refused, as the query's
    `updated:` refuses it."""
    if p.kind == "bool" and raw.lower() not in (*TRUE_WORDS, *FALSE_WORDS):
        raise ParamError(p.name, f"{p.name} must be true or false (or 1/0, yes/no, on/off), got {raw[:40]!r}")
    if p.kind == "enum" and raw not in p.choices:
        raise ParamError(p.name, f"{p.name} must be one of {', '.join(p.choices)}, got {raw[:40]!r}")


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

    def urls_matching(self, query_text: str, site: str | None = None) -> list[tuple[str, str]]:
        """(id, URL) of every article the query (and site) selects."""
        ...

    def num_docs(self) -> int: ...

    def close(self) -> None:
        """Release the writer, if this process opened one."""
        ...
