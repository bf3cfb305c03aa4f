"""The page's date by htmldate's heuristics, without its last resort: a regex search of the whole page.

`htmldate.find_date(extensive_search=True)` tries, in order, and answers with the first date found: the
URL, the head's meta tags, JSON-LD, <abbr> elements; then, on a pruned copy of the page, elements whose
class or id says date, <title> and <h1>, <time> elements; timestamps in the source, image names, known
site idioms; dated text segments. When all of them found nothing comes `search_page`: date patterns
anywhere in the serialised page, scripts, attributes and file names included, a lone year too. On the
140 of 521 evaluation pages (the dev set and the benchmark) that declare no date elsewhere, that last
step dated 9 past metadata's checks, and 7 of those dates were not the article's: a script's
`?ver=2.2-20120417`, an image file name, a CSS class, the access date of a reference, a cookie notice's
"last updated", the end of a product test, an album's release. It cost 1.0 of htmldate's 2.4 ms per page
on average. A date no source gives stays None (newsflow.extract.metadata), so the step is left out.

htmldate has no switch for that, so its sequence is followed here with its own functions, written
against htmldate 1.11 (pyproject.toml pins the minor release). If a release changes them anyway
(ImportError, TypeError, AttributeError), `find_date` itself is used, last resort included, and a
warning says so once. tests/test_pagedate.py checks this sequence gives what `find_date` gives
whenever its last resort is not what answered.
"""

from __future__ import annotations

from contextlib import suppress
from copy import deepcopy
from datetime import datetime
from typing import Any

from htmldate import find_date
from lxml.html import HtmlElement

from newsflow.logs import get_logger

try:
    from htmldate.core import (
        TIMESTAMP_PATTERN,
        compare_reference,
        date_candidates,
        examine_abbr_elements,
        examine_elements,
        examine_header,
        examine_time_elements,
        serialize,
    )
    from htmldate.extractors import (
        FREE_TEXT_EXPRESSIONS,
        discard_unwanted,
        extract_url_date,
        idiosyncrasies_search,
        img_search,
        json_search,
        pattern_search,
    )
    from htmldate.settings import CLEANING_LIST, MAX_SEGMENT_LEN, MIN_SEGMENT_LEN
    from htmldate.utils import Extractor, clean_html
    from htmldate.validators import check_extracted_reference, get_max_date, get_min_date

    _SEQUENCE = True
except ImportError:  # pragma: no cover - another htmldate layout: its public function
    _SEQUENCE = False

log = get_logger("newsflow.extract")
_warned: list[str] = []  # the fallback is logged once per process, not once per page


def marked_date(tree: HtmlElement, url: str | None) -> str | None:
    """The first date htmldate's steps find in the page's markup and dated text (YYYY-MM-DD), or None.
    `tree` is not changed."""
    if _SEQUENCE:
        try:
            return _sequence(tree, url)
        except (TypeError, AttributeError) as exc:  # htmldate's internals changed
            _fall_back(f"{type(exc).__name__}: {exc}")
    else:  # pragma: no cover - another htmldate layout
        _fall_back("htmldate's internal functions are not where newsflow.extract.pagedate expects them")
    return str(find_date(tree, url=url, original_date=True, extensive_search=True) or "") or None


def _fall_back(why: str) -> None:
    if not _warned:
        _warned.append(why)
        log.warning("htmldate_sequence_unavailable", error=why[:300], fallback="htmldate.find_date")


def _sequence(tree: HtmlElement, url: str | None) -> str | None:
    # find_date's steps and order (htmldate 1.11), for original_date=True, extensive_search=True
    options = Extractor(
        extensive=True, max=get_max_date(None), min=get_min_date(None), original=True, format="%Y-%m-%d"
    )
    if url is None:
        canonical = tree.find('.//link[@rel="canonical"]')
        url = canonical.get("href") if canonical is not None else None
    found = (
        extract_url_date(url, options)
        or examine_header(tree, options)
        or json_search(tree, options)
        or examine_abbr_elements(tree, options)
    )
    if found:
        return str(found)
    search_tree = deepcopy(tree)  # the tree is the caller's; the pruning below is done in place
    with suppress(ValueError):  # libxml2 refuses some control characters: search the unpruned copy
        search_tree = discard_unwanted(clean_html(search_tree, CLEANING_LIST))
    found = (
        examine_elements(date_candidates(search_tree, True), options)
        or examine_elements(search_tree.xpath(".//title|.//h1"), options)
        or examine_time_elements(search_tree, options)
    )
    if found:
        return str(found)
    html = serialize(search_tree)
    found = (
        pattern_search(html, TIMESTAMP_PATTERN, options)
        or img_search(search_tree, options)
        or idiosyncrasies_search(html, options)
    )
    if found:
        return str(found)
    reference: datetime | None = None
    for segment in FREE_TEXT_EXPRESSIONS(search_tree):
        segment = segment.strip()
        if MIN_SEGMENT_LEN < len(segment) < MAX_SEGMENT_LEN:
            reference = compare_reference(reference, segment, options)
    checked: Any = check_extracted_reference(reference, options)
    return str(checked) if checked else None
