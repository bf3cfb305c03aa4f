"""Parsing and pre-extraction fixes of the HTML tree, done once per page and shared by every extractor."""

from __future__ import annotations

import re

from lxml.etree import XPath
from lxml.html import HtmlElement
from trafilatura.utils import load_html

from newsflow.extract.options import ExtractOptions

# Embeds that carry quoted text news bodies cite (tweets, Instagram/Facebook posts); extractors tend to
# drop them as social widgets, while a reader sees them as part of the story.
_EMBED_CLASSES = ("twitter-tweet", "twitter-video", "instagram-media", "tiktok-embed")
_WRAPPER_WORDS = ("embed", "social", "tweet", "twitter", "instagram")
_WRAPPER_DEPTH = 3
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
# Layout tables (1990s/2000s templates) hold the whole page: menu, columns, footer. Extractors asked to keep
# tables then return the page as one table. A table is layout, not data, when it holds other tables,
# headings, forms or several paragraphs/blocks, or when the page declares it presentational.
_TABLE_PARTS = ("table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption")
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCKS = frozenset({"p", "div", "ul", "ol", "dl", "blockquote", "pre", "article", "section", "aside", "nav"})
_LAYOUT_MIN_BLOCKS = 3
_CAPTION_MAX_WORDS = 40
_PULL_QUOTE = re.compile(r"pull[-_ ]?quote|pullout|quote[-_]?pull", re.IGNORECASE)


def parse_html(html: str) -> HtmlElement | None:
    """Parse once with trafilatura's loader (it repairs and decodes like trafilatura expects)."""
    tree = load_html(html)
    return tree if isinstance(tree, HtmlElement) else None


def prepare_tree(tree: HtmlElement, options: ExtractOptions) -> HtmlElement:
    """Apply the enabled tree fixes in place and return the tree."""
    if options.drop_hidden:
        _drop_hidden(tree)
    if options.keep_embedded_posts:
        _unwrap_embeds(tree)
    if options.unwrap_layout_tables:
        unwrap_layout_tables(tree)
    if options.strip_pull_quotes:
        _mark_pull_quotes(tree)
    return tree


# A cheap substring test in libxml2 first ("ull" is in pull-quote, pullquote, pullout): pages have
# thousands of divs, a handful of candidates.
_PULL_QUOTE_CANDIDATES = XPath(
    "//div[contains(@class, 'ull') or contains(@id, 'ull')] | //p[contains(@class, 'ull') or contains(@id, 'ull')]"
)


def _mark_pull_quotes(tree: HtmlElement) -> None:
    """div/p pull quotes become blockquotes, so the cleanup sees them as quotes (and drops them if repeated).

    aside/figure pull quotes need nothing: extractors already leave asides and figures out.
    """
    for el in _PULL_QUOTE_CANDIDATES(tree):
        marker = f"{el.get('class', '')} {el.get('id', '')}"
        if _PULL_QUOTE.search(marker):
            el.tag = "blockquote"


def unwrap_layout_tables(tree: HtmlElement) -> int:
    """Turn layout tables into nested divs (data tables stay tables); returns how many were unwrapped.

    Decided on the original structure first, then rewritten, so an outer table's verdict does not depend
    on whether an inner one was already unwrapped.
    """
    layout = [table for table in tree.iter("table") if is_layout_table(table)]
    for table in layout:
        _table_to_divs(table)
    return len(layout)


def is_layout_table(table: HtmlElement) -> bool:
    if table.get("role", "").lower() in ("presentation", "none"):
        return True
    n_blocks = 0
    for el in table.iterdescendants():
        tag = el.tag
        if not isinstance(tag, str):
            continue
        if tag == "table" or tag == "form" or tag in _HEADINGS:
            return True
        if tag in _BLOCKS:
            n_blocks += 1
            if n_blocks >= _LAYOUT_MIN_BLOCKS:
                return True
    return False


def _table_to_divs(table: HtmlElement) -> None:
    """Rename this table's own parts to div (not those of tables nested in it: each is judged on its own)."""
    stack = [table]
    while stack:
        el = stack.pop()
        el.tag = "figure" if el.tag in ("td", "th") and _is_picture_cell(el) else "div"
        for attr in ("width", "cellspacing", "cellpadding", "border", "colspan", "rowspan", "valign", "align"):
            el.attrib.pop(attr, None)
        stack.extend(child for child in el if child.tag in _TABLE_PARTS and child.tag != "table")


# Candidates only (the attribute tests run in libxml2): the style regex then runs on a few elements, not all.
_HIDDEN_CANDIDATES = XPath(
    "//body//*[@hidden or @style][not(self::script or self::style or self::noscript or self::template)]"
)


def _drop_hidden(tree: HtmlElement) -> None:
    """A reader never sees these, so their text cannot be part of the article."""
    doomed = [
        el
        for el in _HIDDEN_CANDIDATES(tree)
        if el.get("hidden") is not None or _HIDDEN_STYLE.search(el.get("style", ""))
    ]
    for el in doomed:
        _remove_keep_tail(el)


def _unwrap_embeds(tree: HtmlElement) -> None:
    for el in tree.iter("blockquote"):
        classes = el.get("class", "")
        if any(name in classes for name in _EMBED_CLASSES):
            # A classless blockquote survives trafilatura's social-widget filters.
            el.attrib.pop("class", None)
            el.attrib.pop("data-instgrm-permalink", None)
            _neutralise_wrappers(el)


def _neutralise_wrappers(el: HtmlElement) -> None:
    """Embed wrappers ("social-media-embed", "tweet-container") are discarded wholesale by extractors."""
    parent = el.getparent()
    for _ in range(_WRAPPER_DEPTH):
        if parent is None or parent.tag in ("body", "article", "main"):
            return
        marker = f"{parent.get('class', '')} {parent.get('id', '')}".lower()
        if any(word in marker for word in _WRAPPER_WORDS):
            parent.attrib.pop("class", None)
            parent.attrib.pop("id", None)
        parent = parent.getparent()


def _is_picture_cell(cell: HtmlElement) -> bool:
    """An image with at most a short caption: a figure, which extractors (and readers) keep out of the text."""
    nested = (el for el in cell.iterdescendants() if isinstance(el.tag, str))
    if cell.find(".//img") is None or any(el.tag in _BLOCKS or el.tag == "table" for el in nested):
        return False
    return len(cell.text_content().split()) <= _CAPTION_MAX_WORDS


# Elements that start a new visual line; their text must not run into the neighbouring text.
_LINE_TAGS = frozenset({"br", "p", "div", "li", "tr", "td", "th", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6",
                        "table", "ul", "ol", "section", "header", "footer", "figure", "figcaption", "address"})


def text_lines(el: HtmlElement) -> list[str]:
    """The element's text as its visual lines: <br> and block elements separate, inline markup does not.

    lxml's text_content() glues "Jane Doe<br>Arts Editor" into "Jane DoeArts Editor".
    """
    parts: list[str] = []
    _collect_lines(el, parts)
    return [line for line in (" ".join(x.split()) for x in "".join(parts).split("\n")) if line]


def _collect_lines(el: HtmlElement, parts: list[str]) -> None:
    breaks = isinstance(el.tag, str) and el.tag in _LINE_TAGS
    if breaks:
        parts.append("\n")
    if isinstance(el.tag, str) and el.tag not in ("script", "style", "template"):
        parts.append(el.text or "")
        for child in el:
            _collect_lines(child, parts)
            parts.append(child.tail or "")  # a child's tail is its parent's text, so the root's is left out
    if breaks:
        parts.append("\n")


def _remove_keep_tail(el: HtmlElement) -> None:
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail
    if tail and tail.strip():
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)
