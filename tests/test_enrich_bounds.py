"""The enrich stage's work is linear (or capped) in its input, whatever the input.

Hostile bodies of each kind — random tokens, one giant word, text without spaces, a short sentence
repeated a million times, thousands of capitalised names, one phrase repeated, mixed scripts, and bodies
as large as the clean stage lets through (`clean_max_html_bytes`) — go through `enrich_article` with
spies on the expensive steps. The tests assert what those steps are given (text lengths, phrases,
sentences, mentions), and that doubling a body beyond the caps changes none of it. No clock assertion:
the timeouts only stop a hang.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from newsflow.enrich import enrich_article, entities, keywords, language, minhash, pipeline, summary, text
from newsflow.enrich.entities import MAX_MENTIONS, MAX_PER_TYPE, Found, extract_entities
from newsflow.enrich.gazetteer import gazetteer
from newsflow.enrich.keywords import MAX_CANDIDATE_PHRASES, MAX_KEYWORDS, MAX_WORD_CHARS
from newsflow.enrich.minhash import shingle_hashes, signature
from newsflow.enrich.summary import MAX_SCORED_SENTENCES, MAX_SENTENCE_CHARS, MAX_SENTENCES
from newsflow.enrich.text import MAX_TEXT_CHARS, clip, split_sentences
from tests.conftest import suite_settings

LIMIT = suite_settings().clean_max_html_bytes  # the largest page the clean stage parses (5 MiB by default)
HANG = pytest.mark.timeout(60)  # generous: a bounded run takes well under a second


# --- hostile bodies ---------------------------------------------------------------------------------
# Each builder returns at least n characters; a longer body starts with a shorter one of the same kind.
def _random_words(rng: random.Random, count: int) -> list[str]:
    return ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(count)]


def _tile(block: str, n: int) -> str:
    return block * (n // len(block) + 1)


def random_tokens(n: int) -> str:
    """Every phrase new, punctuation every few words: the most candidate phrases per character."""
    rng = random.Random(1)
    words = _random_words(rng, 60_000)
    block = "".join(w + rng.choice((" ", " ", ", ", ". ")) for w in words)
    return _tile(block, n)


def giant_word(n: int) -> str:
    return _tile("".join(random.Random(2).choices("abcdefghij", k=100_000)), n)


def no_spaces(n: int) -> str:
    """'A.A.A.…a': an abbreviation chain that fails at its end (quadratic for a regex searched from the start)."""
    return "A." * (n // 2) + "a"


def repeated_sentences(n: int) -> str:
    return _tile("Go. ", n)  # 1.3 million sentences at the size limit


def capitalised(n: int) -> str:
    """Thousands of entity candidates: people sharing surnames, titles, organisations, places."""
    rng = random.Random(3)
    given = sorted(gazetteer().given_names)
    surnames = [w.title() for w in _random_words(rng, 2_000)]
    parts = []
    for i in range(8_000):
        g, s = rng.choice(given), rng.choice(surnames)
        parts.append(
            f"{g} {s} said {s} met President Prime Minister {rng.choice(surnames)} of "
            f"{rng.choice(surnames)} National Bank in {rng.choice(surnames)} County."
        )
        if i % 50 == 0:
            parts.append(" ".join(rng.choice(surnames) for _ in range(300)) + ".")  # one very long run
    return _tile(" ".join(parts) + " ", n)


def repeated_phrase(n: int) -> str:
    return _tile("new economic recovery plan ", n)


def unicode_heavy(n: int) -> str:
    rng = random.Random(4)
    blocks = [(0x410, 0x44F), (0x3B1, 0x3C9), (0x4E00, 0x4FFF), (0x627, 0x64A), (0x1F600, 0x1F64F)]
    words = []
    for _ in range(40_000):
        lo, hi = rng.choice(blocks)
        word = "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(2, 8)))
        words.append(word + "\u0301" if rng.random() < 0.2 else word)
    return _tile(" ".join(words) + "。\n", n)


KINDS: dict[str, Callable[[int], str]] = {
    "random tokens": random_tokens,
    "giant word": giant_word,
    "no spaces": no_spaces,
    "repeated sentences": repeated_sentences,
    "capitalised": capitalised,
    "repeated phrase": repeated_phrase,
    "unicode": unicode_heavy,
}


# --- spies on the expensive steps ---------------------------------------------------------------------
@dataclass
class Work:
    """What the expensive steps were given during one enrich_article call."""

    language_chars: list[int] = field(default_factory=list)  # texts given to the language model
    keyword_chars: list[int] = field(default_factory=list)  # texts read for candidate phrases (body, title)
    phrases: list[int] = field(default_factory=list)  # candidate phrases per text
    summary_chars: list[int] = field(default_factory=list)  # text split into sentences for the summary
    scored: list[int] = field(default_factory=list)  # length of each sentence scored for the summary
    entity_chars: list[int] = field(default_factory=list)  # text split into sentences for entities
    classified: int = 0  # entity mentions classified
    known_words: list[int] = field(default_factory=list)  # words of each run looked up in the gazetteer
    abbrev_span: list[int] = field(default_factory=list)  # characters searched for a closing abbreviation

    def key(self) -> tuple[Any, ...]:
        return (
            self.language_chars,
            self.keyword_chars,
            self.phrases,
            self.summary_chars,
            self.scored,
            self.entity_chars,
            self.classified,
            self.known_words,
            self.abbrev_span,
        )


class _Regex:
    """A compiled pattern that reports what it is asked to search."""

    def __init__(self, pattern: re.Pattern[str], on_call: Callable[[str, int], None]) -> None:
        self._pattern, self._on_call = pattern, on_call

    def search(self, string: str, pos: int = 0) -> re.Match[str] | None:
        self._on_call(string, pos)
        return self._pattern.search(string, pos)

    def findall(self, string: str) -> list[Any]:
        self._on_call(string, 0)
        return self._pattern.findall(string)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[dict[str, str]], tuple[Work, dict[str, Any]]]]:
    work = Work()

    class _Identifier:
        def __init__(self, real: Any) -> None:
            self._real = real

        def rank(self, sample: str) -> Any:
            work.language_chars.append(len(sample))
            return self._real.rank(sample)

    real_identifier = language._identifier()
    monkeypatch.setattr(language, "_identifier", lambda: _Identifier(real_identifier))

    real_candidates = keywords.candidate_phrases

    def candidates(txt: str, stop: frozenset[str]) -> list[tuple[str, ...]]:
        found = real_candidates(txt, stop)
        work.keyword_chars.append(len(txt))
        work.phrases.append(len(found))
        return found

    monkeypatch.setattr(keywords, "candidate_phrases", candidates)

    def splitter(record: str) -> Callable[[str], list[str]]:
        def split(txt: str) -> list[str]:
            getattr(work, record).append(len(txt))
            return split_sentences(txt)

        return split

    monkeypatch.setattr(summary, "split_sentences", splitter("summary_chars"))
    monkeypatch.setattr(entities, "split_sentences", splitter("entity_chars"))
    monkeypatch.setattr(summary, "WORD", _Regex(text.WORD, lambda s, _: work.scored.append(len(s))))
    monkeypatch.setattr(text, "_ABBREV", _Regex(text._ABBREV, lambda s, pos: work.abbrev_span.append(len(s) - pos)))

    real_classify, real_known = entities._classify, entities._known

    def classify(*args: Any) -> Any:
        work.classified += 1
        return real_classify(*args)

    def known(name: str, gaz: Any) -> bool:
        work.known_words.append(len(name.split()))
        return real_known(name, gaz)

    monkeypatch.setattr(entities, "_classify", classify)
    monkeypatch.setattr(entities, "_known", known)

    def run(article: dict[str, str]) -> tuple[Work, dict[str, Any]]:
        nonlocal work
        work = Work()
        return work, enrich_article(article)

    yield run


def _article(body: str) -> dict[str, str]:
    return {"body": body, "title": body[:200], "description": body[:300]}


def _assert_bounded(work: Work, out: dict[str, Any]) -> None:
    assert work.language_chars and max(work.language_chars) <= language.SAMPLE_CHARS
    assert max(work.keyword_chars) <= MAX_TEXT_CHARS
    assert max(work.phrases) <= MAX_CANDIDATE_PHRASES
    assert max(work.summary_chars) <= MAX_TEXT_CHARS and max(work.entity_chars) <= MAX_TEXT_CHARS
    assert len(work.scored) <= MAX_SCORED_SENTENCES and max(work.scored, default=0) <= MAX_SENTENCE_CHARS
    assert work.classified <= MAX_MENTIONS
    assert max(work.known_words, default=0) <= gazetteer().max_name_words
    assert max(work.abbrev_span, default=0) <= text._ABBREV_TAIL
    # The output is bounded too.
    assert len(out["keywords"]) <= MAX_KEYWORDS
    assert all(len(k) <= 3 * MAX_WORD_CHARS + 2 for k in out["keywords"])
    assert len(out["summary"]) <= max(500, MAX_SENTENCES * (MAX_SENTENCE_CHARS + 1))
    assert all(len(names) <= MAX_PER_TYPE for names in out["entities"].values())


# --- the tests ------------------------------------------------------------------------------------------
@HANG
@pytest.mark.parametrize("kind", KINDS)
def test_work_is_capped_at_the_size_limit(kind: str, spy: Any) -> None:
    body = KINDS[kind](LIMIT)[:LIMIT]
    work, out = spy(_article(body))
    _assert_bounded(work, out)
    assert out["word_count"] > 0  # word_count still reads the whole body


@HANG
@pytest.mark.parametrize("kind", KINDS)
def test_doubling_beyond_the_caps_changes_nothing(kind: str, spy: Any) -> None:
    big = KINDS[kind](4 * MAX_TEXT_CHARS)
    work_2, out_2 = spy(_article(big[: 2 * MAX_TEXT_CHARS]))
    work_4, out_4 = spy(_article(big[: 4 * MAX_TEXT_CHARS]))
    assert work_2.key() == work_4.key()
    for name in ("word_count", "reading_time_min"):  # the only fields that count the whole body
        out_2.pop(name), out_4.pop(name)
    assert out_2 == out_4


@HANG
def test_text_below_the_caps_is_read_whole(spy: Any) -> None:
    body = random_tokens(MAX_TEXT_CHARS // 2)[: MAX_TEXT_CHARS // 2]
    work, _ = spy(_article(body))
    assert work.keyword_chars[0] == work.summary_chars[0] == len(body)


def test_clip_cuts_at_a_break_and_keeps_short_text() -> None:
    assert clip("short text", 100) == "short text"
    assert clip("one two\nthree four five", 17) == "one two\nthree"
    assert clip("one two three", 9) == "one two"
    assert clip("x" * 50, 10) == "x" * 10
    assert all(len(clip(KINDS[k](3 * MAX_TEXT_CHARS))) <= MAX_TEXT_CHARS for k in KINDS)


def test_abbreviation_check_reads_a_short_tail_with_the_same_answers() -> None:
    rng = random.Random(5)
    vocabulary = ["Mr.", "Sept.", "U.S.", "A.B.C.", "x.", "I.", "(Dr.", "xMr.", "St", ".", "A", "word.", "\u00c9."]
    for _ in range(3_000):
        s = " ".join(rng.choices(vocabulary, k=rng.randint(1, 6))).replace(" .", ".")
        tail = text._ABBREV.search(s, max(0, len(s) - text._ABBREV_TAIL))
        assert bool(tail) == bool(text._ABBREV.search(s)), s


@HANG
def test_abbreviation_chain_is_split_in_linear_time() -> None:
    chain = no_spaces(LIMIT)
    assert split_sentences(chain) == [chain]
    assert split_sentences("Talks with the U.S. went well.\nA. B. Smith said no.") == [
        "Talks with the U.S. went well.",
        "A. B. Smith said no.",
    ]


@HANG
def test_keyword_ranking_is_not_quadratic() -> None:
    """300,000 distinct phrases, beyond any cap: ~4e10 steps if the sort key searched the phrase list."""
    phrases: list[tuple[str, ...]] = [(f"w{i % 100_000}", f"v{i}") for i in range(300_000)]
    ranked = keywords._ranked(phrases, Counter(w for p in phrases for w in p))
    assert len(ranked) == len(phrases)
    assert ranked[:3] == phrases[:3]  # equal scores: the first seen first


@HANG
def test_merging_people_and_organisations_is_not_pairwise() -> None:
    """20,000 forms of one surname and 20,000 organisations with one suffix: ~4e8 pairs if compared pairwise."""
    n = 20_000
    found: dict[str, Found] = {}
    for i in range(n):
        found[f"person\tGiven{i} Smith"] = Found("person", f"Given{i} Smith", count=1 + (i == 7), first=i)
        found[f"organization\tName{i} Foo Bank"] = Found("organization", f"Name{i} Foo Bank", count=1, first=i)
    found["unknown\tSmith"] = Found("unknown", "Smith", count=5, first=n)
    found["organization\tFoo Bank"] = Found("organization", "Foo Bank", count=3, first=n)
    found["person\tGiven0 Middle Jones"] = Found("person", "Given0 Middle Jones", count=1, first=n)
    found["person\tJones"] = Found("person", "Jones", count=2, first=n)
    entities._merge_people(found)
    entities._merge_organizations(found)
    assert "unknown\tSmith" not in found and found["person\tGiven7 Smith"].count == 2 + 5  # most mentioned wins
    assert "person\tJones" not in found and found["person\tGiven0 Middle Jones"].count == 3
    assert "organization\tFoo Bank" not in found and found["organization\tName0 Foo Bank"].count == 1 + 3


@HANG
def test_thousands_of_names_are_classified_at_most_max_mentions(spy: Any) -> None:
    """One mention every ~10 characters: ~10,000 in the text read, 500,000 in the body."""
    names = ", ".join(w.title() for w in _random_words(random.Random(7), 20_000))
    work, out = spy(_article(_tile(names + ". ", LIMIT)))
    assert work.classified == MAX_MENTIONS  # the first MAX_MENTIONS are read, the rest is not
    _assert_bounded(work, out)


@HANG
def test_entity_output_of_a_normal_text_is_unchanged_by_a_hostile_tail() -> None:
    lead = (
        "Prime Minister Boris Johnson met Emmanuel Macron in Paris on Monday.\n"
        "Johnson said the talks went well. Macron did not comment.\n"
    )
    assert extract_entities(lead + giant_word(LIMIT)) == extract_entities(lead)


@HANG
def test_minhash_shingles_are_capped() -> None:
    big = random_tokens(4 * minhash.MAX_TEXT_CHARS)
    capped = shingle_hashes(big[: 2 * minhash.MAX_TEXT_CHARS])
    assert np.array_equal(capped, shingle_hashes(big))
    assert capped.size <= minhash.MAX_TEXT_CHARS // 2
    assert shingle_hashes(giant_word(LIMIT)).size == 1


def test_chunked_signature_equals_the_one_step_signature() -> None:
    hashes = np.unique(np.random.default_rng(6).integers(0, 2**63, size=3 * minhash._CHUNK + 5, dtype=np.uint64))
    a, b = minhash._permutations()
    with np.errstate(over="ignore"):
        whole = ((hashes[:, None] * a[None, :] + b[None, :]) >> np.uint64(32)).min(axis=0)
    assert np.array_equal(signature(hashes), (whole & np.uint64(0xFFFFFFFF)).astype(np.uint32))


@HANG
def test_language_sample_is_copied_not_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = language.detect_language

    def detect(sample: str, declared: object = None) -> tuple[str | None, float]:
        seen.append(len(sample))
        return real(sample, declared)

    monkeypatch.setattr(pipeline, "detect_language", detect)
    enrich_article({"body": repeated_phrase(LIMIT), "title": giant_word(LIMIT), "description": no_spaces(LIMIT)})
    assert seen == [3 * language.SAMPLE_CHARS + 2]
