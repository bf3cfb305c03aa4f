"""`newsflow extract`: the clean stage on saved HTML files, no broker needed."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import click

from config.defaults import Settings
from workers.cli.common import emit_json, settings_or_exit


class Refused(ValueError):
    """A file the clean stage is not run on; the message says why (the file's error row)."""


class NotHTML(Refused):
    """A file the clean stage would never see: the fetch stage refuses such a body `not_html`."""


class TooLarge(Refused):
    """More HTML than the clean stage parses: it refuses such a page `too_large`."""


class Unreadable(Refused):
    """A path that is missing, a directory, not readable or a broken gzip file."""


# The clean stage's own input limit (setting clean_max_html_bytes), not fetch_max_bytes: this
# command is the clean stage, and a page between the two limits is fetched but then refused.
DEFAULT_MAX_HTML_BYTES = Settings.clean_max_html_bytes


def read_html(path: Path, max_bytes: int = DEFAULT_MAX_HTML_BYTES) -> str:
    raw = _read_capped(path, max_bytes)
    if len(raw) > max_bytes:
        raise TooLarge(
            f"too_large: more than {max_bytes} bytes of HTML (the clean stage refuses such a page "
            "`too_large`, setting clean_max_html_bytes)"
        )
    from newsflow.fetcher import decode_html, looks_binary

    if looks_binary(raw):
        raise NotHTML("not HTML: binary bytes (the fetch stage refuses such a page `not_html`)")
    return decode_html(raw, None)[0]


def _read_capped(path: Path, max_bytes: int) -> bytes:
    """At most `max_bytes` + 1 bytes of the page. A .gz file is inflated as it is read, so a gzip
    bomb stops at the cap instead of filling memory."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as stream:
            return stream.read(max_bytes + 1)
    except FileNotFoundError:
        raise Unreadable("no such file") from None
    except IsADirectoryError:
        raise Unreadable("is a directory; pass .html or .html.gz files") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # before OSError: BadGzipFile is one
        raise Unreadable(f"not a readable gzip file ({exc or 'it ends early'}); is it really .gz?") from None
    except OSError as exc:
        raise Unreadable(f"cannot read it: {exc.strerror or exc}") from None


def extract_file(
    path: Path, url: str | None, min_body_chars: int = 0, max_bytes: int = DEFAULT_MAX_HTML_BYTES
) -> dict[str, Any]:
    """The clean stage's reading of one saved page, or its error; a body shorter than
    `min_body_chars` is the clean stage's `no_article`."""
    from newsflow.extract import extract_article

    try:
        article = extract_article(read_html(path, max_bytes), url)
    except Refused as exc:
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


def _check_url(_ctx: click.Context, _param: click.Parameter, url: str | None) -> str | None:
    """An absolute http(s) URL with a host, refused up front (exit 2) rather than on every file."""
    from newsflow.urls import InvalidURL, normalize_url

    if url is not None:
        try:
            normalize_url(url)
        except InvalidURL as exc:
            raise click.BadParameter(f"{exc} (expected e.g. https://example.com/news/story.html)") from None
    return url


@click.command()
# Not click's exists check: a missing file is that file's error row, the other files are still read.
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--url",
    callback=_check_url,
    help="The http(s) URL the page was fetched from (helps metadata and relative links).",
)
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

    Exit status 1 if any file gave no article (missing, binary, unreadable, larger than the clean
    stage's clean_max_html_bytes, or a main text shorter than its clean_min_body_chars); the other
    files are still read. Exit status 2: usage error (e.g. a --url that is not an http(s) URL)."""
    settings = settings_or_exit()
    min_body, max_bytes = settings.clean_min_body_chars, settings.clean_max_html_bytes
    failed = 0
    for path in paths:
        row = extract_file(path, url, min_body, max_bytes)
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
