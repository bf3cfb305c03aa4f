"""The extraction's cost cuts change no result: each cheaper path is checked against the path it replaced.

- parse_html skips trafilatura's regex deletion of invalid characters on pages that have none, and
  follows trafilatura's loader with its own parser either way: the loader's tree; that parser picks
  element classes in C (every element an HtmlElement), not in lxml.html's Python callback: the same
  articles;
- metadata reads <meta>, <script>, <link>, <title>, <h1> and <time> from one walk of the tree, and finds
  byline and datePublished candidates by attribute nodes: the same elements, in the same order, as the
  XPath expressions they replace;
- prepare_tree finds hidden elements by attribute nodes, blockquotes and tables in one walk, and pull
  quotes without the all-nodes set of "//": the same elements again.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
from lxml.etree import XPath
from lxml.html import HtmlElement, HTMLParser, tostring
from trafilatura.utils import INVALID_XML_CHARS, load_html

from newsflow.extract import htmlprep as prep
from newsflow.extract import metadata as meta
from newsflow.extract.article import extract_article
from newsflow.extract.evaluate import load_benchmark
from newsflow.extract.options import DEFAULT_OPTIONS, ExtractOptions
from tests.conftest import BENCH_DIR

# The expressions the cheaper paths replaced (as they were), to compare with on real pages.
_OLD_BYLINE = XPath(
    "//*[@rel='author' or @itemprop='author' or @itemprop='name' or contains(@class, 'byline')"
    " or contains(@class, 'uthor')][not(self::meta or self::link or self::script or self::style)]"
)
_OLD_HIDDEN = XPath(
    "//body//*[@hidden or @style][not(self::script or self::style or self::noscript or self::template)]"
)
_OLD_PULL_QUOTES = XPath(
    "//div[contains(@class, 'ull') or contains(@id, 'ull')] | //p[contains(@class, 'ull') or contains(@id, 'ull')]"
)

# Pages that take each branch of trafilatura's loader.
EDGE_PAGES = {
    "slash in doctype": (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN" "x.dtd"/>\n<html><body><p>Text</p></body></html>'
    ),
    "self-closing html": '<html lang="en"/>\n<head><title>T</title></head><body><p>Text</p></body></html>',
    "xml declaration": '<?xml version="1.0" encoding="utf-8"?>\n<html><body><p>Text</p></body></html>',
    "not html": "just some words, no markup",
    "one fragment": "<p>Only a paragraph</p>",
    "two fragments": "<div>One</div><div>Two</div>",
    "head, no html tag": "<head><title>T</title></head><body><h1>H</h1></body>",
    "control characters": "<html><body><p>Tab\there\x00 and \x1b[0m and \ufffe</p></body></html>",
    "form feed only": "<html><body><p>Page\x0cbreak</p></body></html>",
}


@cache
def bench_pages() -> list[tuple[str, str | None]]:
    return [(p.html(), p.url) for p in load_benchmark(BENCH_DIR)]


def _serialized(tree: HtmlElement | None) -> str | None:
    return None if tree is None else tostring(tree, encoding="unicode")


def _loader(html: str) -> HtmlElement | None:
    tree = load_html(html)
    return tree if isinstance(tree, HtmlElement) else None


# --- parsing -----------------------------------------------------------------------------------------------


def test_invalid_characters_are_trafilaturas() -> None:
    """The characters tested with `in` are exactly those trafilatura's loader deletes (its regex has no
    class beyond the Basic Multilingual Plane)."""
    deleted = {chr(c) for c in range(0x10000) if INVALID_XML_CHARS.match(chr(c))}
    assert deleted == set(prep._INVALID_XML_CHARS)


@pytest.mark.parametrize("name", sorted(EDGE_PAGES))
def test_parse_gives_the_loaders_tree_on_edge_pages(name: str) -> None:
    html = EDGE_PAGES[name]
    assert _serialized(prep.parse_html(html)) == _serialized(_loader(html))


def test_page_with_invalid_characters_still_has_them_deleted() -> None:
    """The shortcut is taken only without invalid characters: with one, the loader strips it."""
    html = EDGE_PAGES["control characters"]
    assert any(char in html for char in prep._INVALID_XML_CHARS)
    tree = prep.parse_html(html)
    assert tree is not None
    assert tree.text_content() == "Tab\there and [0m and "


def test_parse_gives_the_loaders_tree_on_benchmark_pages() -> None:
    assert [_serialized(prep.parse_html(h)) for h, _ in bench_pages()] == [
        _serialized(_loader(h)) for h, _ in bench_pages()
    ]


def test_c_class_lookup_gives_the_same_articles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser's class lookup in C gives every benchmark page the article lxml.html's own lookup
    (form elements as FormElement, InputElement...) gave."""
    pages = bench_pages()
    fast = [extract_article(h, u).to_dict() for h, u in pages]
    python_lookup = HTMLParser(**prep.PARSER_OPTIONS)  # the same options, lxml.html's own class lookup
    monkeypatch.setattr(prep, "HTML_PARSER", python_lookup)  # a parser of its own: the shared one is not touched
    slow = [extract_article(h, u).to_dict() for h, u in pages]
    assert fast == slow
    form = prep.parse_html("<html><body><form><input name='q'></form><p>Text</p></body></html>")
    assert form is not None
    assert {type(e).__name__ for e in form.iter()} >= {"FormElement", "InputElement"}  # the other lookup was used


@pytest.mark.parametrize("control", ["", "\x0c"])
def test_parsed_elements_are_html_elements(control: str) -> None:
    """With or without a character the loader deletes: both go through this module's parser."""
    tree = prep.parse_html(f"<html><body>{control}<form><input name='q' value='x'><p>Text</p></form></body></html>")
    assert tree is not None
    assert {type(e) for e in tree.iter()} == {HtmlElement}
    assert tree.text_content() == "Text"


@pytest.mark.parametrize("control", ["", "\x0c"])
def test_a_deep_page_keeps_its_text(control: str) -> None:
    """libxml2 without huge mode stops 256 levels deep; a page with a control character used to be
    parsed by trafilatura's loader, without it, and lost its article."""
    paragraph = "<p>" + "Deep article text about the council and the budget vote. " * 5 + "</p>"
    html = f"<html><body>{control}" + "<div>" * 300 + paragraph * 3 + "</div>" * 300 + "</body></html>"
    tree = prep.parse_html(html)
    assert tree is not None
    assert len(tree.findall(".//p")) == 3


# --- metadata ----------------------------------------------------------------------------------------------


def _same_on_bench_pages(new: Callable[[HtmlElement], object], old: Callable[[HtmlElement], object]) -> None:
    for html, _ in bench_pages():
        tree = prep.parse_html(html)
        assert tree is not None
        assert new(tree) == old(tree)


@pytest.mark.parametrize("tag", ["title", "h1", "time", "meta", "script", "link"])
def test_one_walk_finds_what_xpath_found(tag: str) -> None:
    _same_on_bench_pages(lambda t: meta.PageElements.of(t)[tag], lambda t: t.xpath(f"//{tag}"))


def test_byline_candidates_are_the_old_ones() -> None:
    """Attribute-node search may find more (meta/link/script/style, dropped after), never fewer."""
    _same_on_bench_pages(
        lambda t: [el for el in meta._BYLINE_CANDIDATES(t) if el.tag not in meta._NOT_BYLINES], _OLD_BYLINE
    )


def test_date_published_itemprop_is_the_old_one() -> None:
    _same_on_bench_pages(meta._DATE_PUBLISHED_ITEMPROP, lambda t: t.xpath("//*[@itemprop='datePublished']"))


def test_byline_candidates_on_a_small_page() -> None:
    html = (
        "<html><head><meta itemprop='author' content='x'><link rel='author' href='/a'></head><body>"
        "<div class='post-byline'>By Ann Lee</div><span itemprop='author'><b itemprop='name'>Bo Ek</b></span>"
        "<a rel='author'>Cy Orr</a><p class='AUTHOR'>case differs</p></body></html>"
    )
    tree = prep.parse_html(html)
    assert tree is not None
    found = [el for el in meta._BYLINE_CANDIDATES(tree) if el.tag not in meta._NOT_BYLINES]
    assert found == _OLD_BYLINE(tree)
    assert [el.tag for el in found] == ["div", "span", "b", "a"]


ARTICLE_TIMES = (
    "<html><body><time datetime='2020-01-05'>first</time>"
    "<header><time datetime=''>empty</time><time datetime='2020-02-06'>header</time></header>"
    "<article><p><time>no attribute</time><time datetime='2020-03-07'>article</time></p></article>"
    "<time pubdate datetime='2020-04-08'>pubdate</time></body></html>"
)


@pytest.mark.parametrize(
    ("drop", "expected"),
    [
        ((), "2020-03-07"),  # inside the article first
        (("article",), "2020-02-06"),  # then the header (an empty datetime is skipped)
        (("article", "header"), "2020-04-08"),  # then a pubdate one
    ],
)
def test_article_time_order(drop: tuple[str, ...], expected: str) -> None:
    tree = prep.parse_html(ARTICLE_TIMES)
    assert tree is not None
    for tag in drop:
        for el in tree.findall(f".//{tag}"):
            el.drop_tree()
    assert meta._article_time(meta.PageElements.of(tree)["time"]) == expected


def test_first_time_takes_an_empty_datetime_too() -> None:
    """As "//time[@datetime][1]" did: the first <time> with the attribute, even empty (it then dates nothing)."""
    tree = prep.parse_html("<html><body><time>x</time><time datetime=''>y</time><time datetime='2020-01-02'>"
                           "</time></body></html>")  # fmt: skip
    assert tree is not None
    assert meta._first_time(meta.PageElements.of(tree)["time"]) == ""


# --- tree preparation --------------------------------------------------------------------------------------


def test_hidden_candidates_are_the_old_ones() -> None:
    def new(tree: HtmlElement) -> list[HtmlElement]:
        return [el for el in prep._HIDDEN_CANDIDATES(tree) if el.tag not in prep._NEVER_SHOWN]

    _same_on_bench_pages(new, _OLD_HIDDEN)


def test_pull_quote_candidates_are_the_old_ones() -> None:
    _same_on_bench_pages(prep._PULL_QUOTE_CANDIDATES, _OLD_PULL_QUOTES)


EMBED_IN_LAYOUT = (
    "<html><body><table><tr><td><h2>Menu</h2><p>a</p><p>b</p></td><td><div class='tweet-wrap'>"
    "<blockquote class='twitter-tweet'><p>Quoted post</p></blockquote></div></td><td class='pullquote'>Q</td>"
    "</tr></table><p style='display: none'>hidden</p></body></html>"
)


@pytest.mark.parametrize(
    "options",
    [
        DEFAULT_OPTIONS,
        DEFAULT_OPTIONS.without("keep_embedded_posts"),
        DEFAULT_OPTIONS.without("unwrap_layout_tables"),
        DEFAULT_OPTIONS.without("keep_embedded_posts").without("unwrap_layout_tables"),
    ],
)
def test_each_step_applies_alone(options: ExtractOptions) -> None:
    tree = prep.parse_html(EMBED_IN_LAYOUT)
    assert tree is not None
    html = tostring(prep.prepare_tree(tree, options), encoding="unicode")
    assert ("<table>" in html) is not options.unwrap_layout_tables
    assert ('class="twitter-tweet"' in html) is not options.keep_embedded_posts
    assert "hidden" not in html
    # A pull quote cell is a div once its table is unwrapped, and only then marked as a quote.
    assert ('<blockquote class="pullquote">Q</blockquote>' in html) is options.unwrap_layout_tables
