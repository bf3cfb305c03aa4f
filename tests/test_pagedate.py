"""newsflow.extract.pagedate follows htmldate's `find_date` but for its whole-page search (`search_page`).

On the evaluation pages that declare no date elsewhere, its answer is `find_date`'s whenever that last
resort did not answer, and None when it did. These pages are where an htmldate upgrade that changes its
steps shows.
"""

from __future__ import annotations

from functools import cache

import htmldate.core
import pytest
from htmldate import find_date
from lxml.html import HtmlElement, tostring

from newsflow.extract import pagedate
from newsflow.extract.devset import load_dev_pages
from newsflow.extract.evaluate import load_benchmark
from newsflow.extract.htmlprep import parse_html
from newsflow.extract.metadata import extract_metadata
from tests.conftest import BENCH_DIR, FIXTURES

DEV_DIR = FIXTURES / "trafilatura-eval-dev"


@cache
def undated_pages() -> list[tuple[str, HtmlElement, str | None]]:
    """Pages where metadata falls back on htmldate: no other source dates them."""
    pages = [(p.name, p.html(), p.url) for p in load_dev_pages(DEV_DIR)]
    pages += [(f"benchmark {i}", p.html(), p.url) for i, p in enumerate(load_benchmark(BENCH_DIR))]
    found = []
    for name, html, url in pages:
        tree = parse_html(html)
        assert tree is not None
        if extract_metadata(tree, url, None).provenance.get("published") in (None, "htmldate"):
            found.append((name, tree, url))
    return found


def test_same_as_find_date_but_the_whole_page_search(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pagedate._SEQUENCE  # htmldate's functions were found: not the fallback on find_date
    pages = undated_pages()
    assert len(pages) >= 100
    ours = [pagedate.marked_date(tree, url) for _, tree, url in pages]
    full = [find_date(tree, url=url, original_date=True, extensive_search=True) for _, tree, url in pages]
    monkeypatch.setattr(htmldate.core, "search_page", lambda *_: None)
    without_search = [find_date(tree, url=url, original_date=True, extensive_search=True) for _, tree, url in pages]
    assert ours == without_search
    # The two differ where the whole-page search answered (26 of 140 pages here; 9 of those dates
    # pass metadata's own checks), and there the page is left undated.
    differ = [name for (name, _, _), a, b in zip(pages, ours, full, strict=True) if a != b]
    assert differ and all(a is None for a, b in zip(ours, full, strict=True) if a != b)
    assert len(differ) < len(pages) / 4


def test_the_tree_is_left_as_it_was() -> None:
    _, tree, url = undated_pages()[0]
    before = tostring(tree)
    pagedate.marked_date(tree, url)
    assert tostring(tree) == before


def _page(body: str, head: str = "") -> HtmlElement:
    tree = parse_html(f"<html><head>{head}</head><body>{body}</body></html>")
    assert tree is not None
    return tree


def _find_date(tree: HtmlElement) -> str | None:
    """htmldate's own answer, last resort included."""
    return find_date(tree, original_date=True, extensive_search=True)


NEWS = "<p>Bis einschließlich Oktober wurden 1.087 Feststellungen gezählt.</p>"


@pytest.mark.parametrize(
    ("head", "body", "whole_page_date"),
    [
        # a script's version: the kind of date the last resort was left out for
        (
            "<script src='/wp-includes/js/swfobject.js?ver=2.2-20120417'></script>",
            "<h1>Jens Weber</h1><p>Designer and researcher in Berlin.</p>",
            "2012-04-17",
        ),
        # a lone year, padded to the 1st of January
        ("", "<h1>Bilanz</h1><p>Das Jahr 2019 im Rückblick: was blieb.</p>", "2019-01-01"),
        # the price: a date alone in inline markup under the headline (one dev page, a running update)
        # is found by no earlier step, so the page goes undated
        ("", f"<h1>Die Lage</h1><p><em>10.11.2021</em></p>{NEWS}", "2021-11-10"),
    ],
)
def test_what_only_the_whole_page_search_finds_is_left_undated(head: str, body: str, whole_page_date: str) -> None:
    tree = _page(body, head)
    assert _find_date(tree) == whole_page_date
    assert pagedate.marked_date(tree, None) is None


@pytest.mark.parametrize(
    "dateline",
    [
        "<p class='meta'>Veröffentlicht am 10.11.2021</p>",  # a date-ish class
        "<p>Veröffentlicht am 10.11.2021 von der Redaktion</p>",  # dated text
        "<time datetime='2021-11-10'>10. November</time>",
    ],
)
def test_a_dateline_is_still_read(dateline: str) -> None:
    assert pagedate.marked_date(_page(f"<h1>Die Lage</h1>{dateline}{NEWS}"), None) == "2021-11-10"


def test_falls_back_on_find_date_when_htmldate_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    def changed(*_: object) -> None:
        raise TypeError("a new signature")

    monkeypatch.setattr(pagedate, "_sequence", changed)
    tree = _page("<p>Published 2021-11-10 by the desk.</p>")
    assert pagedate.marked_date(tree, None) == _find_date(tree)
