"""Text helpers shared by the enrichment steps: words, sentences, reading time."""

from __future__ import annotations

import math
import re

# Adult silent-reading speed for non-fiction, words per minute.
READING_WPM = 238

WORD = re.compile(r"\w+", re.UNICODE)
# A sentence ends at . ! ? or … (optionally followed by closing quotes/brackets) before whitespace,
# or at a line break: cleaned bodies keep one paragraph per line.
_SENTENCE_END = re.compile(r"(?<=[.!?…][\"'”’»)\]])\s+|(?<=[.!?…])\s+|\n+")
# Abbreviations whose full stop does not end a sentence ("Mr. Garrett", "U.S. troops").
_ABBREV = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|Sen|Rep|Gov|Gen|Col|Lt|Sgt|Capt|St|Jr|Sr|Inc|Ltd|Co|Corp|vs|etc|No|Jan|Feb|Mar|Apr"
    r"|Aug|Sept|Sep|Oct|Nov|Dec|Rt|Hon)|\b[A-Z](?:\.[A-Z])*)\.$"
)


def word_count(text: str) -> int:
    return len(WORD.findall(text))


def reading_time_min(words: int) -> int:
    """Whole minutes, at least 1 for any non-empty text (a 0 reads as 'no text')."""
    return max(1, math.ceil(words / READING_WPM)) if words else 0


def split_sentences(text: str) -> list[str]:
    """Sentences in order. Rule-based on purpose: a tokenizer model would cost more than all other steps."""
    pieces = [p.strip() for p in _SENTENCE_END.split(text)]
    sentences: list[str] = []
    carry = ""
    for piece in pieces:
        if not piece:
            continue
        current = f"{carry} {piece}" if carry else piece
        # Re-join pieces split after an abbreviation, unless a new line (paragraph) separated them.
        if _ABBREV.search(current) and len(current) < 400:
            carry = current
            continue
        sentences.append(current)
        carry = ""
    if carry:
        sentences.append(carry)
    return sentences
