"""Block-level cleanup of an extracted body (trafilatura's XML: p, head, list, quote, table, ref...).

Rules are about what a block *is* (a repeated headline, a link list, a call to action), not about
particular sites, so they carry over to unseen pages. Each rule only removes whole top-level blocks that
are short: long prose is never dropped by a pattern match.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from lxml.etree import XPath, _Element
from trafilatura.xml import xmltotxt

from newsflow.extract.options import ExtractOptions
from newsflow.extract.text import collapse, fold, similar, tidy, words

# Headings that introduce lists of other stories; the list that follows is dropped with them. Sites in
# every language have them, so the common wordings of the languages the feeds carry are listed.
_RELATED_HEADING = re.compile(
    r"^(related( (articles?|stories|posts?|content|coverage|news|reading))?|read more|see more|see also|more on this"
    r"|don'?t miss|you (may|might) also like|also read|also on [\w.]{1,60}|more from [\w .]{1,60}|more stories"
    r"|recommended"
    r"|most (popular|read)|trending( now)?|further reading|editors'? picks|more news|top stories|what to read next"
    r"|latest( news)?|watch( now| next)?|(next|previous) (article|post|story)|(discover|explore) more( \w+)?"
    # de
    r"|(das )?könnte (sie|dich|euch) auch interessieren|(das|dieses) thema könnte (sie|dich|euch) auch interessieren"
    r"|auch interessant|lesen sie (auch|mehr|weiter)[\w ]{0,30}|mehr (zum thema|dazu|lesen|themen)[\w .]{0,30}"
    r"|weitere( \w+)? (artikel|beiträge|nachrichten|meldungen|themen)[\w ]{0,40}|ähnliche (artikel|beiträge)"
    r"|meist(gelesen|e?-?diskutiert|kommentiert)e?( artikel)?|kommentierte artikel|beiträge aus dem forum"
    r"|das (könnte|dürfte) (sie|dich) auch interessieren|empfehlungen der redaktion|verwandte (artikel|themen)"
    r"|(vorschau auf den )?(nächste[nr]?|vorherige[nr]?) (artikel|beitrag)|entdecke (weitere|mehr)( \w+)?"
    r"|ansprechpartner(in)?( zum thema)?|pressekontakt|press contacts?|media contacts?"
    # fr, es, it, pt
    r"|(à|a) lire (aussi|également)|lire aussi|(à )?voir aussi|sur le même (sujet|thème)"
    r"|(les )?articles? (similaires|liés)|(le|te) puede interesar|lee también|lea también|vea también"
    r"|ver también|véase también|noticias relacionadas|temas( relacionados)?|más noticias"
    r"|article (suivant|précédent)|(siguiente|anterior) (artículo|noticia)|(artículo|noticia) anterior"
    r"|leggi anche|potrebbe interessarti|leia também|veja também)\W*$",
    re.IGNORECASE,
)
# The heading of an author box closing the body ("About the author" and a short biography).
_AUTHOR_BOX_HEADING = re.compile(
    r"^(about the (author|writer)s?|über (den autor|die autorin|die autoren)|zum autor|zur autorin"
    r"|à propos de l'auteur|sobre (el|la) autora?)\W*$",
    re.IGNORECASE,
)
_AUTHOR_BOX_WINDOW = 4  # the heading is one of the body's last blocks
_AUTHOR_BOX_MAX_WORDS = 150  # and a biography follows it, not a section of the article
# Teaser lines ("READ MORE: <headline>") are prefixes followed by a link to another story.
_TEASER_PREFIX = re.compile(
    r"^(related|read more|see more|see also|read also|also read|also on [\w.]{1,60}|more|don'?t miss|watch|listen"
    r"|recommended|click here|related post|related article|lesen sie auch|auch interessant|mehr zum thema"
    r"|lesen sie (hier|dazu)|hier lesen sie|lies (auch|hier)|passend dazu|dazu passend"
    r"|(à|a) lire aussi|lire aussi|voir aussi|mira|mire|lee también|lea también|(le|te) puede interesar"
    r"|puedes ver|ver también|leggi anche|leia também)\s*[:>»|–-]",
    re.IGNORECASE,
)
# Calls to action and site furniture; only short blocks are tested against these. In two parts: wordings
# that are the whole block or start it, and wordings found anywhere in it.
_CALL_TO_ACTION_START = (
    r"^\d+ comments?$|^comments?$|^advertisement$|^sponsored|^loading\b|^skip to|^anzeige\b"
    # sharing widgets and loaders (de, fr, es)
    r"|^teilen mit:?$|^wird geladen|^(jetzt )?teilen:?$|^partager( sur)?:?$|^compartir:?$"
    # a blog's like button and its heading ("Like this:" / "Like Loading...")
    r"|^(like|gefällt mir|j['’]aime|me gusta|mi piace)( this| ceci| esto)? ?:$"
    r"|^(like|gefällt mir|j['’]aime|me gusta|mi piace) (loading|wird geladen|chargement|cargando|caricamento)[^\w]*$"
    # cookie banners and the consent line of sign-up forms, as they open (a quote of one in an article
    # starts with a quotation mark or the reporter's words)
    r"|^(this (web)?site|we|our (web)?site) uses? cookies"
    r"|^(diese|unsere) (website|webseite|seite) (verwendet|nutzt) cookies"
    r"|^auf (unserer|dieser) (website|webseite|seite) werden cookies|^wir (verwenden|nutzen|setzen) cookies"
    r"|^(ce site|nous) utilis(e|ons) des cookies|^(este sitio( web)?|esta web) utiliza cookies|^utilizamos cookies"
    r"|^mit (der|ihrer|deiner) (registrierung|anmeldung),? (akzeptieren sie|stimmen sie|akzeptierst du|stimmst du)"
    r"|^by (registering|signing up|subscribing),? you (agree|accept|consent)"
)
_CALL_TO_ACTION_ANYWHERE = (
    r"sign up (for|to)|subscribe (to|now|for|today)|newsletter|get the latest|delivered (to|right in) your inbox"
    r"|follow (us|@)|like this story|share (this|it) with|click here|share on (facebook|twitter)|have a tip\?"
    r"|tell us what you think|\bcomments? (are|is) closed|leave a (comment|reply)"
    r"|get .{1,40} on the go|download (our|the) app|all photos?:"
    r"|this (audio|article) (is|was) (created|generated) with ai|indicates required"
    # follow/join prompts and app/channel plugs in any language
    r"|follow [\w .@]{1,40} on (twitter|facebook|instagram|x|linkedin|telegram)|download the [\w .]{1,30} apps?"
    r"|\b(síguenos|siguenos|suivez-nous|folge(n sie)? uns)\b|canal de (telegram|whatsapp)|(telegram|whatsapp)[- ]kanal"
    r"|we want to hear what you think|get the [\w .']{1,40} (daily|weekly)? ?(edition|briefing) by email"
    # affiliate and advertising disclosures
    r"|affiliate[- ]links?|\bprovisions?-?links?\b|we may (earn|receive) (a )?(commission|compensation)"
    r"|advertisers do not influence|we recommend the best products"
    # log-in prompts and rights notices
    r"|(angemeldet|eingeloggt) sein,? um|must be logged in to|alle rechte vorbehalten|all rights reserved"
    r"|vervielfältigung nur mit|weitere infos unter (www\.|https?://)"
)
_CALL_TO_ACTION = re.compile(f"({_CALL_TO_ACTION_START}|{_CALL_TO_ACTION_ANYWHERE})", re.IGNORECASE)
# The same wordings (all written in lower case) without IGNORECASE, for text already lower-cased: the
# engine then skips at once each wording whose first letter is not the one at hand, where a case-insensitive
# pattern enters every one at every character. Lower-casing first gives the same answer unless the text
# has one of the letters that match an "i" or "s" of the pattern without lower-casing to it (dotted
# capital I, dotless i, long s): such text goes through _CALL_TO_ACTION itself.
_LOWER_CALL_TO_ACTION_START = re.compile(_CALL_TO_ACTION_START)
_LOWER_CALL_TO_ACTION_ANYWHERE = re.compile(_CALL_TO_ACTION_ANYWHERE)
_LOWER_CASE_UNSAFE = re.compile("[\u0130\u0131\u017f]")
# Picture credits and captions' labels: "Photo: AP", "Titelbild: ...", "Crédits photos : Bestimage".
_CREDIT = re.compile(
    r"^\(?(photo|foto|bild|image|credit|crédits?( photos?)?|titelbild|beitragsbild|bildquelle|fotos?|quelle"
    r"|photo d'illustration|image illustrative|pictured?)\b\s*(:|©|\(|$)|^image illustrative\b|^©",
    re.IGNORECASE,
)
_CREDIT_MAX_WORDS = 15
# A block that is only a date or a time ("23.10.2018", "19:49") is a dateline, not text.
# So is a bare address: a link the extractor kept as text.
_DATELINE = re.compile(r"^([\d\s.:/,-]{4,24}(uhr|h)?|https?://\S+)$", re.IGNORECASE)
# A site footer's row of links kept as one line: "Impressum | Datenschutz | © 2021 ...": three or more items,
# two of them legal pages, or one and a copyright notice (one "Kontakt" or "Cookies" item is not enough: a
# helpline box or a list of ingredients has those).
_FOOTER_SEPARATOR = re.compile(r"\s[|•·]\s")
_FOOTER_LEGAL_ITEM = re.compile(
    r"^(impressum|imprint|datenschutz(erklärung)?|privacy( policy)?|terms( of (use|service))?|cookie policy|agb"
    r"|disclaimer|mentions légales|aviso legal|política de privacidad)$",
    re.IGNORECASE,
)
_COPYRIGHT = re.compile(r"^(©|\(c\)|copyright\b)", re.IGNORECASE)
_FOOTER_MAX_WORDS = 20
_CTA_MAX_WORDS = 40
_LINK_BLOCK_MIN_RATIO = 0.8
_LINK_BLOCK_MAX_WORDS = 60
_DECORATION = re.compile(r"\[[^\]]{1,20}\]|\([^)]{1,20}\)|^[\W_]+|[\W_]+$")
_INLINE_JUNK = re.compile(r"\s*Click To Tweet\b", re.IGNORECASE)
# A text _INLINE_JUNK matches has "tweet" in it once lower-cased (no other letter matches a t, w or e of the
# pattern): looking for it costs a fifth of the substitution, which nearly every page can skip.
_INLINE_JUNK_HINT = "tweet"
# Pull quotes: a short block (a sentence or two) whose words appear, in order, inside another block.
_PULL_QUOTE_MIN_WORDS = 6
_PULL_QUOTE_MAX_WORDS = 80
# How many blocks at the top of the body may be a repeated headline/standfirst/byline.
_LEAD_WINDOW = 4
KEEP_STANDFIRST_HEADS = True


@dataclass(frozen=True)
class Lead:
    """What the page says about itself, to recognise furniture in the body.

    title/description spot repeats at the top of the body; anchors (folded texts of the page's links) spot
    blocks made of links. Links are matched by text because asking trafilatura to keep links changes
    what it extracts on some layouts.
    """

    title: str | None = None
    description: str | None = None
    anchors: frozenset[str] = frozenset()
    # Texts of links to the page's own site: the headlines a teaser list is made of.
    site_anchors: frozenset[str] = frozenset()


# An element's text: on an HTML tree, XPath's string-value is "".join(element.itertext()) (the text
# nodes, in document order, comments and processing instructions left out) in half the time.
STRING_VALUE = XPath("string()", smart_strings=False)  # an element's whole text, as a plain str


def anchor_texts(tree: _Element) -> frozenset[str]:
    """Folded text of every link to another page."""
    return link_texts(tree, None)[0]


def link_texts(tree: _Element, url: str | None) -> tuple[frozenset[str], frozenset[str]]:
    """Folded texts of the links to other pages, and of those among them that stay on the page's site.

    In-page links (href="#...": tables of contents, "jump to") point into the article itself: a block
    with their text is one of its headings, not navigation.
    """
    host = _host(url)
    every: set[str] = set()
    own: set[str] = set()
    # Menus, footers and teaser lists repeat the same link texts: each distinct text is folded once.
    folded: dict[str, str] = {}
    for a in tree.iter("a"):
        href = a.get("href", "").strip()
        if href.startswith("#"):
            continue
        raw = str(STRING_VALUE(a))
        text = folded.get(raw)
        if text is None:
            text = folded[raw] = fold(raw)
        if not text or text in own:  # a text already known as the site's needs no look at this address
            continue
        every.add(text)
        link_host = _host(href)
        if not link_host or link_host == host:
            own.add(text)
    return frozenset(every), frozenset(own)


def _host(url: str | None) -> str:
    if not url or "//" not in url[:8]:
        return ""
    host = url.split("//", 1)[1].split("/", 1)[0].lower()
    return host[4:] if host.startswith("www.") else host


def render(body: _Element | None) -> str:
    """Plain text of an XML body: one block per line, in Unicode NFC.

    NFC because pages mix composed and decomposed accents ("u" + combining diaeresis for "ü"): the
    same word must come out as the same characters for search and for comparisons. Soft hyphens go for
    the same reason: they are invisible break hints ("Deutsch\xadland" reads "Deutschland").
    """
    if body is None:
        return ""
    text = xmltotxt(body, include_formatting=False).replace("\xad", "")
    if _INLINE_JUNK_HINT in text.lower():
        text = _INLINE_JUNK.sub("", text)
    return unicodedata.normalize("NFC", tidy(text))


def clean_body(body: _Element | None, lead: Lead, options: ExtractOptions) -> str:
    """Apply the enabled block rules to `body` (in place: each candidate's tree is fresh) and render it."""
    if body is None:
        return ""
    blocks = BlockTexts()
    if options.strip_title_and_standfirst:
        _drop_lead_repeats(body, lead, blocks)
    if options.strip_boilerplate:
        _drop_boilerplate(body, lead.anchors, blocks)
        _drop_author_box(body, blocks)
    if options.strip_link_blocks:
        _drop_link_blocks(body, lead.anchors, lead.site_anchors, blocks)
    if options.strip_pull_quotes:
        drop_repeated_blocks(body, blocks)
    text = render(body)
    if options.strip_title_and_standfirst:
        text = drop_title_lines(text, lead.title)
    return text


def block_text(block: _Element) -> str:
    return collapse("".join(block.itertext()))


class BlockTexts:
    """Text and word count of a body's top-level blocks, each worked out once per `clean_body` call.

    The rules remove whole top-level blocks and never edit one, so a block's text is the same in every
    pass: the passes share it instead of joining, collapsing and counting it again. (Keys are the blocks'
    element proxies; the dict keeps them alive, so lxml hands out the same proxy for a block each time.)
    """

    def __init__(self) -> None:
        self._texts: dict[_Element, str] = {}
        self._n_words: dict[_Element, int] = {}

    def text(self, block: _Element) -> str:
        text = self._texts.get(block)
        if text is None:
            text = self._texts[block] = block_text(block)
        return text

    def n_words(self, block: _Element) -> int:
        """The block's number of words, exact up to WORD_COUNT_CAP; above it, some number over the cap."""
        n = self._n_words.get(block)
        if n is None:
            n = self._n_words[block] = count_words(self.text(block))
        return n


# The rules only ask whether a block has at most so many words: past the largest limit, a count of all
# the words of a long paragraph is wasted.
WORD_COUNT_CAP = max(_CREDIT_MAX_WORDS, _CTA_MAX_WORDS, _LINK_BLOCK_MAX_WORDS)
# Prose has more than the cap's words in this many characters; a block is counted in full only if its
# beginning does not already have them.
_COUNT_HEAD_CHARS = 10 * (WORD_COUNT_CAP + 1)


def count_words(text: str) -> int:
    """len(words(text)) up to WORD_COUNT_CAP; above it, some number over the cap.

    The words of the text's beginning are each the beginning of a different word of the text, so when
    the beginning has more words than the cap, so has the text.
    """
    if len(text) > _COUNT_HEAD_CHARS:
        n = len(words(text[:_COUNT_HEAD_CHARS]))
        if n > WORD_COUNT_CAP:
            return n
    return len(words(text))


_LINE_BREAKING = frozenset({"lb", "item", "row", "p", "head", "quote", "list", "table"})


def block_lines(block: _Element) -> list[str]:
    """The visual lines of a block (items of a list, <lb/>-separated lines of a paragraph)."""
    parts: list[str] = []
    _collect(block, parts)
    return [line for line in (collapse(x) for x in "".join(parts).split("\n")) if line]


def _collect(el: _Element, parts: list[str]) -> None:
    if el.tag in _LINE_BREAKING:
        parts.append("\n")
    parts.append(el.text or "")
    for child in el:
        _collect(child, parts)
        parts.append(child.tail or "")


def link_ratio(
    block: _Element, anchors: frozenset[str], headlines: frozenset[str] = frozenset(), lines: list[str] | None = None
) -> float:
    """Share of a block's words on lines that are, whole, the text of a link of the page.

    In a list, an item that starts with a link to another story of the site and adds a one-line summary
    ("Headline The coach would now be free...") is a teaser as well: lists of other stories are written
    that way. (Links to other sites are left out: a list of references is written the same way.)
    """
    total = linked = 0
    lines = block_lines(block) if lines is None else lines  # `lines`: block_lines(block), if already known
    teasers = block.tag == "list" and bool(headlines) and len(block.findall("item")) >= _TEASER_MIN_ITEMS
    for line in lines:
        tokens = words(line)
        total += len(tokens)
        key = _anchor_key(line, tokens)
        if (key and key in anchors) or (teasers and _starts_with_anchor(key, headlines)):
            linked += len(tokens)
    return linked / total if total else 0.0


_TEASER_MIN_HEADLINE_WORDS = 3
# Two linked items with notes are as likely a reference list; story lists run longer.
_TEASER_MIN_ITEMS = 3


def _starts_with_anchor(key: str, anchors: frozenset[str]) -> bool:
    """The first words of a line's `_anchor_key` are a link text (a headline followed by its summary)."""
    tokens = key.split()
    return any(" ".join(tokens[:n]) in anchors for n in range(_TEASER_MIN_HEADLINE_WORDS, len(tokens)))


def _is_anchor(line: str, anchors: frozenset[str]) -> bool:
    key = _anchor_key(line)
    return bool(key) and key in anchors


def _anchor_key(line: str, tokens: list[str] | None = None) -> str:
    """fold(_DECORATION.sub("", line)): a line as the link text it may be, without teaser lists' decorations.

    Teaser lists decorate headlines: "Headline [VIDEO]|", "• Headline", "Headline (3 comments)". With no
    bracket and no underscore in the line, the decoration is at most punctuation at either end, which
    fold() drops anyway; in ASCII that leaves the line's words (`tokens`, its `words()`) in lower case.
    (Elsewhere NFKD can turn a symbol at an end into letters, "™" into "tm", so the full way is taken.)
    """
    if line.isascii() and "[" not in line and "(" not in line and "_" not in line:
        return " ".join(words(line) if tokens is None else tokens).lower()
    return fold(_DECORATION.sub("", line))


def _remove(block: _Element) -> None:
    parent = block.getparent()
    if parent is not None:
        parent.remove(block)


def _drop_lead_repeats(body: _Element, lead: Lead, blocks: BlockTexts) -> None:
    """Headline, standfirst and h1 repeated at the top of the body are page furniture, not article text."""
    for block in list(body)[:_LEAD_WINDOW]:
        text = blocks.text(block)
        if not text:
            continue
        is_head = block.tag == "head"
        # A paragraph equal to the description is usually the lede itself (sites copy it into og:description),
        # so only headings are dropped on a description match.
        repeats = (lead.title, lead.description) if is_head and KEEP_STANDFIRST_HEADS is False else (lead.title,)
        if (is_head and block.get("rend") == "h1") or _matches_any(text, repeats):
            _remove(block)


def _matches_any(text: str, candidates: Iterable[str | None]) -> bool:
    return any(c and (similar(text, c) or collapse(c).startswith(text.rstrip(".… "))) for c in candidates)


def _drop_boilerplate(body: _Element, anchors: frozenset[str], blocks: BlockTexts) -> None:
    skipping = False
    for block in list(body):
        text = blocks.text(block)
        n_words = blocks.n_words(block)
        if _RELATED_HEADING.match(text):
            _remove(block)
            skipping = True  # the link list that follows goes too
            continue
        if skipping and (link_ratio(block, anchors) >= 0.5 or block.tag == "list"):
            _remove(block)
            continue
        skipping = False
        is_call = n_words <= _CTA_MAX_WORDS and (is_call_to_action(text) or _is_teaser(text, anchors))
        if is_call or _is_credit_or_dateline(text, n_words) or _is_footer_row(text, n_words):
            _remove(block)


def _drop_author_box(body: _Element, blocks: BlockTexts) -> None:
    tail = list(body)[-_AUTHOR_BOX_WINDOW:]
    for i, block in enumerate(tail):
        if _AUTHOR_BOX_HEADING.match(blocks.text(block)):
            counts = [blocks.n_words(b) for b in tail[i + 1 :]]
            if all(n <= WORD_COUNT_CAP for n in counts) and sum(counts) <= _AUTHOR_BOX_MAX_WORDS:
                for b in tail[i:]:
                    _remove(b)
            return


def is_call_to_action(text: str) -> bool:
    """_CALL_TO_ACTION.search(text), four times faster (see _LOWER_CALL_TO_ACTION_START)."""
    if _LOWER_CASE_UNSAFE.search(text):
        return _CALL_TO_ACTION.search(text) is not None
    lowered = text.lower()
    return bool(_LOWER_CALL_TO_ACTION_START.match(lowered) or _LOWER_CALL_TO_ACTION_ANYWHERE.search(lowered))


def _is_footer_row(text: str, n_words: int) -> bool:
    if n_words > _FOOTER_MAX_WORDS or not _FOOTER_SEPARATOR.search(text):
        return False
    items = [item.strip() for item in _FOOTER_SEPARATOR.split(text)]
    legal = sum(1 for item in items if _FOOTER_LEGAL_ITEM.match(item))
    return len(items) >= 3 and (legal >= 2 or (legal == 1 and any(_COPYRIGHT.match(item) for item in items)))


def _is_credit_or_dateline(text: str, n_words: int) -> bool:
    is_credit = n_words <= _CREDIT_MAX_WORDS and _CREDIT.match(text) is not None
    return is_credit or _DATELINE.match(text) is not None


def _is_teaser(text: str, anchors: frozenset[str]) -> bool:
    """ "READ MORE: <headline of another story>"."""
    match = _TEASER_PREFIX.match(text)
    return match is not None and _is_anchor(text[match.end() :], anchors)


def _drop_link_blocks(body: _Element, anchors: frozenset[str], headlines: frozenset[str], blocks: BlockTexts) -> None:
    """Blocks made of links (headline lists, tag clouds, breadcrumbs) are navigation, not prose; so is a
    long block of many lines each of which is a link (a site's whole menu)."""
    for block in list(body):
        n_words = blocks.n_words(block)
        if 0 < n_words <= _LINK_BLOCK_MAX_WORDS:
            if link_ratio(block, anchors, headlines) >= _LINK_BLOCK_MIN_RATIO:
                _remove(block)
        elif n_words and _is_menu(block, anchors):
            _remove(block)


# A menu: at least this many lines, nearly every word of them on a line that is a link's whole text.
_MENU_MIN_LINES = 10
_MENU_MIN_RATIO = 0.95


def _is_menu(block: _Element, anchors: frozenset[str]) -> bool:
    lines = block_lines(block)
    return len(lines) >= _MENU_MIN_LINES and link_ratio(block, anchors, lines=lines) >= _MENU_MIN_RATIO


def drop_title_lines(text: str, title: str | None) -> str:
    """Remove the headline if it is still the first line (extractors often repeat it)."""
    if not title or not text:
        return text
    lines = text.split("\n")
    while lines and (similar(lines[0], title, 0.9) or collapse(lines[0]) == collapse(title)):
        lines.pop(0)
    return "\n".join(lines)


def drop_repeated_blocks(body: _Element, texts: BlockTexts | None = None) -> None:
    """Drop pull quotes: short quote blocks whose text the article already says in another block.

    A pull quote repeats a sentence of the article in large type; a reader skips it, and in plain text it
    reads as the sentence said twice. Only repeated quotes go (a quote that appears once is content), and
    only quote blocks: lists and recipes legitimately repeat short paragraphs. `htmlprep` turns pull-quote
    markup that is not a blockquote (div/p.pullquote) into one, so it lands here as a quote too.
    """
    if body.find("quote") is None:  # most pages: nothing to compare
        return
    if texts is None:
        texts = BlockTexts()
    elements = list(body)
    blocks = [(block.tag, f" {fold(texts.text(block))} ") for block in elements]
    doomed = []
    for i, (tag, key) in enumerate(blocks):
        n_words = key.count(" ") - 1
        if tag != "quote" or not _PULL_QUOTE_MIN_WORDS <= n_words <= _PULL_QUOTE_MAX_WORDS:
            continue
        if any(
            j != i and key in other and _repeats(i, j, len(key), other, other_tag)
            for j, (other_tag, other) in enumerate(blocks)
        ):
            doomed.append(elements[i])
    for block in doomed:
        _remove(block)


def _repeats(i: int, j: int, size: int, other: str, other_tag: str) -> bool:
    """Quote i is said again by block j: j is longer, or is the same text as prose or as an earlier quote."""
    return len(other) > size or other_tag != "quote" or j < i
