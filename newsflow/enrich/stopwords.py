"""Stop words per language, cached per process.

English uses the short function-word list below: the `stop-words` package's English list has 1,300
entries, among them content words ("world", "state", "microsoft") that must stay keywords. Other
languages use that package's lists (30+ languages).
"""

from __future__ import annotations

import functools


def _words(text: str) -> list[str]:
    return text.split()


_ENGLISH = frozenset(
    _words("""
a about above after again against ago all almost also although am among an and another any anyone anything are
around as at away back be became because become been before being below between both but by can cannot could did
do does doing done down during each either else enough even ever every few first for from further get gets got
had has have having he her here hers herself him himself his how however i if in into is it its itself just last
least less let like made make many may me might more most much must my myself neither never next no nor not now
of off often on once one only onto or other others our ours ourselves out over own per perhaps put rather really
same see seen she should since so some still such than that the their theirs them themselves then there these
they this those though through thus to too toward towards under until up upon us very via was we well were what
whatever when where whether which while who whom whose why will with within without would yet you your yours
yourself yourselves said says say saying told tell according percent cent mr mrs ms also including new two
three four five six seven eight nine ten year years week weeks day days time times way lot lots thing things
monday tuesday wednesday thursday friday saturday sunday today yesterday tomorrow
want wants wanted happen happens happened make makes making take takes took taken go goes going went come comes
came know knows knew think thinks thought give gives gave given use used uses find found seem seems seemed feel
felt try tried leave left call called keep kept help show shows showed shown start started begin began run hold
held bring brought get getting become becomes added asked able likely already something nothing
""")
)

# Words every news text repeats in any language list's gaps.
_NEWS_NOISE = frozenset({"said", "says", "told", "also", "would", "could", "per", "cent", "mr", "ms", "mrs"})


@functools.cache
def stop_words(language: str | None) -> frozenset[str]:
    """Lower-case stop words for an ISO 639-1 code; English's when the language has no list."""
    if language in (None, "en"):
        return _ENGLISH
    from stop_words import StopWordError, get_stop_words

    try:
        words = get_stop_words(language)
    except StopWordError:
        return _ENGLISH
    return frozenset(w.lower() for w in words) | _NEWS_NOISE


def load_all() -> None:
    """Every list the package has (30+ languages, ~20 ms of CPU): a worker's warm-up loads them once,
    before its pool forks, instead of each process on its first article in each language."""
    from stop_words import LANGUAGE_MAPPING

    for code in LANGUAGE_MAPPING:
        stop_words(code)
