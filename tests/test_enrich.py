"""The enrich stage's pure part: language, entities, keywords, summary, counts."""

from __future__ import annotations

import json

import pytest

from newsflow.enrich import enrich_article
from newsflow.enrich.entities import extract_entities
from newsflow.enrich.evaluation import entity_scores
from newsflow.enrich.language import _identifier, detect_language, normalise_code
from newsflow.enrich.text import split_sentences
from newsflow.extract import extract_article
from tests.conftest import BENCH_DIR, ROOT, SEED_EXPECTED, SEED_HTML

DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def seed_article() -> dict[str, object]:
    html = SEED_HTML.read_text(encoding="utf-8")
    expected = json.loads(SEED_EXPECTED.read_text())
    return extract_article(html, expected["url"]).to_dict()


@pytest.fixture(scope="module")
def benchmark() -> dict[str, str]:
    """{article id: articleBody} of the in-repo extraction benchmark."""
    truth = json.loads((BENCH_DIR / "ground-truth.json").read_text(encoding="utf-8"))
    return {key: value["articleBody"] for key, value in truth.items()}


def test_seed_article_entities(seed_article: dict[str, object]) -> None:
    expected = json.loads(SEED_EXPECTED.read_text())["entities_expected"]
    got = enrich_article(seed_article)["entities"]
    for kind, names in expected.items():
        assert set(names) <= set(got[kind]), (kind, got[kind])
    assert "Putin" not in got["person"] and "Stoltenberg" not in got["person"]  # merged into the full names


def test_seed_article_fields(seed_article: dict[str, object]) -> None:
    out = enrich_article(seed_article)
    assert out["language"] == "en" and out["language_confidence"] > 0.9
    assert 5 <= len(out["keywords"]) <= 10
    assert out["word_count"] > 150 and out["reading_time_min"] == 1
    body = str(seed_article["body"])
    summary_sentences = split_sentences(out["summary"])
    assert 1 <= len(summary_sentences) <= 3
    assert all(sentence in body for sentence in summary_sentences)


def test_language_accuracy_on_sample() -> None:
    rows = [json.loads(line) for line in (DATA / "language_sample.jsonl").read_text().splitlines() if line.strip()]
    assert len({row["lang"] for row in rows}) >= 8
    correct = sum(detect_language(row["text"])[0] == row["lang"] for row in rows)
    assert correct / len(rows) >= 0.95


def test_language_falls_back_to_declared() -> None:
    assert detect_language("", "en-GB") == ("en", 0.0)
    assert detect_language("", None) == (None, 0.0)
    assert normalise_code("PT_br") == "pt" and normalise_code("english") is None
    # Too little text to be sure: the page's declaration wins over a low-confidence guess.
    lang, _ = detect_language("OK", "de")
    assert lang == "de"


def test_model_loads_once() -> None:
    assert _identifier() is _identifier()


def test_entity_precision_recall_on_gold(benchmark: dict[str, str]) -> None:
    gold = json.loads((DATA / "entities_gold.json").read_text())["articles"]
    assert len(gold) >= 20
    predicted = [extract_entities(benchmark[doc["id"]]) for doc in gold]
    precision, recall = entity_scores(gold, predicted)["all"]
    assert precision >= 0.9, precision
    assert recall >= 0.75, recall


def test_person_mentions_merge_to_longest_form() -> None:
    text = (
        "Prime Minister Boris Johnson met Emmanuel Macron in Paris on Monday.\n"
        "Johnson said the talks went well. Macron did not comment."
    )
    got = extract_entities(text)
    assert got["person"] == ["Boris Johnson", "Emmanuel Macron"]
    assert got["place"] == ["Paris"]


def test_country_aliases_are_canonical() -> None:
    got = extract_entities("Officials in the U.S. and the UK said Britain would act. The US agreed.")
    assert sorted(got["place"]) == ["United Kingdom", "United States"]


def test_non_english_article() -> None:
    body = (
        "Die Bundesregierung hat am Mittwoch ein neues Klimaschutzgesetz beschlossen. "
        "Nach Angaben des Umweltministeriums sollen die Emissionen im Verkehr bis 2030 deutlich sinken. "
        "Kritiker aus der Opposition halten die Maßnahmen für unzureichend und fordern ein Tempolimit. "
        "Bundeskanzler Olaf Scholz verteidigte das Gesetz in Berlin als ausgewogenen Kompromiss."
    )
    out = enrich_article({"body": body, "language": None})
    assert out["language"] == "de"
    assert "Olaf Scholz" in out["entities"]["person"] and "Berlin" in out["entities"]["place"]
    assert not {"die", "der", "und"} & {w for k in out["keywords"] for w in k.split()}


def test_empty_article() -> None:
    out = enrich_article({"body": "", "title": None, "language": "fr"})
    assert out["language"] == "fr" and out["language_confidence"] == 0.0
    assert out["entities"] == {"person": [], "organization": [], "place": []}
    assert out["keywords"] == [] and out["summary"] == ""
    assert out["word_count"] == 0 and out["reading_time_min"] == 0


def test_benchmark_articles_get_every_field(benchmark: dict[str, str]) -> None:
    for body in list(benchmark.values())[:40]:
        out = enrich_article({"body": body})
        assert set(out) == {
            "language",
            "language_confidence",
            "entities",
            "keywords",
            "summary",
            "word_count",
            "reading_time_min",
        }
        assert len(out["keywords"]) <= 10
        if out["word_count"] >= 100:
            assert len(out["keywords"]) >= 5
            assert out["summary"]
