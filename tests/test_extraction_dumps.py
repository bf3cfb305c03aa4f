"""The fast pass's one-paragraph last resort (trafilatura's `baseline`) cut into the visual lines of
the page's <article> it was made of, so the block rules of newsflow/extract/cleanup.py have blocks to
judge (newsflow/extract/body.py: is_dump, article_lines, cut_dump)."""

from __future__ import annotations

from lxml.etree import _Element, fromstring

from newsflow.extract import extract_article
from newsflow.extract.body import DUMP_WINDOW, FAST, Candidate, article_lines, cut_dump, is_dump
from newsflow.extract.devset import load_dev_pages
from newsflow.extract.htmlprep import parse_html
from newsflow.extract.options import DEFAULT_OPTIONS
from tests.conftest import FIXTURES

DEV_DIR = FIXTURES / "trafilatura-eval-dev"
PROSE = (
    "The harbour council approved the new flood wall on Tuesday after a debate that lasted most of the "
    "evening, with residents of the lower town speaking for and against the plan."
)


def body(xml: str) -> _Element:
    return fromstring(f"<body>{xml}</body>")


def candidate(xml: str) -> Candidate:
    tree = body(xml)
    return Candidate(FAST, tree, " ".join(" ".join(tree.itertext()).split()))


DUMP = (
    f"Published: 2 February 2022 Council approves flood wall {PROSE} Match Settings Camera Settings "
    f"{PROSE.replace('harbour', 'river')} More stories"
)


def test_a_one_paragraph_body_is_a_dump_and_a_structured_one_is_not() -> None:
    assert is_dump(candidate(f"<p>{DUMP}</p>"))
    assert not is_dump(candidate(f"<p>{PROSE}</p><p>{PROSE}</p>"))
    assert not is_dump(candidate("<p>Too short to be anything but a stub.</p>"))
    assert not is_dump(candidate(f"<p>{PROSE}<lb/>{PROSE}</p>"))  # it has lines of its own


def test_a_dump_is_cut_at_the_lines_found_and_keeps_all_its_text() -> None:
    # Lines found for the heading and the two paragraphs, none for the rest; the cut keeps every word
    # of the dump, the rest as paragraphs between.
    river = PROSE.replace("harbour", "river")
    cut = cut_dump(candidate(f"<p>{DUMP}</p>"), ["Council approves flood wall", PROSE, river])
    assert cut.body is not None
    assert [" ".join(el.itertext()) for el in cut.body] == [
        "Published: 2 February 2022",
        "Council approves flood wall",
        PROSE,
        "Match Settings Camera Settings",
        river,
        "More stories",
    ]
    assert cut.text == candidate(f"<p>{DUMP}</p>").text


def test_a_dump_stays_whole_when_few_of_its_lines_are_found() -> None:
    dump = candidate(f"<p>{DUMP}</p>")
    assert cut_dump(dump, ["Council approves flood wall"]) is dump
    assert cut_dump(dump, [PROSE.upper(), "Somewhere else entirely."]) is dump
    assert cut_dump(dump, []) is dump


def test_only_a_dump_is_cut() -> None:
    two = candidate(f"<p>{PROSE}</p><p>{DUMP}</p>")
    assert cut_dump(two, ["Council approves flood wall", PROSE]) is two


def test_a_line_never_cuts_a_word_of_the_dump() -> None:
    # "Share" (a widget's line the dump lacks) must not be found inside "Shareholders".
    text = f"{PROSE} Shareholders of the harbour company voted against it, {PROSE}"
    lines = [PROSE, "Share", f"Shareholders of the harbour company voted against it, {PROSE}"]
    cut = cut_dump(candidate(f"<p>{text}</p>"), lines)
    assert cut.body is not None
    assert [" ".join(el.itertext()) for el in cut.body] == [PROSE, lines[2]]


def test_a_line_is_looked_for_near_where_it_should_be() -> None:
    # Lines the dump lacks (text the extractor pruned) each cost a search of about DUMP_WINDOW characters,
    # not of the rest of the dump; each moves the expected start on by its length, so the next line
    # found after a long missing one is still found.
    first = " ".join([PROSE] * 40)  # 6,800 characters
    far = "Found only far past the window."
    text = f"{first} {'filler ' * (DUMP_WINDOW // 6)}{far}"
    cut = cut_dump(candidate(f"<p>{text}</p>"), [first, "Other story", far])
    assert cut.body is not None
    parts = [" ".join(el.itertext()) for el in cut.body]
    assert parts[0] == first and len(parts) == 2 and parts[1].endswith(far)  # too far: left in the loose rest
    missing = "x" * (3 * DUMP_WINDOW)  # a long line written otherwise in the dump
    text = f"{first} {'y' * (3 * DUMP_WINDOW)} {far}"
    cut = cut_dump(candidate(f"<p>{text}</p>"), [first, missing, far])
    assert cut.body is not None
    assert [" ".join(el.itertext()) for el in cut.body][-1] == far


def test_the_lines_are_those_of_the_longest_outermost_article() -> None:
    html = (
        "<html><body><nav>Home</nav><article><p>A teaser</p></article><article><h1>Council approves flood"
        " wall</h1><p>First <b>line</b><br>Second</p><article><p>Nested</p></article></article><p>Outside</p>"
        "</body></html>"
    )
    assert article_lines(parse_html(html)) == ["Council approves flood wall", "First line", "Second", "Nested"]
    assert article_lines(parse_html("<html><body><p>No article</p></body></html>")) == []


def test_an_article_nested_deeper_than_python_recurses_is_read() -> None:
    depth = 1500  # the parser takes 2,048 levels; Python's recursion stops near 1,000
    html = f"<html><body><article>{'<div>' * depth}<p>{PROSE}</p>{'</div>' * depth}</article></body></html>"
    assert article_lines(parse_html(html)) == [PROSE]


def test_a_page_whose_fast_pass_falls_back_to_the_dump_gets_blocks() -> None:
    # A dev-set page (tests/fixtures/trafilatura-eval-dev) whose main extractor finds under 250
    # characters: trafilatura's fast pass returns its <article> text as one paragraph.
    page = next(p for p in load_dev_pages(DEV_DIR) if p.name == "278.html.gz")
    html = page.html()
    on = extract_article(html, page.url).body
    off = extract_article(html, page.url, options=DEFAULT_OPTIONS.without("structure_dumps")).body
    assert len(off.splitlines()) == 1
    assert len(on.splitlines()) > 100  # its settings, one block each
    assert "FIFA 21 Game Settings" not in on  # the headline, now a block of its own, goes as a repeat
    assert len(on) > 0.95 * len(off)
