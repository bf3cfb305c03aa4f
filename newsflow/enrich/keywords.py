"""Key phrases: runs of content words scored by how often their words recur (RAKE-like, no model).

Chosen over YAKE/TextRank packages: same kind of output for news, a fraction of the cost, any language
that has a stop-word list (others fall back to English's, which still splits on function words).
"""

from __future__ import annotations

import re
from collections import Counter

from newsflow.enrich.stopwords import stop_words
from newsflow.enrich.text import clip

MIN_KEYWORDS, MAX_KEYWORDS = 5, 10
MAX_PHRASE_WORDS = 3
# Phrases read from one text, in order; the rest is not looked at. The most in one body of our 900-page
# samples is 2,805; within text.MAX_TEXT_CHARS only punctuation after every word or two reaches this.
MAX_CANDIDATE_PHRASES = 20_000
# A longer "word" is a hash, an id or letters without spaces, not a key word: it breaks a phrase like
# punctuation does, so no keyword is longer than 3 x this. Longest in our 900-page samples: 61 characters
# (a tracking id); German compounds reach ~40, as do Japanese clauses, which have no spaces.
MAX_WORD_CHARS = 100
# Words and phrase breaks: punctuation and numbers end a phrase.
_PIECE = re.compile(r"[^\W\d_][\w'’-]*|[^\w\s]|\d+", re.UNICODE)
_POSSESSIVE = re.compile(r"['’]s$")


def candidate_phrases(text: str, stop: frozenset[str]) -> list[tuple[str, ...]]:
    """Maximal runs of non-stop words (lower-cased), at most MAX_PHRASE_WORDS long, and at most
    MAX_CANDIDATE_PHRASES of them."""
    phrases: list[tuple[str, ...]] = []
    run: list[str] = []
    for match in _PIECE.finditer(text):
        piece = match.group()
        if len(piece) <= MAX_WORD_CHARS:
            word = piece.lower().strip("'’-")
            if piece[0].isalpha() and len(word) > 2 and word not in stop:
                run.append(_POSSESSIVE.sub("", word))
                continue
        _flush(run, phrases)
        run = []
        if len(phrases) >= MAX_CANDIDATE_PHRASES:
            return phrases
    _flush(run, phrases)
    return phrases[:MAX_CANDIDATE_PHRASES]


def _flush(run: list[str], phrases: list[tuple[str, ...]]) -> None:
    # Long runs are usually lists of names or headlines: keep their tail, where the head noun sits.
    if run:
        phrases.append(tuple(run[-MAX_PHRASE_WORDS:]))


def extract_keywords(text: str, language: str | None, title: str | None = None) -> list[str]:
    """5-10 phrases, best first. Words in the title count double: headlines name the topic.

    Reads the first text.MAX_TEXT_CHARS characters of the text and of the title.
    """
    stop = stop_words(language)
    phrases = candidate_phrases(clip(text), stop)
    if not phrases:
        return []
    word_freq = Counter(w for p in phrases for w in p)
    for word in {w for p in candidate_phrases(clip(title or ""), stop) for w in p}:
        word_freq[word] += max(2, word_freq[word])
    return _distinct(_ranked(phrases, word_freq))[:MAX_KEYWORDS]


def _ranked(phrases: list[tuple[str, ...]], word_freq: Counter[str]) -> list[tuple[str, ...]]:
    """Distinct phrases, best first: by their words' frequency and their own; on a tie, the first seen.

    First positions come from a dict (Counter keeps first-seen order), not from phrases.index() in the
    sort key, which made the ranking quadratic in the number of phrases.
    """
    phrase_freq = Counter(phrases)
    first_seen = {p: i for i, p in enumerate(phrase_freq)}
    return sorted(
        phrase_freq,
        key=lambda p: (-(sum(word_freq[w] for w in p) / len(p) ** 0.5 + phrase_freq[p]), first_seen[p]),
    )


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
