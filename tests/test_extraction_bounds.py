"""What a page can make the clean stage spend: elements, nesting, field sizes (newsflow/extract).

A page decides how many elements it has, how deep they nest and how long its title is; none of it
may cost hours of CPU, drop a real article, or put a megabyte into every search hit.
"""

from __future__ import annotations

import time

import pytest

from newsflow.errors import PermanentError
from newsflow.extract import extract_article
from newsflow.extract.article import MAX_ELEMENTS, TooComplex
from newsflow.extract.metadata import FIELD_MAX_CHARS, bounded
from newsflow.pipeline import Message
from tasks.clean import build_doc

PARAGRAPH = "<p>The council met on Tuesday to settle next year's budget for the harbour and its ferries.</p>"


def _page(body: str, title: str = "Harbour budget settled") -> str:
    return f"<html><head><title>{title}</title></head><body>{body}</body></html>"


def test_a_page_over_the_element_cap_is_refused_quickly() -> None:
    page = _page("<p>Word here.</p>" * (MAX_ELEMENTS + 1000))
    started = time.process_time()
    with pytest.raises(TooComplex) as caught:
        extract_article(page, "https://news.example/a")
    assert time.process_time() - started < 5  # parse and count, no extraction
    assert caught.value.reason == "too_large" and isinstance(caught.value, PermanentError)
    assert f"> {MAX_ELEMENTS}" in caught.value.detail


def test_the_cap_counts_elements_not_angle_brackets() -> None:
    # Many "<" in text (a code listing, escaped or not) are not elements: the page is extracted.
    listing = "<pre>" + "a &lt; b; " * 200 + "</pre>"
    page = _page("<article>" + PARAGRAPH * 20 + listing + "</article>")
    assert "harbour" in extract_article(page, "https://news.example/a", max_elements=100).body


def test_the_clean_stage_takes_its_cap_from_the_settings() -> None:
    msg = Message.new("https://news.example/a", "ab" * 16).forward(blob="-", fetch={"status": 200})
    page = _page("<article>" + PARAGRAPH * 30 + "</article>")
    assert "harbour" in build_doc(msg, page, 1 << 20, 50, max_elements=0)["body"]  # 0: no cap
    with pytest.raises(PermanentError) as caught:
        build_doc(msg, page, 1 << 20, 50, max_elements=20)
    assert caught.value.reason == "too_large"


@pytest.mark.parametrize("depth", [300, 1000])
def test_an_article_nested_hundreds_of_levels_deep_is_extracted(depth: int) -> None:
    page = _page("<div>" * depth + "<article>" + PARAGRAPH * 10 + "</article>" + "</div>" * depth)
    body = extract_article(page, "https://news.example/a").body
    assert "next year's budget" in body


def test_a_title_of_a_megabyte_is_cut_to_the_field_limit() -> None:
    huge = "Harbour " * 150_000
    article = extract_article(_page("<article>" + PARAGRAPH * 10 + "</article>", title=huge), "https://n.example/a")
    assert article.title is not None
    assert len(article.title) <= FIELD_MAX_CHARS["title"] and article.title.endswith("…")
    assert article.title.startswith("Harbour Harbour")


def test_bounded_cuts_at_a_word_boundary_when_one_is_near() -> None:
    assert bounded("alpha beta gamma delta epsilon", 25) == "alpha beta gamma delta…"
    assert bounded("alpha beta gamma delta", 15) == "alpha beta gam…"  # no space near the end
    assert bounded("x" * 40, 10) == "x" * 9 + "…"
    assert len(bounded("word " * 100, 50)) <= 50
