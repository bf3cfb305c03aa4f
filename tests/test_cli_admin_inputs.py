"""Bad input to `newsflow reindex`, `backup` and `purge`, as an outside tester typed it: one clear line
naming the file (and line) and the fix, never a traceback; and a bad file loses nothing else: the live
index, the tombstones in Redis and their audit log stay as they were."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from config.settings import use_settings
from newsflow.search import SearchIndex
from newsflow.search.engine import count_docs
from newsflow.state import connect
from tests.conftest import ROOT, TEST_ENV, one_error, suite_settings
from tests.test_search import sample_docs
from workers.cli.admin import purge, reindex

PREFIX = "nftest-cli-admin-inputs:"  # tombstones of these tests, apart from everyone else's
SITES_KEY = f"{PREFIX}tombstone:sites"
GOOD = json.dumps(sample_docs()[0])
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def cli(data_dir: Path | str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **TEST_ENV, "NEWSFLOW_DATA_DIR": str(data_dir), "NEWSFLOW_KEY_PREFIX": PREFIX,
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def in_process(data_dir: Path, command: click.Command, *args: str) -> subprocess.CompletedProcess[str]:
    """`command` run in this process (no interpreter start: the many bad-file cases stay fast), its
    result shaped like `cli`'s. An exception other than the CLI's own exit is re-raised: a traceback."""
    env = {**TEST_ENV, "NEWSFLOW_DATA_DIR": str(data_dir), "NEWSFLOW_KEY_PREFIX": PREFIX}
    try:
        result = CliRunner().invoke(command, list(args), env=env)
    finally:
        use_settings(suite_settings())  # settings_or_exit made the run's settings the process's own
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def indexed(tmp_path: Path) -> Path:
    """A data dir whose index holds `sample_docs()`."""
    ix = SearchIndex(tmp_path / "index")
    ix.upsert_batch(sample_docs())
    ix.close()
    return tmp_path


@pytest.fixture
def data_dir(indexed: Path, redis_url: str) -> Path:
    """`indexed`, with no tombstone under this module's prefix."""
    connect(redis_url).delete(f"{PREFIX}tombstone:ids", SITES_KEY)
    return indexed


def assert_index_untouched(data_dir: Path) -> None:
    assert count_docs(data_dir / "index") == len(sample_docs())
    leftovers = [p.name for p in data_dir.iterdir() if p.name.startswith(("index.rebuild-", "index.old-"))]
    assert leftovers == []


# --- reindex --from: a file that is not a backup changes nothing ---------------------------------------
AID = "0123456789abcdef" * 2
REC = "is not a newsflow backup record:"
BAD_BACKUPS = {
    "empty.jsonl": (b"", "holds no article"),
    "blank.jsonl": (b"\n  \n", "holds no article"),
    "other.jsonl": (b'{"id":"abc"}\n', f'line 1 {REC} its "id" "abc" is not an article id'),
    "object.jsonl": (b"{}\n", f'line 1 {REC} no "id"'),
    "array.jsonl": (b"[1,2]\n", f"line 1 {REC} it is a JSON array, not an article object"),
    "no-url.jsonl": (json.dumps({"id": AID}).encode(), f'line 1 {REC} no article "url"'),
    "truncated.jsonl": (f"{GOOD}\n{GOOD[:40]}\n".encode(), f"line 2 {REC} it is not JSON"),
    "later.jsonl": (f"{GOOD}\n{GOOD}\n\n{{}}\n".encode(), f"line 4 {REC}"),
    "bad-field.jsonl": (json.dumps({**sample_docs()[1], "title": 5}).encode(), "line 1 cannot be indexed"),
    "image.png": (PNG, f"line 1 {REC} it is not UTF-8 text"),
    "plain.jsonl.gz": (GOOD.encode() + b"\n", "is not gzip-compressed though its name ends in .gz"),
    "cut.jsonl.gz": (gzip.compress((GOOD + "\n").encode() * 50)[:200], "cannot read"),
}


@pytest.mark.integration
@pytest.mark.parametrize("name", list(BAD_BACKUPS))
def test_reindex_refuses_a_file_that_is_not_a_backup_and_keeps_the_index(data_dir: Path, name: str) -> None:
    content, says = BAD_BACKUPS[name]
    bad = data_dir / name
    bad.write_bytes(content)
    proc = in_process(data_dir, reindex, "--from", str(bad), "--json")
    line = one_error(proc, code=1)
    assert f"{bad} {says}" in line or (str(bad) in line and says in line), line
    assert "left as it was" in line and proc.stdout == ""
    assert_index_untouched(data_dir)


@pytest.mark.integration
def test_reindex_from_an_image_through_the_real_command(data_dir: Path) -> None:
    image = data_dir / "photo.png"
    image.write_bytes(PNG)
    line = one_error(cli(data_dir, "reindex", "--from", str(image)), code=1)
    assert f"{image} line 1 is not a newsflow backup record: it is not UTF-8 text" in line
    assert_index_untouched(data_dir)


@pytest.mark.integration
def test_backup_to_stdout_restores_and_refuses_json_with_it(data_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    proc = cli(data_dir, "backup", "-", cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (work / "-").exists()  # '-' is stdout, as in `ingest --file -`
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(d["id"] for d in sample_docs())
    saved = tmp_path / "saved.jsonl"
    saved.write_text(proc.stdout)
    restored = cli(data_dir, "reindex", "--from", str(saved), "--json")
    assert restored.returncode == 0, restored.stderr[-2000:]
    assert json.loads(restored.stdout)["indexed"] == len(sample_docs())
    assert_index_untouched(data_dir)
    # --json would print its summary into the backup itself.
    line = one_error(cli(data_dir, "backup", "-", "--json", cwd=work), code=2)
    assert "--json" in line and "'-'" in line
    assert not (work / "-").exists()


@pytest.mark.parametrize(
    ("out", "says"),
    [("/nonexistent-dir/x.jsonl", "create /nonexistent-dir first"), ("/proc/version", "pass a path you can write to")],
)
def test_backup_to_an_unwritable_path_says_so(indexed: Path, out: str, says: str) -> None:
    line = one_error(cli(indexed, "backup", out), code=1)
    assert f"cannot write the backup to {out}" in line and says in line


def test_backup_json_summary(indexed: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl.gz"
    proc = cli(indexed, "backup", str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"written": len(sample_docs()), "path": str(out)}
    assert len(gzip.decompress(out.read_bytes()).splitlines()) == len(sample_docs())


# --- purge: the audit log first; --replay refuses what is not a tombstone change ----------------------
@pytest.mark.integration
def test_purge_with_an_unwritable_data_dir_changes_nothing(redis_url: str) -> None:
    r = connect(redis_url)
    r.delete(SITES_KEY)
    line = one_error(cli("/proc/nope", "purge", "--site", "x.example", "--json"), code=1)
    assert "tombstone audit log /proc/nope/tombstones.jsonl" in line and "NEWSFLOW_DATA_DIR" in line
    assert not r.hexists(SITES_KEY, "x.example")  # no takedown the audit log would miss


ADD_SITE = b'{"op": "add", "site": "replayed.example"}\n'


@pytest.mark.integration
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (PNG, "line 1 is not a tombstone change: it is not UTF-8 text"),
        (b"{}\n", 'line 1 is not a tombstone change: its "op" is not "add" or "lift"'),
        (ADD_SITE + b"[1]\n", "line 2 is not a tombstone change: it is not a JSON object"),
        (ADD_SITE + b'{"op": "add"}\n', 'line 2 is not a tombstone change: it names neither an article "id" nor'),
        (b'{"op": "add", "id": "abc"}\n', 'line 1 is not a tombstone change: its "id" "abc" is not an article id'),
    ],
)
def test_purge_replay_refuses_what_is_not_an_audit_log(data_dir: Path, redis_url: str, content: bytes,
                                                       says: str) -> None:  # fmt: skip
    bad = data_dir / "log.jsonl"
    bad.write_bytes(content)
    proc = in_process(data_dir, purge, "--replay", str(bad), "--json")
    line = one_error(proc, code=1)
    assert f"{bad} {says}" in line and "nothing was re-applied" in line
    assert proc.stdout == ""
    assert not connect(redis_url).hexists(SITES_KEY, "replayed.example")  # checked whole before any is applied


@pytest.mark.integration
def test_purge_replay_json_prints_a_result(data_dir: Path, redis_url: str) -> None:
    log = data_dir / "log.jsonl"
    log.write_text(f'{{"op": "add", "site": "replayed.example", "reason": "spam"}}\n{{"op": "add", "id": "{AID}"}}\n')
    proc = cli(data_dir, "purge", "--replay", str(log), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"replayed": 2, "path": str(log)}
    assert connect(redis_url).hexists(SITES_KEY, "replayed.example")
    assert not (data_dir / "tombstones.jsonl").exists()  # a replay does not log itself again
