"""`newsflow migrate`: article ids of URL normalisation version 1 re-keyed to version 2, against a
real Redis and the real index (issue #14, section 5).

A deployment as version 1 left it is built by hand (ids from `normalize_url_v1`, no version
recorded): indexed articles on an IDN host and with a `%2F` path, two spellings of one URL that
version 2 merges, a purged URL, a purged site spelt the IDNA 2003 way, a dead letter and the crawl
seen-set. Then: commands refuse to run until `newsflow migrate`; a dry run changes nothing; the
migration re-keys every store; the purged URL and site stay purged; a recrawl of the seen URLs
enqueues nothing; a second run changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from config.defaults import Settings
from newsflow.crawl import CrawlContext, select_new
from newsflow.crawl import CrawlReport as Report
from newsflow.fetcher import make_session
from newsflow.search import schema as S
from newsflow.search.engine import SearchIndex, read_id_version
from newsflow.search.schema import SCHEMA_FILE
from newsflow.search.tombstones import site_of_url
from newsflow.sources.config import Source
from newsflow.sources.model import Discovered
from newsflow.state import connect
from newsflow.stores import Stores
from newsflow.urls import ID_VERSION, article_id, article_id_v1
from tests.conftest import run_cli, suite_settings

IDN = "https://faß.example/world/story-1"  # IDNA 2003: fass.example; UTS 46: xn--fa-hia.example
SLASH = "https://news.example/tag/a%2Fb/story-2"  # version 1 decoded %2F to /
PLAIN = "https://news.example/plain-3"  # the same id under both versions
MERGE_A = "https://news.example/a/./story-4"  # two ids in version 1, one in version 2
MERGE_B = "https://news.example/a/story-4"
SEEN_ONLY = "https://news.example/queued%2Fonly-5"  # crawled, not indexed yet: ledger and seen-set
PURGED = "https://news.example/bad%2Fstory"  # tombstoned by its version 1 id
PURGED_SITE_URL = "https://straße.example/page"  # its site tombstoned as `strasse.example`
DEAD = "https://news.example/gone%2F404"  # a dead letter
COPY = "https://copycat.example/copy-6"  # declares a canonical on victim.example: filed there before


_site_of = S.site_of


def _doc(url: str, title: str, fetched_at: str) -> dict[str, Any]:
    return {
        "id": article_id_v1(url),
        "url": url,
        "final_url": url,
        "title": title,
        "language": "en",
        "body": f"{title}. A report about harbour walls and the council vote.",
        "published": "2025-05-01",
        "fetched_at": fetched_at,
    }


@pytest.fixture()
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    # A database of its own: broker queues other tests left behind would (rightly) stop a migration.
    own_db = redis_url[: -len("/0")] + "/1" if redis_url.endswith("/0") else redis_url
    return {
        "NEWSFLOW_REDIS_URL": own_db,
        "NEWSFLOW_KEY_PREFIX": f"mig-{uuid.uuid4().hex[:8]}:",
        "NEWSFLOW_DATA_DIR": str(tmp_path / "data"),
    }


@pytest.fixture()
def settings(env: dict[str, str]) -> Settings:
    return suite_settings(
        redis_url=env["NEWSFLOW_REDIS_URL"], key_prefix=env["NEWSFLOW_KEY_PREFIX"], data_dir=env["NEWSFLOW_DATA_DIR"]
    )


def _build_v1(settings: Settings) -> Stores:
    stores = Stores(connect(settings.state_url), settings)
    state = stores.state
    index = SearchIndex(Path(settings.index_dir))
    docs = [
        _doc(IDN, "Flood wall approved", "2025-05-01T10:00:00+00:00"),
        _doc(SLASH, "Slashed tag story", "2025-05-01T10:00:00+00:00"),
        _doc(PLAIN, "Plain story", "2025-05-01T10:00:00+00:00"),
        _doc(MERGE_A, "Merged story, older copy", "2025-05-01T09:00:00+00:00"),
        _doc(MERGE_B, "Merged story, newer copy", "2025-05-02T09:00:00+00:00"),
    ]
    copy = {**_doc(COPY, "Copied story", "2025-05-01T10:00:00+00:00"), "canonical_url": "https://victim.example/orig"}
    with pytest.MonkeyPatch.context() as mp:  # the rule before section 1: the canonical's site
        mp.setattr(S, "site_of", lambda doc: "victim.example" if doc["url"] == COPY else _site_of(doc))
        index.upsert_batch([*docs, copy])
    from newsflow.search import SearchRequest

    assert index.search(SearchRequest(site=["victim.example"])).total == 1
    index.close()
    # An index written before ids were versioned has no id_version in its schema file.
    (Path(settings.index_dir) / SCHEMA_FILE).write_text(json.dumps({"schema_version": 3}) + "\n")
    for url in (IDN, SLASH, PLAIN, MERGE_A, MERGE_B):
        state.record(article_id_v1(url), url, "indexed", "index")
    state.record(article_id_v1(SEEN_ONLY), SEEN_ONLY, "discovered", "crawl", extra={"source": "s"})
    state.dead_letter(article_id_v1(DEAD), DEAD, "fetch", "http_404", "not found",
                      {"v": 1, "id": article_id_v1(DEAD), "url": DEAD})  # fmt: skip
    stores.tombstones.add_ids([(article_id_v1(PURGED), PURGED)], "purged")
    state.record(article_id_v1(PURGED), PURGED, "dead", "purge", reason="purged")
    stores.tombstones.add_site("strasse.example", "spam")
    state.record(article_id_v1(PURGED_SITE_URL), PURGED_SITE_URL, "dead", "purge", reason="purged")
    stores.clusters.assign(article_id_v1(IDN), "Flood wall approved " * 30)
    stores.crawl.mark_seen(article_id_v1(u) for u in (IDN, SLASH, PLAIN, MERGE_A, SEEN_ONLY))
    assert state.id_version() is None
    return stores


def _recrawl(settings: Settings, stores: Stores, urls: list[str]) -> list[Any]:
    source = Source("s", "sitemap", "https://news.example/sitemap.xml", allow_hosts=("xn--fa-hia.example",))
    ctx = CrawlContext(
        settings=settings,
        stores=stores,
        session=make_session(settings),
        enqueue=lambda _messages: None,
        fetch_queue_depth=lambda: 0,
        sleep=time.sleep,
    )
    return select_new(source, ctx, [Discovered(u) for u in urls], False, Report("s"))


def test_migrate_rekeys_every_store(env: dict[str, str], settings: Settings) -> None:
    stores = _build_v1(settings)
    state = stores.state
    changed = [IDN, SLASH, MERGE_A, SEEN_ONLY, PURGED, DEAD, PURGED_SITE_URL]
    assert all(article_id(u) != article_id_v1(u) for u in changed)
    assert article_id(PLAIN) == article_id_v1(PLAIN)

    # Until migrated, commands that make ids refuse, and say what to do.
    refused = run_cli("ingest", PLAIN, env=env)
    assert refused.returncode == 1, refused.stderr
    assert "newsflow migrate" in refused.stderr
    # Messages still queued carry old ids: no migration until they are drained (or --force).
    from newsflow.dispatch import send
    from newsflow.pipeline import FIRST, Message
    from workers.cli.ops import control_app

    app = control_app(settings)
    send(app, FIRST, Message.new(PLAIN, article_id_v1(PLAIN)))
    busy = run_cli("migrate", env=env)
    assert busy.returncode == 1 and "still queued" in busy.stderr, busy.stderr
    from newsflow.queues import priority_lists

    connect(settings.redis_url).delete(*priority_lists(FIRST.queue))  # drained

    dry = run_cli("migrate", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["from_version"] == 1 and planned["dry_run"]
    assert state.id_version() is None and state.ledger(article_id_v1(IDN)) is not None  # nothing changed

    ran = run_cli("migrate", "--json", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "migrate:" in ran.stderr  # progress on stderr, the result alone on stdout
    out = json.loads(ran.stdout)
    assert out["from_version"] == 1 and out["to_version"] == ID_VERSION == 2
    assert out["stores"] == planned["stores"]
    assert out["stores"]["index"] == {"rekeyed": 3, "unchanged": 3, "merged": 1, "unmapped": 0}
    assert out["stores"]["ledger"]["rekeyed"] == 6 and out["stores"]["ledger"]["merged"] == 1
    assert out["stores"]["tombstones"]["rekeyed"] == 1
    assert out["stores"]["seen"]["rekeyed"] == 4 and out["stores"]["seen"]["unchanged"] == 1
    assert out["sites_added"] == 1
    assert any(m["store"] == "index" and m["new_id"] == article_id(MERGE_B) for m in out["merges"])

    # The version is recorded in Redis and in the index.
    assert state.id_version() == ID_VERSION
    assert read_id_version(settings.index_dir) == ID_VERSION

    # Index: new ids, no old ones, one copy of the merged article (the newer), site recomputed.
    index = SearchIndex(Path(settings.index_dir))
    assert index.num_docs() == 5
    for url in (IDN, SLASH, PLAIN, MERGE_B):
        doc = index.get(article_id(url))
        assert doc is not None and doc["id"] == article_id(url), url
        assert index.get(url) == doc  # the lookup by URL normalises like the id
    for url in (IDN, SLASH, MERGE_A):
        assert index.get(article_id_v1(url)) is None
    merged = index.get(article_id(MERGE_A))
    assert merged is not None and merged["title"] == "Merged story, newer copy"
    from newsflow.search import SearchRequest

    hits = index.search(SearchRequest(site=["xn--fa-hia.example"], collapse=False)).hits
    assert [h.doc["id"] for h in hits] == [article_id(IDN)]
    assert index.search(SearchRequest(site=["fass.example"])).total == 0
    # `site` recomputed from what was fetched: the copy is no longer filed under the claimed site.
    assert index.search(SearchRequest(site=["victim.example"])).total == 0
    assert [h.doc["url"] for h in index.search(SearchRequest(site=["copycat.example"])).hits] == [COPY]

    # Ledger, trace and dead letter under the new ids; the old ones gone.
    for url in (IDN, SLASH, SEEN_ONLY, PURGED, DEAD):
        entry = state.ledger(article_id(url))
        assert entry is not None and entry.url == url, url
        assert state.ledger(article_id_v1(url)) is None
    assert state.trace(article_id(IDN)) and not state.trace(article_id_v1(IDN))
    record = state.dead_letter_record(article_id(DEAD))
    assert record is not None and record["article_id"] == article_id(DEAD)
    assert record["payload"]["id"] == article_id(DEAD)
    assert [d["article_id"] for d in state.dead_letters(stage="fetch", reason="http_404")] == [article_id(DEAD)]

    # Cluster assignment follows the article.
    r = connect(settings.state_url)
    assert r.exists(f"{settings.key_prefix}cluster:doc:{article_id(IDN)}")

    # Seen-set: new ids; a recrawl of what was seen enqueues nothing (no duplicate).
    seen = stores.crawl.seen_at([article_id(u) for u in (IDN, SLASH, PLAIN, MERGE_A, SEEN_ONLY)])
    assert all(t is not None for t in seen)
    assert stores.crawl.seen_at([article_id_v1(u) for u in (IDN, SLASH, MERGE_A, SEEN_ONLY)]) == [None] * 4
    assert _recrawl(settings, stores, [IDN, SLASH, PLAIN, MERGE_A, MERGE_B, SEEN_ONLY]) == []

    # The purged URL and the purged site stay purged under the new rule.
    tombs = stores.tombstones
    assert tombs.dead_among([article_id(PURGED)], [site_of_url(PURGED)]) == {article_id(PURGED)}
    assert article_id_v1(PURGED) not in tombs.listing()["ids"]
    assert tombs.dead_among([article_id(PURGED_SITE_URL)], [site_of_url(PURGED_SITE_URL)])
    refused = run_cli("ingest", "--json", PURGED, PURGED_SITE_URL, env=env)
    assert refused.returncode == 1, refused.stderr
    assert [(o["url"], o["reason"]) for o in json.loads(refused.stdout)] == [
        (PURGED, "purged"),
        (PURGED_SITE_URL, "purged"),
    ]
    log = (Path(settings.data_dir) / "tombstones.jsonl").read_text(encoding="utf-8")
    assert article_id(PURGED) in log  # the audit log replays to the new ids too

    # A second run (an interrupted one, resumed) changes nothing.
    again = run_cli("migrate", "--json", env=env)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert second["from_version"] == ID_VERSION
    assert all(c["rekeyed"] == 0 and c["merged"] == 0 for c in second["stores"].values()), second["stores"]
    assert SearchIndex(Path(settings.index_dir)).num_docs() == 5


def test_fresh_deployment_records_the_version(env: dict[str, str], settings: Settings) -> None:
    from newsflow.migrate import ensure_current, stored_id_version

    stores = Stores(connect(settings.state_url), settings)
    assert stored_id_version(settings, stores) is None
    assert ensure_current(settings, stores) == ID_VERSION
    assert stores.state.id_version() == ID_VERSION
    SearchIndex(Path(settings.index_dir))  # a new index is marked with this code's version
    assert read_id_version(settings.index_dir) == ID_VERSION
    status = run_cli("status", "--json", env=env)
    if status.returncode == 0:  # the broker is the session's; workers need not run
        assert json.loads(status.stdout)["article_ids"]["migrate_needed"] is False


def test_newer_ids_are_refused(settings: Settings) -> None:
    from newsflow.migrate import IdVersionError, ensure_current

    stores = Stores(connect(settings.state_url), dataclasses.replace(settings))
    stores.state.set_id_version(ID_VERSION + 1)
    with pytest.raises(IdVersionError, match="upgrade newsflow"):
        ensure_current(settings, stores)


def test_redis_that_lost_its_record_takes_the_indexs_version(settings: Settings) -> None:
    """Redis restarted empty (no persistence) while workers held articles: they wrote ledger entries
    again before anything wrote the id version. The index still records it; no migrate is asked for,
    and ingest and the workers go on (they refused before, and restarted workers crashed in a loop)."""
    from newsflow.migrate import ensure_current, stored_id_version

    index = SearchIndex(Path(settings.index_dir))  # marked with this code's version
    index.upsert_batch([_doc("https://news.example/kept-1", "Kept", "2026-01-02T03:04:05Z")])
    index.close()
    stores = Stores(connect(settings.state_url), settings)
    url = "https://news.example/in-flight-2"
    stores.state.record(article_id(url), url, "cleaned", "clean")  # a worker's write after the wipe
    assert stores.state.id_version() is None
    assert stored_id_version(settings, stores) == ID_VERSION
    assert ensure_current(settings, stores) == ID_VERSION
    assert stores.state.id_version() == ID_VERSION
