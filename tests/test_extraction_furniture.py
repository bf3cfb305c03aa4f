"""Site furniture the extractor keeps inside a body: a blog's like button, cookie banners, sign-up consent
lines, a footer's row of legal links, the headings of post navigation and contact boxes (with the links
under them), an author box. Each goes; prose that only looks like it stays."""

from __future__ import annotations

import pytest
from lxml.etree import _Element, fromstring

from newsflow.extract.cleanup import Lead, clean_body
from newsflow.extract.options import DEFAULT_OPTIONS
from newsflow.extract.text import fold

PROSE = (
    "The harbour council approved the new flood wall on Tuesday after a debate that lasted most of the "
    "evening, with residents of the lower town speaking for and against the plan."
)


def body(xml: str) -> _Element:
    return fromstring(f"<body>{xml}</body>")


def clean(xml: str, links: tuple[str, ...] = ()) -> str:
    return clean_body(body(xml), Lead(anchors=frozenset(fold(link) for link in links)), DEFAULT_OPTIONS)


@pytest.mark.parametrize(
    "furniture",
    [
        "Gefällt mir:",
        "Gefällt mir Wird geladen...",
        "Like this:",
        "Like Loading...",
        "J'aime Chargement…",
        "J’aime ceci :",
        "Auf unserer Website werden Cookies gemäß unserer Datenschutzerklärung verwendet. Sie können widersprechen.",
        "This website uses cookies to improve your experience. Accept all",
        "Mit der Registrierung akzeptieren Sie unsere Datenschutz- und Nutzungsbedingungen.",
        "By signing up, you agree to our terms and privacy policy.",
        "IMPRESSUM | DATENSCHUTZ | COPYRIGHT A. WRITER | A KANGA PROJECT",
        "Home · Contact · Privacy Policy · © 2024 The Harbour Paper",
    ],
)
def test_furniture_line_goes(furniture: str) -> None:
    assert clean(f"<p>{PROSE}</p><p>{furniture}</p>") == PROSE


@pytest.mark.parametrize(
    "heading",
    [
        "Next article",
        "Vorschau auf den nächsten Artikel",
        "Nächster Beitrag",
        "Article suivant",
        "Entdecke weitere Homestorys",
        "Ansprechpartnerin zum Thema:",
        "Press contact",
    ],
)
def test_navigation_and_contact_headings_go_with_their_links(heading: str) -> None:
    teaser = "Flood walls elsewhere: what other harbour towns built"
    text = clean(f"<p>{PROSE}</p><head>{heading}</head><p>{teaser}</p>", links=(teaser,))
    assert text == PROSE


def test_teaser_line_with_a_german_prefix_goes_when_it_links_another_story() -> None:
    other = "Spielabbruch in der Kreisliga nach Streit auf dem Platz"
    assert clean(f"<p>{PROSE}</p><p>Lesen Sie hier: {other}</p>", links=(other,)) == PROSE
    # the same words linking nowhere are the article's own sentence
    assert "Lesen Sie hier" in clean(f"<p>{PROSE}</p><p>Lesen Sie hier: {other}</p>")


@pytest.mark.parametrize(
    "prose",
    [
        "Gefällt mir sehr gut, sagte die Bürgermeisterin nach der Abstimmung.",
        "Berlin | Hamburg | München",  # a row of places, no legal page among them
        "Kontakt | Telefonseelsorge 0800 111 0 111 | rund um die Uhr, anonym und kostenlos",  # a helpline box
        "Mehl · Zucker · Cookies · Butter",
        "Like loading a ship in a storm, the rescue took the crew most of the night, the captain said.",
        "„Wir setzen Cookies nur mit Zustimmung der Nutzer ein“, sagte ein Sprecher des Verlags am Montag.",
        "“We use cookies to personalise ads, as every publisher does,” a spokesperson said on Monday.",
        "In Deutschland werden Cookies oft ohne wirksame Einwilligung eingesetzt, kritisiert die Verbraucherzentrale.",
        "Mit der Anmeldung stimmen die Läufer den Teilnahmebedingungen des Veranstalters zu.",
        "Browsers will stop third-party cookies next year; we use cookies less than we did, the company said in a "
        "statement that went on to describe at length how advertising on the web would change for every publisher, "
        "large or small, and what readers would notice.",  # over the 40 words of a banner
    ],
)
def test_prose_that_looks_like_furniture_stays(prose: str) -> None:
    assert prose in clean(f"<p>{PROSE}</p><p>{prose}</p>")


def test_author_box_closing_the_body_goes() -> None:
    bio = "Trevor is the senior editor of the paper. Since joining in 2014 he has covered the harbour."
    assert clean(f"<p>{PROSE}</p><head>About the Author</head><p>{bio}</p>") == PROSE


def test_a_section_titled_like_an_author_box_stays_when_long() -> None:
    section = " ".join([PROSE] * 6)  # a long text after the heading is the article's own section
    text = clean(f"<p>{PROSE}</p><head>Über den Autor</head><p>{section}</p>")
    assert "Über den Autor" in text and section in text
