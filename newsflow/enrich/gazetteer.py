"""Word lists behind the entity heuristic, loaded once per process from `data/`.

places.txt is generated from GeoNames (see data/build_places.py); the other lists are hand-written.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Gazetteer:
    given_names: frozenset[str]
    places: dict[str, str]  # surface form → canonical name
    organizations: dict[str, str]  # surface form → canonical name
    # Most words in a place's or organisation's surface form: a longer run of tokens is none of them.
    max_name_words: int


def _lines(name: str) -> list[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _aliases(lines: list[str]) -> dict[str, str]:
    """Lines are either 'Name' or 'Alias = Canonical'."""
    table: dict[str, str] = {}
    for line in lines:
        alias, sep, canonical = line.partition(" = ")
        table[alias.strip()] = canonical.strip() if sep else alias.strip()
    return table


@functools.cache
def gazetteer() -> Gazetteer:
    names = frozenset(word for line in _lines("given_names.txt") for word in line.split())
    places = {name: name for name in _lines("places.txt")}
    places.update(_aliases(_lines("place_aliases.txt")))
    organizations = _aliases(_lines("organizations.txt"))
    longest = max((len(name.split()) for table in (places, organizations) for name in table), default=1)
    return Gazetteer(given_names=names, places=places, organizations=organizations, max_name_words=longest)
