"""Extractive summary: at most three sentences of the article, in their original order.

Sentences are scored by the key words they contain, with a bonus for the lead (news puts the gist
first). Abstractive summaries would need a language model far beyond our CPU budget.
"""

from __future__ import annotations

from collections.abc import Iterable

from newsflow.enrich.text import WORD, clip, split_sentences

MAX_SENTENCES = 3
MIN_WORDS, MAX_WORDS = 6, 60  # fragments and run-on list paragraphs make poor summary sentences
LEAD_BONUS = (1.0, 0.5, 0.25)  # added to the first sentences' normalised scores
# Sentences scored, from the start: the lead bonus favours the first ones anyway. The most in one body of
# our 900-page samples is 752 (51,000 characters); text.MAX_TEXT_CHARS of such text would make ~1,500.
MAX_SCORED_SENTENCES = 2_000
# A longer "sentence" of at most MAX_WORDS words is made of hashes or letters without spaces, and would
# make the summary as long as the text. The longest 6-60-word sentence in our samples has 504 characters.
MAX_SENTENCE_CHARS = 1_000


def summarize(text: str, keywords: Iterable[str]) -> str:
    """Reads the first text.MAX_TEXT_CHARS characters of the text."""
    sentences = split_sentences(clip(text))
    key_words = {w for phrase in keywords for w in phrase.split()}
    scored: list[tuple[float, int, str]] = []
    for index, sentence in enumerate(sentences[:MAX_SCORED_SENTENCES]):
        if len(sentence) > MAX_SENTENCE_CHARS:
            continue
        words = [w.lower() for w in WORD.findall(sentence)]
        if not MIN_WORDS <= len(words) <= MAX_WORDS:
            continue
        hits = sum(w in key_words for w in words)
        score = hits / len(words) ** 0.5 + (LEAD_BONUS[index] if index < len(LEAD_BONUS) else 0.0)
        scored.append((score, index, sentence))
    best = sorted(scored, key=lambda s: (-s[0], s[1]))[:MAX_SENTENCES]
    if not best and sentences:
        return sentences[0][:500]
    return " ".join(sentence for _, _, sentence in sorted(best, key=lambda s: s[1]))
