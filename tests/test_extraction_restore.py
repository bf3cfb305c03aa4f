"""What the body step puts back after the extractor (newsflow.extract.body): standfirsts outside the body
container, in-body headings and lists between kept paragraphs, the other parts of a body split around ad rows.

Each test is a small page of the kind the rule is for, plus the look-alike it must leave alone.
"""

from __future__ import annotations

import time

import pytest
from lxml.etree import Element, SubElement
from lxml.html import HtmlElement

from newsflow.extract import extract_article
from newsflow.extract.body import (
    CONTINUATION_MAX_PARTS,
    Candidate,
    add_continuations,
    fill_gaps,
    find_declared_standfirst,
    find_gaps,
    find_standfirst,
)
from newsflow.extract.htmlprep import parse_html
from newsflow.extract.options import DEFAULT_OPTIONS

SENTENCES = [
    "The council met on Tuesday evening to discuss the new budget for the coming year in detail.",
    "Several members argued that the proposed cuts to public transport would hurt the poorest districts.",
    "The mayor replied that the city had no choice after two years of falling tax revenue and rising costs.",
    "A final vote is expected next month, after a public consultation that opens on Monday morning.",
    "Residents can send their comments by post or online until the end of the consultation period.",
    "Local business groups welcomed the plan but asked for more investment in the old town centre.",
]
STANDFIRST = "The city wants to save twelve million euros next year, and public transport is first in line for cuts."


def _paragraphs(sentences: list[str]) -> str:
    return "".join(f"<p>{s} {s}</p>" for s in sentences)


def _page(head: str, body: str) -> str:
    return f"<html><head><title>Budget cuts</title>{head}</head><body>{body}</body></html>"


# --- the standfirst ------------------------------------------------------------------------------------------

STANDFIRST_PAGE = _page(
    f'<meta property="og:description" content="{STANDFIRST}">',
    '<main><header class="article-header"><h1>Council debates budget cuts</h1>'
    f'<div class="news-teaser-text"><p>{STANDFIRST}</p></div></header>'
    f'<div class="article-body">{_paragraphs(SENTENCES)}</div></main>'
    "<footer><p>Copyright the city paper.</p></footer>",
)


def test_standfirst_outside_the_body_container_is_kept_first() -> None:
    body = extract_article(STANDFIRST_PAGE, "https://example.org/news/budget").body
    assert body.startswith(STANDFIRST)
    assert body.count(STANDFIRST) == 1
    assert SENTENCES[0] in body


def test_standfirst_step_can_be_switched_off() -> None:
    options = DEFAULT_OPTIONS.without("restore_standfirst")
    body = extract_article(STANDFIRST_PAGE, "https://example.org/news/budget", options=options).body
    assert STANDFIRST not in body


def test_description_shown_only_inside_a_link_is_a_teaser_card_not_a_standfirst() -> None:
    page = _page(
        f'<meta property="og:description" content="{STANDFIRST}">',
        f'<ul class="stories"><li><a href="/news/budget"><p>{STANDFIRST}</p></a></li></ul>',
    )
    assert find_standfirst(parse_html(page), STANDFIRST) is None


def test_description_not_shown_on_the_page_gives_no_standfirst() -> None:
    other = "An entirely different summary that the page never shows."
    assert find_standfirst(parse_html(STANDFIRST_PAGE), other) is None


def _standfirst_page(head: str, standfirst_block: str) -> str:
    return _page(
        head,
        f'<main><header class="article-header"><h1>Council debates budget cuts</h1>{standfirst_block}</header>'
        f'<div class="article-body">{_paragraphs(SENTENCES)}</div></main>',
    )


def test_standfirst_shown_under_another_declared_description_is_kept() -> None:
    # The meta tags carry a short summary; the JSON-LD carries the standfirst the page shows.
    head = (
        '<meta name="description" content="Budget cuts: what the council plans for next year and why it matters.">'
        '<script type="application/ld+json">{"@type": "NewsArticle", "headline": "Budget cuts",'
        f' "description": "{STANDFIRST}"}}</script>'
    )
    page = _standfirst_page(head, f'<p class="deck">{STANDFIRST}</p>')
    body = extract_article(page, "https://example.org/news/budget").body
    assert body.startswith(STANDFIRST)
    off = DEFAULT_OPTIONS.without("standfirst_any_description")
    assert STANDFIRST not in extract_article(page, "https://example.org/news/budget", options=off).body


def test_reworded_standfirst_is_found_only_when_it_opens_like_the_description() -> None:
    declared = "The city wants to save twelve million euros next year, with public transport first"
    page = _standfirst_page("", f"<p>{STANDFIRST}</p>")
    assert find_standfirst(parse_html(page), declared, reworded=True) == STANDFIRST
    assert find_standfirst(parse_html(page), declared, reworded=False) is None
    # The same words after other text (a script, a label) are not a standfirst.
    late = _standfirst_page("", f"<p>Sponsored content from our partners. {STANDFIRST}</p>")
    assert find_standfirst(parse_html(late), declared, reworded=True) is None


def test_site_description_shown_in_the_footer_is_not_a_standfirst() -> None:
    blurb = "The city paper brings you the latest local news, sport, culture and weather every single day."
    page = _page("", f"<main>{_paragraphs(SENTENCES)}</main><footer><div class='site-info'>{blurb}</div></footer>")
    assert find_standfirst(parse_html(page), blurb) is None


def test_microdata_description_of_the_article_is_the_standfirst() -> None:
    page = _page(
        '<meta name="description" content="A summary the page never shows, written for search engines only.">',
        '<div itemscope itemtype="https://schema.org/NewsArticle"><h1 itemprop="headline">Budget cuts</h1>'
        f'<div class="teaser-text" itemprop="description"><p>{STANDFIRST}</p></div>'
        f'<article class="news-text">{_paragraphs(SENTENCES)}</article>'
        '<div itemprop="author" itemscope itemtype="https://schema.org/Person">'
        '<p itemprop="description">Jane Doe covers the city council and its budget for the paper since 2015.</p>'
        "</div></div>",
    )
    body = extract_article(page, "https://example.org/news/budget").body
    assert body.startswith(STANDFIRST)
    assert "covers the city council" not in body.split("\n")[0]
    assert find_declared_standfirst(parse_html(page)) == STANDFIRST
    off = DEFAULT_OPTIONS.without("standfirst_microdata")
    assert STANDFIRST not in extract_article(page, "https://example.org/news/budget", options=off).body


def test_microdata_description_of_a_person_is_not_a_standfirst() -> None:
    page = _page(
        "",
        f"<main>{_paragraphs(SENTENCES)}"
        '<div itemscope itemtype="https://schema.org/Person">'
        '<p itemprop="description">Jane Doe covers the city council and its budget for the paper since 2015.</p>'
        "</div></main>",
    )
    assert find_declared_standfirst(parse_html(page)) is None


# --- headings and lists between kept paragraphs ---------------------------------------------------------------


def _candidate(texts: list[str]) -> Candidate:
    body = Element("body")
    for text in texts:
        SubElement(body, "p").text = text
    return Candidate("trafilatura:fast", body, " ".join(texts))


def _blocks(candidate: Candidate) -> list[tuple[str, str]]:
    assert candidate.body is not None
    return [(el.tag, " | ".join(t.strip() for t in el.itertext() if t.strip())) for el in candidate.body]


def test_heading_and_list_between_two_kept_paragraphs_are_put_back() -> None:
    page = _page(
        "",
        f"<div><p>{SENTENCES[0]}</p><h3>What happens next</h3><p>{SENTENCES[1]}</p>"
        f"<ol><li>Consultation opens</li><li>Vote next month</li></ol><p>{SENTENCES[2]}</p></div>",
    )
    candidate = _candidate(SENTENCES[:3])  # the extractor kept the paragraphs only
    assert fill_gaps(candidate, find_gaps(parse_html(page))) == 2
    assert _blocks(candidate) == [
        ("p", SENTENCES[0]),
        ("head", "What happens next"),
        ("p", SENTENCES[1]),
        ("list", "Consultation opens | Vote next month"),
        ("p", SENTENCES[2]),
    ]


def test_related_links_between_paragraphs_and_headings_outside_the_body_stay_out() -> None:
    page = _page(
        "",
        f'<div><p>{SENTENCES[0]}</p><ul><li><a href="/a">Another story about the budget</a></li>'
        f'<li><a href="/b">Yet another story</a></li></ul><p>{SENTENCES[1]}</p></div>'
        f"<aside><p>Newsletter</p><h3>Most read</h3><p>Sign up for our daily briefing today</p></aside>",
    )
    candidate = _candidate(SENTENCES[:2])
    assert fill_gaps(candidate, find_gaps(parse_html(page))) == 0
    assert _blocks(candidate) == [("p", SENTENCES[0]), ("p", SENTENCES[1])]


def test_a_heading_already_in_the_body_is_not_repeated() -> None:
    page = _page("", f"<div><p>{SENTENCES[0]}</p><h2>Budget</h2><p>{SENTENCES[1]}</p></div>")
    candidate = _candidate([SENTENCES[0], "Budget", SENTENCES[1]])
    assert fill_gaps(candidate, find_gaps(parse_html(page))) == 0


# --- a body split around ad rows --------------------------------------------------------------------------------


def _split_page(between: str, second_part: str) -> str:
    container = '<div class="grid-item body__container article__body">'
    return _page(
        "",
        "<article><h1>Council debates budget cuts</h1>"
        f'<div class="grid">{container}{_paragraphs(SENTENCES[:3])}</div></div>'
        f"{between}"
        f'<div class="grid">{container}{second_part}</div></div></article>',
    )


AD_ROW = '<div class="row ad-row"><span class="ad-label">Advertisement</span><div class="ad-slot"></div></div>'


def test_second_part_of_a_body_split_around_an_ad_row_is_kept() -> None:
    body = extract_article(_split_page(AD_ROW, _paragraphs(SENTENCES[3:])), "https://example.org/a").body
    assert SENTENCES[0] in body and SENTENCES[5] in body
    assert body.index(SENTENCES[2]) < body.index(SENTENCES[3])


def test_container_of_the_same_class_after_other_text_is_not_a_continuation() -> None:
    more = '<div class="more"><h2>More from the city paper</h2><p>' + " ".join(SENTENCES) + "</p></div>"
    body = extract_article(_split_page(more, _paragraphs(SENTENCES[3:])), "https://example.org/a").body
    assert SENTENCES[5] not in body


def test_container_of_the_same_class_with_its_own_headline_is_another_article() -> None:
    other = "<h1>Another story</h1>" + _paragraphs(SENTENCES[3:])
    body = extract_article(_split_page(AD_ROW, other), "https://example.org/a").body
    assert SENTENCES[5] not in body


# An interview cut into text modules with pictures between them; the extractor kept the middle module only.
PICTURE = '<div class="module module--image"><img src="a.jpg"><p>Dress: a designer. Jewellery: another one.</p></div>'
QUESTIONS = [f"Question {i}: what did the council decide about the budget on that long evening?" for i in range(3)]


def _module(i: int, sentences: list[str]) -> str:
    # the question opens with an inline element, as interviews print them in bold
    question = f"<p><b>{QUESTIONS[i]}</b></p>"
    return f'<div class="module module--text"><div class="text">{question}{_paragraphs(sentences)}</div></div>'


def _modules_page(between: str = PICTURE) -> str:
    return _page(
        "",
        '<article><h1>Council debates budget cuts</h1><div class="module module--title">Budget cuts</div>'
        f"{_module(0, SENTENCES[:2])}{between}{_module(1, SENTENCES[2:4])}{PICTURE}{_module(2, SENTENCES[4:])}"
        "</article><footer><p>Copyright the city paper.</p></footer>",
    )


def _kept_middle() -> Candidate:
    return _candidate([QUESTIONS[1]] + [f"{s} {s}" for s in SENTENCES[2:4]])


def test_parts_of_an_article_before_and_after_the_kept_one_go_back_in_page_order() -> None:
    candidate = _kept_middle()
    assert add_continuations(candidate, parse_html(_modules_page())) == 6
    texts = [text for _, text in _blocks(candidate)]
    assert texts == [QUESTIONS[0], *(f"{s} {s}" for s in SENTENCES[:2]), QUESTIONS[1]] + [
        f"{s} {s}" for s in SENTENCES[2:4]
    ] + [QUESTIONS[2], *(f"{s} {s}" for s in SENTENCES[4:])]
    assert QUESTIONS[0] in candidate.text  # later steps see what the body now has


def test_a_part_between_two_kept_ones_goes_between_them() -> None:
    candidate = _candidate(
        [QUESTIONS[0]] + [f"{s} {s}" for s in SENTENCES[:2]] + [QUESTIONS[2]] + [f"{s} {s}" for s in SENTENCES[4:]]
    )
    assert add_continuations(candidate, parse_html(_modules_page())) == 3
    texts = [text for _, text in _blocks(candidate)]
    assert texts.index(QUESTIONS[0]) < texts.index(QUESTIONS[1]) < texts.index(QUESTIONS[2])


def test_an_earlier_part_after_other_text_is_not_put_back() -> None:
    teaser = '<div class="teaser"><p>' + " ".join(SENTENCES) + "</p></div>"
    candidate = _kept_middle()
    add_continuations(candidate, parse_html(_modules_page(between=teaser)))
    assert QUESTIONS[0] not in candidate.text and QUESTIONS[2] in candidate.text


INTRO = "In the town hall, the budget debate went on until midnight and ended without any agreement at all."


def test_an_earlier_part_goes_after_the_kept_blocks_that_precede_it_on_the_page() -> None:
    page = _modules_page().replace('<div class="module module--title">', f'<p class="intro">{INTRO}</p><div class="x">')
    candidate = _candidate([INTRO, QUESTIONS[1]] + [f"{s} {s}" for s in SENTENCES[2:4]])
    add_continuations(candidate, parse_html(page))
    texts = [text for _, text in _blocks(candidate)]
    assert texts.index(INTRO) < texts.index(QUESTIONS[0]) < texts.index(QUESTIONS[1]) < texts.index(QUESTIONS[2])


def test_a_short_label_every_part_repeats_does_not_make_a_missing_part_look_kept() -> None:
    page = _modules_page().replace('<div class="text">', '<div class="text"><p>Anzeige</p>')
    candidate = _candidate(["Anzeige", QUESTIONS[1]] + [f"{s} {s}" for s in SENTENCES[2:4]])
    add_continuations(candidate, parse_html(page))
    assert QUESTIONS[0] in candidate.text and QUESTIONS[2] in candidate.text


def test_the_search_for_earlier_parts_stops_at_the_headline() -> None:
    promo = f"<p>{' '.join(SENTENCES[:3])}</p>"  # prose of the same class above the headline: a promotion
    page = _page(
        "",
        f'<div class="row">{promo}</div><div class="row"><h1>Council debates budget cuts</h1></div>'
        f'<div class="row">{_paragraphs(SENTENCES[3:])}</div>',
    )
    candidate = _candidate([f"{s} {s}" for s in SENTENCES[3:]])
    assert add_continuations(candidate, parse_html(page)) == 0


def test_a_pull_quote_put_back_stays_a_quote_for_the_cleanup() -> None:
    quote = "nobody in this chamber wants to close a single bus line"
    second = f"<p>The mayor said that {quote}, but the money is gone.</p><blockquote>{quote}</blockquote>"
    body = extract_article(_split_page(AD_ROW, second + _paragraphs(SENTENCES[3:])), "https://example.org/a").body
    assert body.count(quote) == 1


def _thread(n: int) -> tuple[HtmlElement, list[str]]:
    posts = [f"Post {i}. {SENTENCES[i % 6]} {SENTENCES[0]} {SENTENCES[1]}" for i in range(n)]
    html = "".join(f'<div class="post"><p>{post}</p></div>' for post in posts)
    return parse_html(_page("", f"<article><h1>Budget thread</h1>{html}</article>")), posts


def _numbers(candidate: Candidate) -> list[int]:
    return [int(text.split(".")[0].removeprefix("Post ")) for _, text in _blocks(candidate)]


@pytest.mark.parametrize("kept", ["one", "every other", "all"])
def test_a_thread_of_thousands_of_parts_costs_what_its_size_does(kept: str) -> None:
    # A forum thread of one class per post: what is put back is bounded (CONTINUATION_MAX_PARTS each way
    # from the post the body came from), and nothing costs the square of the thread (8,000 posts of which
    # the extractor kept all took seconds that way).
    n, mid = 8000, 4000
    tree, posts = _thread(n)
    chosen = {"one": [mid], "every other": range(0, n, 2), "all": range(n)}[kept]
    candidate = _candidate([posts[i] for i in chosen])
    started = time.process_time()
    add_continuations(candidate, tree)
    assert time.process_time() - started < 2
    numbers = _numbers(candidate)
    assert numbers == sorted(numbers) and len(numbers) == len(set(numbers))
    if kept == "one":
        assert numbers == list(range(mid - CONTINUATION_MAX_PARTS, mid + CONTINUATION_MAX_PARTS + 1))
    elif kept == "every other":
        assert set(range(n - 200, n)) <= set(numbers)  # the gaps near the body's last post are filled
    else:
        assert numbers == list(range(n))
