"""Feeds, sitemaps, URL lists, link rules and the sources file: pure parsing, hostile input included."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.defaults import Settings
from newsflow.sources.config import SourcesFileError, load_sources, parse_schedule, select
from newsflow.sources.feeds import parse_feed
from newsflow.sources.model import SourceError
from newsflow.sources.rules import LinkRules, site_of
from newsflow.sources.safexml import gunzip_capped
from newsflow.sources.sitemaps import parse_sitemap
from newsflow.sources.urllist import parse_url_list

MB = 1024 * 1024
BASE = "https://news.example.com/feed.xml"


def test_rss2_items_with_hints_and_relative_links() -> None:
    rss = b"""<?xml version="1.0"?>
    <rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><language>de</language>
      <item><title>One &amp; only</title><link>https://news.example.com/a/1</link>
            <pubDate>Tue, 24 Nov 2026 07:30:00 +0100</pubDate></item>
      <item><title>Relative</title><link>/a/2</link><dc:date>2026-11-24T08:00:00Z</dc:date></item>
      <item><title>Guid only</title><guid isPermaLink="true">https://news.example.com/a/3</guid></item>
      <item><title>Not a link</title><guid isPermaLink="false">tag:123</guid></item>
    </channel></rss>"""
    items = parse_feed(rss, BASE, MB)
    assert [i.url for i in items] == [
        "https://news.example.com/a/1",
        "https://news.example.com/a/2",
        "https://news.example.com/a/3",
    ]
    assert items[0].hints == {"title": "One & only", "published": "2026-11-24T07:30:00+01:00", "language": "de"}
    assert items[1].hints["published"] == "2026-11-24T08:00:00+00:00"
    assert items[0].lastmod is not None


def test_atom_alternate_links_updated_and_lang() -> None:
    atom = b"""<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="fr">
      <entry><title>A</title><link rel="self" href="https://x/self"/>
        <link rel="alternate" type="text/html" href="https://news.example.com/fr/a"/>
        <published>2026-11-01T10:00:00Z</published><updated>2026-11-02T10:00:00Z</updated></entry>
      <entry><title>B</title><link href="b.html"/><updated>2026-11-03T10:00:00+02:00</updated></entry>
    </feed>"""
    items = parse_feed(atom, BASE, MB)
    assert [i.url for i in items] == ["https://news.example.com/fr/a", "https://news.example.com/b.html"]
    assert items[0].hints == {"title": "A", "published": "2026-11-01T10:00:00+00:00", "language": "fr"}
    # the recrawl policy looks at <updated>, not <published>
    assert items[0].lastmod == datetime(2026, 11, 2, 10, tzinfo=UTC).timestamp()


def test_json_feed() -> None:
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "J",
        "language": "es",
        "items": [
            {
                "id": "1",
                "url": "https://news.example.com/j/1",
                "title": "Uno",
                "date_published": "2026-11-05T00:00:00Z",
            },
            {"id": "2", "external_url": "https://news.example.com/j/2"},
            {"id": "3", "content_text": "no url"},
        ],
    }
    items = parse_feed(json.dumps(feed).encode(), BASE, MB)
    assert [i.url for i in items] == ["https://news.example.com/j/1", "https://news.example.com/j/2"]
    assert items[0].hints == {"title": "Uno", "published": "2026-11-05T00:00:00+00:00", "language": "es"}


def test_sitemap_index_urlset_gzip_and_news_extension() -> None:
    index = b"""<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
      <sitemap><loc>https://news.example.com/news.xml</loc><lastmod>2026-11-20</lastmod></sitemap>
      <sitemap><loc>/pages.xml.gz</loc></sitemap></sitemapindex>"""
    parsed = parse_sitemap(index, BASE, MB, 100)
    assert parsed.is_index and [c[0] for c in parsed.children] == [
        "https://news.example.com/news.xml",
        "https://news.example.com/pages.xml.gz",
    ]
    news = b"""<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
      <url><loc>https://news.example.com/n/1</loc><news:news>
        <news:publication><news:name>N</news:name><news:language>en</news:language></news:publication>
        <news:publication_date>2026-11-20T09:00:00Z</news:publication_date><news:title>Headline</news:title>
      </news:news></url>
      <url><loc>https://news.example.com/n/2</loc><lastmod>2026-11-21</lastmod></url></urlset>"""
    entries = parse_sitemap(gzip.compress(news), BASE, MB, 100).entries
    assert entries[0].hints == {"title": "Headline", "published": "2026-11-20T09:00:00+00:00", "language": "en"}
    assert entries[1].hints == {} and entries[1].lastmod is not None


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        # billion laughs: entity declarations are refused before any expansion
        (
            b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
            b"<rss><channel><item><title>&lol2;</title><link>https://x/1</link></item></channel></rss>",
            "xml_forbidden",
        ),
        # XXE: an external entity that would read a local file
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b"<rss><channel><item><title>&xxe;</title><link>https://x/1</link></item></channel></rss>",
            "xml_forbidden",
        ),
        # an entity used but never defined
        (b"<rss><channel><item><title>&nope;</title></item></channel></rss>", "bad_xml"),
        (b"<rss><channel><item>", "bad_xml"),
        # an HTML page (login wall, wrong URL) where a feed should be
        (b"<!DOCTYPE html><html><body>Please log in</body></html>", "not_xml"),
        (b"", "empty_body"),
        (b"<html><body>x</body></html>", "not_xml"),
        (b"<urlset><url><loc>https://x/1</loc></url></urlset>", "bad_feed"),
        (b'{"hello": "json but not a feed"}', "bad_feed"),
    ],
)
def test_hostile_or_wrong_feeds_give_a_clear_reason(doc: bytes, reason: str) -> None:
    with pytest.raises(SourceError) as err:
        parse_feed(doc, BASE, MB)
    assert err.value.reason == reason
    assert err.value.detail


def test_sitemap_with_too_many_entries_is_refused() -> None:
    urls = "".join(f"<url><loc>https://news.example.com/p/{i}</loc></url>" for i in range(50_001))
    doc = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()
    with pytest.raises(SourceError) as err:
        parse_sitemap(doc, BASE, 20 * MB, 50_000)
    assert err.value.reason == "too_many_entries"
    # exactly at the protocol's limit is fine
    ok = doc.replace(b"<url><loc>https://news.example.com/p/0</loc></url>", b"", 1)
    assert len(parse_sitemap(ok, BASE, 20 * MB, 50_000).entries) == 50_000


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * (50 * MB))
    assert len(bomb) < 100_000
    with pytest.raises(SourceError) as err:
        parse_sitemap(bomb, BASE, 1 * MB, 50_000)
    assert err.value.reason == "too_large"
    with pytest.raises(SourceError) as err:
        gunzip_capped(b"\x1f\x8b not gzip at all", MB)
    assert err.value.reason == "bad_gzip"


def test_url_list() -> None:
    data = b"# my list\nhttps://a.example/1\n\n  https://b.example/2  trailing words\n#https://c.example/3\n"
    assert [d.url for d in parse_url_list(data, 10)] == ["https://a.example/1", "https://b.example/2"]
    with pytest.raises(SourceError):
        parse_url_list(b"https://a/1\nhttps://a/2\n", 1)


def test_link_rules() -> None:
    rules = LinkRules.build(
        "https://feeds.example.co.uk/rss", allow_hosts=["partner.example.net"], deny_paths=["^/live/"]
    )
    assert rules.why_not("https://www.example.co.uk/news/world-1") is None
    assert rules.why_not("https://partner.example.net/story") is None
    assert rules.why_not("https://other.co.uk/news/1") == "off_site"
    assert rules.why_not("https://www.example.co.uk/tag/brexit") == "denied_path"
    assert rules.why_not("https://www.example.co.uk/authors/jane") == "denied_path"
    assert rules.why_not("https://www.example.co.uk/sponsored/offer") == "denied_path"
    assert rules.why_not("https://www.example.co.uk/img/photo.JPG") == "denied_path"
    assert rules.why_not("https://www.example.co.uk/live/match") == "denied_path"
    assert rules.why_not("mailto:desk@example.co.uk") == "not_http"
    only = LinkRules.build("https://example.com/feed", allow_paths=[r"^/\d{4}/"])
    assert only.why_not("https://example.com/2026/11/story") is None
    assert only.why_not("https://example.com/about") == "not_allowed_path"
    assert site_of("127.0.0.1") == "127.0.0.1" and site_of("a.b.example.com") == "example.com"
    # a URL list has no site: any host, path rules only
    assert LinkRules.build(None).why_not("https://anywhere.example/a") is None


def test_sources_file(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        """
[defaults]
max_items = 7
[[source]]
name = "a"
kind = "feed"
location = "https://example.com/rss"
schedule = "*/5 * * * *"
[[source]]
name = "b"
kind = "urls"
location = "list.txt"
schedule = "@every 90s"
enabled = false
"""
    )
    a, b = load_sources(path, Settings())
    assert a.max_items == 7 and a.schedule is not None and a.schedule.cron == ("*/5", "*", "*", "*", "*")
    assert b.schedule is not None and b.schedule.every is not None and b.schedule.every.total_seconds() == 90
    assert b.local_path() == tmp_path.resolve() / "list.txt"
    assert select([a, b], [], all_enabled=True) == [a]
    assert select([a, b], ["b"], all_enabled=False) == [b]
    with pytest.raises(SourcesFileError, match="unknown source"):
        select([a, b], ["zzz"], all_enabled=False)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[source]]\nname = "a"\nkind = "blog"\nlocation = "https://x"\n', "kind 'blog'"),
        ('[[source]]\nname = "a"\nkind = "feed"\nlocation = "/etc/feed.xml"\n', "must be an http"),
        ('[[source]]\nname = "a"\nkind = "feed"\nlocation = "https://x"\nschedule = "every day"\n', "cron"),
        ('[[source]]\nname = "a"\nkind = "feed"\nlocation = "https://x"\ncolour = 1\n', "unknown keys"),
        ('[[source]]\nname = "a"\nkind = "feed"\nlocation = "https://x"\ndeny_paths = ["("]\n', "bad path pattern"),
        ('[[source]]\nname = "a b"\nkind = "feed"\nlocation = "https://x"\n', "name"),
        ("this is [not toml", "not valid TOML"),
    ],
)
def test_sources_file_mistakes_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(body)
    with pytest.raises(SourcesFileError, match=message):
        load_sources(path, Settings())


def test_schedules() -> None:
    hourly = parse_schedule("@hourly", "x")
    assert hourly is not None and hourly.cron == ("0", "*", "*", "*", "*")
    assert parse_schedule("", "x") is None
    with pytest.raises(SourcesFileError):
        parse_schedule("@every 0.1s", "x")


def test_bundled_sources_file_parses() -> None:
    from newsflow.sources.config import BUNDLED_SOURCES

    sources = load_sources(BUNDLED_SOURCES, Settings())
    assert sources and not any(s.enabled for s in sources)  # examples only: nothing crawls by default
