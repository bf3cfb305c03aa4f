"""`newsflow search` and `newsflow show`: read the index (no broker needed)."""

from __future__ import annotations

import shlex
from typing import Any

import click

from config.defaults import Settings
from newsflow.search import SORTS, IndexBackend, ParamError, SearchRequest
from newsflow.search.backend import MAX_LIMIT, MAX_PAGE
from workers.cli.common import emit_json, fail, settings_or_exit

SHOW_FIELDS = (
    "author", "description", "canonical_url", "canonical_claimed", "final_url", "fetched_at",
    "word_count", "reading_time_min", "language_confidence", "entities", "keywords", "summary", "cluster_id",
    "provenance", "updated", "updated_at", "revision_count", "revisions", "first_fetched_at", "body",
)  # fmt: skip

QUERY_HELP = """Search indexed articles.

\b
QUERY syntax (terms are ANDed):
  nato summit                 both words (stemmed by each article's language)
  "pause for regrouping"      exact phrase
  nato OR eu, NOT russia, -russia, (a OR b) c
  title:summit  author:smith  site:kyivindependent.com  lang:de
  entity:"Jens Stoltenberg"   keyword:sanctions   cluster:ID (one story)
  published:2024-05  published:2024-01-01..2024-03-31  since:2024-01  until:2024-06-30
An empty QUERY ("") lists everything the filters select.
Near-duplicates are collapsed into one hit per story ("+N similar"); --expand-clusters shows them all.

\b
A QUERY that starts with '-' goes after `--` (else it reads as options):
  newsflow search -- "-russia nato"
"""


def reader(settings: Settings) -> IndexBackend:
    """The index, for reading; exits with the reason when there is none (or it needs a reindex)."""
    from newsflow.search import NoIndex, SchemaMismatch, open_index

    try:
        return open_index(settings, create=False)
    except NoIndex as exc:
        fail(f"{exc}: ingest something first (`newsflow demo`, or `newsflow up` + `newsflow ingest URL`)")
    except SchemaMismatch as exc:
        fail(str(exc))
    raise AssertionError("unreachable")  # fail() exits


def _print_hits(out: dict[str, Any]) -> None:
    hits = out["hits"]
    first = (out["page"] - 1) * out["limit"]
    stories = f" in {out['stories']} stories" if out.get("stories") is not None else ""
    click.echo(f"{out['total']} article(s) match{stories}; page {out['page']}, {out['took_ms']} ms")
    for i, hit in enumerate(hits, first + 1):
        date = (hit["published"] or "")[:10] or "undated"
        click.echo(f"\n{i}. {hit['title'] or '(no title)'}")
        click.echo(f"   {date} | {hit['site_name'] or hit['site'] or '-'} | {hit['url']}")
        click.echo(f"   {hit['snippet']}")
        more = f"  +{hit['similar']} similar (--cluster {hit['cluster_id']})" if hit["similar"] else ""
        score = f"  score {hit['score']}" if hit["score"] is not None else ""
        click.echo(f"   id {hit['id']}{score}{more}")
    for name, buckets in (out.get("facets") or {}).items():
        if buckets:
            click.echo(f"\n{name}: " + ", ".join(f"{b['value']} ({b['count']})" for b in buckets))


def print_search(settings: Settings, query: str, limit: int, as_json: bool) -> None:
    """Run one search and print it (used by `newsflow demo` too)."""
    run_search(settings, SearchRequest(query=query, limit=limit), as_json)


def run_search(settings: Settings, req: SearchRequest, as_json: bool) -> None:
    from newsflow.search import QueryError
    from newsflow.search.service import result_dict

    index = reader(settings)
    try:
        out = result_dict(req, index.search(req))
    except QueryError as exc:
        # The caret under a short, printable query; a long or odd one gets the message (and column) only.
        pointer = exc.pointer() if len(req.query) <= 100 and req.query.isprintable() else ""
        fail(f"bad query: {exc} (see `newsflow search --help`)" + (f"\n{pointer}" if pointer else ""), 2)
        return
    except (ValueError, OverflowError, RecursionError) as exc:  # the index refused what the parser let by
        fail(f"bad query: {str(exc)[:300]} (see `newsflow search --help`)", 2)
        return
    if as_json:
        emit_json(out)
    else:
        _print_hits(out)


class QueryCommand(click.Command):
    """`search`, whose QUERY may start with '-' (`-russia nato` excludes a word), which click reads as
    options (`-r`...): the error then says how to pass it (after `--`) instead of only "No such option"."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)  # click's parser consumes the list it is given
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            term = _dashed_term(given, exc.option_name)
            if term is None:
                raise
            raise click.UsageError(
                f"No such option: {exc.option_name}. If {term!r} is the QUERY (a word excluded with '-'), "
                f"put it after `--`: newsflow search [OPTIONS] -- {shlex.quote(term)}",
                ctx,
            ) from None


def _dashed_term(args: list[str], option_name: str) -> str | None:
    """The argument click read as the unknown short option `option_name` (`-russia` as `-r`...):
    perhaps a query term. None for a long option (`--bogus`): a mistyped option, not a query."""
    for arg in args:
        if arg == "--":
            return None
        if not arg.startswith("--") and arg.startswith(option_name):
            return arg
    return None


# Option names are SearchRequest.from_params's parameter names: the API's query parameters.
@click.command(cls=QueryCommand, help=QUERY_HELP)
@click.argument("q", metavar="QUERY")
@click.option("--limit", "-n", type=int, default=10, show_default=True, help=f"Hits per page (at most {MAX_LIMIT}).")
@click.option("--page", "-p", type=int, default=1, show_default=True, help=f"At most {MAX_PAGE}, as the HTTP API.")
@click.option("--sort", type=click.Choice(SORTS), default="relevance", show_default=True, help="date = newest first.")
@click.option("--since", metavar="DATE", help="Published on or after (YYYY, YYYY-MM, YYYY-MM-DD or ISO time).")
@click.option("--until", metavar="DATE", help="Published on or before (a date includes its whole day/month).")
@click.option("--site", multiple=True, metavar="HOST", help="Only this site (repeat for several).")
@click.option("--lang", multiple=True, metavar="CODE", help="Only this language, e.g. en (repeatable).")
@click.option("--entity", multiple=True, metavar="NAME", help="Only articles naming this entity (repeatable).")
@click.option("--cluster", metavar="ID", help="Only the articles of this story (expand one '+N similar').")
@click.option("--updated", is_flag=True, help="Only articles revised after they were first indexed.")
@click.option("--facets", is_flag=True, help="Count matches per site, language, entity and month.")
@click.option("--expand-clusters", is_flag=True, help="Show every near-duplicate instead of one hit per story.")
@click.option("--json", "as_json", is_flag=True, help='Print {"total": n, "hits": [...], ...} to stdout.')
def search(as_json: bool, **params: Any) -> None:
    try:
        req = SearchRequest.from_params(params)
    except ParamError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.name}") from None
    run_search(settings_or_exit(), req, as_json)


@click.command()
@click.argument("id_or_url")
@click.option("--json", "as_json", is_flag=True, help="Print the whole article as one JSON object.")
def show(id_or_url: str, as_json: bool) -> None:
    """Show one indexed article by id, requested URL, final URL or canonical URL (exit 1 if none)."""
    try:
        doc = reader(settings_or_exit()).get(id_or_url)
    except ValueError as exc:  # urlsplit's own complaints ("Invalid IPv6 URL")
        fail(f"not an article id or a valid URL: {str(exc)[:200]}", 2)
        return
    if doc is None:
        fail(f"no indexed article for {id_or_url!r}")
        return
    from newsflow.search.service import HIT_FIELDS

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
    if out.get("updated"):
        click.echo(f"  {'updated':14} yes: {out.get('revision_count')} versions, last {out.get('updated_at')}")
        for rev in out.get("revisions") or []:
            changed = ("title, " if rev.get("title_changed") else "") + f"body {rev.get('body_changed_pct')}%"
            click.echo(f"    {rev.get('fetched_at') or '?':26} {changed:18} {str(rev.get('title') or '')[:60]}")
    click.echo("")
    click.echo(out["body"] or "")


COMMANDS = [search, show]
