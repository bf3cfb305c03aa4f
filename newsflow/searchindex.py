"""The search index behind one small interface: upsert a batch, delete, search, get one document.

Tantivy on local disk serves one machine. Tantivy allows one writer per index, so only the index
stage's single consumer opens it for writing; readers (CLI, API) open it read-only at any time.
Every stored document keeps its whole article JSON in `source`, so the index can be rebuilt from
itself without re-fetching.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tantivy

from newsflow.urls import InvalidURL, looks_like_article_id, normalize_url

SCHEMA_VERSION = 1
# Fields searched when a query names none, and their weights.
DEFAULT_FIELDS = ["title", "body", "description"]
FIELD_BOOSTS = {"title": 2.5, "description": 1.5, "body": 1.0}
SNIPPET_MAX_CHARS = 240


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", fast=True)
    # Normalised requested, final and canonical URLs: any of them finds the article.
    sb.add_text_field("url_key", stored=False, tokenizer_name="raw")
    sb.add_text_field("title", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("body", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("description", stored=False, tokenizer_name="en_stem")
    sb.add_text_field("author", stored=False, tokenizer_name="default")
    sb.add_text_field("site", stored=False, tokenizer_name="raw", fast=True)
    sb.add_text_field("language", stored=False, tokenizer_name="raw", fast=True)
    sb.add_date_field("published", stored=False, indexed=True, fast=True)
    sb.add_date_field("indexed_at", stored=False, indexed=True, fast=True)
    sb.add_text_field("source", stored=True, tokenizer_name="raw", index_option="basic")
    return sb.build()


def parse_date(value: Any) -> datetime | None:
    """ISO 8601 date or datetime → aware datetime (UTC when no zone is given)."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        m = re.match(r"(\d{4})-(\d{2})-(\d{2})", text)
        if not m:
            return None
        dt = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def site_of(doc: Mapping[str, Any]) -> str:
    from urllib.parse import urlsplit

    url = doc.get("canonical_url") or doc.get("final_url") or doc.get("url") or ""
    host = (urlsplit(str(url)).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def url_keys(doc: Mapping[str, Any]) -> list[str]:
    keys = []
    for name in ("url", "final_url", "canonical_url"):
        value = doc.get(name)
        if value:
            try:
                keys.append(normalize_url(str(value)))
            except InvalidURL:
                continue
    return sorted(set(keys))


def to_tantivy(doc: Mapping[str, Any], now: datetime | None = None) -> tantivy.Document:
    t = tantivy.Document()
    t.add_text("id", doc["id"])
    for key in url_keys(doc):
        t.add_text("url_key", key)
    t.add_text("title", doc.get("title") or "")
    t.add_text("body", doc.get("body") or "")
    t.add_text("description", doc.get("description") or "")
    t.add_text("author", doc.get("author") or "")
    t.add_text("site", site_of(doc))
    t.add_text("language", doc.get("language") or "")
    published = parse_date(doc.get("published"))
    if published:
        t.add_date("published", published)
    t.add_date("indexed_at", now or datetime.now(UTC))
    t.add_text("source", json.dumps(doc, ensure_ascii=False))
    return t


@dataclass(frozen=True)
class Hit:
    doc: dict[str, Any]
    score: float
    snippet: str


@dataclass(frozen=True)
class SearchResult:
    total: int
    hits: list[Hit]


class QueryError(ValueError):
    """The query cannot be parsed; the message says where."""


class SearchIndex:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.schema = build_schema()
        self.index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
        self._writer: tantivy.IndexWriter | None = None

    # --- writing (one writer process) ----------------------------------------------------------
    def writer(self, heap_bytes: int = 128 * 1024 * 1024) -> tantivy.IndexWriter:
        if self._writer is None:
            self._writer = self.index.writer(heap_size=heap_bytes, num_threads=1)
        return self._writer

    def upsert_batch(self, docs: Iterable[Mapping[str, Any]], heap_bytes: int = 128 * 1024 * 1024) -> int:
        """Replace-or-add each document by id, then commit once. Returns the number written."""
        w = self.writer(heap_bytes)
        n = 0
        now = datetime.now(UTC)
        for doc in docs:
            w.delete_documents_by_term("id", doc["id"])
            w.add_document(to_tantivy(doc, now))
            n += 1
        w.commit()
        self.index.reload()
        return n

    def delete(self, article_ids: Iterable[str]) -> None:
        w = self.writer()
        for aid in article_ids:
            w.delete_documents_by_term("id", aid)
        w.commit()
        self.index.reload()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.wait_merging_threads()
            self._writer = None

    # --- reading ---------------------------------------------------------------------------------
    def num_docs(self) -> int:
        self.index.reload()
        return int(self.index.searcher().num_docs)

    def get(self, id_or_url: str) -> dict[str, Any] | None:
        """One document by article id, or by its requested, final or canonical URL."""
        self.index.reload()
        searcher = self.index.searcher()
        if looks_like_article_id(id_or_url):
            query = tantivy.Query.term_query(self.schema, "id", id_or_url)
        else:
            try:
                query = tantivy.Query.term_query(self.schema, "url_key", normalize_url(id_or_url))
            except InvalidURL:
                return None
        result = searcher.search(query, limit=1)
        if not result.hits:
            return None
        stored = searcher.doc(result.hits[0][1])
        return dict(json.loads(stored["source"][0]))

    def search(self, query_text: str, limit: int = 10, offset: int = 0) -> SearchResult:
        self.index.reload()
        searcher = self.index.searcher()
        try:
            query = self.index.parse_query(
                query_text, DEFAULT_FIELDS, field_boosts=FIELD_BOOSTS, conjunction_by_default=True
            )
        except ValueError as exc:
            raise QueryError(f"cannot parse query {query_text!r}: {exc}") from None
        result = searcher.search(query, limit=limit, offset=offset, count=True)
        snippets = tantivy.SnippetGenerator.create(searcher, query, self.schema, "body")
        snippets.set_max_num_chars(SNIPPET_MAX_CHARS)
        hits = []
        for score, address in result.hits:
            stored = searcher.doc(address)
            doc = json.loads(stored["source"][0])
            snippet = snippets.snippet_from_doc(stored)
            text = snippet.fragment() if snippet.fragment() else (doc.get("body") or "")[:SNIPPET_MAX_CHARS]
            hits.append(Hit(doc=doc, score=float(score), snippet=" ".join(text.split())))
        return SearchResult(total=int(getattr(result, "count", 0) or 0), hits=hits)
