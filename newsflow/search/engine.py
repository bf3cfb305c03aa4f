"""SearchIndex: upsert a batch, delete, search with filters/facets/collapsing, get one document.

Tantivy allows one writer per index, so only the index stage's single consumer (or an offline
admin command holding the lock) writes; readers (CLI, API) open the directory at any time and see
the last commit. `source` holds each article's whole JSON: the index can be rebuilt from itself.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tantivy

from newsflow.revisions import revise
from newsflow.search import schema as S
from newsflow.search.backend import (
    DEFAULT_HEAP_BYTES,
    SORTS,
    Hit,
    IndexBackend,
    IndexUnavailable,
    NoIndex,
    SchemaMismatch,
    SearchRequest,
    SearchResult,
)
from newsflow.search.query import (
    EXACT_FIELDS,
    PLAIN_FIELDS,
    TEXT_ALIASES,
    Bool,
    DateRange,
    Node,
    Not,
    QueryError,
    Text,
    parse,
)
from newsflow.urls import ID_VERSION, InvalidURL, given_article_id, normalize_url

if TYPE_CHECKING:
    from config.defaults import Settings

FIELD_BOOSTS = {"title": 2.5, "description": 1.5, "body": 1.0}
SNIPPET_MAX_CHARS = 240
TITLE_MAX_CHARS = 400
UPDATED_VALUES = {"true": 1, "yes": 1, "1": 1, "false": 0, "no": 0, "0": 0}
FACETS = {"site": ("site", 10), "language": ("language", 10), "entity": ("entity_facet", 15), "month": ("month", 24)}
MAX_WINDOW = 20_000  # hits scanned at most to fill a page of collapsed stories
LANG_CACHE_S = 5.0
LOOKUP_CANDIDATES = 20  # documents sharing one URL key that a lookup by URL weighs


def read_version(path: Path) -> int | None:
    """Schema version of the index at path; None when there is no index (or one that never held a
    document and has no version: see `SearchIndex`); 1 for pre-versioned ones."""
    if not (path / "meta.json").exists():
        return None
    try:
        return int(json.loads((path / S.SCHEMA_FILE).read_text())["schema_version"])
    except FileNotFoundError:
        return None if _never_committed(path) else 1
    except (ValueError, KeyError, TypeError):
        return 0


def _never_committed(path: Path) -> bool:
    """Whether the index at path has no segment: created, and nothing ever committed to it."""
    try:
        return bool(json.loads((path / "meta.json").read_text()).get("segments") == [])
    except (OSError, ValueError, AttributeError):
        return False


def write_version(path: Path) -> None:
    """Record the schema version of a new index, and the article id version its ids are made by
    (`newsflow.urls.ID_VERSION`: a new index is filled by this code's ids)."""
    meta = {"schema_version": S.SCHEMA_VERSION, "id_version": ID_VERSION}
    (path / S.SCHEMA_FILE).write_text(json.dumps(meta) + "\n")


def read_id_version(path: str | Path) -> int | None:
    """The article id version (`newsflow.urls.ID_VERSION`) the ids of the index at path were made
    by: None when there is no index, 1 for an index that predates the record."""
    path = Path(path)
    if not (path / "meta.json").exists():
        return None
    try:
        meta = json.loads((path / S.SCHEMA_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return 1
    value = meta.get("id_version", 1) if isinstance(meta, dict) else 1
    return int(value) if isinstance(value, int) else 1


def count_docs(path: str | Path) -> int:
    """Documents in the index at path, whatever its schema version (0 when there is none)."""
    if not (Path(path) / "meta.json").exists():
        return 0
    return int(tantivy.Index.open(str(path)).searcher().num_docs)


def open_index(where: Settings | str | Path, create: bool = True) -> IndexBackend:
    """The search index of these settings (their index_dir), or at this path.

    A missing index is created, unless create=False: then NoIndex. SchemaMismatch when the index
    was built by another schema version (`newsflow reindex` rebuilds it)."""
    path = Path(where if isinstance(where, str | Path) else where.index_dir)
    if not create and read_version(path) is None:
        raise NoIndex(path)
    return SearchIndex(path)


def writer_lock(path: str | Path) -> object:
    """Hold the writer lock of the index at path, whatever its schema version, until the returned
    object is dropped: no other process writes meanwhile. IndexUnavailable when one holds it already."""
    try:
        return tantivy.Index.open(str(path)).writer(heap_size=15_000_000, num_threads=1)
    except ValueError as exc:
        raise IndexUnavailable(str(exc)) from exc


def iter_sources(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every stored article JSON of the index at path, whatever its schema version (it opens the
    index with the schema saved in it). Readers see one commit: safe while a writer runs."""
    index = tantivy.Index.open(str(path))
    searcher = index.searcher()
    n = int(searcher.num_docs)
    if n == 0:
        return
    for _score, address in searcher.search(tantivy.Query.all_query(), limit=n, count=False).hits:
        yield dict(json.loads(searcher.doc(address)["source"][0]))


class SearchIndex:
    """The tantivy IndexBackend."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        version = read_version(self.path)
        if version is not None and version != S.SCHEMA_VERSION:
            raise SchemaMismatch(
                f"the index at {self.path} has schema version {version}, this newsflow uses "
                f"{S.SCHEMA_VERSION}: rebuild it from its stored articles with `newsflow reindex`"
            )
        self.schema = S.schema()
        if version is None:
            # The version first: a process stopped between the two (a worker's shutdown ends its
            # batch thread wherever it is) left an index that every later writer took for a
            # pre-versioned one and refused. An empty index without a version is taken as new.
            write_version(self.path)
        self._open()
        self._writer: tantivy.IndexWriter | None = None
        self._langs: tuple[float, int, tuple[str, ...]] = (0.0, -1, ())

    def _open(self) -> None:
        self.index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
        S.register_analyzers(self.index)
        self._inode = os.stat(self.path).st_ino

    def _fresh_searcher(self) -> tantivy.Searcher:
        """The latest commit; reopens the directory when `reindex` swapped a new one in."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = self._inode
        if inode != self._inode and self._writer is None:
            self._open()
        self.index.reload()
        return self.index.searcher()

    # --- writing (one writer process) ----------------------------------------------------------
    def writer(self, heap_bytes: int = DEFAULT_HEAP_BYTES, threads: int = 1) -> tantivy.IndexWriter:
        """The writer; IndexUnavailable when another process holds the index lock."""
        if self._writer is None:
            try:
                self._writer = self.index.writer(heap_size=heap_bytes, num_threads=threads)
            except ValueError as exc:
                raise IndexUnavailable(str(exc)) from exc
        return self._writer

    def upsert_batch(
        self,
        docs: Iterable[Mapping[str, Any]],
        heap_bytes: int = DEFAULT_HEAP_BYTES,
        delete_ids: Iterable[str] = (),
        rejected: dict[str, str] | None = None,
    ) -> int:
        """Replace-or-add each document by id (and drop `delete_ids`), then commit once.

        Returns the number of documents written. With `rejected`, a document the index cannot take
        is left out and recorded there (id -> error) instead of failing the whole batch."""
        w = self.writer(heap_bytes)
        n = 0
        now = datetime.now(UTC)
        docs = list(docs)
        indexed = self.stored([str(d["id"]) for d in docs])
        try:
            for aid in delete_ids:
                w.delete_documents_by_term("id", aid)
            for doc in docs:
                try:
                    # An article already indexed with other text becomes a revision of it.
                    doc = revise(dict(doc), indexed.get(str(doc["id"])))
                    tdoc = S.to_tantivy(doc, now)
                    w.delete_documents_by_term("id", doc["id"])
                    w.add_document(tdoc)
                except Exception as exc:  # one bad document must not sink its batch
                    if rejected is None:
                        raise
                    rejected[str(doc["id"])] = f"{type(exc).__name__}: {exc}"
                    continue
                n += 1
            _commit(w)
        except BaseException:
            # Uncommitted adds would otherwise ride along with the next batch's commit.
            w.rollback()
            raise
        self.index.reload()
        return n

    def stored(self, article_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored documents of those ids that are in the index (one query for all)."""
        ids = sorted(set(article_ids))
        if not ids:
            return {}
        searcher = self._fresh_searcher()
        terms = [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "id", aid)) for aid in ids]
        result = searcher.search(tantivy.Query.boolean_query(terms), limit=len(ids))
        out: dict[str, dict[str, Any]] = {}
        for _score, address in result.hits:
            doc = dict(json.loads(searcher.doc(address)["source"][0]))
            out[str(doc["id"])] = doc
        return out

    def delete(self, article_ids: Iterable[str]) -> None:
        w = self.writer()
        for aid in article_ids:
            w.delete_documents_by_term("id", aid)
        _commit(w)
        self.index.reload()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.wait_merging_threads()
            self._writer = None

    # --- reading ---------------------------------------------------------------------------------
    def num_docs(self) -> int:
        return int(self._fresh_searcher().num_docs)

    def get(self, id_or_url: str) -> dict[str, Any] | None:
        """One document by article id, or by its requested, final or (verified) canonical URL.

        A canonical URL a page declares on another registrable domain finds nothing: that page is
        not the article at that URL. Several documents can share a URL (two links redirecting to
        one page); the one requested at it wins, then the one fetched from it."""
        searcher = self._fresh_searcher()
        given = given_article_id(id_or_url)
        if given is not None:
            result = searcher.search(tantivy.Query.term_query(self.schema, "id", given), limit=1)
            if not result.hits:
                return None
            return dict(json.loads(searcher.doc(result.hits[0][1])["source"][0]))
        try:
            key = normalize_url(id_or_url)
        except InvalidURL:
            return None
        result = searcher.search(tantivy.Query.term_query(self.schema, "url_key", key), limit=LOOKUP_CANDIDATES)
        best: tuple[int, dict[str, Any]] | None = None
        for _score, address in result.hits:
            doc = dict(json.loads(searcher.doc(address)["source"][0]))
            # Its keys by the rules of this code, from its stored source, not only the indexed terms.
            if key not in S.url_keys(doc):
                continue
            rank = next((i for i, name in enumerate(("url", "final_url")) if _normalized(doc.get(name)) == key), 2)
            if best is None or rank < best[0]:
                best = (rank, doc)
        return best[1] if best else None

    def ids_matching(self, query_text: str, site: str | None = None) -> list[str]:
        """Ids of every article the query (and site) selects — for purges."""
        return [aid for aid, _url in self.urls_matching(query_text, site)]

    def urls_matching(self, query_text: str, site: str | None = None) -> list[tuple[str, str]]:
        """(id, URL) of every article the query (and site) selects, in one pass over the matches:
        a purge names each article's URL (the one it was requested at) in its message to the
        index worker."""
        req = SearchRequest(query=query_text, site=[site] if site else [], collapse=False)
        searcher = self._fresh_searcher()
        query = self.compile_request(req, searcher)
        n = int(searcher.num_docs)
        if n == 0:
            return []
        out = []
        for _s, address in searcher.search(query, limit=n, count=False).hits:
            stored = searcher.doc(address)
            doc = json.loads(stored["source"][0])
            out.append((str(stored["id"][0]), str(doc.get("url") or doc.get("final_url") or "")))
        return out

    def languages(self, searcher: tantivy.Searcher) -> tuple[str, ...]:
        """Analysis groups present in the index: a query term is only analysed for those."""
        now = time.monotonic()
        stamp, ndocs, groups = self._langs
        if ndocs == searcher.num_docs and now - stamp < LANG_CACHE_S:
            return groups
        agg = searcher.aggregate(tantivy.Query.all_query(), {"l": {"terms": {"field": "language", "size": 200}}})
        found = {S.group_of(b["key"]) for b in agg["l"]["buckets"]}
        if searcher.num_docs > sum(b["doc_count"] for b in agg["l"]["buckets"]):
            found.add(S.PLAIN)  # articles without a language
        groups = tuple(sorted(found)) or ("en", S.PLAIN)
        self._langs = (now, int(searcher.num_docs), groups)
        return groups

    # --- query compilation ---------------------------------------------------------------------------
    def compile_request(self, req: SearchRequest, searcher: tantivy.Searcher) -> tantivy.Query:
        node = parse(req.query)
        filters: list[Node] = []
        bounds: dict[str, DateRange] = {}
        for since_until, value in (("since", req.since), ("until", req.until)):
            if value:
                from newsflow.search.query import date_range

                try:
                    bounds[since_until] = date_range(since_until, value)
                except QueryError as exc:
                    raise QueryError(f"--{since_until}: {exc.reason}") from None
                filters.append(bounds[since_until])
        start, end = (bounds["since"].start, bounds["until"].end) if len(bounds) == 2 else (None, None)
        if start is not None and end is not None and start >= end:
            # Swapped dates are a mistake, not a filter: an empty answer would look like no news.
            raise QueryError(
                f"--since {req.since} is after --until {req.until}: no article can be both; put the earlier date"
                " in since"
            )
        for name, values in (("site", req.site), ("lang", req.language), ("entity", req.entity)):
            opts: list[Node] = [Text(v, True, name) for v in values if v]
            if opts:
                filters.append(opts[0] if len(opts) == 1 else Bool("OR", tuple(opts)))
        if req.cluster:
            filters.append(Text(req.cluster, False, "cluster"))
        if req.updated:
            filters.append(Text("true", False, "updated"))
        if filters:
            node = Bool("AND", (node, *filters)) if node is not None else Bool("AND", tuple(filters))
        if node is None:
            return tantivy.Query.all_query()
        compiled = _Compiler(self.schema, self.languages(searcher), req.query).compile(node)
        if compiled is None:
            raise QueryError("the query has no searchable words (only punctuation?)", req.query)
        return compiled

    # --- search ------------------------------------------------------------------------------------
    def search(self, req: SearchRequest) -> SearchResult:
        t0 = time.perf_counter()
        offset = (max(1, req.page) - 1) * req.limit
        if req.sort not in SORTS:
            raise QueryError(f"unknown sort {req.sort!r}: use one of {', '.join(SORTS)}")
        searcher = self._fresh_searcher()
        q = self.compile_request(req, searcher)
        order: dict[str, Any] = {}
        if req.sort != "relevance":
            order = {
                "order_by_field": "last_update" if req.sort == "updated" else "published",
                "order": tantivy.Order.Asc if req.sort == "date_asc" else tantivy.Order.Desc,
            }
        if req.collapse:
            total, page_hits, similar = self._collapsed(searcher, q, req, offset, order)
        else:
            res = searcher.search(q, limit=req.limit, offset=offset, count=True, **order)
            total, page_hits, similar = _count(res), list(res.hits), []
        hits = self._render(searcher, q, page_hits, similar, relevance=req.sort == "relevance")
        # Counting stories costs a pass over every match: done only with the facets, in their pass.
        facets, stories = self._facets(searcher, q) if req.facets else ({}, None)
        took = round((time.perf_counter() - t0) * 1000, 2)
        page = offset // max(1, req.limit) + 1
        return SearchResult(total, hits, stories, facets, page, req.limit, took)

    def _collapsed(
        self, searcher: tantivy.Searcher, q: tantivy.Query, req: SearchRequest, offset: int, order: dict[str, Any]
    ) -> tuple[int, list[tuple[Any, Any]], list[int]]:
        """One hit per story: scan ranked hits, keep each cluster's best, widen until the page fills."""
        need = offset + req.limit
        window = max(need * 3, 50)
        while True:
            res = searcher.search(q, limit=min(window, MAX_WINDOW), count=True, **order)
            total = _count(res)
            keys = searcher.fast_field_values("cluster_key", [a for _s, a in res.hits]) if res.hits else []
            best: dict[int, tuple[Any, Any]] = {}
            for hit, key in zip(res.hits, keys, strict=True):
                best.setdefault(int(key or 0), hit)
            if len(best) >= need or len(res.hits) >= total or window >= MAX_WINDOW:
                break
            window *= 4
        chosen = list(best.items())[offset:need]
        similar: list[int] = []
        if chosen:
            members = tantivy.Query.term_set_query(self.schema, "cluster_key", [k for k, _h in chosen])
            both = tantivy.Query.boolean_query([(tantivy.Occur.Must, q), (tantivy.Occur.Must, members)])
            agg = searcher.aggregate(both, {"c": {"terms": {"field": "cluster_key", "size": len(chosen)}}})
            counts = {int(b["key"]): int(b["doc_count"]) for b in agg["c"]["buckets"]}
            similar = [max(0, counts.get(k, 1) - 1) for k, _h in chosen]
        return total, [h for _k, h in chosen], similar

    def _render(
        self,
        searcher: tantivy.Searcher,
        q: tantivy.Query,
        page_hits: list[tuple[Any, Any]],
        similar: list[int],
        relevance: bool,
    ) -> list[Hit]:
        generators: dict[tuple[str, str], Any] = {}

        def snippet(name: str, group: str, text: str, max_chars: int) -> tuple[str, str] | None:
            key = (name, group)
            if key not in generators:
                gen = tantivy.SnippetGenerator.create(searcher, q, self.schema, S.field(name, group))
                gen.set_max_num_chars(max_chars)
                generators[key] = gen
            doc = tantivy.Document()
            doc.add_text(S.field(name, group), text)
            snip = generators[key].snippet_from_doc(doc)
            if not snip.fragment():
                return None
            return snip.fragment(), _highlight(snip.fragment(), [(r.start, r.end) for r in snip.highlighted()])

        hits = []
        for i, (order_key, address) in enumerate(page_hits):
            doc = dict(json.loads(searcher.doc(address)["source"][0]))
            group = S.group_of(doc.get("language"))
            title = doc.get("title") or ""
            body = doc.get("body") or ""
            got = snippet("body", group, body, SNIPPET_MAX_CHARS) if body else None
            if got is None:
                lead = (doc.get("description") or doc.get("summary") or body)[:SNIPPET_MAX_CHARS]
                got = (lead, html.escape(lead))
            title_got = snippet("title", group, title, TITLE_MAX_CHARS) if title else None
            title_html = title_got[1] if title_got and len(title_got[0]) >= len(title) - 1 else html.escape(title)
            hits.append(
                Hit(
                    doc=doc,
                    score=float(order_key) if relevance else None,
                    snippet=" ".join(got[0].split()),
                    snippet_html=" ".join(got[1].split()),
                    title_html=title_html,
                    similar=similar[i] if i < len(similar) else 0,
                )
            )
        return hits

    def _facets(self, searcher: tantivy.Searcher, q: tantivy.Query) -> tuple[dict[str, list[dict[str, Any]]], int]:
        """Facet counts, and the number of distinct stories (approximate: HyperLogLog) in one pass."""
        spec: dict[str, Any] = {"stories": {"cardinality": {"field": "cluster_key"}}}
        for name, (fld, size) in FACETS.items():
            terms: dict[str, Any] = {"field": fld, "size": size}
            if name == "month":
                terms["order"] = {"_key": "desc"}
            spec[name] = {"terms": terms}
        agg = searcher.aggregate(q, spec)
        facets = {
            name: [{"value": b["key"], "count": int(b["doc_count"])} for b in agg[name]["buckets"] if b["key"] != ""]
            for name in FACETS
        }
        return facets, round(agg["stories"]["value"] or 0)


def _commit(w: tantivy.IndexWriter) -> None:
    try:
        w.commit()
    except ValueError as exc:  # tantivy's I/O trouble
        raise IndexUnavailable(str(exc)) from exc


def _normalized(url: Any) -> str | None:
    try:
        return normalize_url(str(url)) if url else None
    except InvalidURL:
        return None


def _count(res: tantivy.SearchResult) -> int:
    return int(getattr(res, "count", 0) or 0)  # set because the search asked count=True


def _highlight(fragment: str, ranges: list[tuple[int, int]]) -> str:
    """HTML-escaped fragment with <mark> around the matched words (ranges are UTF-8 byte offsets)."""
    raw = fragment.encode("utf-8")
    out, pos = [], 0
    for start, end in sorted(ranges):
        if start < pos:
            continue
        out.append(html.escape(raw[pos:start].decode("utf-8", "replace")))
        out.append("<mark>" + html.escape(raw[start:end].decode("utf-8", "replace")) + "</mark>")
        pos = end
    out.append(html.escape(raw[pos:].decode("utf-8", "replace")))
    return "".join(out)


class _Compiler:
    """Syntax tree → tantivy query, analysing each word by the rules of each language present."""

    def __init__(self, schema: tantivy.Schema, groups: Sequence[str], query: str) -> None:
        self.schema = schema
        self.groups = groups
        self.query = query

    def compile(self, node: Node) -> tantivy.Query | None:
        if isinstance(node, Text):
            return self.text(node)
        if isinstance(node, DateRange):
            return tantivy.Query.range_query(
                self.schema, "published", tantivy.FieldType.Date, node.start, node.end,
                include_lower=True, include_upper=node.end is None,
            )  # fmt: skip
        if isinstance(node, Not):
            inner = self.compile(node.child)
            if inner is None:
                return None
            return tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, tantivy.Query.all_query()), (tantivy.Occur.MustNot, inner)]
            )
        return self.boolean(node)

    def boolean(self, node: Bool) -> tantivy.Query | None:
        clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
        if node.op == "OR":
            for child in node.children:
                q = self.compile(child)
                if q is not None:
                    clauses.append((tantivy.Occur.Should, q))
            return tantivy.Query.boolean_query(clauses) if clauses else None
        positive = 0
        for child in node.children:
            occur = tantivy.Occur.MustNot if isinstance(child, Not) else tantivy.Occur.Must
            q = self.compile(child.child if isinstance(child, Not) else child)
            if q is not None:
                clauses.append((occur, q))
                positive += occur == tantivy.Occur.Must
        if not clauses:
            return None
        if positive == 0:  # only exclusions: exclude from everything
            clauses.append((tantivy.Occur.Must, tantivy.Query.all_query()))
        return tantivy.Query.boolean_query(clauses)

    def _analysed(self, fld: str, group: str, text: str, phrase: bool, boost: float = 1.0) -> tantivy.Query | None:
        tokens = S.analyzer(group).analyze(text)
        if not tokens:
            return None
        if len(tokens) == 1:
            q = tantivy.Query.term_query(self.schema, fld, tokens[0])
        else:  # a phrase, or a word the analyzer splits ("U.S.", "covid-19"): words in order
            words: list[str | tuple[int, str]] = list(tokens)
            q = tantivy.Query.phrase_query(self.schema, fld, words)
        return q if boost == 1.0 else tantivy.Query.boost_query(q, boost)

    def text(self, node: Text) -> tantivy.Query | None:
        name = node.field
        if name is None or name in TEXT_ALIASES:
            names = TEXT_ALIASES[name] if name else S.TEXT_FIELDS
            subs = []
            for group in self.groups:
                for base in names:
                    boost = FIELD_BOOSTS[base] if len(names) > 1 else 1.0
                    q = self._analysed(S.field(base, group), group, node.text, node.phrase, boost)
                    if q is not None:
                        subs.append(q)
            if not subs:
                return None
            return subs[0] if len(subs) == 1 else tantivy.Query.boolean_query([(tantivy.Occur.Should, s) for s in subs])
        if name in PLAIN_FIELDS:
            return self._analysed(PLAIN_FIELDS[name], S.PLAIN, node.text, True)
        fld = EXACT_FIELDS[name]
        value: Any = node.text.strip()
        if fld == "site":
            value = S.normalize_site(value)
        elif fld == "language":
            value = value.lower()
        elif fld == "url_key":
            try:
                value = normalize_url(value)
            except InvalidURL as exc:
                raise QueryError(f"url: {exc}", self.query) from None
        elif fld == "cluster_key":
            value = S.cluster_key(value)
        elif fld == "updated":
            flag = value.lower()
            if flag not in UPDATED_VALUES:
                raise QueryError(f"updated: is true or false, not {value[:40]!r}", self.query)
            value = UPDATED_VALUES[flag]
        # Filters select; they should not change the ranking.
        return tantivy.Query.const_score_query(tantivy.Query.term_query(self.schema, fld, value), 0.0)
