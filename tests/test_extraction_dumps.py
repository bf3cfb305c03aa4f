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


def test_a_dump_is_cut_where_the_other_pass_finds_its_blocks_and_keeps_all_its_text() -> None:
    # Blocks found for the heading and the two paragraphs, none for the rest; the cut keeps every word
    # of the dump, the rest as paragraphs between.
    river = PROSE.replace("harbour", "river")
    blocks = body(f"<p>Council approves flood wall</p><p>{PROSE}</p><p>{river}</p>")
    cut = cut_dump(candidate(f"<p>{DUMP}</p>"), blocks)
    assert cut.body is not None
    lines = [" ".join(el.itertext()) for el in cut.body]
    assert lines == [
        "Published: 2 February 2022",
        "Council approves flood wall",
        PROSE,
        "Match Settings Camera Settings",
        river,
        "More stories",
    ]
    assert cut.text == candidate(f"<p>{DUMP}</p>").text


def test_a_dump_stays_whole_when_the_other_pass_found_little_of_it() -> None:
    dump = candidate(f"<p>{DUMP}</p>")
    assert cut_dump(dump, body("<p>Council approves flood wall</p>")) is dump
    assert cut_dump(dump, body(f"<p>{PROSE.upper()}</p><p>Somewhere else entirely.</p>")) is dump
    assert cut_dump(dump, body("")) is dump


def test_a_line_is_looked_for_only_near_the_last_one_found() -> None:
    # Lines of other <article>s (teasers) are not in the dump: each costs a search of DUMP_WINDOW
    # characters, not of the rest of the dump (50,000 such lines in a large dump took seconds).
    first = " ".join([PROSE] * 40)  # 6,800 characters
    far = "Found only far past the window."
    text = f"{first} {'filler ' * (DUMP_WINDOW // 6)}{far}"
    cut = cut_dump(candidate(f"<p>{text}</p>"), body(f"<p>{first}</p><p>Other story</p><p>{far}</p>"))
    assert cut.body is not None
    parts = [" ".join(el.itertext()) for el in cut.body]
    assert parts[0] == first and len(parts) == 2 and parts[1].endswith(far)  # the rest stays, as one paragraph


def test_the_blocks_are_the_visual_lines_of_the_outermost_articles() -> None:
    html = (
        "<html><body><nav>Home</nav><article><h1>Council approves flood wall</h1><p>First <b>line</b><br>Second"
        "</p><article><p>Nested</p></article></article><p>Outside</p></body></html>"
    )
    lines = ["".join(el.itertext()) for el in article_lines(parse_html(html))]
    assert lines == ["Council approves flood wall", "First line", "Second", "Nested"]


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
