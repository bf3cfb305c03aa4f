"""Main-text candidates and the choice between them.

trafilatura is run on the prepared tree in two configurations, both without its internal
readability/justext comparison: default heuristics (`fast`) and `favor_precision` (stricter).
Each candidate is cleaned the same way, then `choose` keeps the precise one unless it looks truncated.
Why: the precise pass removes standfirsts and teaser blocks the fast pass lets through, but on some
layouts it throws away most of the article (or everything).
"""

from __future__ import annotations

from dataclasses import dataclass

import trafilatura
from lxml.etree import _Element
from lxml.html import HtmlElement

from newsflow.extract.text import words

# Candidate names double as provenance values.
FAST = "trafilatura:fast"
PRECISE = "trafilatura:precision"
# The precise pass is rejected when it keeps less than this share of the fast pass's words (truncated).
MIN_SHARE_OF_FAST = 0.6


@dataclass
class Candidate:
    method: str
    body: _Element | None


def run_trafilatura(tree: HtmlElement, url: str | None, method: str) -> Candidate:
    """One trafilatura pass over a (copied by trafilatura) tree; body is its XML body or None."""
    doc = trafilatura.bare_extraction(
        tree,
        url=url,
        # The precise pass skips trafilatura's readability/justext comparison too: it doubles the cost, and
        # the fast candidate already plays the role of the recall-oriented fallback.
        fast=True,
        favor_precision=method == PRECISE,
        include_comments=False,
        include_tables=True,
        include_links=False,
        deduplicate=False,
        with_metadata=False,
    )
    body = getattr(doc, "body", None)
    return Candidate(method, body if body is not None and len(body) else None)


def choose(fast_text: str, precise_text: str) -> str:
    """Which cleaned candidate to keep: the precise one, unless it lost too much of the fast one."""
    n_fast, n_precise = len(words(fast_text)), len(words(precise_text))
    if n_precise == 0:
        return FAST
    if n_fast and n_precise < MIN_SHARE_OF_FAST * n_fast:
        return FAST
    return PRECISE
