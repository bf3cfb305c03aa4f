"""The WARC response member as the claim check (newsflow/archive/claim.py, docs/archive.md): the
HTML read back from it is exactly what the fetcher decoded, old zstd/zlib blobs are still read, and
a bad member is a lost claim check, never a wrong page."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from newsflow.archive.claim import BadMember, charset_of, faithful, html_of_member, parse_member
from newsflow.archive.writer import ArchiveWriter, build_records, gzip_member
from newsflow.errors import InputGone
from newsflow.fetcher import FetchedBytes, FetchResult, _content_type, page_from
from newsflow.pipeline import Message, stage
from newsflow.state import _ZSTD_MAGIC
from newsflow.stores import Stores
from newsflow.testing import MemoryState, RecordingOutbox
from tasks import clean, fetch
from tasks.base import StageContext, run_stage
from tests.conftest import SEED_HTML, suite_settings

SEED = SEED_HTML.read_bytes()
LATIN = "<html><head><title>Café</title></head><body><p>Ça coûte déjà très cher, señor.</p></body></html>"
CYRILLIC = "<html><head><meta charset='windows-1251'><title>Новини</title></head><body><p>Київ</p></body></html>"
CP1252 = '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252"></head><body>“Ärger”</body></html>'  # noqa: E501

# (name, response headers, body): each decoded by a different rule of `decode_html`.
PAGES: list[tuple[str, dict[str, str], bytes]] = [
    ("utf8-header", {"Content-Type": "text/html; charset=utf-8"}, SEED),
    ("latin1-header", {"Content-Type": "text/html; charset=ISO-8859-1"}, LATIN.encode("latin-1")),
    ("utf8-bom", {"Content-Type": "text/html"}, b"\xef\xbb\xbf" + LATIN.encode("utf-8")),
    ("utf16-bom", {"Content-Type": "text/html"}, b"\xff\xfe" + LATIN.encode("utf-16-le")),
    ("meta-charset", {"Content-Type": "text/html"}, CYRILLIC.encode("windows-1251")),
    ("header-wrong-meta-right", {"Content-Type": "text/html; charset=utf-8"}, CP1252.encode("windows-1252")),
    (
        "quoted-and-joined",
        {"Content-Type": 'text/html; charset="koi8-u", text/html; charset=utf-8'},
        CYRILLIC.replace("windows-1251", "koi8-u").encode("koi8-u"),
    ),
    # Valid UTF-8, but the header's charset comes first: the fetcher's mojibake is kept as it was.
    ("header-beats-utf8", {"Content-Type": "text/html; charset=windows-1251"}, "<p>Київ, Днiпро</p>".encode()),
    ("no-content-type", {}, LATIN.encode("utf-8")),
    (
        "transfer-headers",
        {
            "Content-Type": "text/html; charset=iso-8859-1",
            "Content-Encoding": "gzip",
            "Content-Length": "17",
            "Transfer-Encoding": "chunked",
        },
        LATIN.encode("latin-1"),
    ),
]


def fetched(headers: dict[str, str], body: bytes, url: str = "http://news.example/a/1") -> FetchResult:
    """The page as the fetcher makes it: content type and charset read by its own code, then decoded."""
    received: CaseInsensitiveDict[str] = CaseInsensitiveDict(headers)
    mime, charset = _content_type(SimpleNamespace(headers=received))  # type: ignore[arg-type]
    raw = FetchedBytes(url, url, 200, body, mime, charset, None, None, received)
    return page_from(raw)


def archived(where: Path, result: FetchResult) -> Any:
    w = ArchiveWriter(where)
    try:
        return w.write(result.final_url, result.status, result.headers, result.body, meta={"article_id": "x"})
    finally:
        w.close()


@pytest.mark.parametrize(("name", "headers", "body"), PAGES, ids=[p[0] for p in PAGES])
def test_the_member_gives_back_the_html_the_fetcher_decoded(
    tmp_path: Path, name: str, headers: dict[str, str], body: bytes
) -> None:
    result = fetched(headers, body)
    cap = archived(tmp_path, result)
    assert faithful(result.headers)
    # The member is exactly the bytes appended to the WARC file: one compression for both.
    with open(tmp_path / cap.file, "rb") as f:
        f.seek(cap.offset)
        assert f.read(cap.length) == cap.member and cap.member[:2] == b"\x1f\x8b"
    assert "member" not in cap.to_dict()  # the location travels in messages; the bytes do not
    assert html_of_member(cap.member) == result.html
    got = parse_member(cap.member)
    assert got.body == body and got.status == 200 and got.url == result.final_url and got.digest == cap.digest
    assert charset_of(got.header("Content-Type")) == _content_type(SimpleNamespace(headers=result.headers))[1]  # type: ignore[arg-type]


def test_charset_reading_is_the_fetcher_s() -> None:
    for value in [
        "text/html; charset=UTF-8",
        "text/html;charset='latin1'",
        'text/html; charset = "x-mac-roman"',
        "text/html; foo=bar, charset=koi8-r",
        "text/html",
        "",
        "charset=",
        "text/html; charset=ü-8",
    ]:
        assert charset_of(value) == _content_type(SimpleNamespace(headers={"Content-Type": value}))[1], value  # type: ignore[arg-type]


def test_headers_the_record_would_change_are_not_faithful() -> None:
    assert faithful({"Content-Type": "text/html; charset=utf-8", "X-Thing": "1"}) and faithful({})
    assert not faithful({"Content-Type": "text/html; charset=utf-8; title=Kyïv"})  # warcio percent-encodes it
    assert not faithful({"Content-Type": "text/html", "X-Folded": "a\r\n b"})


def _member_of(record: bytes) -> bytes:
    return gzip_member(record, 1)


def _records() -> list[bytes]:
    records, _digest = build_records(
        "http://news.example/a",
        200,
        {"Content-Type": "text/html"},
        LATIN.encode(),
        {"User-Agent": "t"},
        {"x": "1"},
        "2026-01-02T03:04:05Z",
    )
    return records


def _corrupt() -> list[tuple[str, bytes, str]]:
    resp, req, _md = _records()
    good = _member_of(resp)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    body_len = len(LATIN.encode())
    return [
        ("truncated", good[:-9], "truncated"),
        ("flipped byte", bytes(flipped), "gzip"),
        ("trailing bytes", good + b"more", "after the gzip member"),
        ("two members", good + good, "after the gzip member"),
        ("magic only", b"\x1f\x8b", "gzip"),
        ("not WARC", _member_of(b"<html>hello</html>"), "not a WARC record"),
        ("request record", _member_of(req), "not a response"),
        ("short block", _member_of(resp[:-20] + b"\r\n\r\n"), "Content-Length"),
        (
            "body length",
            _member_of(
                resp.replace(
                    f"Content-Length: {body_len}\r\n\r\n".encode(), f"Content-Length: {body_len - 1}\r\n\r\n".encode()
                )
            ),
            "body is",
        ),
        ("no HTTP", _member_of(resp.replace(b"HTTP/1.1 200 OK", b"HTTX/1.1 200 OK")), "status line"),
    ]


@pytest.mark.parametrize(("name", "member", "says"), _corrupt(), ids=[c[0] for c in _corrupt()])
def test_a_bad_member_is_a_lost_claim_check(name: str, member: bytes, says: str) -> None:
    with pytest.raises(BadMember) as caught:
        html_of_member(member)
    assert isinstance(caught.value, InputGone) and caught.value.reason == "blob_corrupt"
    assert says in caught.value.detail


def test_a_member_too_large_or_with_odd_digits_is_refused_not_a_crash() -> None:
    from newsflow.archive.claim import _length
    from newsflow.archive.reader import MAX_RECORD_BYTES

    with pytest.raises(BadMember, match="over"):  # a gzip bomb stops at a capture's size
        html_of_member(_member_of(b"WARC/1.1\r\n" + bytes(MAX_RECORD_BYTES + 1)))
    with pytest.raises(BadMember, match="bad"):  # "²".isdigit(), but int("²") raises ValueError
        _length("²", "Content-Length")


def test_the_unbroken_record_reads(tmp_path: Path) -> None:
    resp = _records()[0]
    assert html_of_member(_member_of(resp)) == fetched({"Content-Type": "text/html"}, LATIN.encode()).html


def test_memory_state_mirrors_the_member_format() -> None:
    state = MemoryState()
    result = fetched({"Content-Type": "text/html; charset=iso-8859-1"}, LATIN.encode("latin-1"))
    member = _member_of(_records()[0])
    key = state.put_blob_member("a1", member)
    state.record("a1", "http://news.example/a", "fetched", "fetch")
    assert state.get_blob(key) == LATIN and state.blob_and_state(key, "a1") == (LATIN, "fetched")
    assert state.get_blob(state.put_blob("a2", result.html)) == result.html
    state.put_blob_member("a3", member[:-5])
    with pytest.raises(BadMember):
        state.get_blob(state.blob_key("a3"))


# --- against Redis: the State, and the fetch and clean stages' handlers ---------------------------------


@pytest.fixture
def stores(redis_url: str) -> Iterator[Stores]:
    settings = suite_settings(redis_url=redis_url, key_prefix=f"claim-{uuid.uuid4().hex[:8]}:")
    made = Stores.from_settings(settings)
    yield made
    made.reset_connections()


def test_state_reads_members_and_old_blobs(stores: Stores, tmp_path: Path) -> None:
    state = stores.state
    result = fetched({"Content-Type": "text/html; charset=ISO-8859-1"}, LATIN.encode("latin-1"))
    cap = archived(tmp_path, result)
    key = state.put_blob_member("m1", cap.member)
    assert state.blob_key("m1") == key and state._r.get(key) == cap.member  # parked as is
    assert 0 < state._r.ttl(key) <= stores.settings.blob_ttl_s
    state.record("m1", result.url, "fetched", "fetch")
    assert state.get_blob(key) == result.html and state.blob_and_state(key, "m1") == (result.html, "fetched")
    old = state.put_blob("z1", result.html)  # archiving off, or written before this version
    assert state._r.get(old)[:4] == _ZSTD_MAGIC and state.get_blob(old) == result.html
    state._r.set(state.blob_key("o1"), zlib.compress(result.html.encode("utf-8")))  # older still
    assert state.get_blob(state.blob_key("o1")) == result.html
    with pytest.raises(ValueError):
        state.put_blob_member("n1", b"\x28\xb5\x2f\xfdnot gzip")


def _ctx(stores: Stores, name: str) -> StageContext:
    return StageContext(stage(name), stores.settings, stores, "claim@host", "task-claim")


def _fetch_and_clean(stores: Stores, monkeypatch: Any, writer: ArchiveWriter | None, page: FetchResult) -> Any:
    """The fetch stage's handler on `page` (no network), then the clean stage's on what it sent."""
    monkeypatch.setattr(fetch, "fetch_page", lambda url, *a, **k: page)
    monkeypatch.setattr(fetch, "archive", lambda: writer)
    msg = Message.new(page.url, uuid.uuid4().hex)
    sent = fetch.handle(_ctx(stores, "fetch"), msg)
    assert sent is not None and sent.blob
    raw = stores.state._r.get(sent.blob)
    after = clean.handle(_ctx(stores, "clean"), sent)
    assert after is not None
    doc = stores.state.get_doc(msg.id)
    assert doc is not None
    return raw, {k: v for k, v in doc.items() if k not in ("id", "capture")}


@pytest.mark.parametrize("headers", [{"Content-Type": "text/html; charset=utf-8"}, {"Content-Type": "text/html"}])
def test_clean_makes_the_same_document_from_the_member(
    stores: Stores, monkeypatch: Any, tmp_path: Path, headers: dict[str, str]
) -> None:
    page = fetched(headers, SEED, url=f"http://news.example/{uuid.uuid4().hex}")
    writer = ArchiveWriter(tmp_path)
    try:
        raw_on, doc_on = _fetch_and_clean(stores, monkeypatch, writer, page)
    finally:
        writer.close()
    raw_off, doc_off = _fetch_and_clean(stores, monkeypatch, None, page)
    assert raw_on[:2] == b"\x1f\x8b" and raw_off[:4] == _ZSTD_MAGIC  # archived: the member; off: zstd as before
    assert doc_on == doc_off and doc_on["body"]


def test_an_unfaithful_record_parks_the_html_itself(stores: Stores, monkeypatch: Any, tmp_path: Path) -> None:
    page = fetched({"Content-Type": "text/html; charset=utf-8; x=ï"}, SEED, url="http://news.example/odd")
    writer = ArchiveWriter(tmp_path)
    try:
        raw, doc = _fetch_and_clean(stores, monkeypatch, writer, page)
    finally:
        writer.close()
    assert raw[:4] == _ZSTD_MAGIC and doc["body"]
    assert list(tmp_path.glob("*.warc.gz"))  # archived all the same


def test_clean_takes_a_corrupt_member_for_lost_input(stores: Stores) -> None:
    msg = Message.new("http://news.example/corrupt", uuid.uuid4().hex)
    stores.state.record(msg.id, msg.url, "fetched", "fetch")
    key = stores.state.put_blob_member(msg.id, _member_of(_records()[0])[:-7])
    outbox = RecordingOutbox()
    outcome = run_stage(_ctx(stores, "clean"), msg.forward(blob=key).to_wire(), clean.handle, 0, outbox)
    assert outcome == "refetch" and [to for to, _m in outbox.sent] == ["fetch"]  # fetched anew, once
    entry = stores.state.ledger(msg.id)
    assert entry is not None and entry.reason == "blob_corrupt_refetch"
    again = outbox.sent[0][1]
    outcome = run_stage(_ctx(stores, "clean"), again.forward(blob=key).to_wire(), clean.handle, 0, outbox)
    assert outcome == "dead"
    letter = stores.state.dead_letter_record(msg.id)
    assert letter is not None and letter["reason"] == "blob_corrupt"
