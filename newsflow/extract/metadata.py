"""Article metadata from the page's own declarations, strongest evidence first.

Every field is a list of (source, value) candidates tried in order; the first plausible one wins and its
source name goes to provenance. Nothing is guessed: a field no source declares stays None.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urljoin, urlsplit

from lxml.etree import XPath
from lxml.html import HtmlElement, tostring

from newsflow.extract import jsonld
from newsflow.extract.byline import clean_author
from newsflow.extract.dates import date_from_url, parse_date
from newsflow.extract.htmlprep import elements_by_tag, text_lines
from newsflow.extract.pagedate import marked_date
from newsflow.extract.text import collapse, fold, similar

_TITLE_SEPARATORS = re.compile(r"\s+[|\-–—:·•»]\s+|\s+::\s+")
_LANG = re.compile(r"^[a-z]{2,3}$")
_DATE_META = (
    "article:published_time",
    "og:published_time",
    "og:article:published_time",
    "datepublished",
    "publishdate",
    "publish-date",
    "pubdate",
    "publication_date",
    "sailthru.date",
    "parsely-pub-date",
    "dc.date.issued",
    "dcterms.issued",
    "dc.date",
    "date",
    "article.published",
    "cxenseparse:recs:publishtime",
)
_AUTHOR_META = (
    "author",
    "article:author",
    "parsely-author",
    "sailthru.author",
    "dc.creator",
    "byl",
    "cxenseparse:author",
)


@dataclass
class Metadata:
    title: str | None = None
    author: str | None = None
    published: str | None = None
    site_name: str | None = None
    language: str | None = None
    canonical_url: str | None = None
    description: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    # Every distinct description the page declares (the winner first): sources disagree on some pages
    # (a short meta description, a longer JSON-LD one), and the body step looks for any of them on the page.
    descriptions: tuple[str, ...] = ()


# The elements metadata reads by tag. Each walk of the tree costs about as much whatever it looks for
# (~0.15 ms on a news page), so they are all collected in one walk instead of one per source.
_READ_TAGS = ("meta", "script", "link", "title", "h1", "time")
_HEADLINES_TRIED = 3  # <h1>s compared with the declared titles (later ones are section headings)


@dataclass
class PageElements:
    """The page's elements of the tags metadata reads, each list in document order."""

    by_tag: dict[str, list[HtmlElement]]
    _first_texts: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def of(cls, tree: HtmlElement) -> PageElements:
        return cls(elements_by_tag(tree, _READ_TAGS))

    def __getitem__(self, tag: str) -> list[HtmlElement]:
        return self.by_tag[tag]

    def first_text(self, tag: str) -> str | None:
        """The text of the first element of `tag` that has any (asked for several times per page)."""
        if tag not in self._first_texts:
            self._first_texts[tag] = _first_text(self.by_tag[tag])
        return self._first_texts[tag]


@dataclass
class PageFacts:
    """Raw declarations gathered in one pass over the head and JSON-LD."""

    meta: dict[str, str]
    ld_article: dict[str, Any]
    ld_objects: list[dict[str, Any]]
    tree: HtmlElement
    url: str | None
    elements: PageElements


def extract_metadata(tree: HtmlElement, url: str | None, hints: Mapping[str, Any] | None) -> Metadata:
    elements = PageElements.of(tree)
    objects = jsonld.objects_of_scripts(elements["script"])
    facts = PageFacts(_meta_tags(elements["meta"]), jsonld.article_object(objects) or {}, objects, tree, url, elements)
    hints = hints or {}
    result = Metadata()
    _pick(result, "site_name", _site_name_candidates(facts), _clean_site_name)
    _pick(result, "title", _title_candidates(facts, hints), lambda v: _clean_title(v, result.site_name, url))
    _prefer_visible_headline(result, facts)
    _site_from_title_suffix(result, elements)
    _pick(result, "author", _author_candidates(facts), lambda v: clean_author(v, _site_keys(result.site_name, url)))
    _pick(result, "published", _date_candidates(facts, hints), parse_date)
    _pick(result, "language", _language_candidates(facts, hints), _clean_language)
    _pick(result, "canonical_url", _canonical_candidates(facts), lambda v: _clean_url(v, url))
    _pick_descriptions(result, facts)
    _bound_fields(result)
    return result


# The longest each text field may be, in characters. A page decides what its <title> or og:title
# holds: a megabyte of title went into the index whole, and came back in every search hit that
# matched it (as the title and again highlighted). Real headlines are under 300 characters.
FIELD_MAX_CHARS = {"title": 500, "author": 300, "site_name": 200, "description": 2000}


def _bound_fields(result: Metadata) -> None:
    for name, limit in FIELD_MAX_CHARS.items():
        value = getattr(result, name)
        if value is not None and len(value) > limit:
            setattr(result, name, bounded(value, limit))
    limit = FIELD_MAX_CHARS["description"]
    result.descriptions = tuple(d if len(d) <= limit else bounded(d, limit) for d in result.descriptions)


def bounded(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at a word boundary when one is near, marked with "…"."""
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _pick_descriptions(result: Metadata, facts: PageFacts) -> None:
    """The description (the first the page declares, as `_pick` takes it) and every distinct one,
    the winner first, in one pass over the candidates."""
    found: dict[str, str] = {}
    for source, raw in _description_candidates(facts):
        text = _clean_text(raw) if raw else None
        if not text:
            continue
        if not found:
            result.description, result.provenance["description"] = text, source
        found.setdefault(fold(text), text)
    result.descriptions = tuple(found.values())


def _pick(
    result: Metadata,
    name: str,
    candidates: Iterable[tuple[str, Any]],
    clean: Callable[[Any], str | None],
) -> None:
    for source, raw in candidates:
        value = clean(raw) if raw else None
        if value:
            setattr(result, name, value)
            result.provenance[name] = source
            return


def _meta_tags(metas: Iterable[HtmlElement]) -> dict[str, str]:
    """First content of each <meta name|property|itemprop>, keys lower-cased."""
    found: dict[str, str] = {}
    for meta in metas:
        key = meta.get("property") or meta.get("name") or meta.get("itemprop") or meta.get("http-equiv")
        content = meta.get("content")
        if key and content and content.strip():
            found.setdefault(key.strip().lower(), content.strip())
    return found


def _site_name_candidates(f: PageFacts) -> Iterable[tuple[str, Any]]:
    yield "meta:og:site_name", f.meta.get("og:site_name")
    publisher = jsonld.names(f.ld_article.get("publisher"))
    yield "jsonld:publisher", publisher[0] if publisher else None
    yield "jsonld:organization", jsonld.organization_name(f.ld_objects)
    yield "meta:application-name", f.meta.get("application-name")


def _clean_site_name(value: Any) -> str | None:
    text = _clean_text(value)
    # A URL is not a name ("og:site_name" = "https://www.example.in" happens); the next source may have one.
    if not text or len(text) > 80 or re.match(r"^(https?://|www\.)", text, re.IGNORECASE):
        return None
    # "LinkNaija | Nigeria's popular news platform": the name comes first, a tagline after it.
    return re.split(r"\s+[|\-–—:]\s+", text, maxsplit=1)[0]


def _title_candidates(f: PageFacts, hints: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    yield "meta:og:title", f.meta.get("og:title")
    yield "jsonld:headline", jsonld.text_value(f.ld_article.get("headline"))
    yield "meta:twitter:title", f.meta.get("twitter:title")
    yield "html:title", f.elements.first_text("title")
    # Last: the first <h1> is often the site logo on pages without any title declaration.
    yield "html:h1", f.elements.first_text("h1")
    yield "hint:title", hints.get("title")


def _prefer_visible_headline(result: Metadata, facts: PageFacts) -> None:
    """Use the page's <h1> when it agrees with a declared title.

    Declared titles differ from the visible headline in both directions (SEO headline in JSON-LD, short
    social title in og:title, "Opinion | ..." prefixes); an <h1> that matches one of them is the headline
    the reader sees. An <h1> that matches none is usually the site logo, and is ignored.
    """
    cleaned = (_clean_text(v) for source, v in _title_candidates(facts, {}) if v and source != "html:h1")
    declared = [fold(d) for d in cleaned if d]
    if not declared:
        return
    site_key = fold(result.site_name or "")
    for h1 in facts.elements["h1"][:_HEADLINES_TRIED]:
        text = collapse(h1.text_content())
        key = fold(text)
        if key and key != site_key and any(_same_headline(key, d) for d in declared):
            if text != result.title:
                result.title = text
                result.provenance["title"] = "html:h1"
            return


def _same_headline(h1_key: str, declared_key: str) -> bool:
    """Folded texts: similar wording, or the h1 is most of the declared title (which adds a prefix/suffix)."""
    if similar(h1_key, declared_key, 0.6):
        return True
    return h1_key in declared_key and len(h1_key) >= 0.6 * len(declared_key)


def _site_from_title_suffix(result: Metadata, elements: PageElements) -> None:
    """<title> is often "<headline> - <site>": when its head is the headline, its tail names the site."""
    if result.site_name or not result.title:
        return
    page_title = elements.first_text("title")
    if not page_title:
        return
    parts = _TITLE_SEPARATORS.split(page_title)
    if len(parts) < 2:
        return
    tail = parts[-1].strip()
    head = page_title[: page_title.rfind(tail)]
    if fold(result.title) in fold(head) and 0 < len(tail.split()) <= 5:
        result.site_name = tail
        result.provenance["site_name"] = "html:title-suffix"


def _first_text(elements: Iterable[HtmlElement]) -> str | None:
    for el in elements:
        text = collapse(el.text_content())
        if text:
            return text
    return None


def _clean_title(value: Any, site_name: str | None, url: str | None) -> str | None:
    text = _clean_text(value)
    if not text:
        return None
    return strip_site_suffix(text, site_name, url)


def strip_site_suffix(title: str, site_name: str | None, url: str | None) -> str:
    """Drop "| Site Name" (or a leading "Site Name:") when that part names the site or its domain."""
    parts = _TITLE_SEPARATORS.split(title)
    if len(parts) < 2:
        return title
    site_keys = _site_keys(site_name, url)
    if site_keys:
        while len(parts) > 1 and _names_site(parts[-1], site_keys):
            parts.pop()
        while len(parts) > 1 and _names_site(parts[0], site_keys):
            parts.pop(0)
    if len(parts) == len(_TITLE_SEPARATORS.split(title)):
        return title
    # Re-cut the original string so separators inside the kept headline survive.
    kept_from = title.find(parts[0])
    kept_to = title.rfind(parts[-1]) + len(parts[-1])
    return title[kept_from:kept_to].strip() if kept_from >= 0 else title


def _site_keys(site_name: str | None, url: str | None) -> set[str]:
    keys = set()
    if site_name:
        keys.add(fold(site_name).replace(" ", ""))
    host = urlsplit(url).hostname if url else None
    if host:
        labels = [label for label in host.lower().split(".") if label not in {"www", "m", "amp", "news", "edition"}]
        if labels:
            keys.add(labels[0])
            keys.add("".join(labels))
    return {k for k in keys if len(k) >= 2}


def _names_site(part: str, site_keys: set[str]) -> bool:
    key = fold(part).replace(" ", "")
    if not key:
        return False
    return any(key == k or (len(key) >= 3 and (key in k or k in key) and len(key) <= len(k) + 12) for k in site_keys)


def _author_candidates(f: PageFacts) -> Iterable[tuple[str, Any]]:
    ld_authors = jsonld.names(jsonld.resolve(f.ld_article.get("author") or f.ld_article.get("creator"), f.ld_objects))
    yield "jsonld:author", ", ".join(ld_authors) if ld_authors else None
    for key in _AUTHOR_META:
        yield f"meta:{key}", f.meta.get(key)
    yield "html:byline", _byline_text(f.tree)


# Every element that may hold a byline, found by libxml2 testing attribute nodes (about half the cost of
# testing each element's attributes in one predicate); the rules below then rank them, strongest first,
# without scanning the document again. The union is in document order, as the rules expect.
_BYLINE_CANDIDATES = XPath(
    "//@class[contains(., 'byline') or contains(., 'uthor')]/.. | //@rel[.='author']/.."
    " | //@itemprop[.='author' or .='name']/.."
)
_NOT_BYLINES = frozenset({"meta", "link", "script", "style"})


def _classes(el: HtmlElement) -> str:
    return f" {' '.join(str(el.get('class', '')).split())} "


def _in_author(el: HtmlElement) -> bool:
    return any(a.get("itemprop") == "author" for a in el.iterancestors())


def _outside_comments(el: HtmlElement) -> bool:
    return not any("comment" in str(x.get("class", "")) for x in (el, *el.iterancestors()))


_BYLINE_RULES: tuple[Callable[[HtmlElement], bool], ...] = (
    lambda el: el.get("rel") == "author",
    lambda el: el.get("itemprop") == "name" and _in_author(el),
    lambda el: el.get("itemprop") == "author",
    lambda el: " byline " in _classes(el),
    lambda el: any(k in _classes(el) for k in ("author-name", "author_name", "authorName")),
    lambda el: "byline" in _classes(el),
    # Blog themes' byline classes, outside comment threads.
    lambda el: ("entry-author" in _classes(el) or "post-author" in _classes(el)) and _outside_comments(el),
)


def _byline_text(tree: HtmlElement) -> str | None:
    candidates = [el for el in _BYLINE_CANDIDATES(tree) if el.tag not in _NOT_BYLINES]
    for rule in _BYLINE_RULES:
        for el in candidates:
            if not rule(el):
                continue
            # Lines kept apart: "By Jane Doe<br>Arts Editor" is a name and a job title, not "Jane DoeArts Editor".
            lines = text_lines(el)
            if lines and len(" ".join(lines)) <= 120:
                return "\n".join(lines)
    return None


def _date_candidates(f: PageFacts, hints: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    yield "jsonld:datePublished", jsonld.text_value(f.ld_article.get("datePublished"))
    for key in _DATE_META:
        yield f"meta:{key}", f.meta.get(key)
    for el in _DATE_PUBLISHED_ITEMPROP(f.tree):
        yield "html:itemprop", el.get("content") or el.get("datetime") or collapse(el.text_content())
    yield "html:time", _article_time(f.elements["time"])
    yield "url", date_from_url(f.url)
    yield "hint:published", hints.get("published")
    yield "jsonld:dateCreated", jsonld.text_value(f.ld_article.get("dateCreated"))
    yield "html:first-time", _first_time(f.elements["time"])
    yield "htmldate", _htmldate(f.tree, f.url)


# Any tag can carry itemprop; testing the attribute nodes in libxml2 is cheaper than testing every element.
_DATE_PUBLISHED_ITEMPROP = XPath("//@itemprop[.='datePublished']/..")


def _first_time(times: Iterable[HtmlElement]) -> str | None:
    """The first <time> with a datetime attribute (even an empty one, which then dates nothing)."""
    for el in times:
        value = el.get("datetime")
        if value is not None:
            return str(value)
    return None


def _htmldate(tree: HtmlElement, url: str | None) -> str | None:
    """Last resort: htmldate's heuristics, without the ones that make a date up.

    It reads the markup first, then the text (dates written in bylines, e.g. "publiziert am 25.
    September 2018"), but not the whole page's source (`marked_date`: that search dated scripts and
    image names). A year and month in the text ("03/2019") still comes back padded to the 1st. A
    result on the 1st of a month is therefore dropped, as the day may be no fact of the page
    (the markup sources htmldate would have found it in, JSON-LD, meta tags, <time>, the URL, were all
    tried before). So is a result carrying today's day in another month: a year-month padded by
    dateutil. (A fast search first and an extensive one only when it fails told the two origins apart,
    at twice the cost on date-less pages.)
    """
    try:
        found = marked_date(tree, url)  # the tree is copied only if the search gets to pruning it
        day = date.fromisoformat(str(found)[:10]) if found else None
    except Exception:  # htmldate raises a variety of parsing errors; a missing date is not fatal
        return None
    if day is None or day.day == 1 or _padded_with_today(day, tree, url):
        return None
    return day.isoformat()


def _padded_with_today(day: date, tree: HtmlElement, url: str | None) -> bool:
    """htmldate reads a year-month ("2024-03") with dateutil, which takes the missing day from today:
    a result on today's day of another month stands only if the page writes that date out."""
    today = date.today()
    if day.day != today.day or (day.year, day.month) == (today.year, today.month):
        return False
    return not _writes_date(f"{tostring(tree, encoding='unicode')} {url or ''}", day)


def _writes_date(text: str, day: date) -> bool:
    """Whether `text` has `day` in full: 2022-11-29, 2022年11月29日, 29.11.2022, 11/29/2022, 20221129,
    29 November 2022, Nov. 29th, 2022 (month names in any language)."""
    y, m, d, word = day.year, day.month, day.day, r"[^\W\d_]{3,}\.?"
    dd, mm = rf"0?{d}", rf"0?{m}"
    patterns = (
        rf"{y}\D{{1,3}}{mm}\D{{1,3}}{dd}(?!\d)",
        rf"(?<!\d){dd}\D{{1,3}}{mm}\D{{1,3}}{y}",
        rf"(?<!\d){mm}/{dd}/{y}",
        rf"{y}{m:02d}{d:02d}",
        rf"(?<!\d){dd}(?:st|nd|rd|th)?\.?\s+{word},?\s+{y}",
        rf"{word}\s+{dd}(?:st|nd|rd|th)?,?\s+{y}",
    )
    return any(re.search(p, text) for p in patterns)


def _article_time(times: list[HtmlElement]) -> str | None:
    """The first <time datetime> inside the article or its header (other <time>s date other stories),
    else the first one marked pubdate."""
    for dated in (_within("article"), _within("header"), _has_pubdate):
        for el in times:
            value = el.get("datetime")
            if value and dated(el):
                return str(value)
    return None


def _within(tag: str) -> Callable[[HtmlElement], bool]:
    return lambda el: next(el.iterancestors(tag), None) is not None


def _has_pubdate(el: HtmlElement) -> bool:
    return el.get("pubdate") is not None


def _language_candidates(f: PageFacts, hints: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    yield "html:lang", f.tree.get("lang") or f.tree.get("xml:lang")
    yield "meta:content-language", f.meta.get("content-language") or f.meta.get("language")
    yield "jsonld:inLanguage", jsonld.text_value(f.ld_article.get("inLanguage"))
    yield "meta:og:locale", f.meta.get("og:locale")
    yield "hint:language", hints.get("language")


def _clean_language(value: Any) -> str | None:
    """Primary subtag, lower-case ("en-US" -> "en"); the pipeline works with language, not region."""
    if not isinstance(value, str):
        return None
    primary = re.split(r"[-_,; ]", value.strip().lower(), maxsplit=1)[0]
    return primary if _LANG.match(primary) else None


def _canonical_candidates(f: PageFacts) -> Iterable[tuple[str, Any]]:
    for link in f.elements["link"]:
        if "canonical" in (link.get("rel") or "").lower().split():
            yield "html:link-canonical", link.get("href")
    yield "meta:og:url", f.meta.get("og:url")
    yield "jsonld:mainEntityOfPage", jsonld.text_value(f.ld_article.get("mainEntityOfPage"))
    yield "jsonld:url", jsonld.text_value(f.ld_article.get("url"))
    yield "url", f.url


def _clean_url(value: Any, base: str | None) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        absolute = urljoin(base or "", value.strip())
        return absolute if urlsplit(absolute).scheme in ("http", "https") else None
    except ValueError:  # "https://[::1/x": an unclosed IPv6 bracket makes urllib raise
        return None


def _description_candidates(f: PageFacts) -> Iterable[tuple[str, Any]]:
    yield "meta:og:description", f.meta.get("og:description")
    yield "meta:description", f.meta.get("description")
    yield "meta:twitter:description", f.meta.get("twitter:description")
    yield "jsonld:description", jsonld.text_value(f.ld_article.get("description"))


def _clean_text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    import html as htmllib

    text = collapse(htmllib.unescape(value))
    return text or None
