"""Text helpers shared by the enrichment steps: words, sentences, reading time."""

from __future__ import annotations

import math
import re

# Adult silent-reading speed for non-fiction, words per minute.
READING_WPM = 238
# Entities, keywords and the summary read at most this many characters of a text (its first ~16,000
# words, a 70-minute read; the longest body in our 900-page samples has 51,000). Beyond it they would
# only cost time: the clean stage passes bodies of up to `clean_max_html_bytes` (5 MiB) of text.
# word_count and reading time still count the whole body (one linear pass).
MAX_TEXT_CHARS = 100_000
# Whether a piece ends with an abbreviation is decided on its last characters only ("Sept." is the
# longest, and "U.S." ends with "S.", which is enough): searching the whole piece costs O(n²) on "A.A.A.A…".
_ABBREV_TAIL = 8

WORD = re.compile(r"\w+", re.UNICODE)
# A sentence ends at . ! ? or … (optionally followed by closing quotes/brackets) before whitespace,
# or at a line break: cleaned bodies keep one paragraph per line.
_SENTENCE_END = re.compile(r"(?<=[.!?…][\"'”’»)\]])\s+|(?<=[.!?…])\s+|\n+")
# Abbreviations whose full stop does not end a sentence ("Mr. Garrett", "U.S. troops").
_ABBREV = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|Sen|Rep|Gov|Gen|Col|Lt|Sgt|Capt|St|Jr|Sr|Inc|Ltd|Co|Corp|vs|etc|No|Jan|Feb|Mar|Apr"
    r"|Aug|Sept|Sep|Oct|Nov|Dec|Rt|Hon)|\b[A-Z](?:\.[A-Z])*)\.$"
)


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """The text's first `limit` characters, ending at a line break or a space when one is near the end."""
    if len(text) <= limit:
        return text
    for sep in ("\n", " "):
        cut = text.rfind(sep, limit // 2, limit + 1)
        if cut > 0:
            return text[:cut]
    return text[:limit]


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
        if len(current) < 400 and _ABBREV.search(current, max(0, len(current) - _ABBREV_TAIL)):
            carry = current
            continue
        sentences.append(current)
        carry = ""
    if carry:
        sentences.append(carry)
    return sentences
