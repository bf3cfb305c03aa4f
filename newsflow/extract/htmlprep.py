"""Parsing and pre-extraction fixes of the HTML tree, done once per page and shared by every extractor."""

from __future__ import annotations

import re

from lxml.html import HtmlElement
from trafilatura.utils import load_html

from newsflow.extract.options import ExtractOptions

# Embeds that carry quoted text news bodies cite (tweets, Instagram/Facebook posts); extractors tend to
# drop them as social widgets, while a reader sees them as part of the story.
_EMBED_CLASSES = ("twitter-tweet", "twitter-video", "instagram-media", "tiktok-embed")
_WRAPPER_WORDS = ("embed", "social", "tweet", "twitter", "instagram")
_WRAPPER_DEPTH = 3
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


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
    return tree


def _drop_hidden(tree: HtmlElement) -> None:
    """A reader never sees these, so their text cannot be part of the article."""
    body = tree.find("body")
    if body is None:
        return
    doomed = [
        el
        for el in body.iter()
        if isinstance(el.tag, str)
        and el.tag not in ("script", "style", "noscript", "template")
        and (el.get("hidden") is not None or _HIDDEN_STYLE.search(el.get("style", "")))
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
