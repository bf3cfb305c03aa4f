"""Small text helpers shared by the body and metadata steps."""

from __future__ import annotations

import re
import unicodedata

_OTHER_SPACE = r"[\t\u00a0\u2009\u200a\u202f]"
_SPACE = r"[ \t\u00a0\u2009\u200a\u202f]"
# The runs of spaces that tidy() turns into one " ": every run but a lone " ", which already is one (leaving
# it out spares a substitution for each space between words).
_WS = re.compile(rf" {_SPACE}+|{_OTHER_SPACE}{_SPACE}*")
_WORD = re.compile(r"\w+", re.UNICODE)
# Combining marks left by NFKD (accents on Latin, Greek, Cyrillic letters): one regex pass instead of a
# Python-level test of every character.
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def tidy(text: str) -> str:
    """Collapse runs of spaces inside lines and drop empty lines."""
    # One pass over the whole text: no character of _WS breaks a line, so this is the per-line substitution.
    lines = (line.strip() for line in _WS.sub(" ", text).splitlines())
    return "\n".join(line for line in lines if line)


def collapse(text: str | None) -> str:
    # Soft hyphens are invisible break hints ("Deutsch\xadland"): a reader sees one word. str.split() splits
    # on every Unicode space (_WS's no-break and thin spaces included), so the join leaves single spaces only.
    return " ".join((text or "").replace("\xad", "").split())


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def fold(text: str) -> str:
    """A comparison key: case-, accent- and punctuation-insensitive."""
    if text.isascii():  # most link texts and blocks: nothing to decompose (the per-character pass is the cost)
        return " ".join(_WORD.findall(text.lower()))
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(_WORD.findall(_COMBINING.sub("", decomposed)))


def similar(a: str, b: str, threshold: float = 0.8) -> bool:
    """Token-overlap similarity of two short texts (headlines, standfirsts), robust to punctuation."""
    ta, tb = fold(a).split(), fold(b).split()
    if not ta or not tb:
        return False
    shared = len(set(ta) & set(tb))
    return shared / max(len(set(ta)), len(set(tb))) >= threshold
