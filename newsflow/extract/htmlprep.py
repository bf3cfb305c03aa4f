"""Parsing and pre-extraction fixes of the HTML tree, done once per page and shared by every extractor."""

from __future__ import annotations

import re
from collections.abc import Iterable

from lxml import etree
from lxml.etree import XPath
from lxml.html import HtmlComment, HtmlElement, HtmlEntity, HTMLParser, HtmlProcessingInstruction, fromstring
from trafilatura.utils import DOCTYPE_TAG, FAULTY_HTML, INVALID_XML_CHARS, is_dubious_html

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


# The characters trafilatura's loader deletes before parsing (trafilatura.utils.INVALID_XML_CHARS): control
# characters other than tab and line breaks, and two non-characters.
_INVALID_XML_CHARS = tuple(chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF))
# trafilatura's parser options, and libxml2's "huge" mode: without it libxml2 stops building the tree
# 256 elements deep and drops the rest of the page, so an article wrapped in 300 divs (page builders
# nest that deep) came out empty, dead-lettered `no_article`. Huge mode allows 2048 levels; it also
# lifts libxml2's 10 MB cap on one text node, moot under the clean stage's page size cap
# (clean_max_html_bytes, 5 MiB).
PARSER_OPTIONS = {
    "collect_ids": False, "default_doctype": False, "encoding": "utf-8", "remove_comments": True,
    "remove_pis": True, "huge_tree": True,
}  # fmt: skip
HTML_PARSER = HTMLParser(**PARSER_OPTIONS)
# lxml.html's parser picks each element's Python class in a Python callback (`HtmlElementClassLookup`,
# for the form classes: FormElement, InputElement...), called every time lxml makes a proxy for an
# element, ~3,000 times per page as trafilatura walks and copies the tree. A class lookup in C that
# always answers HtmlElement costs 0.2-0.5 us per proxy instead of 0.5-1.3: 28.0 -> 26.7 ms per page of
# extract_article on the 400 dev pages (each page's best of 4 interleaved rounds). Neither newsflow nor
# trafilatura, htmldate or justext uses the form classes' extra properties (FormElement.inputs...).
CLASS_LOOKUP = etree.ElementDefaultClassLookup(
    element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity
)
HTML_PARSER.set_element_class_lookup(CLASS_LOOKUP)
# trafilatura's loader looks for a self-closing <html/> in the first lines of the page.
_HTML_TAG_LINES = 4
_HTML_TAG_CHARS = 4096


def parse_html(html: str) -> HtmlElement | None:
    """Parse once as trafilatura's loader does (it repairs and decodes like trafilatura expects).

    The loader deletes invalid characters with a regex over the whole page (~0.4 ms on a news page), which
    finds none on nearly every page; a test for each character with `in` costs a quarter of that, and only
    a page that has one pays for the regex. Either way the page is parsed with this module's parser (huge
    mode, element classes in C), not the loader's.
    """
    if any(char in html for char in _INVALID_XML_CHARS):
        tree = _load_valid_html(INVALID_XML_CHARS.sub("", html), beginning=html[:50].lower())
    else:
        tree = _load_valid_html(html)
    return tree if isinstance(tree, HtmlElement) else None


def _load_valid_html(html: str, beginning: str | None = None) -> HtmlElement | None:
    """trafilatura.utils.load_html's steps for a string without invalid characters, with HTML_PARSER
    (tests/test_extraction_cost.py checks both give the same tree). `beginning`: the loader's look at
    the first characters, taken before it deleted any."""
    beginning = html[:50].lower() if beginning is None else beginning
    # libxml2 fails on a doctype with a slash (https://bugs.launchpad.net/lxml/+bug/1955915)
    if "doctype" in beginning:
        first_line, _, rest = html.partition("\n")
        html = DOCTYPE_TAG.sub("", first_line, count=1) + "\n" + rest
    for line in html[:_HTML_TAG_CHARS].splitlines()[:_HTML_TAG_LINES]:
        if "<html" in line and line.endswith("/>"):
            html = FAULTY_HTML.sub(r"\1>", html, count=1)
            break
    tree: HtmlElement | None = None
    bytes_tried = False
    try:
        tree = fromstring(html, parser=HTML_PARSER)
    except ValueError:  # "Unicode strings with encoding declaration are not supported."
        tree, bytes_tried = fromstring_bytes(html), True
    except Exception:  # as the loader: a page libxml2 cannot parse has no tree
        tree = None
    if (tree is None or len(tree) < 1) and not bytes_tried:
        tree = fromstring_bytes(html)
    # Not HTML at all: no "html" in the first characters and (nearly) nothing parsed.
    if tree is not None and is_dubious_html(beginning) and len(tree) < 2:
        return None
    return tree


def fromstring_bytes(html: str) -> HtmlElement | None:
    """trafilatura.utils.fromstring_bytes with this module's parser: the page as UTF-8 bytes, which
    libxml2 takes when it refuses the string (an encoding declaration in it)."""
    try:
        tree: HtmlElement = fromstring(html.encode("utf8", "surrogatepass"), parser=HTML_PARSER)
    except Exception:  # as trafilatura's: a page libxml2 cannot parse has no tree
        return None
    return tree


def count_elements(tree: HtmlElement) -> int:
    return sum(1 for _ in tree.iter())


def prepare_tree(tree: HtmlElement, options: ExtractOptions) -> HtmlElement:
    """Apply the enabled tree fixes in place and return the tree."""
    if options.drop_hidden:
        _drop_hidden(tree)
    # Blockquotes and tables are found in one walk of the tree (a walk costs about the same whatever it
    # looks for). Unwrapping embeds only drops attributes, which neither makes nor unmakes a table, so both
    # lists are what a walk at each step would find.
    found = elements_by_tag(tree, _walked_tags(options))
    if options.keep_embedded_posts:
        _unwrap_embeds(found["blockquote"])
    if options.unwrap_layout_tables:
        _unwrap_layout_tables(found["table"])
    if options.strip_pull_quotes:
        _mark_pull_quotes(tree)
    return tree


def _walked_tags(options: ExtractOptions) -> tuple[str, ...]:
    embeds = ("blockquote",) if options.keep_embedded_posts else ()
    return embeds + (("table",) if options.unwrap_layout_tables else ())


def elements_by_tag(tree: HtmlElement, tags: tuple[str, ...]) -> dict[str, list[HtmlElement]]:
    """Per tag, its elements in document order (every tag asked for has a list, maybe empty)."""
    found: dict[str, list[HtmlElement]] = {tag: [] for tag in tags}
    if tags:  # iter() without a tag would walk every element
        for el in tree.iter(*tags):
            # setdefault: a tag lxml matches under another name (a namespace) must not fail the page
            found.setdefault(el.tag, []).append(el)
    return found


# A cheap substring test in libxml2 first ("ull" is in pull-quote, pullquote, pullout): pages have
# thousands of divs, a handful of candidates. "/descendant::div" is "//div" without the intermediate set of
# every node of the page ("//" is "/descendant-or-self::node()/"): a fifth cheaper.
_PULL_QUOTE_CANDIDATES = XPath(
    "/descendant::div[contains(@class, 'ull') or contains(@id, 'ull')]"
    " | /descendant::p[contains(@class, 'ull') or contains(@id, 'ull')]"
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
    return _unwrap_layout_tables(tree.iter("table"))


def _unwrap_layout_tables(tables: Iterable[HtmlElement]) -> int:
    layout = [table for table in tables if is_layout_table(table)]
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


# Candidates only: the elements in the body carrying either attribute, found by libxml2 walking attribute
# nodes (cheaper than an attribute predicate on every element); the style regex then runs on a few
# elements, not all. The union is in document order.
_HIDDEN_CANDIDATES = XPath("//body/descendant::*/@hidden/.. | //body/descendant::*/@style/..")
_NEVER_SHOWN = frozenset({"script", "style", "noscript", "template"})  # no text of the page: left alone


def _drop_hidden(tree: HtmlElement) -> None:
    """A reader never sees these, so their text cannot be part of the article."""
    doomed = [
        el
        for el in _HIDDEN_CANDIDATES(tree)
        if el.tag not in _NEVER_SHOWN and (el.get("hidden") is not None or _HIDDEN_STYLE.search(el.get("style", "")))
    ]
    for el in doomed:
        _remove_keep_tail(el)


def _unwrap_embeds(blockquotes: Iterable[HtmlElement]) -> None:
    for el in blockquotes:
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
_LINE_TAGS = frozenset(
    {
        "br",
        "p",
        "div",
        "li",
        "tr",
        "td",
        "th",
        "dt",
        "dd",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "ul",
        "ol",
        "section",
        "header",
        "footer",
        "figure",
        "figcaption",
        "address",
    }
)


def text_lines(el: HtmlElement) -> list[str]:
    """The element's text as its visual lines: <br> and block elements separate, inline markup does not.

    lxml's text_content() glues "Jane Doe<br>Arts Editor" into "Jane DoeArts Editor". A walk, not a
    recursion: an article element may be nested 2,000 levels deep (the parser's limit), past Python's.
    """
    parts: list[str] = []
    skipping: HtmlElement | None = None  # inside a script, style or template: no text
    for event, node in etree.iterwalk(el, events=("start", "end")):
        tag = node.tag if isinstance(node.tag, str) else None
        if skipping is not None:
            if event == "end" and node is skipping:
                skipping = None
                if node is not el:
                    parts.append(node.tail or "")
            continue
        if event == "start":
            if tag in _LINE_TAGS:
                parts.append("\n")
            if tag is None:
                continue  # a comment or processing instruction: its tail is taken at its end
            if tag in _NO_TEXT:
                skipping = node
                continue
            parts.append(node.text or "")
        else:
            if tag in _LINE_TAGS:
                parts.append("\n")
            if node is not el:
                parts.append(node.tail or "")  # a node's tail is its parent's text, so the root's is left out
    return [line for line in (" ".join(x.split()) for x in "".join(parts).split("\n")) if line]


_NO_TEXT = frozenset({"script", "style", "template"})


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
