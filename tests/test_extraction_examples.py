"""The bundled example pages (examples/) against the expectations in examples/README.md, and unit tests of the
steps added for them: layout tables, bylines split by <br>, pull quotes repeating the body."""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from pathlib import Path

import pytest
from lxml.html import fromstring

from newsflow.extract import Article, extract_article
from newsflow.extract.byline import clean_author
from newsflow.extract.htmlprep import is_layout_table, parse_html, text_lines, unwrap_layout_tables
from newsflow.extract.options import DEFAULT_OPTIONS
from workers.cli.extract import read_html

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_ROW = re.compile(r"^\| `(?P<file>[\w-]+\.html)` \| (?P<title>[^|]+) \| (?P<author>[^|]+) \| (?P<published>[^|]+) \|$")


def readme_expectations() -> dict[str, dict[str, str]]:
    """The "Expected metadata" table of examples/README.md: file -> title, author, published."""
    rows = {}
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for line in text.split("Expected metadata", 1)[-1].splitlines():
        match = _ROW.match(line.strip())
        if match:
            fields = {k: v.strip() for k, v in match.groupdict().items()}
            # "2024-06-03T09:15:00-07:00 (= 16:15 UTC)": the instant is what must match.
            fields["published"] = fields["published"].split(" (")[0]
            rows[fields.pop("file")] = fields
    return rows


EXPECTED = readme_expectations()


@cache
def example(name: str) -> Article:
    # As `newsflow extract examples/NAME.html` does it (no URL).
    return extract_article(read_html(EXAMPLES / name), None)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_readme_table_covers_every_invented_page() -> None:
    pages = {p.name for p in EXAMPLES.glob("*.html")} - {"seed.html"}
    assert set(EXPECTED) == pages


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_metadata_matches_readme(name: str) -> None:
    article, expected = example(name), EXPECTED[name]
    assert article.title == expected["title"]
    assert article.author == expected["author"]
    assert article.published is not None
    assert _instant(article.published) == _instant(expected["published"])


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.html")))
def test_example_body_is_prose_not_a_table(name: str) -> None:
    body = example(name).body
    assert len(body.split()) >= 150
    assert not any(line.startswith("|") for line in body.splitlines()), "layout table rendered as a table"


# --- issue 1: layout tables -------------------------------------------------------------------------------

ARTS_PARAGRAPHS = (
    "The Riverlights arts festival drew an estimated 62,000 visitors",
    "The free festival, which fills the old mill district",
    '"Bringing it back to the water changed everything,"',
    "The closing-night lantern procession",
    "This year's program featured 41 artists",
    "The festival's budget of about $410,000",
    "Police Chief Darnell Ruiz said",
    "Dates for next year's festival are expected to be announced in October.",
)


def test_table_layout_page_gives_the_article_paragraphs_only() -> None:
    lines = example("arts-festival.html").body.splitlines()
    assert len(lines) == len(ARTS_PARAGRAPHS), lines
    for line, start in zip(lines, ARTS_PARAGRAPHS, strict=True):
        assert line.startswith(start)
    body = "\n".join(lines)
    for clutter in (
        "Obituaries",
        "SECTIONS",
        "READER POLL",
        "fourth night?",
        "Sign Up",
        "MOST VIEWED",
        "Reader comments",
        "MORE ARTS",
        "Copyright",
        "Print this story",
        "Gazette photo by",
    ):
        assert clutter not in body


def _page(inner: str) -> str:
    prose = "".join(
        f"<p>Paragraph {i} of the story says what the council decided and why the vote took so long tonight.</p>"
        for i in range(6)
    )
    return f"<html><head><title>Budget vote</title></head><body>{inner.replace('PROSE', prose)}</body></html>"


DATA_TABLE = (
    "<table><thead><tr><th>Ward</th><th>Votes</th></tr></thead>"
    "<tbody><tr><td>North</td><td>1200</td></tr><tr><td>South</td><td>980</td></tr></tbody></table>"
)


def test_layout_table_detection() -> None:
    layout = fromstring(_page("<table><tr><td>menu</td></tr><tr><td>PROSE</td></tr></table>")).find(".//table")
    nested = fromstring("<table><tr><td><table><tr><td>x</td></tr></table></td></tr></table>")
    presentational = fromstring('<table role="presentation"><tr><td>x</td></tr></table>')
    data = fromstring(DATA_TABLE)
    assert layout is not None and is_layout_table(layout)
    assert is_layout_table(nested) and is_layout_table(presentational)
    assert not is_layout_table(data)


def test_unwrap_keeps_data_tables_inside_layout_tables() -> None:
    html = _page(f"<table><tr><td>Home | News</td></tr><tr><td><h1>Budget vote</h1>PROSE{DATA_TABLE}</td></tr></table>")
    tree = parse_html(html)
    assert tree is not None
    assert unwrap_layout_tables(tree) == 1
    tables = tree.findall(".//table")
    assert len(tables) == 1 and not is_layout_table(tables[0])
    body = extract_article(html).body
    assert "Paragraph 5 of the story" in body
    assert "North" in body and "1200" in body  # the results table is content


def test_layout_table_switch_is_what_fixes_the_page() -> None:
    html = read_html(EXAMPLES / "arts-festival.html")
    without = extract_article(html, None, options=DEFAULT_OPTIONS.without("unwrap_layout_tables")).body
    assert "READER POLL" in without or "Obituaries" in without  # the failure this step exists for


# --- issue 2: bylines split by <br> -----------------------------------------------------------------------


def test_text_lines_separates_br_and_blocks_but_not_inline_markup() -> None:
    el = fromstring('<td>By <b>Margaret</b> Olsen<br><font size="1">Gazette Arts Editor</font></td>')
    assert text_lines(el) == ["By Margaret Olsen", "Gazette Arts Editor"]
    el = fromstring("<div><span>By Jo Lee</span><div>Staff Writer</div>tail</div>")
    assert text_lines(el) == ["By Jo Lee", "Staff Writer", "tail"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("By Margaret Olsen\nGazette Arts Editor", "Margaret Olsen"),
        ("By Margaret Olsen Gazette Arts Editor", "Margaret Olsen"),  # flattened, title after the name
        ("Margaret OlsenGazette Arts Editor", "Margaret Olsen"),  # glued by markup without a space
        ("Jane Doe, Washington Correspondent", "Jane Doe"),
        ("Jane Doe\nStaff Writer", "Jane Doe"),
        ("Jane Doe Chief Political Correspondent", "Jane Doe"),
        ("Ken Senior, Staff Writer", "Ken Senior"),  # a surname that is a role word survives
        ("Ronald McDonald Staff Writer", "Ronald McDonald"),
        ("Gazette Arts Editor", None),
        ("Lucía Marín Ortega", "Lucía Marín Ortega"),
    ],
)
def test_clean_author_job_titles(raw: str, expected: str | None) -> None:
    assert clean_author(raw, {"millbrookgazette", "millbrook"}) == expected


def test_byline_with_br_in_markup() -> None:
    html = _page(
        '<article><h1>Budget vote</h1><div class="byline">By Jo Lee<br><i>City Hall Reporter</i></div>PROSE</article>'
    )
    article = extract_article(html)
    assert article.author == "Jo Lee"
    assert article.provenance["author"] == "html:byline"


# --- issue 3: pull quotes ---------------------------------------------------------------------------------

QUOTE = "The interesting part is not that the fungus helps, it is when the help shows up."


def _quoted_page(quote_markup: str) -> str:
    said = f"<p>“{QUOTE[:-1]},” said Dr. Hannah Mireault, a plant ecologist who led the study.</p>"
    return _page(f"<article><h1>Budget vote</h1>PROSE{quote_markup}{said}</article>")


@pytest.mark.parametrize(
    "markup",
    [
        f'<blockquote class="pullquote"><p>“{QUOTE}”</p></blockquote>',
        f"<blockquote>{QUOTE}</blockquote>",  # no class: a repeat is a repeat
        f'<div class="pull-quote"><p>{QUOTE}</p></div>',
        f'<aside class="pullquote">{QUOTE}</aside>',
        f'<figure class="pull-quote"><blockquote>{QUOTE}</blockquote></figure>',
    ],
)
def test_pull_quote_repeating_the_body_is_dropped(markup: str) -> None:
    body = extract_article(_quoted_page(markup)).body
    assert body.count("The interesting part is not that the fungus helps") == 1
    assert "said Dr. Hannah Mireault" in body


def test_quote_said_once_is_content() -> None:
    html = _page(f"<article><h1>Budget vote</h1>PROSE<blockquote><p>{QUOTE}</p></blockquote></article>")
    assert QUOTE in extract_article(html).body


def test_repeated_short_paragraphs_are_not_pull_quotes() -> None:
    # Meal plans, schedules and lists repeat lines on purpose.
    item = "<p>Eat one to two hours before your morning workout begins.</p>"
    html = _page(f"<article><h1>Budget vote</h1>PROSE{item}PROSE{item}</article>")
    assert extract_article(html).body.count("Eat one to two hours") == 2


def test_science_example_says_the_pull_quote_once() -> None:
    body = example("science-fungus-wheat.html").body
    assert body.count("The interesting part is not that the fungus helps") == 1
    assert "said Dr. Hannah Mireault, a plant ecologist who led the study" in body
