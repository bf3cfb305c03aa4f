"""The shortcuts that make the body cleanup cheaper give the answers of the rules they stand for.

Each shortcut skips or replaces a slower computation (a case-insensitive regex, a substitution, a fold);
these tests hold it to the slow way on tricky snippets and on every text of the benchmark pages.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest
from lxml import etree
from lxml.html import fromstring

from newsflow.extract import cleanup
from newsflow.extract.cleanup import (
    _CALL_TO_ACTION,
    _DECORATION,
    _INLINE_JUNK,
    _INLINE_JUNK_HINT,
    _LOWER_CASE_UNSAFE,
    STRING_VALUE,
    WORD_COUNT_CAP,
    BlockTexts,
    _anchor_key,
    block_lines,
    block_text,
    count_words,
    is_call_to_action,
    link_texts,
)
from newsflow.extract.evaluate import load_benchmark
from newsflow.extract.text import collapse, fold, tidy, words
from tests.conftest import BENCH_DIR

# The definitions the shortcuts replaced.
_OLD_WS = re.compile(r"[ \t\u00a0\u2009\u200a\u202f]+")


def _old_collapse(text: str | None) -> str:
    return _OLD_WS.sub(" ", " ".join((text or "").replace("\xad", "").split())).strip()


def _old_tidy(text: str) -> str:
    lines = (_OLD_WS.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _old_anchor_key(line: str) -> str:
    return fold(_DECORATION.sub("", line))


SPACES = [
    "",
    " ",
    "a b",
    "  a \t b  ",
    "a\u00a0b",
    "a \u00a0 b",
    "\u2009a\u200a\u202fb\t",
    "a\u2003b",
    "Deutsch\xadland",
    "a\n\n  b \r\n c\u00a0\u00a0\n\u2028d",
    "x\t\ty\u00a0 \u2009z  ",
    "\u00a0",
    " \u00a0 ",
]


@pytest.mark.parametrize("text", SPACES)
def test_collapse_and_tidy_unchanged(text: str) -> None:
    assert collapse(text) == _old_collapse(text)
    assert tidy(text) == _old_tidy(text)


CALLS = [
    "Sign up for our newsletter",
    "SIGN UP FOR THE DAILY BRIEFING",
    "12 Comments",
    "Comments",
    "Advertisement",
    "Anzeige: Das neue Auto",
    "Folgen Sie uns auf Twitter",
    "SÍGUENOS en Instagram",
    "Vervielfältigung nur mit Genehmigung",
    "VERVIELFÄLTIGUNG NUR MIT Genehmigung",
    "Teilen:",
    "Jetzt teilen",
    "Partager sur:",
    "Get The Morning Edition by email",
    "Follow Jane Doe on X",
    "Download the Example News apps",
    # letters that match an i or s of the pattern without lower-casing to it
    "\u017fubscribe now",
    "Sign up for our newsletter with \u0130stanbul",
    "L\u0130KE THIS STORY",
    "l\u0131ke this story",
    "\u0131ndicates required",
    "ALL R\u0130GHTS RESERVED",
    # Kelvin sign, Angstrom sign: lower-case to k and a
    "Like this \u212a story",
    "\u212blle Rechte vorbehalten",
    "The council met on Tuesday to discuss the budget.",
    "Die Straßenbahn fährt wieder.",
    "",
]


@pytest.mark.parametrize("text", CALLS)
def test_call_to_action_shortcut_agrees_with_the_pattern(text: str) -> None:
    assert is_call_to_action(text) == (_CALL_TO_ACTION.search(text) is not None)


def _all_characters() -> str:
    return "".join(chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF)


def test_lower_casing_keeps_what_the_call_to_action_pattern_matches() -> None:
    """Why the shortcut is exact: for any character but the three it leaves to the full pattern, matching a
    letter of the pattern case-insensitively is being that letter once lower-cased, and lower-casing keeps
    a character a word character, a digit or a space (or not)."""
    pattern = cleanup._CALL_TO_ACTION_START + cleanup._CALL_TO_ACTION_ANYWHERE
    assert pattern == pattern.lower()  # written in lower case, as the case-sensitive copies need
    letters = {c for c in re.sub(r"\\[a-zA-Z]", "", pattern) if c.isalpha()}
    everything = _all_characters()
    safe = [c for c in everything if not _LOWER_CASE_UNSAFE.match(c)]
    assert len(safe) == len(everything) - 3
    matched = set(re.findall("[" + "".join(sorted(letters)) + "]", "".join(safe), re.IGNORECASE))
    changed = [c for c in safe if c.lower() != c]
    lowered_to_letter = {c for c in changed if c.lower() in letters} | letters
    assert matched == lowered_to_letter
    for c in matched:
        assert [letter for letter in letters if re.fullmatch(letter, c, re.IGNORECASE)] == [c.lower()]
    for c in changed:
        assert len(c.lower()) == 1
        for klass in (r"\w", r"\d", r"\s"):
            assert bool(re.fullmatch(klass, c)) == bool(re.fullmatch(klass, c.lower())), (c, klass)


INLINE_JUNK = ["Great line. Click To Tweet", "CLICK TO TWEET", "cl\u0130ck to tweet", "Tweet this", "click to twee t"]


@pytest.mark.parametrize("text", INLINE_JUNK)
def test_inline_junk_hint_is_there_when_the_pattern_matches(text: str) -> None:
    if _INLINE_JUNK.search(text):
        assert _INLINE_JUNK_HINT in text.lower()


LINES = [
    "Headline of another story",
    "Headline [VIDEO]|",
    "• Headline",
    "Headline (3 comments)",
    "_private_ headline_",
    "Headline ™",
    "Überschrift: Die Bahn fährt",
    "— Headline —",
    "«Titre de l'article»",
    "Some (unclosed headline",
    "[",
    "...",
    "",
]


@pytest.mark.parametrize("line", LINES)
def test_anchor_key_shortcut_agrees_with_the_fold(line: str) -> None:
    assert _anchor_key(line) == _old_anchor_key(line)
    assert _anchor_key(line, words(line)) == _old_anchor_key(line)


LINK_HTML = """<html><body><div>
<a href="/a">Plain</a> tail <a href="/b">Nested <b>bold</b> and <i>it<span>al</span></i>ic</a>
<a href="/c">With <!-- a comment --> comment<?pi data?> and PI</a>
<a href="/d">Entities &amp; &eacute;&nbsp;x</a><a href="/e"><script>var x = 1;</script>Scripted</a>
<a href="/f"></a><a href="/g">  spaced  <br/> out </a>
</div></body></html>"""


def test_string_value_is_the_joined_text_of_a_link() -> None:
    tree = fromstring(LINK_HTML)
    links = list(tree.iter("a"))
    assert len(links) == 7
    for a in links:
        assert STRING_VALUE(a) == "".join(a.itertext())


def _benchmark_trees() -> Iterator[etree._Element]:
    for page in load_benchmark(BENCH_DIR):
        yield fromstring(page.html())


@pytest.fixture(scope="module")
def benchmark_texts() -> list[tuple[etree._Element, list[str]]]:
    """Per benchmark page: its tree and the short texts of its blocks and their lines, what the rules test."""
    pages = []
    for tree in _benchmark_trees():
        texts: set[str] = set()
        for el in tree.iter("p", "li", "h1", "h2", "h3", "h4", "td", "figcaption", "blockquote", "a"):
            texts.update(block_lines(el))
            texts.add(block_text(el))
        pages.append((tree, sorted(t for t in texts if len(words(t)) <= cleanup._LINK_BLOCK_MAX_WORDS)))
    return pages


def test_shortcuts_agree_on_the_benchmark_pages(benchmark_texts: list[tuple[etree._Element, list[str]]]) -> None:
    calls = 0
    for tree, lines in benchmark_texts:
        for a in tree.iter("a"):
            assert STRING_VALUE(a) == "".join(a.itertext())
        for line in lines:
            is_call = _CALL_TO_ACTION.search(line) is not None
            calls += is_call
            assert is_call_to_action(line) == is_call, line
            assert _anchor_key(line, words(line)) == _old_anchor_key(line), line
            assert collapse(line) == _old_collapse(line)
            if _INLINE_JUNK.search(line):
                assert _INLINE_JUNK_HINT in line.lower()
        text = "\n".join(lines)
        assert tidy(text) == _old_tidy(text)
    assert calls > 0  # the pages have calls to action: the comparison covers both answers


def _capped(n: int) -> int:
    return min(n, WORD_COUNT_CAP + 1)


@pytest.mark.parametrize("n", [0, 1, 15, 40, 60, 61, 62, 200])
@pytest.mark.parametrize("word", ["a", "word", "Straßenbahnhaltestelle", "x" * 30])
def test_count_words_is_exact_up_to_the_cap(n: int, word: str) -> None:
    for sep in (" ", " — ", "-"):
        text = sep.join([word] * n)
        assert _capped(count_words(text)) == _capped(len(words(text)))
        assert _capped(count_words(text + " tail")) == _capped(len(words(text + " tail")))


def test_count_words_on_the_benchmark_pages(benchmark_texts: list[tuple[etree._Element, list[str]]]) -> None:
    for tree, _ in benchmark_texts[:20]:
        for el in tree.iter("p", "div", "li"):
            text = block_text(el)
            assert _capped(count_words(text)) == _capped(len(words(text)))


def test_link_texts_folds_each_link() -> None:
    tree = fromstring(
        '<html><body><a href="https://www.example.com/x">Story One</a><a href="https://other.org/y">Story One</a>'
        '<a href="https://other.org/z">Elsewhere</a><a href="#top">Jump</a><a href="/rel">Ünïcode Héadline</a>'
        '<a href="https://other.org/w">Story  one!</a></body></html>'
    )
    every, own = link_texts(tree, "https://example.com/article")
    assert every == {"story one", "elsewhere", "unicode headline"}
    assert own == {"story one", "unicode headline"}


def test_block_texts_are_those_of_the_blocks() -> None:
    body = etree.fromstring(
        "<body><p>One <hi>two</hi>  three</p><list><item>a</item><item>b c</item></list><p/></body>"
    )
    blocks = BlockTexts()
    for block in list(body):
        assert blocks.text(block) == block_text(block)
        assert blocks.n_words(block) == len(words(block_text(block)))
    body.remove(body[0])
    assert [blocks.text(block) for block in body] == [block_text(block) for block in body]
