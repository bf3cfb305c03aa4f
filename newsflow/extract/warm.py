"""Warm-up: what extraction loads or compiles on first use, paid before a worker takes its first page.

A clean worker extracts WARM_UP_HTML and calls `warm_caches()` once at start (`tasks.clean.warm_up`, in the
main process before its pool forks); without it the first pages of every worker cost some 100-500 ms
more CPU each, and a benchmark of a few hundred pages counts that as per-article cost.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

# A page with what a news page has (metadata, navigation, teasers, a dated article) so the warm-up
# walks the same paths as a real one.
WARM_UP_HTML = (
    '<html lang="en"><head><title>Warm-up | Example News</title><meta charset="utf-8">'
    '<meta property="og:title" content="Warm-up"><meta name="author" content="A. Writer">'
    '<meta property="article:published_time" content="2026-01-02T03:04:05Z">'
    '<link rel="canonical" href="https://warm-up.invalid/a"></head><body>'
    '<header><nav><ul><li><a href="/">Home</a></li><li><a href="/world">World</a></li></ul></nav></header>'
    '<main><article><h1>Warm-up</h1><time datetime="2026-01-02">2 January 2026</time>'
    + "<p>The extractor loads its rules and caches on its first page, in every language it meets, "
    "and the first article of every worker would pay for it.</p>"
    * 12
    + "<h2>More</h2><ul><li>One point made.</li><li>Another point made.</li></ul></article>"
    '<aside><h3>Related</h3><a href="/b">Other story</a></aside></main>'
    "<footer><p>Copyright 2026 Example News</p></footer></body></html>"
)


def warm_caches() -> None:
    """Fill what extracting WARM_UP_HTML does not reach: htmldate's month names of every dateparser
    locale (~250 modules, 0.15-0.3 s of CPU, read the first time a date candidate has no year), and
    the standard library's strptime module."""
    datetime.strptime("2026-01-02", "%Y-%m-%d")
    with contextlib.suppress(ImportError, AttributeError):  # internal to htmldate; a newer one may drop it
        from htmldate.extractors import month_words

        month_words()
