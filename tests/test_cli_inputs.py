"""Bad input to the CLI, as an outside tester typed it: each is one clear line and the exit status
its --help documents (2 for usage), never a traceback, never a silent success; and a purge by site
works while the index worker runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from newsflow.pipeline import LAST, Message
from tests.conftest import ROOT, TEST_ENV, one_error, run_cli, suite_settings, wait_for
from workers.cli.common import json_line
from workers.runtime import free_port

DEAD_REDIS = {"NEWSFLOW_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # refused before Redis is needed
PREFIX = "nftest-cli-inputs:"  # dead letters of these tests, apart from everyone else's


def cli_bytes(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """The CLI's raw output, undecoded: what a script reading it gets."""
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=ROOT, input=stdin, capture_output=True,
                          env={**os.environ, **TEST_ENV, **(env or {})}, timeout=120)  # fmt: skip


# --- 1. purge --site: an empty or odd host is a usage error, found before anything is touched --------
@pytest.mark.parametrize("site", ["", "   ", "https://spam.example/", "spam.example:8080", "spam example", "a..b"])
def test_purge_refuses_a_site_that_is_not_a_host(site: str) -> None:
    # Against a dead Redis: exit 2 (not 3) shows the check comes before any tombstone or index write.
    line = one_error(run_cli("purge", "--site", site, env=DEAD_REDIS))
    assert "--site" in line and "spam.example" in line  # names the option and shows a good value


# --- 2. purge with the index worker running ---------------------------------------------------------
def _doc(msg: Message, site: str) -> dict[str, Any]:
    return {
        "id": msg.id, "url": msg.url, "final_url": msg.url, "title": f"Takedown test {msg.id}", "language": "en",
        "body": "The harbour council met on Tuesday to settle the budget. " * 20, "site_name": site,
        "entities": {"person": [], "organization": [], "place": []}, "keywords": [],
    }  # fmt: skip


@pytest.mark.integration
def test_site_purge_removes_the_articles_while_the_index_worker_runs(deployment: Any) -> None:
    from newsflow.dispatch import send
    from newsflow.search import open_index
    from newsflow.stores import Stores
    from workers.app import app

    settings = deployment.settings
    state = Stores.from_settings(settings).state
    stamp = int(time.time() * 1000)
    site = f"takedown-{stamp}.example"
    msgs = [Message.new(f"https://{site}/story/{i}", f"{stamp:016x}{i:016x}") for i in range(3)]
    unknown = f"{stamp:016x}{99:016x}"  # an id newsflow never saw: no URL anywhere
    for msg in msgs:  # indexed by the real worker, which then holds the index's writer lock
        state.put_doc(msg.id, _doc(msg, site))
        state.record(msg.id, msg.url, "enriched", "enrich")
        send(app, LAST, msg)

    def ledger_state(aid: str) -> tuple[str, str] | None:
        entry = state.ledger(aid)
        return (entry.state, entry.reason) if entry else None

    assert wait_for(lambda: all(ledger_state(m.id) == ("indexed", "") for m in msgs), 60)
    try:
        proc = run_cli("purge", "--site", site.upper(), unknown, "--json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout)
        assert out["mode"] == "queued" and out["sites"] == [site]
        assert set(out["purged"]) == {m.id for m in msgs} | {unknown}
        # The worker deletes them and records them dead `purged`: no `bad_payload` for a missing URL.
        assert wait_for(lambda: all(ledger_state(m.id) == ("dead", "purged") for m in msgs), 60), [
            ledger_state(m.id) for m in msgs
        ]
        index = open_index(settings, create=False)
        assert wait_for(lambda: all(index.get(m.id) is None for m in msgs), 30)
        assert index.ids_matching("", site=site) == []
        for aid in [m.id for m in msgs] + [unknown]:
            assert state.dead_letter_record(aid) is None, state.dead_letter_record(aid)
        assert ledger_state(unknown) == ("dead", "purged")  # settled by the CLI itself
        tombstoned = json.loads(run_cli("purge", "--list", "--json").stdout)["ids"]
        assert all(tombstoned[m.id]["url"] == m.url for m in msgs)  # with their real URLs
    finally:  # the tombstones are shared with the rest of the session
        run_cli("purge", "--lift", "--site", site, *[m.id for m in msgs], unknown)


# --- 3 and 5. ingest -f: unreadable files, undecodable bytes, and JSON that stays UTF-8 -------------
@pytest.mark.parametrize(("path", "what"), [("/nonexistent/urls.txt", "no such file"), ("/tmp", "is a directory")])
def test_ingest_file_that_cannot_be_read_is_a_usage_error(path: str, what: str) -> None:
    line = one_error(run_cli("ingest", "-f", path, env=DEAD_REDIS))
    assert path in line and what in line


@pytest.mark.parametrize("from_stdin", [False, True])
def test_ingest_non_utf8_url_list_gives_valid_utf8_json(redis_url: str, tmp_path: Path, from_stdin: bool) -> None:
    data = b"# a comment\nhttp://\xff.com/\n"
    urls = tmp_path / "urls.txt"
    urls.write_bytes(data)
    args = ("ingest", "-f", "-", "--json") if from_stdin else ("ingest", "-f", str(urls), "--json")
    proc = cli_bytes(*args, stdin=data)
    assert proc.returncode == 1, proc.stderr[-2000:]  # the one URL is refused: exit 1, as for any bad URL
    assert b"Traceback" not in proc.stderr
    text = proc.stdout.decode("utf-8")  # strict: a raw 0xFF byte would raise here
    assert "\\udcff" in text
    (row,) = json.loads(text)
    assert row["url"] == "http://\udcff.com/" and row["state"] == "dead" and row["reason"].startswith("bad_url")
    plain = cli_bytes(*args[:-1], stdin=data, env={"LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8:strict"})
    assert plain.returncode == 1 and b"Traceback" not in plain.stderr and b"\\udcff" in plain.stdout


def test_json_line_escapes_lone_surrogates_and_keeps_other_text() -> None:
    value = {"url": "http://\udcff.com/", "title": "Zürich \u2014 news", "n": [1, None]}
    line = json_line(value)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert "Zürich \u2014 news" in line and "\\udcff" in line
    line.encode("utf-8")  # strict
    assert json.loads(line) == value


# --- 4. crawl --sources: unreadable files are usage errors; an error names its place once -----------
def test_crawl_sources_file_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[[source]]\nname = "caf\xe9"\n')
    line = one_error(run_cli("crawl", "--sources", str(latin1), "--all", env=DEAD_REDIS))
    assert "line 2" in line and "UTF-8" in line
    line = one_error(run_cli("crawl", "--sources", str(tmp_path), "--all", env=DEAD_REDIS))
    assert "is a directory" in line
    bad = tmp_path / "bad6.toml"
    bad.write_text('[[source]]\nname = "u"\nkind = "urls"\nlocation = "u.txt"\nschedule = "@every 0s"\n')
    line = one_error(run_cli("crawl", "--sources", str(bad), "--all", env=DEAD_REDIS))
    assert line.count("source #1 (u)") == 1 and line.count(str(bad)) == 1, line
    assert "shorter than one second" in line


# --- 6. ingest --wait: a timeout says so; no worker online is said at the start ----------------------
@pytest.mark.integration
def test_ingest_wait_timeout_is_said_and_a_missing_worker_warned(redis_url: str) -> None:
    from newsflow.state import connect

    # A database of its own: no worker consumes its queues, whatever else this session runs.
    lonely = redis_url.rsplit("/", 1)[0] + "/13"
    url = f"https://never-fetched.example/{time.time_ns()}"
    try:
        proc = run_cli("ingest", url, "--wait", "--timeout", "1", "--json", env={"NEWSFLOW_REDIS_URL": lonely})
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert "warning: no worker is online" in proc.stderr
        assert "timed out after 1 s: 1 of 1 article(s) still in the pipeline" in proc.stderr
        (row,) = json.loads(proc.stdout)
        assert row["state"] == "pending" and row["timed_out"] is True
    finally:  # take our message off that database's queue again (never a FLUSH)
        r = connect(lonely)
        for key in r.scan_iter("fetch*"):
            if r.type(key) == b"list":
                raws: list[bytes] = r.lrange(key, 0, -1)  # type: ignore[assignment]
                for raw in raws:
                    if url.encode() in raw:
                        r.lrem(key, 0, raw)  # type: ignore[arg-type]


# --- 7. deadletters replay: unknown ids, unknown stages, dry-run wording ----------------------------
def test_deadletters_replay_stage_must_be_a_pipeline_stage() -> None:
    line = one_error(run_cli("deadletters", "replay", "--stage", "bogus", env=DEAD_REDIS))
    assert "bogus" in line and "fetch" in line and "index" in line
    assert run_cli("deadletters", "list", "--stage", "bogus", env=DEAD_REDIS).returncode == 2


@pytest.mark.integration
def test_deadletters_replay_unknown_id_fails_and_dry_run_says_would(redis_url: str) -> None:
    from newsflow.state import State, connect

    env = {"NEWSFLOW_KEY_PREFIX": PREFIX}
    state = State(connect(redis_url), suite_settings(key_prefix=PREFIX))
    msg = Message.new(f"https://gone.example/{time.time_ns()}", f"{time.time_ns():032x}"[-32:])
    state.dead_letter(msg.id, msg.url, "fetch", "http_404", "not found", msg.to_wire())
    try:
        missing = run_cli("deadletters", "replay", "--id", "nonexistent", "--json", env=env)
        assert missing.returncode == 1, missing.stderr[-2000:]
        (row,) = json.loads(missing.stdout)
        assert row["article_id"] == "nonexistent" and row["replay_stage"] is None and "no dead letter" in row["note"]

        dry = run_cli("deadletters", "replay", "--id", msg.id, "--dry-run", "--json", env=env)
        assert dry.returncode == 0, dry.stderr[-2000:]
        (row,) = json.loads(dry.stdout)
        assert row["note"] == "would re-enter at fetch" and "re-entered" not in row["note"]
        assert state.dead_letter_record(msg.id) is not None  # a dry run changes nothing
    finally:
        state.clear_dead(msg.id)


# --- 8. search --page: no deeper than the HTTP API ---------------------------------------------------
def test_search_page_is_bounded_like_the_api() -> None:
    from newsflow.search.backend import MAX_PAGE

    line = one_error(run_cli("search", "x", "--page", str(MAX_PAGE + 1), env=DEAD_REDIS))
    assert f"between 1 and {MAX_PAGE}" in line


# --- 9. extract: a missing title is "(no title)", never "None"; no article is an error -------------------
def test_extract_untitled_page_prints_no_none(tmp_path: Path) -> None:
    page = tmp_path / "untitled.html"
    text = "The council met on Tuesday and approved the new flood wall after a long debate. " * 6
    page.write_text(f"<html><body><article><p>{text}</p><p>{text}</p></article></body></html>")
    proc = run_cli("extract", str(page), env=DEAD_REDIS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "None" not in proc.stdout and "(no title)" in proc.stdout
    row = json.loads(run_cli("extract", str(page), "--jsonl", env=DEAD_REDIS).stdout)
    assert row["title"] is None and "flood wall" in row["body"]


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"", "no article: the main text has 0 characters"), (b"\x7fELF\x02\x01\x01" + bytes(2000), "not HTML")],
)
def test_extract_says_when_a_file_gives_no_article(tmp_path: Path, content: bytes, says: str) -> None:
    """An empty or binary file is what the clean (or fetch) stage would refuse: an error, exit 1."""
    bad, good = tmp_path / "bad.html", tmp_path / "good.html"
    bad.write_bytes(content)
    good.write_text(
        "<html><body><article><p>" + "A long enough paragraph of news text. " * 12 + "</p></article></body></html>"
    )
    proc = run_cli("extract", str(bad), str(good), env=DEAD_REDIS)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{bad}: error: {says}" in proc.stdout and "A long enough paragraph" in proc.stdout  # the others still
    rows = [json.loads(line) for line in run_cli("extract", "--json", str(bad), env=DEAD_REDIS).stdout.splitlines()]
    assert rows == [{"path": str(bad), "error": rows[0]["error"]}] and says in rows[0]["error"]


def test_ingest_refuses_a_binary_url_list(tmp_path: Path) -> None:
    binary = tmp_path / "urls.bin"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00http://a.example/\n" * 20)
    line = one_error(run_cli("ingest", "-f", str(binary), env=DEAD_REDIS))
    assert "is not text (it holds NUL bytes)" in line and "one per line" in line


def test_ingest_report_escapes_control_characters_and_cuts_long_lines(redis_url: str, tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_bytes(b"http://a.example/\x1b[31mred\n" + b"http://b.example/" + b"x" * 5000 + b"\x01\n")
    proc = cli_bytes("ingest", "-f", str(urls))
    assert proc.returncode == 1 and b"Traceback" not in proc.stderr
    out = proc.stdout.decode("utf-8")
    assert "\x1b" not in out and "\\x1b[31mred" in out  # escaped: it cannot colour the terminal
    assert all(len(line) < 800 for line in out.splitlines()), [len(line) for line in out.splitlines()]


def test_a_second_up_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    """Two `newsflow up` on one data dir would run two index writers on one index."""
    import os

    from workers.cli.pipeline import hold_data_dir

    fd = hold_data_dir(tmp_path)  # what the first `up` holds while it runs
    try:
        proc = run_cli("up", env={"NEWSFLOW_DATA_DIR": str(tmp_path)}, timeout=60)
    finally:
        os.close(fd)
    assert proc.returncode == 1, proc.stderr
    assert f"another `newsflow up` (pid {os.getpid()}) runs on the data dir" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.glob("redis*"))  # refused before starting anything


@pytest.mark.integration
def test_backfill_of_files_that_are_not_warc_says_so(redis_url: str, tmp_path: Path) -> None:
    junk = tmp_path / "notes.warc.gz"
    junk.write_bytes(b"this is not a WARC file at all\r\n" * 10)
    proc = run_cli("backfill", str(junk), "--json", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"{junk}: no readable WARC record (is it a WARC file?)" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["unreadable_files"] == [str(junk)] and report["sent"] == 0


@pytest.mark.integration
def test_trace_shows_the_retries_of_an_article(redis_url: str) -> None:
    """A retry is no transition: State keeps it apart from the trace, and `newsflow trace` shows it
    among the transitions, by time (a 429 or a timeout no longer hides behind "discovered")."""
    from newsflow.state import State
    from newsflow.urls import article_id

    url = f"https://retries.example/{time.time_ns()}"
    aid = article_id(url)
    state = State.from_settings(suite_settings())
    state.record(aid, url, "discovered", "submit")
    state.note_retry(aid, "fetch", "http_429", "HTTP 429 Too Many Requests", 1, 7.5, "fetch-1@host")
    assert [e["state"] for e in state.trace(aid)] == ["discovered"]  # the trace keeps transitions only
    proc = run_cli("trace", aid)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if " retry " in line)
    assert "fetch" in row and "http_429 attempt 1, again in 7.5 s: HTTP 429 Too Many Requests" in row
    now = next(line for line in proc.stdout.splitlines() if line.startswith("now: "))
    assert now.startswith("now: discovered at submit") and "; retrying at fetch (http_429, attempt 1" in now
    report = json.loads(run_cli("trace", aid, "--json").stdout)
    assert [(r["stage"], r["reason"], r["attempt"]) for r in report["retries"]] == [("fetch", "http_429", 1)]


def test_ingest_rows_keep_the_order_the_urls_were_given() -> None:
    from workers.cli.pipeline import _in_input_order
    from workers.client import Outcome

    given = ["http://a.example/1", "not a url", "http://a.example/2", "ftp://x/"]
    queued = [Outcome(u, "id", "queued", None, None) for u in (given[0], given[2])]
    refused = [Outcome(u, None, "dead", "submit", "bad_url") for u in (given[1], given[3])]
    assert [o.url for o in _in_input_order([*queued, *refused], given)] == given


def test_the_trace_summary_says_retrying_only_after_the_last_transition() -> None:
    from workers.cli.ops import _retrying

    retry = {"t": 200.0, "stage": "clean", "reason": "redis", "detail": "", "attempt": 2, "countdown_s": 4}
    ledger = {"state": "fetched", "stage": "fetch", "updated_at": 100.0}
    assert _retrying({"ledger": ledger, "retries": [retry]}) == "; retrying at clean (redis, attempt 2, again in 4 s)"
    assert _retrying({"ledger": {**ledger, "updated_at": 300.0}, "retries": [retry]}) == ""  # it moved on since
    assert _retrying({"ledger": {**ledger, "state": "dead"}, "retries": [retry]}) == ""  # settled
    assert _retrying({"ledger": ledger, "retries": []}) == ""
