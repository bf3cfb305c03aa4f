"""Main-text candidates and the choice between them.

One trafilatura pass runs on the prepared tree with its default heuristics but without its
readability/justext comparison (`fast`). Only when that pass looks truncated (a short text that is a
small share of the page's text) does the comparison run (`full`: trafilatura's readability comparison of
the fast body, then justext if the text is still short). Its result is kept when it is clearly longer
*and* still contains most of the fast one; when the fast text is a mere fragment of the page, the two are
merged. A longer text elsewhere on the page is not by itself a better one: the comparison sometimes jumps
to another region (a teaser list, a comment thread).

Why trafilatura's sequence is called directly instead of `bare_extraction`: `bare_extraction` deep-copies
the tree it is given, and newsflow parses each page once and does not need the tree after the body is
extracted (metadata and link texts are read before). The sequence still copies internally for its own
cleaning; the raw-tree pruning it does in place (comment sections, some lists) is what the comparison
would do anyway, so the comparison reuses the tree. These functions are internal to trafilatura (pinned
by the tests' baselines): a TypeError/ValueError from a changed signature falls back to the public API.
"""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass

import trafilatura
from lxml.etree import Element, XPath, _Element
from lxml.html import HtmlElement
from trafilatura.core import trafilatura_sequence
from trafilatura.external import compare_extraction, justext_rescue
from trafilatura.htmlprocessing import tree_cleaning
from trafilatura.settings import Extractor

from newsflow.extract.text import fold

# Candidate names double as provenance values.
FAST = "trafilatura:fast"
FULL = "trafilatura:full"
MERGED = "trafilatura:fast+full"
# A fast text shorter than this and covering less than UNDER_SHARE of the page's text looks truncated.
UNDER_CHARS = 2000
UNDER_SHARE = 0.10
# The full pass replaces the fast one only when it is this much longer and keeps this share of its words.
FULL_MIN_GAIN = 1.3
FULL_MIN_OVERLAP = 0.7
# A fast text under this share of the page is a fragment; a full text this many times longer replaces it.
FRAGMENT_SHARE = 0.05
FRAGMENT_GAIN = 3.0
# justext's text replaces a still-short comparison result when this many times longer (trafilatura's ratio).
JUSTEXT_GAIN = 2.0
# Below trafilatura's own minimum, any longer candidate wins (the fast text is a stub or a caption).
STUB_CHARS = 250


def _options(fast: bool) -> Extractor:
    return Extractor(
        output_format="python",
        fast=fast,
        comments=False,  # reader comments are not the article; forum posts are kept by trafilatura itself
        tables=True,
        links=False,
        dedup=False,
        with_metadata=False,
    )


_FAST_OPTIONS = _options(fast=True)
_FULL_OPTIONS = _options(fast=False)


@dataclass
class Candidate:
    method: str
    body: _Element | None
    text: str = ""


def run_comparison(tree: HtmlElement, fast: Candidate) -> Candidate:
    """trafilatura's comparison with readability (and justext for short or unclean results) of the fast
    candidate, without re-running its own extraction: the fast pass already did that on this tree."""
    try:
        cleaned = tree_cleaning(copy(tree), _FULL_OPTIONS)
        body = fast.body if fast.body is not None else Element("body")
        body, text = compare_extraction(cleaned, copy(tree), body, fast.text, _FULL_OPTIONS)
        if len(text) < UNDER_CHARS:
            # Still short: justext reaches text buried in divs that the rule-based passes miss.
            j_body, j_text = justext_rescue(copy(tree), _FULL_OPTIONS)
            if len(j_text) > JUSTEXT_GAIN * len(text):
                body, text = j_body, j_text
    except (TypeError, ValueError):  # internal to trafilatura: fall back to a whole second pass
        return run_trafilatura(tree, None, FULL)
    text = text.strip()
    return Candidate(FULL, body if text and len(body) else None, text)


def run_trafilatura(tree: HtmlElement, url: str | None, method: str) -> Candidate:
    """One trafilatura pass over `tree` (pruned in place, not copied as a whole); body is its XML or None."""
    options = _FULL_OPTIONS if method == FULL else _FAST_OPTIONS
    try:
        body, text, _, _ = trafilatura_sequence(tree, options, url)
    except (TypeError, ValueError):  # the sequence is internal to trafilatura: fall back to the public API
        return _public_pass(tree, url, method)
    text = text.strip()
    return Candidate(method, body if text and len(body) else None, text)


def _public_pass(tree: HtmlElement, url: str | None, method: str) -> Candidate:
    doc = trafilatura.bare_extraction(
        tree, url=url, fast=method != FULL, include_comments=False, include_tables=True,
        include_links=False, deduplicate=False, with_metadata=False,
    )
    body = getattr(doc, "body", None)
    text = str(getattr(doc, "raw_text", "") or "")
    return Candidate(method, body if body is not None and len(body) else None, text)


def looks_truncated(candidate: Candidate, page_chars: int) -> bool:
    n = len(candidate.text)
    return n < UNDER_CHARS and n < UNDER_SHARE * page_chars


_TEXT_NODES = XPath(".//text()")


def page_text_length(tree: HtmlElement) -> int:
    """Characters of visible-ish text in the body (scripts and styles left out)."""
    body = tree.find("body")
    if body is None:
        return 0
    # All text nodes at once (an ancestor test per node costs more), then the scripts' and styles' share off.
    code = sum(len((el.text or "").strip()) for el in body.iter("script", "style"))
    return max(0, sum(len(t.strip()) for t in _TEXT_NODES(body)) - code)


def choose(fast: Candidate, full: Candidate, page_chars: int = 0) -> Candidate:
    """The full pass when it adds text around the fast one rather than replacing it, or when the fast
    one is a fragment (a caption, a teaser: a tiny share of the page) and the full one is much longer."""
    if full.body is None:
        return fast
    if fast.body is None or len(fast.text) < STUB_CHARS:
        return full if len(full.text) > len(fast.text) else fast
    if len(full.text) < FULL_MIN_GAIN * len(fast.text):
        return fast
    extends = overlap(fast.text, full.text) >= FULL_MIN_OVERLAP
    if extends:
        return full
    if len(fast.text) < FRAGMENT_SHARE * page_chars and len(full.text) >= FRAGMENT_GAIN * len(fast.text):
        return merge(fast, full)
    return fast


def merge(first: Candidate, second: Candidate) -> Candidate:
    """`second` with the blocks of `first` it lacks put before it.

    Used when the two passes found different regions of a page whose fast text is a fragment: a question
    and its answers, a standfirst box and the article. The fragment came first on the page's main path.
    """
    if first.body is None or second.body is None:
        return second if first.body is None else first
    known = fold(second.text)
    missing = [block for block in first.body if (key := fold(" ".join(block.itertext()))) and key not in known]
    for position, block in enumerate(missing):
        second.body.insert(position, block)
    return Candidate(MERGED, second.body, second.text)


def overlap(part: str, whole: str) -> float:
    """Share of `part`'s distinct folded words that occur in `whole`."""
    words = set(fold(part).split())
    return len(words & set(fold(whole).split())) / len(words) if words else 0.0


# The candidate a page normally gets; any other provenance means the fallback pass supplied the body
# (the drift watch counts those pages: tasks/clean.py).
PREFERRED = FAST
