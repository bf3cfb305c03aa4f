"""`newsflow search` and `newsflow show`: read the index (no broker needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from config.defaults import Settings
from workers.cli.common import emit_json, fail, settings_or_exit

HIT_FIELDS = ("id", "url", "title", "published", "site_name", "language")
SHOW_FIELDS = (
    "author", "description", "canonical_url", "final_url", "fetched_at",
    "word_count", "reading_time_min", "language_confidence", "entities", "keywords", "summary", "cluster_id",
    "provenance", "body",
)  # fmt: skip


def _open_index(settings: Settings) -> Any:
    from newsflow.searchindex import SearchIndex

    path = Path(settings.index_dir)
    if not (path / "meta.json").exists():
        fail(f"no index at {path}: ingest something first (`newsflow demo`, or `newsflow up` + `newsflow ingest URL`)")
    return SearchIndex(path)


def hit_dict(doc: dict[str, Any], score: float, snippet: str) -> dict[str, Any]:
    out = {name: doc.get(name) for name in HIT_FIELDS}
    out["score"] = round(score, 4)
    out["snippet"] = snippet
    return out


def print_search(settings: Settings, query: str, limit: int, as_json: bool) -> None:
    from newsflow.searchindex import QueryError

    index = _open_index(settings)
    try:
        result = index.search(query, limit=limit)
    except QueryError as exc:
        fail(f'{exc}. Use plain words, "a phrase", AND/OR/NOT, or field:value (title:, body:)', 2)
        return
    hits = [hit_dict(h.doc, h.score, h.snippet) for h in result.hits]
    if as_json:
        emit_json({"total": result.total, "hits": hits})
        return
    click.echo(f"{result.total} article(s) match; showing {len(hits)}")
    for i, hit in enumerate(hits, 1):
        date = (hit["published"] or "")[:10] or "undated"
        click.echo(f"\n{i}. {hit['title'] or '(no title)'}")
        click.echo(f"   {date} | {hit['site_name'] or '-'} | {hit['url']}")
        click.echo(f"   {hit['snippet']}")
        click.echo(f"   id {hit['id']}  score {hit['score']}")


@click.command()
@click.argument("query")
@click.option("--limit", "-n", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"total": n, "hits": [...]} to stdout.')
def search(query: str, limit: int, as_json: bool) -> None:
    """Search indexed articles. Terms are ANDed; "quoted phrases", OR, NOT and title:word work."""
    print_search(settings_or_exit(), query, limit, as_json)


@click.command()
@click.argument("id_or_url")
@click.option("--json", "as_json", is_flag=True, help="Print the whole article as one JSON object.")
def show(id_or_url: str, as_json: bool) -> None:
    """Show one indexed article by id, requested URL, final URL or canonical URL (exit 1 if none)."""
    doc = _open_index(settings_or_exit()).get(id_or_url)
    if doc is None:
        fail(f"no indexed article for {id_or_url!r}")
        return
    out = {name: doc.get(name) for name in HIT_FIELDS + SHOW_FIELDS}
    if as_json:
        emit_json(out)
        return
    click.echo(out["title"] or "(no title)")
    for name in (
        "url",
        "final_url",
        "canonical_url",
        "author",
        "published",
        "site_name",
        "language",
        "fetched_at",
        "id",
    ):
        click.echo(f"  {name:14} {out.get(name) or '-'}")
    click.echo("")
    click.echo(out["body"] or "")


COMMANDS = [search, show]
