"""Errors that are not bugs must not be dead-lettered `internal_error` (which means "a bug in newsflow").

Four classes of input, each met with several inputs of its kind:
1. odd charsets: unknown, bogus, non-web or contradicting declarations, bytes that do not fit them,
   UTF-16 without a BOM, NUL-heavy bodies -> decoded with a fallback, or a clear permanent reason;
2. hostile JSON-LD: thousands deep, huge, NaN/Infinity/1e999, non-dict roots, @id cycles, floods
   -> skipped within bounds (newsflow.extract.jsonld), the page extracted from the rest;
3. a full disk under the index -> TransientError `disk_full`, retried slowly (also on a real tmpfs);
4. absurd numbers in a payload -> `bad_payload`, or clamped, before any stage uses them.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import requests

from config.defaults import Settings
from newsflow.errors import PermanentError, TransientError
from newsflow.extract import extract_article, jsonld
from newsflow.fetcher import decode_html, fetch_page, make_session
from newsflow.pipeline import Message, stage
from newsflow.polite.hosts import interval_s
from newsflow.testing import MemoryState, MemoryStores, RecordingOutbox, Retried
from tasks.base import StageContext, backoff_s, run_stage
from tasks.clean import build_doc
from tests.conftest import need
from tests.hostile.cases import strict_fetch_settings
from tests.hostile.server import ARTICLE_EN, RU_TEXT, RouteServer, article_in, send

MAX_HTML = 10 * 1024 * 1024
MIN_BODY = 200


def _message(url: str = "https://news.example/a") -> Message:
    return Message.new(url, "a" * 32)


def _build(html: str) -> dict[str, Any] | PermanentError:
    """build_doc's verdict: the document, or the PermanentError it raised. Anything else escapes."""
    try:
        return build_doc(_message(), html, MAX_HTML, MIN_BODY)
    except PermanentError as exc:
        return exc


# --- 1. odd charsets ----------------------------------------------------------------------------

RU_PAGE = article_in(RU_TEXT * 3, "Совет утвердил бюджет")
RU = "Городской совет"
EN = "flood wall"
FR_TEXT = (
    "À Paris, la grève a paralysé le métro. Les usagers, très fâchés, ont dû marcher. « C'est à n'y "
    "rien comprendre », a dit une élève de première année, qui préfère le vélo. "
)
FR_PAGE = article_in(FR_TEXT, "Grève à Paris")
IT_PAGE = article_in(
    "Il presidente ha dichiarato che la città è pronta. Però i cittadini sono preoccupati perché "
    "l'economia è più debole. Così è stato deciso di rinviare la votazione a lunedì. ",
    "La città è pronta",
).replace("<html>", '<html lang="it">')
LT_PAGE = article_in(
    "Lietuvos prezidentas pareiškė, kad šalies ekonomika auga, o gyventojų skaičius mažėja. "
    "Ūkininkai protestavo prie vyriausybės rūmų. ",
    "Ūkininkų protestas",
).replace("<html>", '<html lang="lt">')
DE_TEXT = "Die Bürgermeisterin äußerte sich zu den Vorwürfen: Es sei für alle Beteiligten schwierig gewesen. "
# A UTF-8 page with a few stray Latin-1 bytes (an ad or a template pasted in): still UTF-8.
DE_STRAY = article_in(DE_TEXT * 3, "Über die Wahl").encode("utf-8").replace(b"(3)", b"(\xe9\xfc)")


def _en(meta: str = "", extra: str = "") -> bytes:
    """The English article (UTF-8) with `meta` in place of its own <meta charset> and `extra` text."""
    html = ARTICLE_EN.replace("<meta charset='utf-8'>", meta)
    return html.replace("</article>", f"<p>{extra}</p></article>").encode("utf-8")


@dataclass(frozen=True)
class Page:
    name: str
    body: bytes
    ctype: str
    expect: str  # "ok" or the PermanentError reason of fetch_page
    must_contain: str = ""
    must_not_contain: str = ""


UTF7_TRICK = "+ADw-script+AD4-alert(1)+ADw-/script+AD4-"  # "<script>alert(1)</script>" in UTF-7
PAGES = [
    Page("header_x_unknown", _en(), "text/html; charset=x-unknown", "ok", EN),
    Page("header_utf7", _en(extra=UTF7_TRICK), "text/html; charset=utf-7", "ok", UTF7_TRICK, "<script>alert"),
    Page("meta_utf7", _en("<meta charset='utf-7'>", UTF7_TRICK), "text/html", "ok", UTF7_TRICK, "<script>alert"),
    Page("header_charset_blank", _en(), 'text/html; charset=" "', "ok", EN),
    Page("header_charset_empty", _en(), "text/html; charset=", "ok", EN),
    Page("header_undefined_codec", _en(), "text/html; charset=undefined", "ok", EN),
    Page("meta_undefined_codec", _en("<meta charset='undefined'>"), "text/html", "ok", EN),
    Page("meta_idna", _en("<meta http-equiv='Content-Type' content='text/html; charset=idna'>"), "text/html", "ok",
         "Harbour council"),
    Page("meta_punycode", _en("<meta charset=punycode>", "caf\u00e9"), "text/html", "ok", "café"),
    Page("meta_unicode_escape", _en("<meta charset=unicode_escape>", "a \\N{oops} b"), "text/html", "ok", "\\N{oops}"),
    Page("meta_no_python_codec", _en("<meta charset='x-mac-klingon'>"), "text/html", "ok", EN),
    Page("meta_base64_codec", _en("<meta charset='base64'>"), "text/html", "ok", EN),
    Page("mixed_declarations", RU_PAGE.replace("<head>", "<head><meta charset='x-unknown'><meta charset='utf-8'>")
         .encode("cp1251"), "text/html; charset=utf-8", "ok", RU),
    Page("header_and_meta_disagree", RU_PAGE.replace("<head>", "<head><meta charset='koi8-r'>").encode("cp1251"),
         "text/html; charset=windows-1251", "ok", RU),
    Page("bytes_invalid_in_utf8", _en(extra="caf\u00e9").replace(b"caf\xc3\xa9", b"caf\xe9\xff\xfe\x80"),
         "text/html; charset=utf-8", "ok", EN),
    Page("bytes_invalid_in_shift_jis", _en(extra="x").replace(b"<p>x", b"<p>\x81\xff\xa0\xfd"),
         "text/html; charset=Shift_JIS", "ok", EN),
    # Legacy bytes declared UTF-8: the page's language (or windows-1252, the web's default) breaks
    # the detector's ties; French is not Czech in windows-1250.
    Page("latin1_declared_utf8", FR_PAGE.encode("latin-1"), "text/html; charset=utf-8", "ok", "très fâchés"),
    Page("latin1_declared_utf8_lang_it", IT_PAGE.encode("latin-1"), "text/html; charset=utf-8", "ok", "a lunedì"),
    Page("cp1257_declared_utf8_lang_lt", LT_PAGE.encode("cp1257"), "text/html; charset=utf-8", "ok", "pareiškė"),
    Page("utf8_with_stray_latin1", DE_STRAY, "text/html; charset=utf-8", "ok", "Bürgermeisterin", "BĂĽ"),
    Page("utf16be_no_bom_declared_utf16", RU_PAGE.encode("utf-16-be"), "text/html; charset=utf-16", "ok", RU),
    # Undeclared (or declared 8-bit) UTF-16 without a BOM is told by its NULs, on one side of every pair.
    Page("utf16le_no_bom_undeclared", RU_PAGE.encode("utf-16-le"), "text/html", "ok", RU),
    Page("utf16be_no_bom_declared_latin1", RU_PAGE.encode("utf-16-be"), "text/html; charset=iso-8859-1", "ok", RU),
    Page("utf16be_no_bom_declared_utf16le", RU_PAGE.encode("utf-16-be"), "text/html; charset=utf-16le", "ok", RU),
    Page("meta_utf16_over_utf8", _en("<meta charset='utf-16'>"), "text/html", "ok", EN),
    Page("header_utf16_over_utf8", _en(), "text/html; charset=utf-16", "ok", EN),
    Page("utf32_declared", RU_PAGE.encode("utf-32-le"), "text/html; charset=utf-32le", "ok", RU),
    Page("nul_heavy_utf8", _en().replace(b" ", b"\x00"), "text/html; charset=utf-8", "not_html"),
    Page("nul_heavy_no_type", b"<html><body>" + b"\x00\x00\x00article\x00" * 500, "", "not_html"),
    Page("all_nuls", b"\x00" * 10_000, "text/html", "not_html"),
]  # fmt: skip


def _route(page: Page) -> Callable[[BaseHTTPRequestHandler], None]:
    return lambda h: send(h, 200, page.body, page.ctype)


@pytest.fixture(scope="module")
def charset_server() -> Iterator[RouteServer]:
    with RouteServer({f"/{p.name}": _route(p) for p in PAGES}) as server:
        yield server


@pytest.fixture(scope="module")
def fetch_setup(charset_server: RouteServer) -> Iterator[tuple[Settings, requests.Session]]:
    settings = strict_fetch_settings(f"127.0.0.1:{charset_server.port}")
    session = make_session(settings)
    yield settings, session
    session.close()


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_odd_charsets_decode_or_fail_clearly(
    page: Page, charset_server: RouteServer, fetch_setup: tuple[Settings, requests.Session]
) -> None:
    settings, session = fetch_setup
    url = f"{charset_server.base_url}/{page.name}"
    if page.expect != "ok":
        with pytest.raises(PermanentError) as info:
            fetch_page(url, settings, session)
        assert info.value.reason == page.expect
        return
    result = fetch_page(url, settings, session)
    assert page.must_contain in result.html, (result.encoding, result.html[:300])
    if page.must_not_contain:
        assert page.must_not_contain not in result.html
    doc = _build(result.html)
    assert isinstance(doc, dict), doc  # indexed: these pages all carry an article
    assert page.must_contain.split()[0] in f"{doc['title']} {doc['body']}"


_BODIES = [
    _en(),
    RU_PAGE.encode("cp1251"),
    RU_PAGE.encode("utf-16-le"),
    b"\xff\xfe\x00\x80\x81\xc3(" * 300,
    b"+ADw-html+AD4-+AGE-" * 100,
    b"~{<:Ky2;S{#,~}" * 100,
    b"\\N{x}\\u12\\U0011ffff" * 100,
    b"\x00<\x00h" * 200 + b"\x01",
]


def _all_codec_names() -> list[str]:
    import encodings.aliases

    names = set(encodings.aliases.aliases.values()) | set(encodings.aliases.aliases)
    return sorted(names | {"undefined", "idna", "punycode", "x-unknown", " ", "", "utf-7", "mbcs", "oem"})


def test_decode_html_never_raises_whatever_the_declaration() -> None:
    """Every codec name Python knows (and some it does not), declared in the header and in <meta>,
    over bytes that fit and bytes that do not: a str comes back, never an exception."""
    for name in _all_codec_names():
        for body in _BODIES:
            html, enc = decode_html(body, name)
            assert isinstance(html, str) and isinstance(enc, str)
            meta = b"<meta charset='" + name.encode("ascii", "ignore") + b"'>"
            html, enc = decode_html(meta + body, None)
            assert isinstance(html, str) and enc not in ("idna", "punycode", "undefined", "utf-7")


@pytest.mark.parametrize(
    "html",
    [
        '<?xml version="1.0" encoding="x-unknown"?>' + ARTICLE_EN,
        '<?xml version="1.0" encoding="utf-16"?>' + RU_PAGE,
        '<?xml encoding="utf-7"?>' + ARTICLE_EN.replace("<head>", "<head><meta charset='utf-16'>"),
        ARTICLE_EN.replace("<meta charset='utf-8'>", "<meta charset='undefined'>"),
        RU_PAGE.replace("<head>", "<head><meta http-equiv=content-type content='text/html; charset=iso-2022-jp'>"),
        "\ufeff" + ARTICLE_EN,
        ARTICLE_EN.replace(" ", "\x00"),
        ARTICLE_EN.replace("flood", "fl\ufffd\ufffdood"),
        "\x00" * 5000,
        "\ufffd" * 5000,
    ],
    ids=["xml_unknown", "xml_utf16", "xml_utf7_meta_utf16", "meta_undefined", "meta_iso2022", "bom_char", "nul_chars",
         "replacement_chars", "only_nuls", "only_replacement"],
)  # fmt: skip
def test_build_doc_takes_any_declaration(html: str) -> None:
    doc = _build(html)
    assert isinstance(doc, dict) or doc.reason == "no_article"


# --- 2. hostile JSON-LD -------------------------------------------------------------------------

GOOD_LD = json.dumps(
    {"@context": "https://schema.org", "@type": "NewsArticle", "headline": "Harbour council approves flood wall",
     "author": {"@type": "Person", "name": "Jane Roe"}, "datePublished": "2024-03-05T08:00:00Z"}
)  # fmt: skip
DEPTH = 5000


def _ld_page(*blocks: str) -> str:
    scripts = "".join(f'<script type="application/ld+json">{b}</script>' for b in blocks)
    return ARTICLE_EN.replace("</head>", scripts + "</head>")


HOSTILE_LD = {
    "list_5000_deep": "[" * DEPTH + "]" * DEPTH,
    "dict_5000_deep": '{"a":' * DEPTH + "1" + "}" * DEPTH,
    "graph_5000_deep": '{"@graph":' * DEPTH + "{}" + "}" * DEPTH,
    "graph_lists_3000_deep": '{"@graph":[' * 3000 + "1" + "]}" * 3000,
    "deep_author": '{"@type":"NewsArticle","author":' + '{"name":' * DEPTH + '"x"' + "}" * DEPTH + "}",
    "deep_date": '{"@type":"NewsArticle","datePublished":' + "[" * DEPTH + '"2020-01-01"' + "]" * DEPTH + "}",
    "deep_in_strings_is_fine_but_huge": '{"x":"' + "[" * 2_000_000 + '"}',
    "huge_headline": '{"@type":"NewsArticle","headline":"' + "x" * 3_000_000 + '"}',
    "huge_graph": '{"@graph":[' + ",".join(['{"@type":"Product","name":"p"}'] * 60_000) + "]}",
    "nan_infinity": '{"@type":"NewsArticle","headline":NaN,"author":Infinity,"datePublished":-Infinity}',
    "overflowing_numbers": '{"@type":"NewsArticle","headline":1e999,"author":{"name":-1e999},"wordCount":1e999}',
    "root_string": '"just a string"',
    "root_number": "42",
    "root_null": "null",
    "root_true": "true",
    "root_mixed_list": '[1, "x", null, [[]], {"@type": "Thing"}]',
    "odd_types": '{"@type":{"a":[1]},"headline":{"@id":[]},"author":[[{"name":[{"name":7}]}]]}',
    "id_reference_cycle": json.dumps({"@graph": [
        {"@id": "#a", "@type": "NewsArticle", "author": {"@id": "#b"}, "isPartOf": {"@id": "#a"}},
        {"@id": "#b", "@type": "Person", "worksFor": {"@id": "#a"}, "sameAs": {"@id": "#b"}},
    ]}),
    "not_json": "{'@type': 'NewsArticle', headline: }",
    # A string never closed, full of escaped quotes: the depth check once tried every quote as the
    # start of a string again (quadratic: 200 kB held a clean worker for its whole time limit).
    "unterminated_escaped_quotes": '{"headline": "' + '\\"' * 100_000,
}  # fmt: skip


# Hostile blocks that parse into an article object of their own: being first, they are the article.
CLAIMS_ARTICLE = {"nan_infinity", "overflowing_numbers", "id_reference_cycle"}


@pytest.mark.parametrize("hostile_first", [True, False], ids=["hostile_first", "good_first"])
@pytest.mark.parametrize("name", list(HOSTILE_LD))
def test_hostile_jsonld_is_skipped_within_bounds(name: str, hostile_first: bool) -> None:
    """The hostile block is skipped or ignored; the page's good JSON-LD next to it is still read."""
    blocks = (HOSTILE_LD[name], GOOD_LD) if hostile_first else (GOOD_LD, HOSTILE_LD[name])
    html = _ld_page(*blocks)
    started = time.monotonic()
    article = extract_article(html, "https://news.example/a")
    assert EN in article.body
    doc = _build(html)
    assert isinstance(doc, dict)
    if not (hostile_first and name in CLAIMS_ARTICLE):
        assert article.author == "Jane Roe" and doc["author"] == "Jane Roe", article.provenance
    assert time.monotonic() - started < 30  # two extractions of a page of up to 3 MB on a shared core


@pytest.mark.parametrize("name", ["list_5000_deep", "dict_5000_deep", "nan_infinity", "root_string", "huge_headline"])
def test_hostile_jsonld_alone_still_extracts(name: str) -> None:
    doc = _build(_ld_page(HOSTILE_LD[name]))
    assert isinstance(doc, dict) and doc["title"] == "Harbour council approves flood wall"


def test_jsonld_bounds() -> None:
    assert jsonld.parse_block("[" * (jsonld.MAX_DEPTH + 1) + "]" * (jsonld.MAX_DEPTH + 1)) is None
    assert jsonld.parse_block("[" * jsonld.MAX_DEPTH + "]" * jsonld.MAX_DEPTH) is not None
    assert jsonld.parse_block('{"s": "' + "[{" * 500 + '"}') == {"s": "[{" * 500}  # brackets in strings
    assert jsonld.parse_block('{"s": "\\"[[[[\\"", "n": [1]}') == {"s": '"[[[["', "n": [1]}
    # A string left open runs to the end of the text: its brackets are a string's, not nesting.
    assert jsonld.nesting_within('["' + '\\"' * 50 + "[[[[[[", limit=1)
    assert not jsonld.nesting_within('[["\\\\"]]', limit=1)  # an escaped backslash ends no string early
    assert jsonld.parse_block('["' + "x" * jsonld.MAX_BLOCK_CHARS + '"]') is None
    assert jsonld.parse_block('{"a": NaN, "b": Infinity, "c": 1e999, "d": 1.5}') == {
        "a": None, "b": None, "c": None, "d": 1.5}  # fmt: skip
    many = "".join(f'<script type="application/ld+json">{GOOD_LD}</script>' for _ in range(jsonld.MAX_BLOCKS + 50))
    from newsflow.extract.htmlprep import parse_html

    tree = parse_html(ARTICLE_EN.replace("</head>", many + "</head>"))
    assert tree is not None
    assert len(jsonld.load_objects(tree)) == jsonld.MAX_BLOCKS
    flood = '{"@graph":[' + ",".join(["{}"] * (jsonld.MAX_OBJECTS * 2)) + "]}"
    tree = parse_html(_ld_page(flood))
    assert tree is not None and len(jsonld.load_objects(tree)) == jsonld.MAX_OBJECTS


# --- 3. a full disk under the index -------------------------------------------------------------

FULL_TEXTS = [
    OSError(errno.ENOSPC, "No space left on device"),
    ValueError('IoError { io_error: Os { code: 28, kind: StorageFull, message: "No space left on device" } }'),
    ValueError("An IO error occurred: 'No space left on device (os error 28)'"),
]


def _chained(exc: Exception) -> Exception:
    """`exc` as newsflow.search surfaces it: IndexUnavailable raised from tantivy's error."""
    from newsflow.search import IndexUnavailable

    try:
        try:
            raise exc
        except Exception as inner:
            raise IndexUnavailable(str(inner)[:20]) from inner
    except IndexUnavailable as outer:
        return outer


class _Tombs:
    def dead_among(self, ids: Any, sites: Any) -> set[str]:
        return set()


class _FakeIndex:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def upsert_batch(self, docs: Any, heap: int, delete_ids: Any = (), rejected: Any = None) -> None:
        raise self.exc


def _doc(i: int) -> dict[str, Any]:
    return {
        "id": f"{i:032x}", "url": f"https://news.example/{i}", "final_url": f"https://news.example/{i}",
        "title": f"Article {i}", "body": "Harbour council words to fill a disk with. " * 200, "language": "en",
        "site_name": "news.example", "entities": {"person": [], "organization": [], "place": []}, "keywords": [],
    }  # fmt: skip


def _index_stores(monkeypatch: pytest.MonkeyPatch, n: int) -> tuple[MemoryStores, list[Any]]:
    from newsflow.batcher import Item
    from tasks import base

    settings = Settings()
    stores = MemoryStores(settings=settings, state=MemoryState(settings=settings))
    for i in range(n):
        stores.state.put_doc(_doc(i)["id"], _doc(i))
    stores.tombstones = _Tombs()  # type: ignore[attr-defined]
    monkeypatch.setattr(base, "_stores", stores)
    return stores, [Item(_doc(i)["id"], _doc(i)["url"]) for i in range(n)]


@pytest.mark.parametrize("exc", [*FULL_TEXTS, *map(_chained, FULL_TEXTS)], ids=lambda e: type(e).__name__)
def test_enospc_is_transient_disk_full(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    from tasks import index

    stores, items = _index_stores(monkeypatch, 2)
    monkeypatch.setattr(index, "_index", _FakeIndex(exc))
    with pytest.raises(TransientError) as caught:
        index.commit_batch(items)
    assert caught.value.reason == "disk_full"
    assert caught.value.retry_after_s == index.DISK_FULL_RETRY_S
    assert all(stores.state.ledger(i.article_id) is None for i in items)  # nothing recorded indexed


@pytest.mark.parametrize(
    ("exc", "reason"),
    [(OSError(errno.EIO, "Input/output error"), "index_error"), (ValueError("os error 280"), "index_error")],
)
def test_other_io_errors_keep_their_reason(monkeypatch: pytest.MonkeyPatch, exc: Exception, reason: str) -> None:
    from newsflow.search import IndexUnavailable
    from tasks import index

    _, items = _index_stores(monkeypatch, 1)
    for raised, expected in ((exc, reason), (IndexUnavailable("writer lock held"), "index_unavailable")):
        monkeypatch.setattr(index, "_index", _FakeIndex(raised))
        with pytest.raises(TransientError) as caught:
            index.commit_batch(items)
        assert caught.value.reason == expected and caught.value.retry_after_s is None


def _run(stage_name: str, handler: Any, payload: Any, attempt: int = 0, settings: Settings | None = None) -> Any:
    settings = settings or Settings()
    stores = MemoryStores(settings=settings, state=MemoryState(settings=settings))
    ctx = StageContext(stage(stage_name), settings, stores, "w1@host", "task-1")  # type: ignore[arg-type]
    return run_stage(ctx, payload, handler, attempt, RecordingOutbox()), stores


def test_disk_full_retries_for_minutes_not_seconds() -> None:
    """Under the default settings the batch keeps retrying for well over the normal minute."""
    from tasks.index import DISK_FULL_RETRY_S

    settings = Settings()
    assert min(settings.retry_backoff_max_s, settings.visibility_timeout_s / 2) >= DISK_FULL_RETRY_S

    def full(ctx: Any, m: Message) -> None:
        raise TransientError("disk_full", "No space left on device", retry_after_s=DISK_FULL_RETRY_S)

    waited = 0.0
    for attempt in range(settings.max_retries):
        with pytest.raises(Retried) as retried:
            _run("index", full, _message().to_wire(), attempt, settings)
        assert retried.value.countdown >= DISK_FULL_RETRY_S
        waited += retried.value.countdown
    assert waited >= 5 * 60
    normal = sum(backoff_s(a, settings) for a in range(settings.max_retries))
    assert waited > 4 * normal
    outcome, stores = _run("index", full, _message().to_wire(), settings.max_retries, settings)
    assert outcome == "dead" and stores.state.dead["a" * 32]["reason"] == "disk_full"


def _mount_tmpfs(where: Path, size: str) -> None:
    need(os.geteuid() == 0 and shutil.which("mount") is not None, "mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    need(done.returncode == 0, f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")


def _unmount(where: Path) -> None:
    gc.collect()  # the index's mmaps and files go with its last reference
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], check=True)  # detached now, freed once closed


def _fill(path: Path) -> None:
    """Take every free byte of the file system under `path` (unbuffered: no write is left pending)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1024 * 1024, 64 * 1024, 4096, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    assert os.statvfs(path.parent).f_bavail == 0


def test_real_full_disk_is_disk_full_then_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real 8 MB tmpfs under a real index: full -> `disk_full`; space freed -> the next batch commits."""
    from newsflow.search import open_index
    from tasks import index

    top = Path(tempfile.mkdtemp(prefix="newsflow-full-disk-"))
    _mount_tmpfs(top, "8m")
    try:
        idx = open_index(top / "index")
        monkeypatch.setattr(index, "_index", idx)
        stores, items = _index_stores(monkeypatch, 40)
        index.commit_batch(items[:1])  # the index works while there is room
        assert stores.state.ledger(items[0].article_id).state == "indexed"  # type: ignore[union-attr]
        filler = top / "filler"
        _fill(filler)
        with pytest.raises(TransientError) as caught:
            index.commit_batch(items[1:])
        assert caught.value.reason == "disk_full", caught.value
        assert stores.state.ledger(items[1].article_id) is None
        filler.unlink()  # the operator frees space
        index.commit_batch(items[1:])
        assert all(stores.state.ledger(i.article_id).state == "indexed" for i in items)  # type: ignore[union-attr]
        assert idx.num_docs() == len(items)
        idx.close()
        del idx
        monkeypatch.setattr(index, "_index", None)
    finally:
        _unmount(top)
        top.rmdir()


# --- 4. absurd numbers in a payload -------------------------------------------------------------


def _wire(**fields: Any) -> dict[str, Any]:
    return {**_message().to_wire(), **fields}


REFUSED = [
    {"slot_ms": 10**100},
    {"slot_ms": 2**63},
    {"slot_ms": -1},
    {"slot_ms": 5_000_000_000_000},  # the year 2128
    {"rate_per_s": 0},
    {"rate_per_s": 0.0},
    {"rate_per_s": -1},
    {"rate_per_s": -1e308},
    {"rate_per_s": 10**400},  # an int no float holds
    {"submitted_at": -1e300},
    {"submitted_at": 1e300},
    {"submitted_at": -1},
    {"submitted_at": 10**400},
    {"enqueued_at": 1e20},
    {"enqueued_at": -0.5},
]


@pytest.mark.parametrize("fields", REFUSED, ids=lambda f: f"{next(iter(f))}={str(next(iter(f.values())))[:12]}")
def test_absurd_numbers_are_bad_payload(fields: dict[str, Any]) -> None:
    with pytest.raises(PermanentError) as caught:
        Message.from_wire(_wire(**fields))
    assert caught.value.reason == "bad_payload"
    for name in ("fetch", "clean", "index"):  # no stage gets to see it: dead-lettered, not a bug
        outcome, stores = _run(name, lambda ctx, m: m.forward(), _wire(**fields))
        assert outcome == "dead" and stores.state.dead["a" * 32]["reason"] == "bad_payload"


@pytest.mark.parametrize(
    ("rate", "clamped"), [(1e308, 1000.0), (5000, 1000.0), (1e-300, 1e-6), (5e-324, 1e-6), (0.5, 0.5), (2, 2.0)]
)
def test_rates_are_clamped_to_what_the_limiter_honours(rate: float, clamped: float) -> None:
    msg = Message.from_wire(_wire(rate_per_s=rate))
    assert msg.rate_per_s == clamped
    interval = interval_s("news.example", Settings(), msg.rate_per_s)
    assert 1e-3 <= interval <= 1e6 and int(interval * 1000) < 2**53  # what the limiter hands to Redis


def test_sensible_numbers_pass_unchanged() -> None:
    now = time.time()
    fields = {"slot_ms": int(now * 1000), "rate_per_s": 0.25, "submitted_at": now, "enqueued_at": now, "v": 1}
    msg = Message.from_wire(_wire(**fields))
    assert (msg.slot_ms, msg.rate_per_s, msg.submitted_at, msg.enqueued_at) == (
        fields["slot_ms"], 0.25, now, now)  # fmt: skip
    assert Message.from_wire(msg.to_wire()) == msg
    assert Message.from_wire(_wire(slot_ms=0, submitted_at=0)).slot_ms == 0
