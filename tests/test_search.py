"""The search index on a real tantivy index: query language, stemming per language, filters, dates,
sorting, pages, facets, story collapsing, snippets, schema versions and rebuilds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tantivy

from newsflow.search import QueryError, SchemaMismatch, SearchIndex, SearchRequest, iter_sources
from newsflow.search.query import parse

STORY = "c1" * 16  # cluster id shared by three reprints of one wire story


def _doc(i: int, **kw: Any) -> dict[str, Any]:
    aid = f"{i:032x}"
    doc = {
        "id": aid,
        "url": f"https://www.site{i % 3}.example/news/{i}",
        "title": f"Article {i}",
        "body": "Filler text about nothing much. " * 20,
        "language": "en",
        "published": f"2024-0{1 + i % 6}-1{i % 10}T08:00:00Z",
        "site_name": f"Site {i % 3}",
        "cluster_id": aid,
        "entities": {"person": [], "organization": [], "place": []},
        "keywords": [],
    }
    doc.update(kw)
    return doc


def sample_docs() -> list[dict[str, Any]]:
    wire = "NATO Secretary General Jens Stoltenberg said the alliance would keep running joint drills in the Baltic."
    return [
        _doc(1, title="Stoltenberg: NATO keeps running drills", body=wire + " More details followed on Monday.",
             url="https://www.wire.example/nato-drills", published="2024-05-03T10:00:00Z", author="Jane Smith",
             entities={"person": ["Jens Stoltenberg"], "organization": ["NATO"], "place": ["Baltic"]},
             keywords=["drills", "alliance"], cluster_id=STORY, site_name="Wire"),
        _doc(2, title="NATO drills continue, says Stoltenberg", body=wire + " Reprinted by a local paper.",
             url="https://local.example/world/nato", published="2024-05-04T09:00:00Z", cluster_id=STORY,
             entities={"person": ["Jens Stoltenberg"], "organization": ["NATO"], "place": []}),
        _doc(3, title="Alliance drills in the Baltic", body=wire + " A third reprint with <b>markup</b> & symbols.",
             url="https://third.example/a", published="2024-05-05T09:00:00Z", cluster_id=STORY),
        _doc(4, title="Central bank holds rates", body="The central bank held interest rates steady on Thursday. "
             "Economists had expected a pause for regrouping after a year of rises.", published="2023-11-20",
             url="https://money.example/rates", author="Omar Farouk", keywords=["rates", "inflation"],
             entities={"person": [], "organization": ["Central Bank"], "place": []}),
        _doc(5, title="Die Häuser von Berlin", body="In Berlin werden viele neue Häuser gebaut. Das Haus am See ist "
             "besonders groß und die Mieten steigen.", language="de", url="https://zeitung.example/berlin",
             published="2024-02-01", entities={"person": [], "organization": [], "place": ["Berlin"]}),
        _doc(6, title="Les maisons de Lyon", body="Les nouvelles maisons construites à Lyon sont chères; la maison "
             "moyenne coûte plus qu'avant.", language="fr", url="https://journal.example/lyon", published="2024-03-09"),
        _doc(7, title="Running season opens", body="Runners gathered as the running season opened in the park; "
             "one runner ran ten laps.", url="https://sport.example/run", published="2024-04-01", author="Jane Doe"),
        *[_doc(10 + i, title=f"Weather report {i}", body=f"Weather report number {i}: rain and wind across the "
               "region, with storms expected later in the week.", url=f"https://weather.example/{i}",
               published=f"2024-06-{10 + i:02d}") for i in range(12)],
    ]  # fmt: skip


def sample_data_dir(root: Path) -> Path:
    """A data dir whose index holds `sample_docs()` (for the API and web page tests)."""
    ix = SearchIndex(root / "index")
    ix.upsert_batch(sample_docs())
    ix.close()
    return root


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> SearchIndex:
    ix = SearchIndex(tmp_path_factory.mktemp("search") / "index")
    assert ix.upsert_batch(sample_docs()) == len(sample_docs())
    return ix


def ids(result: Any) -> set[int]:
    return {int(h.doc["id"], 16) for h in result.hits}


def find(ix: SearchIndex, q: str = "", **kw: Any) -> Any:
    kw.setdefault("limit", 50)
    kw.setdefault("collapse", False)
    return ix.search(SearchRequest(query=q, **kw))


def test_terms_are_anded_and_operators_work(index: SearchIndex) -> None:
    assert ids(find(index, "stoltenberg drills")) == {1, 2, 3}
    assert ids(find(index, "stoltenberg rates")) == set()
    assert ids(find(index, "stoltenberg OR rates")) == {1, 2, 3, 4}
    assert ids(find(index, "drills NOT local")) == {1, 3}
    assert ids(find(index, "drills -local")) == {1, 3}
    assert ids(find(index, "(rates OR berlin) AND NOT inflation")) == {4, 5}  # keywords are not default text
    assert ids(find(index, "(rates OR häuser) NOT keyword:inflation")) == {5}
    assert ids(find(index, "NOT weather NOT drills")) == {4, 5, 6, 7}


def test_phrases_are_exact(index: SearchIndex) -> None:
    assert ids(find(index, '"pause for regrouping"')) == {4}
    assert ids(find(index, '"regrouping for pause"')) == set()
    assert ids(find(index, '"joint drills" "local paper"')) == {2}


def test_stemming_follows_each_articles_language(index: SearchIndex) -> None:
    # English rules: run/runs/running meet; German rules: Häuser/Haus meet; French: maison(s).
    assert ids(find(index, "runs")) == {1, 2, 3, 7}
    assert ids(find(index, "häuser")) == {5}
    assert ids(find(index, "haus")) == {5}
    assert ids(find(index, "maison")) == {6}
    # Accents are optional in queries.
    assert ids(find(index, "hauser")) == {5}


def test_field_queries(index: SearchIndex) -> None:
    assert ids(find(index, "title:drills")) == {1, 2, 3}
    assert ids(find(index, "title:(nato OR rates)")) == {1, 2, 4}
    assert ids(find(index, "site:money.example")) == {4}
    assert ids(find(index, "site:www.wire.example drills")) == {1}
    assert ids(find(index, "author:smith")) == {1}
    assert ids(find(index, 'author:"jane doe"')) == {7}
    assert ids(find(index, "lang:de")) == {5}
    assert ids(find(index, "lang:fr OR lang:de")) == {5, 6}
    assert ids(find(index, 'entity:"jens stoltenberg"')) == {1, 2}
    assert ids(find(index, "entity:berlin")) == {5}
    assert ids(find(index, "keyword:inflation")) == {4}
    assert ids(find(index, "drills", site=["local.example", "third.example"])) == {2, 3}
    assert ids(find(index, "", language=["fr"])) == {6}
    assert ids(find(index, "", entity=["NATO"])) == {1, 2}


def test_date_ranges(index: SearchIndex) -> None:
    assert ids(find(index, "published:2023")) == {4}
    assert ids(find(index, "published:2024-05")) == {1, 2, 3}
    assert ids(find(index, "published:2024-05-04")) == {2}
    assert ids(find(index, "drills published:2024-05-04..2024-05-05")) == {2, 3}
    assert ids(find(index, "drills published:>2024-05-04")) == {3}
    assert ids(find(index, "since:2024-06 until:2024-06-11")) == {10, 11}
    assert ids(find(index, "drills", since="2024-05-04")) == {2, 3}
    assert ids(find(index, "drills", until="2024-05-03")) == {1}


def test_sort_by_date_and_pages(index: SearchIndex) -> None:
    newest = find(index, "weather", sort="date", limit=5)
    assert newest.total == 12
    assert [h.doc["published"][:10] for h in newest.hits] == [f"2024-06-{d}" for d in (21, 20, 19, 18, 17)]
    assert all(h.score is None for h in newest.hits)
    oldest = find(index, "weather", sort="date_asc", limit=5)
    assert oldest.hits[0].doc["published"].startswith("2024-06-10")
    pages = [find(index, "weather", sort="date", limit=5, page=p) for p in (1, 2, 3, 4)]
    seen = [h.doc["id"] for r in pages for h in r.hits]
    assert len(seen) == len(set(seen)) == 12 and pages[3].hits == []
    assert pages[1].page == 2


def test_relevance_prefers_title_matches(index: SearchIndex) -> None:
    hits = find(index, "running").hits
    assert hits[0].doc["id"] == f"{7:032x}"  # "running" in the title and three times in the body
    assert hits[0].score is not None and hits[0].score > hits[-1].score  # type: ignore[operator]


def test_collapsing_one_hit_per_story_and_expanding(index: SearchIndex) -> None:
    res = index.search(SearchRequest(query="stoltenberg drills", facets=True))
    assert res.total == 3 and len(res.hits) == 1 and res.stories == 1
    assert res.hits[0].similar == 2
    expanded = index.search(SearchRequest(query="stoltenberg drills", cluster=STORY, collapse=False))
    assert ids(expanded) == {1, 2, 3}
    # Similar counts only what matches: "local" is in one member only.
    assert index.search(SearchRequest(query="drills local")).hits[0].similar == 0
    # Collapsed pages stay full and disjoint.
    page1 = index.search(SearchRequest(query="drills OR weather", limit=5))
    page2 = index.search(SearchRequest(query="drills OR weather", limit=5, page=2))
    assert len(page1.hits) == 5 and len(page2.hits) == 5
    assert not {h.doc["id"] for h in page1.hits} & {h.doc["id"] for h in page2.hits}
    assert sum(h.similar for h in page1.hits + page2.hits) == 2


def test_facets_count_matches(index: SearchIndex) -> None:
    res = find(index, "drills OR rates", facets=True)
    facets = {k: {b["value"]: b["count"] for b in v} for k, v in res.facets.items()}
    assert facets["site"] == {"wire.example": 1, "local.example": 1, "third.example": 1, "money.example": 1}
    assert facets["language"] == {"en": 4}
    assert facets["entity"]["Jens Stoltenberg"] == 2 and facets["entity"]["Central Bank"] == 1
    assert facets["month"] == {"2024-05": 3, "2023-11": 1}
    assert list(facets["month"]) == ["2024-05", "2023-11"]  # newest month first


def test_snippets_highlight_and_escape(index: SearchIndex) -> None:
    hit = find(index, "markup symbols").hits[0]
    assert "<mark>markup</mark>" in hit.snippet_html
    assert "&lt;b&gt;" in hit.snippet_html and "<b>" not in hit.snippet_html
    assert "markup" in hit.snippet and "<mark>" not in hit.snippet
    title = find(index, "title:drills stoltenberg").hits[0].title_html
    assert "<mark>" in title


@pytest.mark.parametrize(
    ("query", "message", "column"),
    [
        ('nato "open phrase', "unterminated quote", 6),
        ("(nato OR eu", "never closed", 1),
        ("nato )", "unbalanced ')'", 6),
        ("nato OR", "OR needs something on its right", 6),
        ("AND nato", "AND needs something on its left", 1),
        ("nato NOT", "NOT needs", 6),
        ("titel:nato", "unknown field 'titel'", 1),
        ("published:2024-13", "bad date", 11),
        ("nato site:", "needs a value", 6),
        ("()", "empty parentheses", 1),
    ],
)
def test_malformed_queries_say_where(index: SearchIndex, query: str, message: str, column: int) -> None:
    with pytest.raises(QueryError) as err:
        find(index, query)
    assert message in str(err.value)
    assert err.value.column == column
    assert err.value.pointer().splitlines()[1].index("^") == column + 1  # two spaces of indent


def test_punctuation_only_query_is_an_error_not_a_crash(index: SearchIndex) -> None:
    with pytest.raises(QueryError, match="no searchable words"):
        find(index, "— !!")
    assert find(index, "").total == len(sample_docs())  # empty query: everything (filters still apply)
    with pytest.raises(QueryError, match="--since"):
        find(index, "", since="yesterday")
    with pytest.raises(QueryError, match="--since 2024-06 is after --until 2024-05"):
        find(index, "", since="2024-06", until="2024-05")  # swapped: not an empty answer
    assert find(index, "", since="2024-06-10", until="2024-06-10").total >= 1  # one day: both ends in it


def test_operators_and_colons_in_plain_words() -> None:
    assert parse("10:30 budget") is not None  # digits before a colon are not a field
    assert parse('"re:invent"') is not None  # quoted: plain text


def test_upsert_replaces_and_get_resolves_urls(tmp_path: Path) -> None:
    ix = SearchIndex(tmp_path / "index")
    doc = _doc(1, title="First version", url="https://example.com/a?utm_source=x",
               final_url="https://example.com/a-final", canonical_url="https://example.com/canon")  # fmt: skip
    ix.upsert_batch([doc])
    ix.upsert_batch([{**doc, "title": "Second version"}])
    assert ix.num_docs() == 1
    assert find(ix, "second").total == 1 and find(ix, "first").total == 0
    for key in (doc["id"], "https://example.com/a", "https://example.com/a-final", "https://example.com/canon"):
        got = ix.get(key)
        assert got is not None and got["title"] == "Second version", key
    assert ix.get("https://example.com/other") is None
    ix.upsert_batch([], delete_ids=[doc["id"]])
    assert ix.num_docs() == 0


def _old_v1_index(path: Path, docs: list[dict[str, Any]]) -> None:
    """An index as the first newsflow wrote it: no version file, source as an indexed text field."""
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw", fast=True)
    sb.add_text_field("title", stored=True, tokenizer_name="en_stem")
    sb.add_text_field("source", stored=True, tokenizer_name="raw", index_option="basic")
    path.mkdir(parents=True)
    index = tantivy.Index(sb.build(), path=str(path))
    writer = index.writer(15_000_000, 1)
    for doc in docs:
        writer.add_document(tantivy.Document(id=doc["id"], title=doc["title"], source=json.dumps(doc)))
    writer.commit()
    writer.wait_merging_threads()


def test_a_writer_stopped_while_creating_the_index_leaves_it_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index writer's first batch creates the index; a worker shut down at that moment ends
    its batch thread wherever it is. Stopped after tantivy wrote its meta.json, it left an index
    without a version, which every later writer refused as pre-versioned (`index_schema_mismatch`,
    the articles dead-lettered). Found by tests/test_shutdown.py in CI."""
    path = tmp_path / "index"
    real_open = SearchIndex._open

    def open_then_stop(self: SearchIndex) -> None:
        real_open(self)
        raise SystemExit("the process ends here")

    monkeypatch.setattr(SearchIndex, "_open", open_then_stop)
    with pytest.raises(SystemExit):
        SearchIndex(path)
    monkeypatch.setattr(SearchIndex, "_open", real_open)
    index = SearchIndex(path)  # the next writer
    index.upsert_batch(sample_docs()[:2])
    assert sorted(d["id"] for d in iter_sources(path)) == sorted(d["id"] for d in sample_docs()[:2])


def test_an_empty_index_left_without_a_version_is_taken_as_new(tmp_path: Path) -> None:
    """What such a stop left on disk before the fix: tantivy's files, no segment, no version."""
    from newsflow.search.schema import SCHEMA_FILE

    path = tmp_path / "index"
    SearchIndex(path)
    (path / SCHEMA_FILE).unlink()
    SearchIndex(path).upsert_batch(sample_docs()[:1])
    assert [d["id"] for d in iter_sources(path)] == [sample_docs()[0]["id"]]


def test_old_schema_is_refused_until_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "index"
    _old_v1_index(path, sample_docs()[:4])
    with pytest.raises(SchemaMismatch, match="newsflow reindex"):
        SearchIndex(path)
    # Its stored articles are intact and readable whatever the schema: what `reindex` rebuilds from.
    assert sorted(d["id"] for d in iter_sources(path)) == sorted(d["id"] for d in sample_docs()[:4])
