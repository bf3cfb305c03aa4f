"""Extraction acceptance: the seed page, the metadata gold set, and unit tests of the helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from newsflow.extract import Article, extract_article
from newsflow.extract.byline import clean_author
from newsflow.extract.dates import date_from_url, parse_date
from newsflow.extract.devset import load_dev_pages
from newsflow.extract.evaluate import load_benchmark, metadata_accuracy, score_page, shingles, summarize
from newsflow.extract.metadata import strip_site_suffix
from tests.conftest import BENCH_DIR, FIXTURES, SEED_EXPECTED, SEED_HTML

DATA = Path(__file__).resolve().parent / "data"

# Measured on the gold set when it was written (title 1.00, author 0.98, published 1.00, site 0.98,
# language 0.98), minus a margin so harmless changes do not fail the suite.
MIN_ACCURACY = {"title": 0.93, "author": 0.93, "published": 0.95, "site_name": 0.93, "language": 0.93}


@pytest.fixture(scope="module")
def seed() -> tuple[Article, dict[str, Any]]:
    expected = json.loads(SEED_EXPECTED.read_text(encoding="utf-8"))
    html = SEED_HTML.read_text(encoding="utf-8")
    return extract_article(html, expected["url"]), expected


@pytest.mark.parametrize("field", ["title", "author", "site_name", "language", "canonical_url"])
def test_seed_metadata(seed: tuple[Article, dict[str, Any]], field: str) -> None:
    article, expected = seed
    assert getattr(article, field) == expected[field]


def test_seed_published_is_iso_date(seed: tuple[Article, dict[str, Any]]) -> None:
    article, expected = seed
    assert article.published is not None
    assert article.published[:10] == expected["published"]


def test_seed_body_has_the_article_and_no_clutter(seed: tuple[Article, dict[str, Any]]) -> None:
    article, expected = seed
    for text in expected["body_must_contain"]:
        assert text in article.body
    for text in expected["body_must_not_contain"]:
        assert text not in article.body
    assert not article.body.startswith(expected["title"])


def test_seed_provenance_names_every_field(seed: tuple[Article, dict[str, Any]]) -> None:
    article, _ = seed
    assert article.provenance["body"].startswith("trafilatura:")
    for field in ("title", "author", "published", "site_name", "language", "canonical_url", "description"):
        assert article.provenance[field], field


def test_metadata_gold_accuracy() -> None:
    gold = json.loads((DATA / "metadata_gold.json").read_text(encoding="utf-8"))["pages"]
    assert len(gold) >= 40
    pages = {p.page_id: p for p in load_benchmark(BENCH_DIR) if p.page_id in gold}
    extracted = {pid: extract_article(p.html(), p.url).to_dict() for pid, p in pages.items()}
    accuracy = metadata_accuracy(gold, extracted)
    for field, minimum in MIN_ACCURACY.items():
        assert accuracy[field] >= minimum, (field, accuracy[field])


# The dev-set part of the gold (41 pages of the study split, labelled blind before scoring). Measured when
# written: title 0.95, author 0.83, published 1.00, language 0.93; minimums leave the same kind of margin.
MIN_DEV_ACCURACY = {"title": 0.90, "author": 0.78, "published": 0.95, "language": 0.88}


def test_metadata_gold_accuracy_on_dev_pages() -> None:
    gold = json.loads((DATA / "extraction_metadata_gold_dev.json").read_text(encoding="utf-8"))["pages"]
    assert len(gold) >= 40
    pages = [p for p in load_dev_pages(FIXTURES / "trafilatura-eval-dev") if p.name in gold]
    extracted = {p.name: extract_article(p.html(), p.url).to_dict() for p in pages}
    accuracy = metadata_accuracy(gold, extracted)
    for field, minimum in MIN_DEV_ACCURACY.items():
        assert accuracy[field] >= minimum, (field, accuracy[field])


# --- contract ------------------------------------------------------------------------------------------


def test_empty_and_garbage_input_give_empty_body() -> None:
    assert extract_article("").body == ""
    assert extract_article("<html><body><nav><a href='/'>Home</a></nav></body></html>").body == ""


def test_hints_are_fallbacks_only() -> None:
    html = "<html><head></head><body><p>" + "Some text here. " * 30 + "</p></body></html>"
    article = extract_article(html, hints={"title": "Feed title", "published": "2020-05-01", "language": "fr"})
    assert article.title == "Feed title"
    assert article.provenance["title"] == "hint:title"
    assert article.published == "2020-05-01"
    assert article.language == "fr"


def test_body_does_not_repeat_title() -> None:
    para = "<p>" + "The council voted on the budget after a long debate about schools and roads. " * 3 + "</p>"
    head = "<head><title>Budget passes</title></head>"
    html = f"<html>{head}<body><article><h1>Budget passes</h1>{para * 4}</article></body></html>"
    article = extract_article(html)
    assert article.body
    assert "Budget passes" not in article.body.split("\n")[0]


# --- helpers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("By Jane Doe", "Jane Doe"),
        ("by The Kyiv Independent news desk", "The Kyiv Independent news desk"),
        ("By Meg JamesStaff Writer", "Meg James"),
        ("Amy Kuperinsky | NJ Advance Media for NJ.com", "Amy Kuperinsky"),
        ("Mike Wuerthele, Malcolm Owen Monday, November 18", "Mike Wuerthele, Malcolm Owen"),
        ("Jane Doe and John Roe", "Jane Doe, John Roe"),
        ("Staff Writer", None),
        ("https://www.facebook.com/someone", None),
        ("Example News", None),
    ],
)
def test_clean_author(raw: str, expected: str | None) -> None:
    assert clean_author(raw, {"examplenews", "example"}) == expected


@pytest.mark.parametrize(
    ("title", "site", "url", "expected"),
    [
        ("Budget passes | Example News", "Example News", None, "Budget passes"),
        ("Budget passes - nj.com", None, "https://www.nj.com/a", "Budget passes"),
        ("Star Wars: review - shoots for the moon - VG247", "VG247", None, "Star Wars: review - shoots for the moon"),
        ("Left - right", "Other", None, "Left - right"),
    ],
)
def test_strip_site_suffix(title: str, site: str | None, url: str | None, expected: str) -> None:
    assert strip_site_suffix(title, site, url) == expected


def test_parse_date_sanity() -> None:
    assert parse_date("2019-11-19T13:03:00.000Z") == "2019-11-19T13:03:00+00:00"
    assert parse_date("2019-11-19") == "2019-11-19"
    assert parse_date("0001-01-01T00:00:00Z") is None  # before 1990
    assert parse_date("2999-01-01") is None  # future
    assert parse_date("not a date") is None


def test_date_from_url() -> None:
    assert date_from_url("https://example.com/2019/11/18/story/") == "2019-11-18"
    assert date_from_url("https://example.com/news/12345") is None


def test_metric_matches_benchmark_definition() -> None:
    assert shingles("a b c") == {("a", "b", "c"): 1}
    perfect = score_page("one two three four five", "one two three four five")
    assert (perfect.precision, perfect.recall) == (1.0, 1.0)
    empty = score_page("one two three four five", "")
    assert empty.recall == 0.0
    summary = summarize([perfect, empty])
    assert summary.precision == 1.0  # the empty prediction is left out of the precision average
    assert summary.recall == 0.5
