"""`newsflow extract`: the clean stage on saved HTML files, no broker needed."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import click

from workers.cli.common import emit_json, settings_or_exit


class NotHTML(ValueError):
    """A file the clean stage would never see: the fetch stage refuses such a body `not_html`."""


def read_html(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    from newsflow.fetcher import decode_html, looks_binary

    if looks_binary(raw):
        raise NotHTML("not HTML: binary bytes (the fetch stage refuses such a page `not_html`)")
    return decode_html(raw, None)[0]


def extract_file(path: Path, url: str | None, min_body_chars: int = 0) -> dict[str, Any]:
    """The clean stage's reading of one saved page, or its error; a body shorter than
    `min_body_chars` is the clean stage's `no_article`."""
    from newsflow.extract import extract_article

    try:
        article = extract_article(read_html(path), url)
    except NotHTML as exc:
        return {"path": str(path), "error": str(exc)}
    except Exception as exc:  # one bad file gives an error line, not a crash
        return {"path": str(path), "error": f"{type(exc).__name__}: {exc}"}
    if len(article.body) < min_body_chars:
        return {
            "path": str(path),
            "error": f"no article: the main text has {len(article.body)} characters (the clean stage needs "
            f"{min_body_chars}, clean_min_body_chars, and dead-letters the page `no_article`)",
        }
    return {
        "path": str(path),
        "title": article.title,
        "author": article.author,
        "published": article.published,
        "site_name": article.site_name,
        "language": article.language,
        "body": article.body,
    }


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", help="The URL the page was fetched from (helps metadata and relative links).")
@click.option(
    "--jsonl",
    "--json",
    "jsonl",
    is_flag=True,
    help="One JSON object per line (per file): path, title, author, published, site_name, language, body; "
    "or path and error.",
)
def extract(paths: tuple[Path, ...], url: str | None, jsonl: bool) -> None:
    """Run the clean stage on saved .html or .html.gz files.

    Exit status 1 if any file gave no article (binary, unreadable, or a main text shorter than the
    clean stage's clean_min_body_chars)."""
    min_body = settings_or_exit().clean_min_body_chars
    failed = 0
    for path in paths:
        row = extract_file(path, url, min_body)
        failed += "error" in row
        if jsonl:
            emit_json(row)
            continue
        if "error" in row:
            click.echo(f"{path}: error: {row['error']}")
            continue
        byline = " | ".join(row[k] or "-" for k in ("author", "published", "site_name"))
        # A missing title is shown as `newsflow show` and `search` show it, never as "None".
        click.echo(f"== {path}\n{row['title'] or '(no title)'}\n{byline}\n")
        click.echo((row["body"] or "") + "\n")
    raise SystemExit(1 if failed else 0)


COMMANDS = [extract]
