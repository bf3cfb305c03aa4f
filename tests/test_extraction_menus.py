"""A site's whole menu inside the body (one block, a line per link: the extractor kept the navigation
column as a paragraph) goes, however long; long blocks of prose or of a few links stay."""

from __future__ import annotations

from lxml.etree import _Element, fromstring

from newsflow.extract.cleanup import Lead, clean_body
from newsflow.extract.options import DEFAULT_OPTIONS
from newsflow.extract.text import fold

PROSE = (
    "The harbour council approved the new flood wall on Tuesday after a debate that lasted most of the "
    "evening, with residents of the lower town speaking for and against the plan."
)
TOWNS = [
    "Aachen",
    "Bonn",
    "Celle",
    "Dresden",
    "Essen",
    "Fulda",
    "Gotha",
    "Hamm",
    "Jena",
    "Kiel",
    "Lahr",
    "Mainz",
    "Neuss",
    "Ulm",
    "Worms",
    "Zeitz",
]
SECTIONS = [f"Latest regional news and weather reports from {town}" for town in TOWNS]  # 16 lines


def body(xml: str) -> _Element:
    return fromstring(f"<body>{xml}</body>")


def lead(links: list[str]) -> Lead:
    return Lead(anchors=frozenset(fold(link) for link in links))


def test_a_long_block_of_link_lines_is_a_menu() -> None:
    menu = "<lb/>".join(SECTIONS)  # over the 60 words of the short link-block rule
    text = clean_body(body(f"<p>{PROSE}</p><p>{menu}</p>"), lead(SECTIONS), DEFAULT_OPTIONS)
    assert text == PROSE


def test_a_long_block_with_prose_among_its_lines_stays() -> None:
    lines = "<lb/>".join([*SECTIONS[:12], PROSE])
    text = clean_body(body(f"<p>{PROSE}</p><p>{lines}</p>"), lead(SECTIONS), DEFAULT_OPTIONS)
    assert "weather reports from Aachen" in text


def test_nine_lines_of_links_are_not_yet_a_menu() -> None:
    lines = "<lb/>".join(SECTIONS[:9])  # over 60 words, but under ten lines
    text = clean_body(body(f"<p>{PROSE}</p><p>{lines}</p>"), lead(SECTIONS), DEFAULT_OPTIONS)
    assert "weather reports from Aachen" in text


def test_a_long_paragraph_that_is_one_link_stays() -> None:
    long_link = " ".join([PROSE] * 3)  # one line: prose someone linked whole, not a menu
    text = clean_body(body(f"<p>{long_link}</p>"), lead([long_link]), DEFAULT_OPTIONS)
    assert text == long_link
