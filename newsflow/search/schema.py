"""The index schema: per-language stemmed text fields, filter and facet fields, and the stored source.

Text is analysed by the article's own language: each stemmed language has its own `title_xx`,
`body_xx`, `description_xx` fields with that language's Snowball stemmer; articles in languages
tantivy cannot stem go to the `_plain` fields (lowercased, not stemmed). A query term is analysed
once per language present in the index and looked up in that language's fields, so "running"
finds English "runs" and German "Häuser" finds "Haus" without English rules stemming German text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

import tantivy

from newsflow.domains import host_of, normalize_host, trusted_canonical
from newsflow.urls import InvalidURL, normalize_url

# Bump when fields or analysis change; an index built with another version must be rebuilt
# (`newsflow reindex`), because its terms were produced by different rules.
# 3: `site` and `url_key` come from what was fetched; a canonical URL on another registrable domain
#    is only a claim (`canonical_claimed` in the stored source), not a key or a site.
# 4: `updated` (0/1) and `last_update` (date) for article revisions (newsflow/revisions.py).
SCHEMA_VERSION = 4
SCHEMA_FILE = "newsflow-schema.json"

# ISO 639-1 code → tantivy Snowball stemmer name.
STEMMERS: dict[str, str] = {
    "en": "english", "de": "german", "fr": "french", "es": "spanish", "it": "italian",
    "pt": "portuguese", "nl": "dutch", "ru": "russian", "sv": "swedish", "no": "norwegian",
    "nb": "norwegian", "da": "danish", "fi": "finnish", "hu": "hungarian", "ro": "romanian",
    "el": "greek", "ar": "arabic", "tr": "turkish", "ta": "tamil",
}  # fmt: skip
PLAIN = "plain"  # analysis group of every other language (and of articles with none)
# Field-name suffixes, one per analysis group ("nb" shares Norwegian fields).
GROUPS: tuple[str, ...] = (*sorted({c for c in STEMMERS if c != "nb"}), PLAIN)
TEXT_FIELDS = ("title", "body", "description")
# Longer tokens are noise (base64, URLs glued together) and bloat the term dictionary.
MAX_TOKEN_CHARS = 40


def group_of(language: str | None) -> str:
    code = (language or "").lower()
    if code == "nb":
        return "no"
    return code if code in STEMMERS else PLAIN


def field(name: str, group: str) -> str:
    return f"{name}_{group}"


def tokenizer_name(group: str) -> str:
    return f"nf_{group}"


@cache
def analyzer(group: str) -> tantivy.TextAnalyzer:
    """simple tokenizer → drop long tokens → lowercase → stem (by language) → fold accents."""
    b = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
    b = b.filter(tantivy.Filter.remove_long(MAX_TOKEN_CHARS)).filter(tantivy.Filter.lowercase())
    if group != PLAIN:
        b = b.filter(tantivy.Filter.stemmer(STEMMERS[group]))
    # Folding after stemming: the stemmer needs the accents, users often type without them.
    return b.filter(tantivy.Filter.ascii_fold()).build()


def register_analyzers(index: tantivy.Index) -> None:
    """Every Index object (writer or reader) must know the analyzers before it indexes or searches."""
    for group in GROUPS:
        index.register_tokenizer(tokenizer_name(group), analyzer(group))


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", fast=True)
    # Normalised requested, final and canonical URLs: any of them finds the article.
    sb.add_text_field("url_key", stored=False, tokenizer_name="raw")
    for group in GROUPS:
        for name in TEXT_FIELDS:
            sb.add_text_field(field(name, group), stored=False, tokenizer_name=tokenizer_name(group))
    sb.add_text_field("author", stored=False, tokenizer_name=tokenizer_name(PLAIN))
    sb.add_text_field("entity", stored=False, tokenizer_name=tokenizer_name(PLAIN))
    sb.add_text_field("keyword", stored=False, tokenizer_name=tokenizer_name(PLAIN))
    # Exact values for filters and facet counts (fast = column store for aggregations).
    sb.add_text_field("site", stored=False, tokenizer_name="raw", fast=True)
    sb.add_text_field("language", stored=False, tokenizer_name="raw", fast=True)
    sb.add_text_field("month", stored=False, tokenizer_name="raw", fast=True)
    sb.add_text_field("entity_facet", stored=False, tokenizer_name="raw", fast=True)
    # Near-duplicate story: 48-bit hash of cluster_id (or of the id when alone). Numeric, so a page
    # of hits reads it from the column store without loading documents; 48 bits stay exact even
    # where aggregations pass numbers through a float.
    sb.add_unsigned_field("cluster_key", stored=False, indexed=True, fast=True)
    sb.add_date_field("published", stored=False, indexed=True, fast=True)
    sb.add_date_field("indexed_at", stored=False, indexed=True, fast=True)
    # Revisions: 1 once the article was fetched again with other text; when that last happened
    # (else when it was fetched), for `sort=updated`.
    sb.add_unsigned_field("updated", stored=False, indexed=True, fast=True)
    sb.add_date_field("last_update", stored=False, indexed=True, fast=True)
    # The whole article JSON (UTF-8): the durable copy `newsflow reindex` and `backup` read. Stored
    # only: as an indexed raw text field it became one giant term and cost 3/4 of indexing time.
    sb.add_bytes_field("source", stored=True, indexed=False)
    return sb.build()


def cluster_key(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=6).digest(), "big")


def parse_date(value: Any) -> datetime | None:
    """ISO 8601 date or datetime → aware datetime (UTC when no zone is given)."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        try:
            dt = datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]))
        except ValueError:
            return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def normalize_site(host: str) -> str:
    host = normalize_host(host)
    return host[4:] if host.startswith("www.") else host


def fetched_url(doc: Mapping[str, Any]) -> str:
    """Where the page really came from: the final URL after redirects, else the requested one."""
    return str(doc.get("final_url") or doc.get("url") or "")


def verified_canonical(doc: Mapping[str, Any]) -> str | None:
    """The document's canonical URL if it is on the fetched page's own host or registrable domain.

    Checked here again, not only when the document was built: documents stored by an older
    newsflow (and restored from backups) kept whatever canonical the page declared."""
    return trusted_canonical(doc.get("canonical_url"), fetched_url(doc))


def with_verified_canonical(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy in which a canonical URL the page may not claim is moved to `canonical_claimed`."""
    out = dict(doc)
    declared = out.get("canonical_url")
    if declared and verified_canonical(out) is None:
        out["canonical_url"] = None
        out["canonical_claimed"] = out.get("canonical_claimed") or declared
    out.setdefault("canonical_claimed", None)
    return out


def site_of(doc: Mapping[str, Any]) -> str:
    """The site an article is filed under: the host of its verified canonical URL, else of the
    URL it was fetched from (`www.` dropped). Never the host of a canonical the page only claims."""
    return normalize_site(host_of(verified_canonical(doc) or fetched_url(doc)))


def url_keys(doc: Mapping[str, Any]) -> list[str]:
    """Normalised URLs that look the article up: requested, final and verified canonical."""
    keys = []
    for value in (doc.get("url"), doc.get("final_url"), verified_canonical(doc)):
        if value:
            try:
                keys.append(normalize_url(str(value)))
            except InvalidURL:
                continue
    return sorted(set(keys))


def entity_names(doc: Mapping[str, Any]) -> list[str]:
    ents = doc.get("entities") or {}
    out: list[str] = []
    if isinstance(ents, Mapping):
        for kind in ("person", "organization", "place"):
            out.extend(str(e) for e in ents.get(kind) or [] if e)
    return list(dict.fromkeys(out))


def to_tantivy(doc: Mapping[str, Any], now: datetime | None = None) -> tantivy.Document:
    doc = with_verified_canonical(doc)  # what is stored is what `show` and `reindex` read back
    group = group_of(doc.get("language"))
    published = parse_date(doc.get("published"))
    entities = entity_names(doc)
    keywords = [str(k) for k in doc.get("keywords") or [] if k]
    indexed = now or datetime.now(UTC)
    values: dict[str, Any] = {
        "id": doc["id"],
        "url_key": url_keys(doc),
        field("title", group): doc.get("title") or "",
        field("body", group): doc.get("body") or "",
        field("description", group): doc.get("description") or "",
        "author": doc.get("author") or "",
        "site": site_of(doc),
        "language": (doc.get("language") or "").lower(),
        "cluster_key": cluster_key(str(doc.get("cluster_id") or doc["id"])),
        "indexed_at": indexed,
        "updated": 1 if doc.get("updated") else 0,
        "last_update": parse_date(doc.get("updated_at")) or parse_date(doc.get("fetched_at")) or indexed,
        "source": json.dumps(doc, ensure_ascii=False).encode("utf-8"),
    }
    if entities:
        values["entity"] = entities
        values["entity_facet"] = entities
    if keywords:
        values["keyword"] = keywords
    if published:
        values["published"] = published
        values["month"] = published.strftime("%Y-%m")
    # from_dict with the schema converts each value to its field's type (u64 for cluster_key).
    return tantivy.Document.from_dict(values, schema())


@cache
def schema() -> tantivy.Schema:
    return build_schema()
