"""Small text helpers shared by the body and metadata steps."""

from __future__ import annotations

import re
import unicodedata

_WS = re.compile(r"[ \t\u00a0\u2009\u200a\u202f]+")
_WORD = re.compile(r"\w+", re.UNICODE)


def tidy(text: str) -> str:
    """Collapse runs of spaces inside lines and drop empty lines."""
    lines = (_WS.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def collapse(text: str | None) -> str:
    return _WS.sub(" ", " ".join((text or "").split())).strip()


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def fold(text: str) -> str:
    """A comparison key: case-, accent- and punctuation-insensitive."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(_WORD.findall("".join(ch for ch in decomposed if not unicodedata.combining(ch))))


def similar(a: str, b: str, threshold: float = 0.8) -> bool:
    """Token-overlap similarity of two short texts (headlines, standfirsts), robust to punctuation."""
    ta, tb = fold(a).split(), fold(b).split()
    if not ta or not tb:
        return False
    shared = len(set(ta) & set(tb))
    return shared / max(len(set(ta)), len(set(tb))) >= threshold
