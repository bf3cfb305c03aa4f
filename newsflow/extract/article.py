"""The clean stage's pure function: HTML in, an `Article` (main text, metadata, provenance) out.

Sequence (docs/extraction.md has the numbers):
1. parse once; drop hidden elements; keep embedded posts (tweets) as quotes; unwrap layout tables; mark
   div/p pull quotes as quotes;
2. metadata from JSON-LD, meta tags, the document, the URL and feed hints;
3. body: one trafilatura `fast` pass on the tree (not copied); a second, `full` pass (trafilatura's
   readability/justext comparison) only when the first looks truncated, kept if it extends the first;
   then what the extractor left out of the article is put back: the standfirst, in-body headings and lists
   between two kept paragraphs, later parts of a body split into containers of one class (body.py);
4. the body is cleaned of repeated headline, related-story lists, calls to action, link-only blocks and
   pull quotes repeating the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from newsflow.errors import PermanentError
from newsflow.extract import body as bodies
from newsflow.extract.cleanup import Lead, clean_body, link_texts
from newsflow.extract.htmlprep import count_elements, parse_html, prepare_tree
from newsflow.extract.metadata import Metadata, extract_metadata
from newsflow.extract.options import DEFAULT_OPTIONS, ExtractOptions

# The most elements a page may have. Extraction time grows faster than the element count (40,000
# paragraphs take ~3 s, 120,000 ~18 s here), and its slow parts are long calls into lxml that the
# soft time limit cannot interrupt. The 521 real pages of the two evaluation sets have at most 4,634
# elements; ten times that is still a page, 280,000 paragraphs of one line are not.
MAX_ELEMENTS = 50_000


class TooComplex(PermanentError):
    """The page has more elements than extraction takes on (`too_large`, like a page over the byte cap)."""

    def __init__(self, elements: int, limit: int) -> None:
        super().__init__("too_large", f"the page has {elements} elements (> {limit}); not extracted")


@dataclass
class Article:
    body: str
    title: str | None = None
    author: str | None = None
    published: str | None = None
    site_name: str | None = None
    language: str | None = None
    canonical_url: str | None = None
    description: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def extract_article(
    html: str,
    url: str | None = None,
    hints: Mapping[str, Any] | None = None,
    options: ExtractOptions = DEFAULT_OPTIONS,
    max_elements: int = MAX_ELEMENTS,
) -> Article:
    """Extract the main text and metadata of one page. An empty body means "no article here".
    A page of more than `max_elements` elements (0: no limit) raises TooComplex."""
    tree = parse_html(html) if html and html.strip() else None
    if tree is None:
        return _from_metadata("", Metadata(), "none:unparseable")
    # Every element starts with "<": counting them costs microseconds, walking the tree only when
    # that count is over the limit.
    if max_elements and html.count("<") > max_elements and (n := count_elements(tree)) > max_elements:
        raise TooComplex(n, max_elements)
    meta = extract_metadata(tree, url, hints)
    lead = Lead(meta.title, meta.description, *link_texts(tree, url))
    prepare_tree(tree, options)
    text, method = _best_body(tree, url, lead, options, meta.descriptions[1:])
    return _from_metadata(text, meta, method)


def _best_body(
    tree: Any, url: str | None, lead: Lead, options: ExtractOptions, other_descriptions: tuple[str, ...] = ()
) -> tuple[str, str]:
    # Read before the extractor prunes the tree.
    standfirst = None
    if options.restore_standfirst:
        others = other_descriptions if options.standfirst_any_description else ()
        standfirst = bodies.find_standfirst(tree, lead.description, others, options.standfirst_reworded)
        if standfirst is None and options.standfirst_microdata:
            standfirst = bodies.find_declared_standfirst(tree)
    gaps = bodies.find_gaps(tree) if options.restore_gaps else []
    chosen = bodies.run_trafilatura(tree, url, bodies.FAST)
    # The full pass (readability/justext comparison) costs as much again: only pages that look truncated pay.
    if options.choose_candidate and len(chosen.text) < bodies.UNDER_CHARS:
        page_chars = bodies.page_text_length(tree)
        if bodies.looks_truncated(chosen, page_chars):
            chosen = bodies.choose(chosen, bodies.run_comparison(tree, chosen), page_chars)
    if options.structure_dumps and bodies.is_dump(chosen):
        chosen = bodies.cut_dump(chosen, bodies.article_lines(tree))
    bodies.fill_gaps(chosen, gaps)
    if options.restore_continuations:
        bodies.add_continuations(chosen, tree)
    bodies.add_standfirst(chosen, standfirst)
    text = clean_body(chosen.body, lead, options)
    return text, chosen.method if text else "none"


def _from_metadata(text: str, meta: Metadata, body_method: str) -> Article:
    return Article(
        body=text,
        title=meta.title,
        author=meta.author,
        published=meta.published,
        site_name=meta.site_name,
        language=meta.language,
        canonical_url=meta.canonical_url,
        description=meta.description,
        provenance={"body": body_method, **meta.provenance},
    )
