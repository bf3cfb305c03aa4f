"""Main-text candidates and the choice between them.

One trafilatura pass runs on the prepared tree with its default heuristics but without its
readability/justext comparison (`fast`). Only when that pass looks truncated (a short text that is a
small share of the page's text) does the comparison run (`full`: trafilatura's readability comparison of
the fast body, then justext if the text is still short). Its result is kept when it is clearly longer
*and* still contains most of the fast one; when the fast text is a mere fragment of the page, the two are
merged. A longer text elsewhere on the page is not by itself a better one: the comparison sometimes jumps
to another region (a teaser list, a comment thread).

What the chosen candidate misses is then put back where the page shows it belongs to the article: the
standfirst (the page's visible copy of its description, outside the body container), headings and lists
sitting between two consecutive paragraphs of the body, and the other parts of a body the CMS cut into
several containers of one class around ad rows and pictures.

Why trafilatura's sequence is called directly instead of `bare_extraction`: `bare_extraction` deep-copies
the tree it is given, and newsflow parses each page once and does not need the tree after the body is
extracted (metadata and link texts are read before). The sequence still copies internally for its own
cleaning; the raw-tree pruning it does in place (comment sections, some lists) is what the comparison
would do anyway, so the comparison reuses the tree. These functions are internal to trafilatura (pinned
by the tests' baselines): a TypeError/ValueError from a changed signature falls back to the public API.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from copy import copy
from dataclasses import dataclass

import trafilatura
from lxml.etree import Element, SubElement, XPath, _Element
from lxml.html import HtmlElement
from trafilatura.core import trafilatura_sequence
from trafilatura.external import compare_extraction, justext_rescue
from trafilatura.htmlprocessing import tree_cleaning
from trafilatura.settings import Extractor

from newsflow.extract.cleanup import STRING_VALUE, block_text
from newsflow.extract.htmlprep import text_lines
from newsflow.extract.text import collapse, fold

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
        tree,
        url=url,
        fast=method != FULL,
        include_comments=False,
        include_tables=True,
        include_links=False,
        deduplicate=False,
        with_metadata=False,
    )
    body = getattr(doc, "body", None)
    text = str(getattr(doc, "raw_text", "") or "")
    return Candidate(method, body if body is not None and len(body) else None, text)


def looks_truncated(candidate: Candidate, page_chars: int) -> bool:
    n = len(candidate.text)
    return n < UNDER_CHARS and n < UNDER_SHARE * page_chars


_TEXT_NODES = XPath(".//text()", smart_strings=False)  # plain strings: no reference back to each node


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


# trafilatura's last resort (`baseline`), taken when its main extractor found under 250 characters,
# is the text of the page's <article> (or JSON-LD articleBody) as one paragraph: headline, dateline,
# tables of contents and all, with no block for the rules to tell apart. The page still has the lines
# that text was made of: the dump keeps all its text and is cut where the visual lines (block elements
# and <br>s) of the page's longest outermost <article> (the one the dump is: baseline takes one article
# when one dominates, and more than one make more than one paragraph) begin and end, each line found in
# it, in order and on word boundaries, becoming a block, and any text between them a paragraph of its
# own. Done only when the lines found cover at least DUMP_COVERED of the dump (an articleBody from
# JSON-LD need not be the page's text).
DUMP_COVERED = 0.5
# How far past where the next line should start it is looked for. Lines come in the dump's order with
# little between them; one the dump does not have (text the extractor pruned) costs a search of about
# this much, not of the rest of the dump, and moves the expected start on by its length (so one
# unmatched long line does not leave every later one out of reach).
DUMP_WINDOW = 2000
_ARTICLES = XPath(".//article[not(ancestor::article)]")


def is_dump(candidate: Candidate) -> bool:
    """A body of one paragraph without any markup inside, of more than a stub's length: what
    trafilatura's last resort returns (a one-paragraph article extracted any other way looks the same,
    and is cut into its lines just as well)."""
    body = candidate.body
    return (
        body is not None
        and len(body) == 1
        and body[0].tag == "p"
        and not len(body[0])
        and len(candidate.text) >= STUB_CHARS
    )


def article_lines(tree: HtmlElement) -> list[str]:
    """The visual lines of the page's longest outermost <article> (none: no article)."""
    articles = _ARTICLES(tree)
    if not articles:
        return []
    longest = max(articles, key=lambda el: len(STRING_VALUE(el)))
    return text_lines(longest)


def cut_dump(dump: Candidate, lines: Sequence[str]) -> Candidate:
    """The dump's text cut into `lines` where it holds them (see DUMP_COVERED), or the dump as it was."""
    if not is_dump(dump) or not lines or dump.body is None:
        return dump
    text = collapse(dump.body[0].text or "")
    out, pos, expect, covered = Element("body"), 0, 0, 0
    for line in lines:
        at = _find_words(text, line, pos, min(expect, pos + 10 * DUMP_WINDOW) + len(line) + DUMP_WINDOW)
        if at < 0:
            expect += len(line) + 1  # not the dump's (or written otherwise): look further on (expect >= pos)
            continue
        _loose(out, text[pos:at])
        SubElement(out, "p").text = line
        pos = expect = at + len(line)
        covered += len(line)
    if covered < DUMP_COVERED * len(text):
        return dump
    _loose(out, text[pos:])
    return Candidate(dump.method, out, dump.text)


def _find_words(text: str, part: str, start: int, end: int) -> int:
    """Where `part` is in text[start:end] without cutting a word at either end (-1: nowhere)."""
    at = text.find(part, start, end)
    while at >= 0:
        after = at + len(part)
        cuts_left = at > start and text[at - 1].isalnum() and part[0].isalnum()
        cuts_right = after < len(text) and text[after].isalnum() and part[-1].isalnum()
        if not cuts_left and not cuts_right:
            return at
        at = text.find(part, at + 1, end)
    return -1


def _loose(body: _Element, text: str) -> None:
    if text.strip():
        SubElement(body, "p").text = text.strip()


def overlap(part: str, whole: str) -> float:
    """Share of `part`'s distinct folded words that occur in `whole`."""
    words = set(fold(part).split())
    return len(words & set(fold(whole).split())) / len(words) if words else 0.0


# The candidate a page normally gets; any other provenance means the fallback pass supplied the body
# (the drift watch counts those pages: tasks/clean.py).
PREFERRED = FAST


# --- the standfirst ------------------------------------------------------------------------------------------

# A standfirst (deck, teaser, intro) sits in the article's header, outside the container the extractor
# takes as the body; pages repeat it as their description. Found by the description's first characters.
STANDFIRST_PREFIX_CHARS = 24
STANDFIRST_MIN_CHARS = 60
STANDFIRST_MAX_CHARS = 700
# A reworded standfirst holds at least this share of the description's distinct words.
STANDFIRST_REWORDED_SHARE = 0.8
STANDFIRST_OPENING_WORDS = 3
# Descriptions copied from a CMS field sometimes keep its markup ("<p>The ...</p>").
_MARKUP = re.compile(r"<[^>]{0,200}>")
_INLINE = frozenset({"span", "em", "strong", "b", "i", "u", "font", "small", "mark"})
# Not a standfirst: code, form fields, and anything inside a link (a teaser card of a list of stories
# pointing at the page itself).
_NOT_TEXT = frozenset({"script", "style", "noscript", "template", "textarea", "title", "head", "option", "a"})
# Nor a block in the page's footer or navigation: a site-wide description ("example.com brings you the
# latest ...") is shown there, and pages declare it beside the article's own.
_NOT_ARTICLE = frozenset({"footer", "nav"})
_NOT_STANDFIRST = _NOT_TEXT | _NOT_ARTICLE


def find_standfirst(
    tree: HtmlElement, description: str | None, others: Sequence[str] = (), reworded: bool = False
) -> str | None:
    """The page's visible copy of its description, when a block shows it (the standfirst), else None.

    `others` are the page's other declared descriptions, tried in turn when `description` is not shown:
    sources disagree on some pages (a short meta description beside the JSON-LD copy of the standfirst).
    With `reworded`, a block starting like a description and holding nearly all its words counts too
    (a description cut or lightly edited from the standfirst: "X von Y ist ein besonders ..." shown, "X Y
    ist ein ..." declared).
    """
    body = tree.find("body")
    if body is None:
        return None
    tried: set[str] = set()
    for candidate in (description, *others):
        desc = collapse(_MARKUP.sub(" ", candidate)) if candidate and "<" in candidate else collapse(candidate)
        if len(desc) < STANDFIRST_MIN_CHARS or desc in tried:
            continue
        tried.add(desc)
        found = _shown_description(body, desc, reworded)
        if found:
            return found
    return None


def _shown_description(body: HtmlElement, desc: str, reworded: bool) -> str | None:
    want = fold(_TRAILING_DOTS.sub("", desc))
    words = set(want.split()) if reworded else set()
    # A reworded standfirst still opens with the description's first words (not a block that merely
    # contains it after other text: a script, a caption).
    opening = " ".join(want.split()[:STANDFIRST_OPENING_WORDS]) + " "
    for node in _TEXT_CONTAINING(body, prefix=desc[:STANDFIRST_PREFIX_CHARS]):
        block = _block_of(node)
        if block is None:
            continue
        text = block_text(block)
        if not STANDFIRST_MIN_CHARS <= len(text) <= STANDFIRST_MAX_CHARS:
            continue
        key = fold(_TRAILING_DOTS.sub("", text))
        if want.startswith(key) or key.startswith(want):
            return text
        if (
            words
            and key.startswith(opening)
            and len(words & set(key.split())) >= STANDFIRST_REWORDED_SHARE * len(words)
        ):
            return text
    return None


# --- the standfirst declared by microdata ------------------------------------------------------------------------

# schema.org microdata names the article's description on the element showing it (itemprop="description"
# under the Article's itemscope): the standfirst, whatever the meta tags say. The same property under a
# Person (author box), an ImageObject (caption) or an Organization is not the article's.
DECLARED_STANDFIRST_MAX_CHARS = 2000
_ITEMPROP_ELEMENTS = XPath("//body/descendant::*/@itemprop/..")
_ARTICLE_TYPES = ("Article", "BlogPosting", "Posting", "Report")


def find_declared_standfirst(tree: HtmlElement) -> str | None:
    """The visible text of the article's microdata description, or None."""
    for el in _ITEMPROP_ELEMENTS(tree):
        if "description" not in el.get("itemprop", "").split() or el.tag in ("meta", "link"):
            continue
        if not _describes_article(el) or not _shown_as_text(el):
            continue
        text = block_text(el)
        if STANDFIRST_MIN_CHARS <= len(text) <= DECLARED_STANDFIRST_MAX_CHARS:
            return text
    return None


def _describes_article(el: _Element) -> bool:
    """The nearest itemscope around `el` is an article (its itemtype's last path part names one)."""
    for ancestor in el.iterancestors():
        kind = ancestor.get("itemtype")
        if kind is not None:
            name = kind.rstrip("/").rsplit("/", 1)[-1]
            return any(name.endswith(t) for t in _ARTICLE_TYPES)
    return False


def _shown_as_text(el: _Element) -> bool:
    """`el` is shown as text: not code or a form field, nor inside a link, the footer or navigation."""
    return el.tag not in _NOT_TEXT and not any(a.tag in _NOT_STANDFIRST for a in el.iterancestors())


_TEXT_CONTAINING = XPath(".//text()[contains(., $prefix)]")
# Descriptions are cut with an ellipsis; the visible standfirst may be the longer or the shorter one.
_TRAILING_DOTS = re.compile(r"[.…\s]+$")


def _block_of(node: object) -> _Element | None:
    parent = node.getparent()  # type: ignore[attr-defined]
    if parent is None:
        return None
    if getattr(node, "is_tail", False):
        parent = parent.getparent()
    while parent is not None and parent.tag in _INLINE:
        parent = parent.getparent()
    if parent is None or parent.tag in _NOT_TEXT or any(el.tag in _NOT_STANDFIRST for el in parent.iterancestors()):
        return None
    return parent


def add_standfirst(candidate: Candidate, standfirst: str | None) -> None:
    """Put the standfirst before the body when the body does not have it."""
    if not standfirst or candidate.body is None:
        return
    opening = standfirst[:STANDFIRST_PREFIX_CHARS]
    if opening in candidate.text or fold(standfirst)[:80] in fold(candidate.text):  # the cheap test first
        return
    block = Element("p")
    block.text = standfirst
    candidate.body.insert(0, block)


# --- gaps ----------------------------------------------------------------------------------------------------

# Headings and lists the extractor drops between two paragraphs it keeps: on pages where it finds no
# article container it falls back to collecting paragraphs only, and it takes some in-body lists for
# navigation. A heading or list whose neighbours on the page are consecutive blocks of the body sits
# inside the article. Lists made mostly of links stay out (related-story lists sit between paragraphs too).
_HEADINGS = frozenset({"h2", "h3", "h4", "h5", "h6"})
_LISTS = frozenset({"ul", "ol"})
GAP_MAX_CHARS = 2000
GAP_MAX_LINKED_SHARE = 0.5
# Longer neighbours are page sections, not paragraphs: not folded (the cost), never matched.
GAP_NEIGHBOUR_MAX_CHARS = 5000


@dataclass
class Gap:
    tag: str
    lines: list[str]  # the heading's text, or the list's items
    before: str  # folded text of the previous sibling with text on the page
    after: str  # and of the next one


# Only blocks between two text blocks are candidates (a page has dozens of menu lists: their text is not read).
_TEXT_BLOCKS = frozenset({"p", "blockquote"}) | _HEADINGS | _LISTS


def find_gaps(tree: HtmlElement) -> list[Gap]:
    """In-body headings and lists of the page, with their neighbours, read before the extractor prunes."""
    gaps = []
    for el in tree.iter(*_HEADINGS, *_LISTS):
        before, after = el.getprevious(), el.getnext()
        if before is None or after is None or before.tag not in _TEXT_BLOCKS or after.tag not in _TEXT_BLOCKS:
            continue
        gap = _gap(el, before, after)
        if gap is not None:
            gaps.append(gap)
    return gaps


def _gap(el: HtmlElement, previous: HtmlElement, following: HtmlElement) -> Gap | None:
    text = block_text(el)
    if not text or len(text) > GAP_MAX_CHARS:
        return None
    before, after = _text_key(previous), _text_key(following)
    if not before or not after:
        return None
    if el.tag in _HEADINGS:
        return Gap(el.tag, [text], before, after)
    linked = sum(len(block_text(a)) for a in el.iter("a"))
    items = [line for li in el.iterchildren("li") if (line := block_text(li))]
    if linked > GAP_MAX_LINKED_SHARE * len(text) or not items:
        return None
    return Gap(el.tag, items, before, after)


def _text_key(el: HtmlElement) -> str:
    raw = "".join(el.itertext())
    return fold(raw) if len(raw) <= GAP_NEIGHBOUR_MAX_CHARS else ""


def fill_gaps(candidate: Candidate, gaps: list[Gap]) -> int:
    """Put back each heading or list whose page neighbours are consecutive blocks of the body; returns how many."""
    if candidate.body is None or not gaps:
        return 0
    blocks = list(candidate.body)
    keys = [fold("".join(b.itertext())) for b in blocks]
    position = {key: i for i, key in enumerate(keys) if key}
    known = "\n".join(keys)
    inserts = []
    for gap in gaps:
        i = position.get(gap.before)
        if i is not None and i + 1 < len(keys) and keys[i + 1] == gap.after and fold(gap.lines[0]) not in known:
            inserts.append((i, gap))
    for i, gap in reversed(inserts):  # from the end, so earlier positions stay valid
        blocks[i].addnext(_as_block(gap))
    return len(inserts)


def _as_block(gap: Gap) -> _Element:
    """The gap in trafilatura's XML vocabulary (head with its level, list of items)."""
    if gap.tag in _HEADINGS:
        return _text_block(gap.tag, gap.lines[0])
    block = Element("list")
    block.set("rend", gap.tag)
    for line in gap.lines:
        item = SubElement(block, "item")
        item.text = line
    return block


def _text_block(tag: str, text: str) -> _Element:
    """A page's paragraph, blockquote or heading as a block of trafilatura's XML (p, quote, head with its level)."""
    block = Element({"p": "p", "blockquote": "quote"}.get(tag, "head"))
    if block.tag == "head":
        block.set("rend", tag)
    block.text = text
    return block


# --- continuations ---------------------------------------------------------------------------------------------

# Some CMSs cut a long article into several body containers of the same class with ad rows, pictures or
# pull quotes between them; the extractor keeps one of them (the longest, or the first) and sometimes a
# second. Containers of the body's own class beside it, with no more than a caption's text between two of
# them, holding prose and no headline of their own, are parts of the same article: the missing ones go
# back in page order, before, between or after the parts the body has. Searched near the container only
# (a page-wide search costs a scan per page).
CONTINUATION_PREFIX_CHARS = 40
CONTINUATION_LEVELS = 3  # from the body's paragraph up to its container
CONTINUATION_MIN_CHARS = 200
CONTINUATION_MAX_LINKED_SHARE = 0.2
CONTINUATION_MAX_GAP_CHARS = 200
CONTINUATION_MAX_PARTS = 250  # each way: the work a page can ask for stays bounded (a thread of 10,000 posts)
_CONTINUATION_BLOCKS = frozenset({"p", "h2", "h3", "h4", "blockquote"})
_NO_TEXT = frozenset({"script", "style", "noscript", "template"})


def add_continuations(candidate: Candidate, tree: HtmlElement) -> int:
    """Put back the parts of the body's article the extractor left out; returns how many blocks were added."""
    body = candidate.body
    if body is None or len(body) == 0:
        return 0
    start = _source_paragraph(tree, block_text(body[-1]))
    if start is None:
        start = _source_paragraph(tree, block_text(body[0]))
    container: _Element | None = start
    index: dict[str, int] | None = None
    for _ in range(CONTINUATION_LEVELS if start is not None else 0):
        container = container.getparent() if container is not None else None
        if container is None or not container.get("class"):
            continue
        before = _sibling_parts(container, preceding=True)[::-1]
        run = [*before, container, *_sibling_parts(container, preceding=False)]
        if len(run) > 1:
            index = _opening_index(body) if index is None else index
            added = _restore_parts(candidate, [_Part(part) for part in run], index)
            if added:
                return added
    return 0


def _opening_index(body: _Element) -> dict[str, int]:
    """Each body block's opening (CONTINUATION_PREFIX_CHARS characters; shorter blocks left out) -> its position."""
    index: dict[str, int] = {}
    for i, block in enumerate(body):
        text = block_text(block)
        if len(text) >= CONTINUATION_PREFIX_CHARS:
            index.setdefault(text[:CONTINUATION_PREFIX_CHARS], i)
    return index


class _Part:
    """A container of the run and its top-level blocks of text (nested ones are in their block's text)."""

    def __init__(self, element: _Element) -> None:
        self.element = element
        self.blocks = [(block, block_text(block)) for block in _top_blocks(element)]

    def openings(self) -> Iterator[str]:
        """Openings of its blocks long enough to tell them apart (a repeated "Anzeige" label is not)."""
        for _, text in self.blocks:
            if len(text) >= CONTINUATION_PREFIX_CHARS:
                yield text[:CONTINUATION_PREFIX_CHARS]


def _top_blocks(element: _Element) -> list[_Element]:
    """The element's blocks of text, in page order, not entering a block found (one walk however deep)."""
    found: list[_Element] = []
    stack = list(reversed(element))
    while stack:
        node = stack.pop()
        if not isinstance(node.tag, str) or node.tag in _NO_TEXT:
            continue
        if node.tag in _CONTINUATION_BLOCKS:
            found.append(node)
        else:
            stack.extend(reversed(node))
    return found


def _restore_parts(candidate: Candidate, run: list[_Part], index: dict[str, int]) -> int:
    """Insert the prose of the parts of `run` (page order) that the body has nothing of, each after the body
    blocks of the parts before it (`index`: the body's `_opening_index`); returns how many blocks were added."""
    body = candidate.body
    assert body is not None
    blocks = list(body)
    owned = [[index[key] for key in part.openings() if key in index] for part in run]
    if all(owned):  # the usual case: the body has every part
        return 0
    known = fold(candidate.text)
    seen: set[str] = set()  # keys of the blocks added
    first_own = next((min(own) for own in owned if own), 0)
    after = first_own - 1  # parts before the first kept one go just before its first block
    inserts: dict[int, list[_Element]] = {}
    for part, own in zip(run, owned, strict=True):
        if own:
            after = max(after, *own)
            continue
        inserts.setdefault(after, []).extend(_prose_blocks(part, known, seen))
    added = [block for new in inserts.values() for block in new]
    if not added:
        return 0
    body[:] = [*inserts.get(-1, ()), *(el for i, block in enumerate(blocks) for el in (block, *inserts.get(i, ())))]
    # later steps (the standfirst) test the body's text for what it already has
    candidate.text = candidate.text + "\n" + "\n".join(block_text(block) for block in added)
    return len(added)


def _source_paragraph(tree: HtmlElement, text: str) -> _Element | None:
    """The page's <p> a body block came from (matched on its opening characters)."""
    prefix = text[:CONTINUATION_PREFIX_CHARS]
    if len(prefix) < CONTINUATION_PREFIX_CHARS:
        return None
    probe = prefix[:12]
    for p in tree.iter("p"):
        head = p.text
        if not head or head.isspace():  # <p><span>text</span></p>: the text opens the first inline child
            head = p[0].text if len(p) and p[0].tag in _INLINE else None
        if head and probe in head and block_text(p).startswith(prefix):
            return p
    return None


def _sibling_parts(container: _Element, preceding: bool) -> list[_Element]:
    """Elements of the container's class after it (before it, nearest first, when `preceding`): its siblings
    or their children, until text comes between (or, going back, the headline), at most CONTINUATION_MAX_PARTS."""
    cls = container.get("class")
    parts: list[_Element] = []
    gap = 0
    node: _Element | None = container
    for _ in range(2):  # the container's siblings, then its parent's (a grid row per part)
        if node is None:
            break
        for sib in node.itersiblings(preceding=preceding):
            if not isinstance(sib.tag, str):
                continue
            if preceding and (sib.tag == "h1" or sib.find(".//h1") is not None):
                return parts  # the article starts below its headline
            match = [sib] if sib.get("class") == cls else [c for c in sib.iterchildren() if c.get("class") == cls]
            if match:
                parts.extend(reversed(match) if preceding else match)
                if len(parts) >= CONTINUATION_MAX_PARTS:
                    return parts[:CONTINUATION_MAX_PARTS]
                gap = 0
                continue
            gap += _text_chars(sib, CONTINUATION_MAX_GAP_CHARS - gap + 1)
            if gap > CONTINUATION_MAX_GAP_CHARS:
                return parts
        node = node.getparent()
    return parts


def _text_chars(el: _Element, enough: int) -> int:
    """Characters of text in `el` outside scripts and styles, counted until `enough` (a page's footer is long)."""
    total = 0
    for node in el.iter():
        if node.tag in _NO_TEXT or not isinstance(node.tag, str):
            continue
        total += len((node.text or "").strip()) + sum(len((c.tail or "").strip()) for c in node)
        if total >= enough:
            break
    return total


def _prose_blocks(part: _Part, known: str, seen: set[str]) -> list[_Element]:
    """The part's paragraphs, quotes and headings as body blocks, leaving out those the body has (`known`: its
    text folded) or that were added already (`seen`: their keys, to which the new ones are added)."""
    if part.element.find(".//h1") is not None:  # another article's headline: not a continuation
        return []
    chars = sum(len(text) for _, text in part.blocks)
    linked = sum(len(block_text(a)) for a in part.element.iter("a"))
    if chars < CONTINUATION_MIN_CHARS or linked > CONTINUATION_MAX_LINKED_SHARE * chars:
        return []
    out: list[_Element] = []
    for block, text in part.blocks:
        key = fold(text)[:60]
        if not key or key in known or key in seen:
            continue
        out.append(_text_block(block.tag, text))  # a blockquote stays a quote, for the pull-quote rule
        seen.add(key)
    return out
