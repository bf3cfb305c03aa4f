"""Who an article is: what was fetched decides, not what the page claims.

The site, the URLs that look an article up and the sites a takedown matches come from the
requested URL and the final URL after redirects. A declared canonical URL counts only on the final
URL's own registrable domain (eTLD+1, by the bundled Public Suffix List); elsewhere it is kept as
`canonical_claimed`. And no invented dates: a page that states no date has none.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newsflow.domains import registrable_domain, same_owner, trusted_canonical
from newsflow.extract import extract_article
from newsflow.extract.dates import parse_date
from newsflow.extract.evaluate import load_benchmark
from newsflow.pipeline import Message
from newsflow.search import SearchIndex, SearchRequest
from newsflow.search import schema as S
from newsflow.search.service import hit_dict
from newsflow.search.tombstones import Tombstones, site_of_url, takedown_sites
from newsflow.state import connect
from newsflow.urls import article_id, normalize_url
from tasks.clean import build_doc
from tests.conftest import BENCH_DIR, FIXTURES

PARA = "<p>" + "The council voted on the budget after a long debate about schools and roads. " * 3 + "</p>"


def page(canonical: str | None = None, head: str = "", body: str = "") -> str:
    link = f'<link rel="canonical" href="{canonical}">' if canonical is not None else ""
    return (
        f"<html><head><title>Budget passes</title>{link}{head}</head>"
        f"<body><article><h1>Budget passes</h1>{body}{PARA * 4}</article></body></html>"
    )


def doc_for(html: str, url: str, final_url: str | None = None) -> dict[str, Any]:
    msg = dataclasses.replace(Message.new(url, article_id(url)), fetch={"final_url": final_url or url, "status": 200})
    return build_doc(msg, html, max_html_bytes=1_000_000, min_body_chars=50)


# --- registrable domains ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("news.bbc.co.uk", "bbc.co.uk"),
        ("WWW.Example.COM.", "example.com"),
        ("a.co.uk", "a.co.uk"),
        ("co.uk", None),  # a public suffix is nobody's site
        ("alice.blogspot.com", "alice.blogspot.com"),  # private section: each blog is its own owner
        ("blogspot.com", None),
        ("x.y.github.io", "y.github.io"),
        ("weather.example", "weather.example"),  # unknown TLD: a suffix, as on the real web
        ("bücher.de", "xn--bcher-kva.de"),
        ("shop.xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("", None),
        (None, None),
        ("exa mple.com", None),
        ("a..b.com", None),
    ],
)
def test_registrable_domain(host: str | None, expected: str | None) -> None:
    assert registrable_domain(host) == expected


def test_same_owner() -> None:
    assert same_owner("amp.example.com", "www.example.com")
    assert same_owner("localhost", "localhost")  # the same host, even without a registrable domain
    assert not same_owner("a.co.uk", "b.co.uk")
    assert not same_owner("alice.blogspot.com", "bob.blogspot.com")
    assert not same_owner("127.0.0.1", "127.0.0.2")
    assert not same_owner("example.com", "example.com.evil.net")
    assert not same_owner("", "")


# --- build_doc: canonical, site, lookup keys ----------------------------------------------------------


def test_canonical_on_the_same_host_is_trusted() -> None:
    doc = doc_for(page("https://www.example.com/budget?ref=x"), "https://www.example.com/budget")
    assert doc["canonical_url"] == "https://www.example.com/budget?ref=x"
    assert doc["canonical_claimed"] is None
    assert S.site_of(doc) == "example.com"


def test_relative_and_missing_canonicals_are_the_page_itself() -> None:
    doc = doc_for(page("/budget-passes"), "https://example.com/b?id=1")
    assert doc["canonical_url"] == "https://example.com/budget-passes" and doc["canonical_claimed"] is None
    doc = doc_for(page(), "https://example.com/b?id=1")
    assert doc["canonical_url"] == "https://example.com/b?id=1"


def test_canonical_on_another_subdomain_of_the_same_registrable_domain_is_trusted() -> None:
    doc = doc_for(page("https://www.example.co.uk/budget"), "https://amp.example.co.uk/budget")
    assert doc["canonical_url"] == "https://www.example.co.uk/budget"
    assert S.site_of(doc) == "example.co.uk"  # the canonical's host, www. dropped
    assert "https://www.example.co.uk/budget" in S.url_keys(doc)


def test_foreign_canonical_is_only_a_claim() -> None:
    html = page("https://www.nytimes.com/2024/05/03/budget.html")
    doc = doc_for(html, "https://copycat.example/a", final_url="https://www.copycat.example/story")
    assert doc["canonical_url"] is None
    assert doc["canonical_claimed"] == "https://www.nytimes.com/2024/05/03/budget.html"
    assert doc["final_url"] == "https://www.copycat.example/story"
    assert S.site_of(doc) == "copycat.example"
    assert S.url_keys(doc) == ["https://copycat.example/a", "https://www.copycat.example/story"]
    assert doc["id"] == article_id("https://copycat.example/a")  # the id is the requested URL's, as always


@pytest.mark.parametrize(
    ("final_url", "canonical"),
    [
        ("https://a.co.uk/story", "https://b.co.uk/story"),  # multi-part public suffix: two owners
        ("https://news.a.co.uk/story", "https://co.uk/story"),  # a public suffix is nobody
        ("https://alice.blogspot.com/post", "https://bob.blogspot.com/post"),  # private suffix: two blogs
        ("https://alice.blogspot.com/post", "https://blogspot.com/post"),
        ("https://example.com/story", "https://example.com.evil.net/story"),
        ("http://127.0.0.1:8000/seed.html", "https://kyivindependent.com/story/"),
    ],
)
def test_foreign_canonical_across_public_suffixes(final_url: str, canonical: str) -> None:
    doc = doc_for(page(canonical), final_url)
    assert doc["canonical_url"] is None and doc["canonical_claimed"] == canonical
    assert S.site_of(doc) == site_of_url(final_url)
    assert normalize_url(canonical) not in S.url_keys(doc)


@pytest.mark.parametrize(
    "canonical",
    [
        "javascript:alert(1)",
        "mailto:desk@example.com",
        "https://[::1/story",  # unclosed bracket: urlsplit raises
        "http:///no-host",  # (https:///x on an https page is a path on the same host)
        "https://exa mple.com/story",
        "ftp://example.com/story",
    ],
)
def test_malformed_canonicals_are_never_trusted(canonical: str) -> None:
    assert trusted_canonical(canonical, "https://example.com/story") is None
    doc = doc_for(page(canonical), "https://example.com/story")
    # Dropped by the extractor (the page's own URL stands in) or kept as a claim; never trusted.
    assert doc["canonical_url"] in (None, "https://example.com/story")
    assert doc["canonical_claimed"] in (None, canonical)
    assert S.site_of(doc) == "example.com"
    assert S.url_keys(doc) == ["https://example.com/story"]


def test_a_stored_document_with_a_foreign_canonical_is_rechecked() -> None:
    # Documents written before this rule (and backups of them) still carry the page's claim.
    old = {"id": "f" * 32, "url": "https://copycat.example/a", "final_url": "https://copycat.example/a",
           "canonical_url": "https://www.nytimes.com/x.html"}  # fmt: skip
    assert S.site_of(old) == "copycat.example"
    assert S.url_keys(old) == ["https://copycat.example/a"]
    fixed = S.with_verified_canonical(old)
    assert fixed["canonical_url"] is None and fixed["canonical_claimed"] == "https://www.nytimes.com/x.html"
    kept = S.with_verified_canonical({**old, "canonical_url": "https://copycat.example/a?page=1"})
    assert kept["canonical_url"] == "https://copycat.example/a?page=1" and kept["canonical_claimed"] is None


# --- takedowns ------------------------------------------------------------------------------------------


def test_takedown_sites_rest_on_what_was_fetched() -> None:
    doc = doc_for(page("https://innocent.example/story"), "https://short.example/x",
                  final_url="https://www.purged.example/story")  # fmt: skip
    assert takedown_sites(doc) == ["purged.example", "short.example"]
    trusted = doc_for(page("https://www.purged.example/story"), "https://amp.purged.example/story")
    assert takedown_sites(trusted) == ["amp.purged.example", "purged.example"]


@pytest.fixture
def tombstones(redis_url: str) -> Iterator[Tombstones]:
    prefix = "nftest-identity:"
    r = connect(redis_url)
    r.delete(f"{prefix}tombstone:ids", f"{prefix}tombstone:sites")
    yield Tombstones(r, prefix)
    r.delete(f"{prefix}tombstone:ids", f"{prefix}tombstone:sites")


def test_purged_site_page_via_redirect_naming_a_foreign_canonical_stays_purged(tombstones: Tombstones) -> None:
    tombstones.add_site("purged.example", "court order")
    impostor = doc_for(page("https://www.innocent.example/story"), "https://short.example/x",
                       final_url="https://www.purged.example/story")  # fmt: skip
    clean = doc_for(page(), "https://innocent.example/other")
    ids = [impostor["id"], clean["id"]]
    # What the index stage checks: every fetched site of each article ...
    assert tombstones.dead_among(ids, [takedown_sites(impostor), takedown_sites(clean)]) == {impostor["id"]}
    # ... and, one site per article, the site (which is the final URL's here, not the claimed one).
    assert tombstones.dead_among(ids, [S.site_of(impostor), S.site_of(clean)]) == {impostor["id"]}
    # The page requested on a purged site stays purged wherever it redirects.
    tombstones.add_site("short.example", "spam")
    moved = doc_for(page(), "https://short.example/y", final_url="https://elsewhere.example/y")
    assert tombstones.dead_among([moved["id"]], [takedown_sites(moved)]) == {moved["id"]}
    # Naming a purged site as canonical does not take a foreign page down either.
    victim = doc_for(page("https://www.purged.example/story"), "https://innocent.example/story")
    assert tombstones.dead_among([victim["id"]], [takedown_sites(victim)]) == set()


# --- lookup and filters on a real index -----------------------------------------------------------------


def _article(url: str, title: str, **kw: Any) -> dict[str, Any]:
    body = f"{title}. " + "Filler text about the budget vote. " * 10
    return {"id": article_id(url), "url": url, "final_url": url, "title": title, "language": "en", "body": body,
            "published": "2024-05-03", **kw}  # fmt: skip


REAL = "https://www.realnews.example/2024/05/03/budget"


@pytest.fixture
def ix(tmp_path: Path) -> Iterator[SearchIndex]:
    index = SearchIndex(tmp_path / "index")
    yield index
    index.close()


def test_lookup_by_a_foreign_canonical_does_not_return_the_impostor(ix: SearchIndex) -> None:
    impostor = doc_for(page(REAL), "https://mirror.evil.example/copy")
    ix.upsert_batch([impostor])
    assert ix.get(REAL) is None
    got = ix.get("https://mirror.evil.example/copy")
    assert got is not None and got["canonical_url"] is None and got["canonical_claimed"] == REAL
    real = _article(REAL, "Budget passes (original)")
    ix.upsert_batch([real])
    for _ in range(2):  # whichever is found first, the original wins
        got = ix.get(REAL)
        assert got is not None and got["id"] == real["id"]


def test_foreign_canonical_never_files_the_page_under_that_site(ix: SearchIndex) -> None:
    # As an older build_doc stored it: the claim in canonical_url.
    impostor = _article("https://mirror.evil.example/copy", "Budget impostor", canonical_url=REAL)
    amp = _article("https://amp.realnews.example/budget", "Budget amp", canonical_url=REAL)
    ix.upsert_batch([impostor, amp])
    sites = {h.doc["title"]: hit_dict(h)["site"] for h in ix.search(SearchRequest(query="budget", collapse=False)).hits}
    assert sites == {"Budget impostor": "mirror.evil.example", "Budget amp": "realnews.example"}
    only = ix.search(SearchRequest(query="", site=["realnews.example"], collapse=False))
    assert [h.doc["title"] for h in only.hits] == ["Budget amp"]
    facets = ix.search(SearchRequest(query="", facets=True, collapse=False)).facets["site"]
    assert {b["value"]: b["count"] for b in facets} == {"mirror.evil.example": 1, "realnews.example": 1}
    assert ix.ids_matching("", site="realnews.example") == [amp["id"]]
    assert ix.urls_matching("", site="realnews.example") == [(amp["id"], "https://amp.realnews.example/budget")]
    got = ix.get(REAL)
    assert got is not None and got["id"] == amp["id"]  # the same owner's AMP page may name it
    stored = ix.get(impostor["id"])
    assert stored is not None and stored["canonical_url"] is None and stored["canonical_claimed"] == REAL


def test_lookup_rechecks_keys_an_index_holds_by_older_rules(ix: SearchIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    def old_url_keys(doc: Any) -> list[str]:  # before: every URL the page named was a key
        return sorted({normalize_url(str(doc[k])) for k in ("url", "final_url", "canonical_url") if doc.get(k)})

    with monkeypatch.context() as m:
        m.setattr(S, "url_keys", old_url_keys)
        m.setattr(S, "with_verified_canonical", dict)
        ix.upsert_batch([_article("https://mirror.evil.example/copy", "Budget impostor", canonical_url=REAL)])
    assert ix.get(REAL) is None
    assert ix.get("https://mirror.evil.example/copy") is not None


# --- no invented dates ----------------------------------------------------------------------------------

NO_DATE_PAGES = {
    "<footer>© 2026 Example News. All rights reserved.</footer>": "copyright year",
    "<p>The plan runs until 2030.</p>": "a lone year",
    "<div class='date'>March 2024</div>": "a year and a month",
    "<time datetime='2024-03'>March 2024</time>": "a year-month dateutil would give today's day",
    "<img src='/wp-content/uploads/2022/10/photo.jpg'>": "an upload folder",
}


@pytest.mark.parametrize("extra", list(NO_DATE_PAGES), ids=list(NO_DATE_PAGES.values()))
def test_page_without_a_date_gets_none(extra: str) -> None:
    article = extract_article(page(body=extra), "https://example.com/news/budget-passes")
    assert article.published is None and "published" not in article.provenance


@pytest.mark.parametrize(
    ("meta", "value"),
    [("article:published_time", "2024"), ("date", "March 2024"), ("pubdate", "Nov 19"), ("dc.date", "2024-03")],
)
def test_partial_declared_dates_are_not_padded(meta: str, value: str) -> None:
    assert parse_date(value) is None
    article = extract_article(page(head=f'<meta name="{meta}" content="{value}">'), "https://example.com/b")
    assert article.published is None


def test_whole_dates_still_parse() -> None:
    assert parse_date("19 November 2019") == "2019-11-19"
    assert parse_date("Tue, 19 Nov 2019 13:03:00 GMT") == "2019-11-19T13:03:00+00:00"
    assert parse_date("2019-11-19T13:03:00.000Z") == "2019-11-19T13:03:00+00:00"
    body = "<span class='date'>12 March 2024</span>"
    assert extract_article(page(body=body), "https://example.com/b").published == "2024-03-12"
    ld = '<script type="application/ld+json">{"@type": "NewsArticle", "datePublished": "2024-02-29"}</script>'
    assert extract_article(page(head=ld), "https://example.com/b").published == "2024-02-29"


EVAL_DEV = FIXTURES / "trafilatura-eval-dev"
# Pages of the trafilatura dev set that state no publication date (a shop page, an imprint, club and
# tourism pages); htmldate's fallbacks used to date them from a copyright line or an upload folder.
UNDATED = {"015": "2011-01-01", "047": "2016-01-01", "206": "2017-01-01", "312": "2017-01-01", "320": "2020-01-01"}


@pytest.mark.parametrize("name", sorted(UNDATED))
def test_real_undated_pages_get_no_date(name: str) -> None:
    urls = json.loads((EVAL_DEV / "evaldata.json").read_text(encoding="utf-8"))
    html = gzip.decompress((EVAL_DEV / "html" / f"{name}.html.gz").read_bytes()).decode("utf-8", "replace")
    url = urls[f"{name}.html.gz"]["url"]
    assert extract_article(html, url).published is None, f"was {UNDATED[name]} from a fallback"


def test_a_date_written_only_in_the_text_is_still_found() -> None:
    # "publiziert am 25. September 2018": no markup declares it; htmldate's text search reads it.
    (found,) = [p for p in load_benchmark(BENCH_DIR) if p.page_id.startswith("57b4dafd")]
    article = extract_article(found.html(), found.url)
    assert article.published == "2018-09-25" and article.provenance["published"] == "htmldate"
