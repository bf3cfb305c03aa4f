"""The WARC archive's parts without workers: rolling, torn records, the CDX index, retention,
reading other crawlers' WARC files (newsflow/archive, docs/archive.md)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from config.settings import load_settings
from newsflow.archive.backfill import read_pages
from newsflow.archive.cdx import cdx_path, read_cdx
from newsflow.archive.reader import CaptureUnavailable, file_size, iter_records, read_capture
from newsflow.archive.reprocess import diff
from newsflow.archive.retention import list_files, parse_name, prune, stats
from newsflow.archive.writer import ArchiveWriter, host_tag
from newsflow.urls import article_id
from tests.conftest import ROOT, SEED_HTML

HTML = SEED_HTML.read_bytes()
HEADERS = {"Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip", "X-Thing": "1"}


def _write(w: ArchiveWriter, i: int, body: bytes = HTML) -> Any:
    return w.write(f"http://example.com/a/{i}", 200, HEADERS, body + str(i).encode(), meta={"article_id": f"id{i}"})


def test_settings_default_dir_and_off() -> None:
    s = load_settings({"NEWSFLOW_DATA_DIR": "/srv/nf/"})
    assert s.archive_path == "/srv/nf/warc"
    assert load_settings({"NEWSFLOW_ARCHIVE_DIR": ""}).archive_path == ""
    assert load_settings({"NEWSFLOW_ARCHIVE_DIR": "/mnt/warc"}).archive_path == "/mnt/warc"


def test_capture_reads_back_by_offset(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    caps = [_write(w, i) for i in range(5)]
    w.close()
    got = read_capture(tmp_path, caps[3].to_dict())
    assert got.url == "http://example.com/a/3" and got.status == 200
    assert got.body == HTML + b"3"
    # The body is stored decoded: the transfer headers it no longer matches are kept renamed.
    assert got.header("X-Archive-Orig-Content-Encoding") == "gzip" and got.header("Content-Encoding") is None
    assert got.header("Content-Length") == str(len(got.body)) and got.header("X-Thing") == "1"
    assert got.digest.startswith("sha1:") and got.digest == caps[3].digest
    page = got.page()
    assert page.encoding == "utf-8" and "Stoltenberg" in page.html
    # The CDX index: one line per response, with what a lookup needs.
    (warc,) = [f.path for f in list_files(tmp_path)]
    entries = list(read_cdx(cdx_path(warc)))
    assert [e["offset"] for e in entries] == [c.offset for c in caps]
    assert entries[3]["url"] == "http://example.com/a/3" and entries[3]["id"] == "id3"
    assert entries[3]["length"] == caps[3].length and entries[3]["mime"] == "text/html"
    # Every file starts with a warcinfo record; each fetch is response, request, metadata.
    types = [t for t, _o, _l in iter_records(warc)]
    assert types == ["warcinfo"] + ["response", "request", "metadata"] * 5


def test_records_are_valid_warc_with_digests_and_one_line_headers(tmp_path: Path) -> None:
    """The records newsflow writes itself read back through warcio with their digests checked; a
    header value carrying a line break cannot add a header of its own."""
    from warcio.archiveiterator import ArchiveIterator

    from newsflow.archive.writer import build_records

    records, digest = build_records(
        "http://example.com/a?x=1\r\nWARC-Type: forged", 200,
        {"Content-Type": "text/html", "X-Note": "caf\u00e9"}, HTML,
        {"User-Agent": "newsflow-test"}, {"article_id": "id", "hints": {"section": "a b"}},
        "2026-12-01T00:00:00.000000Z",
    )  # fmt: skip
    got, content = [], []
    for record in ArchiveIterator(io.BytesIO(b"".join(records)), check_digests=True):
        got.append(record)
        content.append(record.content_stream().read())  # a stream: read while iterating
    assert [r.rec_type for r in got] == ["response", "request", "metadata"]
    response, request, _ = got
    assert [k for k, _ in response.rec_headers.headers].count("WARC-Type") == 1
    assert b"\r\nWARC-Type: forged" not in records[0]  # the break became a space inside the URI's value
    assert response.rec_headers.get_header("WARC-Payload-Digest") == digest
    assert response.http_headers.get_header("X-Note") == "caf%C3%A9"  # as warcio encodes non-ASCII
    assert content[0] == HTML
    record_id = response.rec_headers.get_header("WARC-Record-ID")
    assert request.rec_headers.get_header("WARC-Concurrent-To") == record_id
    assert request.http_headers.get_header("User-Agent") == "newsflow-test"
    assert content[2] == b'article_id: id\r\nhints: {"section":"a b"}\r\n'


def test_headers_warcio_cannot_encode_still_give_a_capture() -> None:
    """A non-ASCII header name, a non-ASCII value beside parameters, bytes that did not decode (lone
    surrogates), a non-ASCII path: warcio's encoder raises on each, and the page went unarchived."""
    from warcio.archiveiterator import ArchiveIterator

    from newsflow.archive.writer import build_records

    headers = {"Content-Type": "text/html", "X-Caf\u00e9": "1", "X-V": 'wert \u00fc; a="\u00e4"', "X-S": "a\udcff"}
    records, digest = build_records(
        "http://example.com/caf\u00e9/\udcff", 200, headers, HTML,
        {"User-Agent": "newsflow-test"}, {"article_id": "id"}, "2026-12-01T00:00:00.000000Z",
    )  # fmt: skip
    got, content = [], []
    for record in ArchiveIterator(io.BytesIO(b"".join(records)), check_digests=True):
        got.append(record)
        content.append(record.content_stream().read())
    assert [r.rec_type for r in got] == ["response", "request", "metadata"]
    response, request, _ = got
    assert content[0] == HTML and response.rec_headers.get_header("WARC-Payload-Digest") == digest
    assert response.http_headers.get_header("X-Caf%C3%A9") == "1"
    assert response.http_headers.get_header("X-V") == 'wert %C3%BC; a="%C3%A4"'
    assert response.http_headers.get_header("X-S") == "a%ED%B3%BF"
    assert request.http_headers.protocol == "GET"
    assert request.http_headers.statusline == "/caf%C3%A9/%ED%B3%BF HTTP/1.1"


def test_missing_and_bad_locations(tmp_path: Path) -> None:
    with pytest.raises(CaptureUnavailable) as missing:
        read_capture(tmp_path, {"file": "nope.warc.gz", "offset": 0, "length": 10})
    assert missing.value.reason == "missing_file"
    w = ArchiveWriter(tmp_path)
    cap = _write(w, 1)
    w.close()
    with pytest.raises(CaptureUnavailable) as wrong:  # the request record is not a response
        read_capture(tmp_path, {"file": cap.file, "offset": cap.offset + cap.length, "length": 200})
    assert wrong.value.reason in ("not_response", "unreadable")
    with pytest.raises(CaptureUnavailable):
        read_capture(tmp_path, {"file": "../etc/passwd", "offset": 0, "length": 10})


def test_rolls_by_size_and_age_names_sort_by_time(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, roll_bytes=20_000)
    caps = [_write(w, i) for i in range(12)]
    w.close()
    files = list_files(tmp_path)
    assert len(files) >= 3
    assert [f.name for f in files] == sorted(f.name for f in files)
    assert all(f.size <= 20_000 + 5_000 for f in files)  # one fetch may cross the limit, never more
    stamp, host, pid = parse_name(files[0].name) or ("", "", "")
    assert host == host_tag() and pid == str(os.getpid()) and stamp.isdigit()
    assert sum(len(list(read_cdx(cdx_path(f.path)))) for f in files) == 12
    for c in caps:
        assert read_capture(tmp_path, c.to_dict()).body.startswith(HTML)
    aged = ArchiveWriter(tmp_path / "aged", roll_s=0.05)
    _write(aged, 1)
    time.sleep(0.1)
    _write(aged, 2)
    aged.close()
    assert len(list_files(tmp_path / "aged")) == 2


def test_threads_interleave_whole_records(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, roll_bytes=200_000)
    caps: list[Any] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(25):
            c = _write(w, t * 100 + i)
            with lock:
                caps.append(c)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    assert len(caps) == 200
    for c in caps:
        assert read_capture(tmp_path, c.to_dict()).body.startswith(HTML)
    records = sum(1 for f in list_files(tmp_path) for _ in iter_records(f.path))
    assert records == len(list_files(tmp_path)) + 3 * 200


def test_torn_last_record_spoils_nothing_before_it(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    caps = [_write(w, i) for i in range(4)]
    w.close()
    path = tmp_path / caps[0].file
    data = path.read_bytes()
    path.write_bytes(data[: caps[3].offset + caps[3].length // 2])  # killed inside the last response
    with open(cdx_path(path), "ab") as f:
        f.write(b'{"url":"http://example.com/a/9","offs')  # and inside its index line
    for c in caps[:3]:
        assert read_capture(tmp_path, c.to_dict()).body.startswith(HTML)
    with pytest.raises(CaptureUnavailable):
        read_capture(tmp_path, caps[3].to_dict())
    assert len(list(iter_records(path))) == 1 + 3 * 3  # the complete records, then a quiet stop
    assert len(list(read_cdx(cdx_path(path)))) == 4  # the torn line is skipped
    assert stats(tmp_path)["files"] == 1


_KILLED_WRITER = """
import sys, threading
from newsflow.archive.writer import ArchiveWriter
w = ArchiveWriter(sys.argv[1], roll_bytes=300_000)
body = open(sys.argv[2], "rb").read() * 20
def run(t):
    i = 0
    while True:
        i += 1
        w.write(f"http://example.com/{t}/{i}", 200, {"Content-Type": "text/html"}, body, meta={"article_id": str(i)})
for t in range(4):
    threading.Thread(target=run, args=(t,), daemon=True).start()
print("writing", flush=True)
threading.Event().wait()
"""


def test_writer_killed_mid_write_leaves_a_readable_archive(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED_WRITER), str(tmp_path), str(SEED_HTML)],
        cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"writing"
    time.sleep(0.8)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    files = list_files(tmp_path)
    assert files, "the writer wrote nothing"
    n = 0
    for f in files:
        for entry in read_cdx(cdx_path(f.path)):  # every indexed capture reads back whole
            got = read_capture(tmp_path, {"file": f.name, **entry})
            assert len(got.body) == len(HTML) * 20
            n += 1
        end = 0
        for _t, offset, length in iter_records(f.path):
            end = offset + length
        assert end <= file_size(f.path)  # at most the last record is torn
    assert n > 10


def test_retention_oldest_first_busy_files_kept(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path, roll_bytes=1)  # a file per fetch
    for i in range(6):
        _write(w, i)
    w.close()
    files = list_files(tmp_path)
    assert len(files) == 6
    now = time.time()
    for age_days, f in zip([10, 9, 8, 3, 2, 0], files, strict=True):  # oldest name, oldest file
        os.utime(f.path, (now - age_days * 86400, now - age_days * 86400))
    assert prune(tmp_path, max_age_s=7 * 86400, dry_run=True, now=now) == [f.name for f in files[:3]]
    assert len(list_files(tmp_path)) == 6
    assert prune(tmp_path, max_age_s=7 * 86400, now=now) == [f.name for f in files[:3]]
    assert not cdx_path(files[0].path).exists()
    left = list_files(tmp_path)
    size = sum(f.size for f in left)
    # Under a size limit the oldest go first; the newest is still being written (busy) and stays.
    removed = prune(tmp_path, max_bytes=size // 3, busy_s=86400, now=now)
    assert removed == [left[0].name, left[1].name]
    assert [f.name for f in list_files(tmp_path)] == [left[2].name]


def test_stats(tmp_path: Path) -> None:
    w = ArchiveWriter(tmp_path)
    for i in range(3):
        _write(w, i)
    w.close()
    out = stats(tmp_path)
    assert out["files"] == 1 and out["captures"] == 3 and out["bytes"] > 0
    assert out["files_per_host"] == {host_tag(): 1}


# --- backfill ---------------------------------------------------------------------------------------


def _response(w: WARCWriter, url: str, status: str, ctype: str, body: bytes, date: str) -> Any:
    http = StatusAndHeaders(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
    return w.create_warc_record(
        url, "response", payload=io.BytesIO(body), length=len(body), http_headers=http,
        warc_headers_dict={"WARC-Date": date},
    )  # fmt: skip


def build_test_warc(path: Path, pages: list[tuple[str, bytes]], date: str = "2024-03-01T10:00:00Z") -> dict[str, Any]:
    """A WARC as another crawler writes it: warcinfo, HTML 200 pages (each with its request), a
    revisit, a 404, a PDF, a noindex page, and a truncated last record. Returns what is in it."""
    buf = io.BytesIO()
    w = WARCWriter(buf, gzip=True)
    w.write_record(w.create_warcinfo_record(path.name, {"software": "some-other-crawler/1.0"}))
    for url, body in pages:
        resp = _response(w, url, "200 OK", "text/html; charset=utf-8", body, date)
        req = w.create_warc_record(
            url, "request",
            http_headers=StatusAndHeaders("GET / HTTP/1.1", [("Host", "x")], is_http_request=True, protocol="HTTP/1.1"),
        )  # fmt: skip
        w.write_request_response_pair(req, resp)
    first_url, first_body = pages[0]
    digest = _response(w, first_url, "200 OK", "text/html", first_body, date).rec_headers.get_header(
        "WARC-Payload-Digest"
    )
    w.write_record(w.create_revisit_record(first_url, digest, first_url, date))
    w.write_record(_response(w, "https://news.example/gone", "404 Not Found", "text/html", b"<html>gone</html>", date))
    w.write_record(_response(w, "https://news.example/a.pdf", "200 OK", "application/pdf", b"%PDF-1.7\n" * 50, date))
    noindex = pages[0][1].replace(b"<head>", b'<head><meta name="robots" content="noindex">', 1)
    w.write_record(_response(w, "https://news.example/private", "200 OK", "text/html", noindex, date))
    before_last = buf.tell()
    w.write_record(_response(w, "https://news.example/cut", "200 OK", "text/html", pages[-1][1] * 3, date))
    data = buf.getvalue()
    path.write_bytes(data[: before_last + (len(data) - before_last) // 2])  # the file ends inside it
    return {"html_200": [u for u, _b in pages], "revisit": 1, "not_200": 1, "not_html": 1, "noindex": 1, "truncated": 1}


def _pages(n: int) -> list[tuple[str, bytes]]:
    text = HTML.decode("utf-8")
    return [
        (f"https://news.example/story/{i}?utm_source=x", text.replace("</title>", f" {i}</title>").encode())
        for i in range(n)
    ]


def test_backfill_reader_counts_every_other_record_by_reason(tmp_path: Path) -> None:
    warc = tmp_path / "other.warc.gz"
    want = build_test_warc(warc, _pages(3))
    counts: Counter[str] = Counter()
    positions: list[int] = []
    got = list(read_pages(warc, counts, max_bytes=10**7, noindex_bot="newsflow", on_bytes=positions.append))
    assert [p.url for p in got] == want["html_200"]
    # Ids follow the live fetch's normalisation (tracking parameters dropped), dates are the capture's.
    assert [p.article_id for p in got] == [article_id(u) for u in want["html_200"]]
    assert got[0].article_id == article_id("https://news.example/story/0")
    assert got[0].page.fetched_at == "2024-03-01T10:00:00+00:00" and got[0].page.final_url == want["html_200"][0]
    for key in ("revisit", "not_200", "not_html", "noindex", "truncated"):
        assert counts[key] == want[key], (key, counts)
    assert counts["other_record"] == 1 + 3  # warcinfo and the requests
    assert positions == sorted(positions) and positions[-1] <= warc.stat().st_size
    # Where each page is: readable again later without scanning (reprocess of a backfilled page).
    again = read_capture("/nonexistent", got[1].capture.to_dict())
    assert again.url == want["html_200"][1] and b"Stoltenberg" in again.body


def test_backfill_filters_and_malformed_files(tmp_path: Path) -> None:
    warc = tmp_path / "other.warc.gz"
    build_test_warc(warc, _pages(4))
    counts: Counter[str] = Counter()
    got = list(read_pages(warc, counts, max_bytes=10**7, url_filter=re.compile(r"/story/[02]\b")))
    assert [p.url.split("?")[0][-1] for p in got] == ["0", "2"] and counts["url_filter"] >= 2
    counts = Counter()
    assert not list(read_pages(warc, counts, max_bytes=10**7, since=_dt("2025-01-01")))
    assert counts["before_since"] >= 4
    counts = Counter()
    assert len(list(read_pages(warc, counts, max_bytes=1000))) == 0 and counts["too_large"] >= 4
    junk = tmp_path / "junk.warc.gz"
    junk.write_bytes(b"this is not a WARC file at all\r\n" * 10)
    counts = Counter()
    assert not list(read_pages(junk, counts, max_bytes=10**7))
    assert counts["malformed"] >= 1 and not counts["too_large"]


def _dt(text: str) -> Any:
    from newsflow.archive.backfill import parse_warc_date

    return parse_warc_date(text + "T00:00:00Z")


def test_diff_fields() -> None:
    old = {"title": "A  title", "body": "x", "author": None, "published": "2024-01-01T00:00:00+00:00"}
    assert diff(old, {"title": "A title", "body": "x", "author": "", "published": "2024-01-01T00:00:00Z"}) == []
    assert diff(old, {"title": "B", "body": "y", "author": "Z", "published": "2024-01-02"}) == [
        "body", "title", "author", "published",
    ]  # fmt: skip


def test_feeder_chunks_waits_for_room_and_drops_purged(redis_url: str) -> None:
    import redis as redis_lib

    from newsflow.archive.feed import CHUNK, Feeder
    from newsflow.pipeline import Message
    from newsflow.state import State
    from tests.conftest import suite_settings

    settings = suite_settings(key_prefix="nf-feeder-test:", archive_max_clean_queue=10)
    state = State(redis_lib.Redis.from_url(redis_url), settings)
    page = read_capture(*_one_capture())
    sent: list[list[Message]] = []
    depths = iter([50, 50, 3] + [0] * 100)  # the clean queue drains after two looks
    slept: list[float] = []
    feeder = Feeder(
        state, settings, send_clean=sent.append, clean_queue_depth=lambda: next(depths), reason="test",
        drop=lambda msgs: {msgs[0].id}, keep_sent=True, sleep=slept.append,
    )  # fmt: skip
    n = CHUNK + 7
    for i in range(n):
        feeder.feed(Message.new(f"http://example.com/{i}", f"{i:032x}"), page.page(), {"file": "f", "offset": 1})
    assert len(sent) == 1 and len(sent[0]) == CHUNK - 1 and len(slept) == 2  # one chunk so far, after waiting
    feeder.flush()
    assert [len(c) for c in sent] == [CHUNK - 1, 6] and feeder.sent == n - 2 and feeder.dropped == 2
    msg = sent[0][0]
    assert msg.blob and state.get_blob(msg.blob) == page.page().html  # parked as a fetch parks it
    assert msg.fetch and msg.fetch["capture"] == {"file": "f", "offset": 1}
    entry = state.ledger(msg.id)
    assert entry is not None and entry.state == "fetched" and entry.reason == "test"
    assert [aid for _u, aid, _t in feeder.sent_items] == [m.id for c in sent for m in c]


def _one_capture() -> tuple[Path, dict[str, Any]]:
    import tempfile

    where = Path(tempfile.mkdtemp())
    w = ArchiveWriter(where)
    cap = _write(w, 1)
    w.close()
    return where, cap.to_dict()
