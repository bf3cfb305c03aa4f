"""Bylines as the page states them: people's names or a desk/agency, without "By", job titles or site name."""

from __future__ import annotations

import re
from typing import Any

from newsflow.extract.text import collapse, fold

_BY = re.compile(r"^\s*(?:written\s+|posted\s+|reported\s+)?by[:\s]+", re.IGNORECASE)
_URL_OR_MAIL = re.compile(r"https?://\S+|www\.\S+|\S+@\S+")
# A job title or affiliation that follows a name after a comma, pipe or dash.
_ROLE = re.compile(
    r"\b(correspondent|reporter|editor|writer|columnist|contributor|staff|producer|analyst|journalist"
    r"|chief|senior|director|author|photographer|intern|freelance|special|staff writer)\b",
    re.IGNORECASE,
)
_DATEISH = re.compile(r"\b(updated|published|posted|\d{1,2}:\d{2}|\d{4})\b", re.IGNORECASE)
_DATELINE = re.compile(
    r"\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b|\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?"
    r"|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b\.?\s*\d",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"\s*(?:,|;|\||\s+and\s+|\s+&\s+|\n)\s*")
_MAX_NAMES = 6
_MAX_NAME_WORDS = 7


def clean_author(value: Any, site_keys: set[str] | None = None) -> str | None:
    """Normalised byline, or None when what is left is not a plausible name list.

    site_keys: folded, space-free forms of the site name and domain (a site is not an author).
    """
    if not isinstance(value, str):
        return None
    text = collapse(_URL_OR_MAIL.sub(" ", value))
    text = _BY.sub("", text)
    names = [_clean_name(part) for part in _SPLIT.split(text)]
    kept: list[str] = []
    for name in names:
        if not name or _is_role(name) or _is_site(name, site_keys or set()) or _is_affiliation(name) or name in kept:
            continue
        kept.append(name)
    if not kept or len(kept) > _MAX_NAMES:
        return None
    return ", ".join(kept)


def _clean_name(part: str) -> str:
    part = _BY.sub("", part).strip(" -–—:·•")
    # "Jane Doe - Senior Reporter" -> "Jane Doe"
    part = re.split(r"\s+[-–—]\s+", part, maxsplit=1)[0]
    # "Malcolm Owen Monday, November 18": bylines often run into the dateline.
    part = _DATELINE.split(part, maxsplit=1)[0].strip()
    part = _strip_trailing_role(_GLUED.sub(r"\1 \2", part))
    if _DATEISH.search(part):
        return ""
    words = part.split()
    if not words or len(words) > _MAX_NAME_WORDS or not any(ch.isalpha() for ch in part):
        return ""
    return part


# "Meg JamesStaff Writer": markup without a space between the name and the title.
_GLUED = re.compile(r"([a-z])((?:Staff|Senior|Chief|Editor|Reporter|Correspondent|Contributor|Writer|Columnist)\b)")


def _strip_trailing_role(part: str) -> str:
    """ "Jane Doe Senior Reporter" -> "Jane Doe" (keeps at least two words)."""
    tokens = part.split()
    for i in range(2, len(tokens)):
        if _ROLE.fullmatch(tokens[i]):
            return " ".join(tokens[:i])
    return part


_FILLER = {"of", "the", "and", "at", "for", "a", "in", "on", "to"}


def _is_role(name: str) -> bool:
    """A bare job title left over from "Jane Doe, Senior Reporter": it starts with, or is all, role words."""
    tokens = [w for w in re.findall(r"\w+", name) if w.lower() not in _FILLER]
    if not tokens:
        return True
    roles = [bool(_ROLE.fullmatch(w)) for w in tokens]
    return roles[0] or all(roles)


def _is_affiliation(name: str) -> bool:
    """ "NJ Advance Media for NJ.com", "Special to the Globe": who employs the author, not a name."""
    return bool(re.search(r"\s(for|to|at)\s", name))


def _is_site(name: str, site_keys: set[str]) -> bool:
    key = fold(name).replace(" ", "")
    return key in site_keys or key.removesuffix("com") in site_keys
