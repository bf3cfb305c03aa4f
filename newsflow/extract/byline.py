"""Bylines as the page states them: people's names or a desk/agency, without "By", job titles or site name."""

from __future__ import annotations

import html
import re
from typing import Any

from newsflow.extract.text import collapse, fold

# "By", and its equivalents in the languages the feeds carry ("von", "por", "par", "di").
_BY = re.compile(
    r"^\s*(?:(?:written|posted|reported|geschrieben|erstellt|verfasst|publié|escrito)\s+)?(?:by|von|por|par|di)[:\s]+",
    re.IGNORECASE,
)
_URL_OR_MAIL = re.compile(r"https?://\S+|www\.\S+|\S+@\S+")
# A part that is a bare domain ("symple.ch") names a web agency or a site, not a person.
_DOMAIN = re.compile(r"^[\w-]+(\.[\w-]+)*\.[a-z]{2,6}$", re.IGNORECASE)
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
# Separators of a byline's parts, kept by split() so a title after a comma can be told from a second name.
_SPLIT = re.compile(r"\s*(,|;|\||\s+and\s+|\s+&\s+|\n)\s*")
_NEXT_NAME = frozenset({"and", "&"})
_MAX_NAMES = 6
_MAX_NAME_WORDS = 7


def clean_author(value: Any, site_keys: set[str] | None = None) -> str | None:
    """Normalised byline, or None when what is left is not a plausible name list.

    site_keys: folded, space-free forms of the site name and domain (a site is not an author).
    """
    if not isinstance(value, str):
        return None
    value = html.unescape(value)  # JSON-LD often carries entities ("O&#039;Donnell")
    site_keys = site_keys or set()
    # Line breaks separate a name from its job title ("By Jane Doe<br>Arts Editor"): keep them as separators.
    lines = (collapse(line) for line in _URL_OR_MAIL.sub(" ", value).splitlines())
    text = _BY.sub("", "\n".join(line for line in lines if line))
    pieces = _SPLIT.split(text)  # part, separator, part, separator, ...
    kept: list[str] = []
    for k in range(0, len(pieces), 2):
        after_name = k > 0 and pieces[k - 1].strip().lower() not in _NEXT_NAME
        if after_name and _ends_with_role(pieces[k]):
            continue  # "Jo Lee, City Hall Reporter" / "Jo Lee<br>City Hall Reporter": the title, not a name
        name = _clean_name(pieces[k], site_keys)
        if not name or _is_role(name) or _is_site(name, site_keys) or _is_affiliation(name) or name in kept:
            continue
        kept.append(name)
    if not kept or len(kept) > _MAX_NAMES:
        return None
    return ", ".join(kept)


def _clean_name(part: str, site_keys: set[str]) -> str:
    part = _BY.sub("", part).strip(" -–—:·•")
    # "Jane Doe - Senior Reporter" -> "Jane Doe"
    part = re.split(r"\s+[-–—]\s+", part, maxsplit=1)[0]
    # "Malcolm Owen Monday, November 18": bylines often run into the dateline.
    part = _DATELINE.split(part, maxsplit=1)[0].strip()
    part = _strip_trailing_role(_GLUED.sub(r"\1 \2", part), site_keys)
    if _DATEISH.search(part) or _DOMAIN.match(part):
        return ""
    words = part.split()
    if not words or len(words) > _MAX_NAME_WORDS or not any(ch.isalpha() for ch in part):
        return ""
    return part


# "Meg JamesStaff Writer": markup without a space between the name and the title.
_GLUED = re.compile(r"([a-z])((?:Staff|Senior|Chief|Editor|Reporter|Correspondent|Contributor|Writer|Columnist)\b)")
# The noun a job title ends with ("Gazette Arts Editor", "Washington Correspondent"); a name never does.
_ROLE_HEAD = re.compile(
    r"(correspondent|reporter|editor|writer|columnist|contributor|producer|analyst|journalist|photographer"
    r"|intern|critic|stringer|photojournalist|videographer|anchor|presenter)s?",
    re.IGNORECASE,
)
# Words that qualify a job title ("Arts Editor", "Senior Political Correspondent").
# fmt: off
_DESK_WORDS = frozenset(
    {
        "arts", "art", "sports", "sport", "business", "political", "politics", "science", "health", "education",
        "features", "feature", "news", "city", "metro", "local", "opinion", "entertainment", "food", "travel",
        "music", "film", "culture", "investigative", "managing", "deputy", "associate", "assistant",
        "contributing", "executive", "digital", "foreign", "national", "international", "courts", "crime",
        "environment", "environmental", "tech", "technology", "economics", "economy", "legal", "weather",
        "social", "media", "breaking", "general", "staff", "senior", "chief", "special", "regional", "bureau",
        "desk", "copy", "night", "weekend",
    }
)
# fmt: on
# "OlsenGazette": a name glued to the next word (often the site's name) by markup without a space.
_GLUE_POINT = re.compile(r"(?<=[a-z]{2})(?=[A-Z][a-z])")


def _strip_trailing_role(part: str, site_keys: set[str]) -> str:
    """ "Jane Doe Senior Reporter" / "Jane Doe Gazette Arts Editor" -> "Jane Doe"; "Gazette Arts Editor" -> "".

    The role word is looked for from the third word on, so a surname that is also a role word ("Ken Senior")
    survives; the words before it are then dropped while they are desk words or the site's name.
    """
    tokens = part.split()
    for i in range(2, len(tokens)):
        if _ROLE.fullmatch(tokens[i]) or _ROLE_HEAD.fullmatch(tokens[i]):
            return " ".join(_drop_title_words(tokens[:i], site_keys))
    return part


def _drop_title_words(tokens: list[str], site_keys: set[str]) -> list[str]:
    """Walk back over the words qualifying a job title: desk words and the site's own name."""
    while tokens and _is_title_word(tokens[-1], site_keys):
        tokens = tokens[:-1]
    glued = _GLUE_POINT.split(tokens[-1]) if len(tokens) >= 2 else []
    if len(glued) == 2 and _is_title_word(glued[1], site_keys):
        tokens = [*tokens[:-1], glued[0]]
    return tokens


def _is_title_word(token: str, site_keys: set[str]) -> bool:
    key = fold(token)
    return key in _DESK_WORDS or (len(key) >= 4 and any(key in site for site in site_keys))


_FILLER = {"of", "the", "and", "at", "for", "a", "in", "on", "to"}


def _ends_with_role(part: str) -> bool:
    tokens = part.split()
    return bool(tokens) and bool(_ROLE_HEAD.fullmatch(tokens[-1].strip(".")))


def _is_role(name: str) -> bool:
    """A bare job title left over from "Jane Doe, Senior Reporter": it starts with, or is all, role words, or
    ends with a title noun ("Gazette Arts Editor")."""
    tokens = [w for w in re.findall(r"\w+", name) if w.lower() not in _FILLER]
    if not tokens:
        return True
    roles = [bool(_ROLE.fullmatch(w)) for w in tokens]
    return roles[0] or all(roles) or bool(_ROLE_HEAD.fullmatch(tokens[-1]))


def _is_affiliation(name: str) -> bool:
    """ "NJ Advance Media for NJ.com", "Special to the Globe": who employs the author, not a name."""
    return bool(re.search(r"\s(for|to|at)\s", name))


def _is_site(name: str, site_keys: set[str]) -> bool:
    key = fold(name).replace(" ", "")
    return key in site_keys or key.removesuffix("com") in site_keys
