"""Key phrases: runs of content words scored by how often their words recur (RAKE-like, no model).

Chosen over YAKE/TextRank packages: same kind of output for news, a fraction of the cost, any language
that has a stop-word list (others fall back to English's, which still splits on function words).
"""

from __future__ import annotations

import re
from collections import Counter

from newsflow.enrich.stopwords import stop_words

MIN_KEYWORDS, MAX_KEYWORDS = 5, 10
MAX_PHRASE_WORDS = 3
# Words and phrase breaks: punctuation and numbers end a phrase.
_PIECE = re.compile(r"[^\W\d_][\w'’-]*|[^\w\s]|\d+", re.UNICODE)


def candidate_phrases(text: str, stop: frozenset[str]) -> list[tuple[str, ...]]:
    """Maximal runs of non-stop words (lower-cased), at most MAX_PHRASE_WORDS long."""
    phrases: list[tuple[str, ...]] = []
    run: list[str] = []
    for piece in _PIECE.findall(text):
        word = piece.lower().strip("'’-")
        if piece[0].isalpha() and len(word) > 2 and word not in stop:
            run.append(re.sub(r"['’]s$", "", word))
            continue
        _flush(run, phrases)
        run = []
    _flush(run, phrases)
    return phrases


def _flush(run: list[str], phrases: list[tuple[str, ...]]) -> None:
    # Long runs are usually lists of names or headlines: keep their tail, where the head noun sits.
    if run:
        phrases.append(tuple(run[-MAX_PHRASE_WORDS:]))


def extract_keywords(text: str, language: str | None, title: str | None = None) -> list[str]:
    """5-10 phrases, best first. Words in the title count double: headlines name the topic."""
    stop = stop_words(language)
    phrases = candidate_phrases(text, stop)
    if not phrases:
        return []
    word_freq = Counter(w for p in phrases for w in p)
    for word in {w for p in candidate_phrases(title or "", stop) for w in p}:
        word_freq[word] += max(2, word_freq[word])
    phrase_freq = Counter(phrases)
    scored = sorted(
        phrase_freq,
        key=lambda p: (-(sum(word_freq[w] for w in p) / len(p) ** 0.5 + phrase_freq[p]), phrases.index(p)),
    )
    return _distinct(scored)[:MAX_KEYWORDS]


def _distinct(ranked: list[tuple[str, ...]]) -> list[str]:
    """Skip a phrase that repeats the words of a better one ('putin' after 'vladimir putin')."""
    chosen: list[str] = []
    seen_words: list[set[str]] = []
    for phrase in ranked:
        words = set(phrase)
        if any(words <= s or s <= words for s in seen_words):
            continue
        chosen.append(" ".join(phrase))
        seen_words.append(words)
        if len(chosen) == MAX_KEYWORDS:
            break
    return chosen
