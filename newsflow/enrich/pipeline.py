"""The enrich stage's pure function: one cleaned article in, the fields to merge into it out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from newsflow.enrich.entities import extract_entities
from newsflow.enrich.keywords import extract_keywords
from newsflow.enrich.language import SAMPLE_CHARS, detect_language
from newsflow.enrich.minhash import shingle_hashes, signature
from newsflow.enrich.stopwords import load_all
from newsflow.enrich.summary import summarize
from newsflow.enrich.text import reading_time_min, word_count


def _text(article: Mapping[str, Any], key: str) -> str:
    value = article.get(key)
    return value if isinstance(value, str) else ""


def enrich_article(article: Mapping[str, Any]) -> dict[str, Any]:
    """language, language_confidence, entities, keywords, summary, word_count, reading_time_min.

    `cluster_id` needs shared state and is added by `newsflow.enrich.clusters.assign_cluster`.
    The cost is bounded whatever the input: language reads SAMPLE_CHARS characters; entities, keywords
    and summary the first text.MAX_TEXT_CHARS (and cap their own work); word_count is one linear pass.
    """
    body, title = _text(article, "body"), _text(article, "title")
    description = _text(article, "description")
    # Title and description help on short bodies; the body leads so that a foreign-language site name
    # in the title does not decide the language. Only the sample's length is read, so only that is copied.
    sample = f"{body[:SAMPLE_CHARS]}\n{title[:SAMPLE_CHARS]}\n{description[:SAMPLE_CHARS]}"
    language, confidence = detect_language(sample, article.get("language"))
    keywords = extract_keywords(body, language, title)
    words = word_count(body)
    return {
        "language": language,
        "language_confidence": confidence,
        "entities": extract_entities(body, language),
        "keywords": keywords,
        "summary": summarize(body, keywords),
        "word_count": words,
        "reading_time_min": reading_time_min(words),
    }


def warm_up() -> None:
    """Load the language model, gazetteer, stop words and hashing tables now (≈1 s) instead of on the
    first articles.

    Meant for a worker's process-init hook: each prefork child has its own caches.
    """
    enrich_article({"body": "Warm-up text for the enrichment caches, in English.", "title": ""})
    # What that text does not reach: numpy.ma and numpy.random (the near-duplicate signature's first
    # call), and the stop words of other languages.
    signature(shingle_hashes("the near-duplicate hashing loads numpy modules on its first call"))
    load_all()
