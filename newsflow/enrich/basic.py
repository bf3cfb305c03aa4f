"""First enrichment: language, word count and reading time."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# Adult silent-reading speed for non-fiction, words per minute.
READING_WPM = 238
_WORD = re.compile(r"\w+", re.UNICODE)


def enrich_article(article: Mapping[str, Any]) -> dict[str, Any]:
    """Fields added to an article document: `language`, `word_count`, `reading_time_min`."""
    body = str(article.get("body") or "")
    words = len(_WORD.findall(body))
    language = article.get("language") or None
    return {
        "language": language,
        "word_count": words,
        "reading_time_min": max(1, math.ceil(words / READING_WPM)) if words else 0,
    }
