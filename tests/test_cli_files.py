"""Files handed to the CLI by an outside tester: missing, binary, gzip bombs, malformed URLs and
cron schedules in the sources file. Each is one clear error line (or the file's own error row) and
the exit status the command's --help documents, never a traceback."""

from __future__ import annotations

import gzip
import json
import subprocess
import tracemalloc
import zlib
from pathlib import Path

import pytest
from celery.schedules import crontab

from config.defaults import Settings
from newsflow.sources.config import SourcesFileError, load_sources, parse_schedule
from tests.conftest import SEED_HTML, run_cli, suite_settings
from workers.cli.extract import read_html

MB = 1024 * 1024
SOURCES = '[[source]]\nname = "known-feed"\nkind = "feed"\nlocation = "https://news.example.com/rss"\n'


def one_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single error line of a failed run: no traceback, nothing on stdout."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout == "", proc.stdout  # --json: nothing that is not JSON
    errors = [line for line in proc.stderr.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def gzip_bomb(path: Path, inflated_mb: int) -> Path:
    """`inflated_mb` MiB of HTML in a small gzip file, written without holding it all in memory."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"<p>" + b"a" * (MB - 3)
    with path.open("wb") as f:
        f.write(deflater.compress(b"<html><body>"))
        for _ in range(inflated_mb):
            f.write(deflater.compress(chunk))
        f.write(deflater.flush())
    return path


# --- reprocess --ids / --source ------------------------------------------------------------------
def test_reprocess_ids_file_missing_is_a_usage_error(tmp_path: Path) -> None:
    line = one_error(run_cli("reprocess", "--ids", str(tmp_path / "nonexist.txt"), "--dry-run", "--json"))
    assert "nonexist.txt" in line and "no such file" in line


def test_reprocess_ids_file_binary_is_a_usage_error(tmp_path: Path) -> None:
    png = tmp_path / "img.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe" * 8)
    line = one_error(run_cli("reprocess", "--ids", str(png), "--dry-run", "--json"))
    assert "img.png" in line and "not text" in line


def test_reprocess_unknown_source_is_refused_with_the_known_names(tmp_path: Path) -> None:
    sources = tmp_path / "s.toml"
    sources.write_text(SOURCES)
    env = {"NEWSFLOW_CRAWL_SOURCES_FILE": str(sources)}
    line = one_error(run_cli("reprocess", "--source", "nosuch", "--dry-run", "--json", env=env))
    assert "nosuch" in line and "known-feed" in line


def test_reprocess_declared_source_passes_the_check(tmp_path: Path) -> None:
    from workers.cli.archive import _check_source

    sources = tmp_path / "s.toml"
    sources.write_text(SOURCES)
    _check_source(suite_settings(crawl_sources_file=str(sources)), "known-feed")  # no SystemExit


# --- extract: gzip bombs, missing files, --url ---------------------------------------------------
def test_read_html_stops_a_gzip_bomb_at_the_cap(tmp_path: Path) -> None:
    bomb = gzip_bomb(tmp_path / "bomb.html.gz", 64)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="too_large"):
            read_html(bomb, 2 * MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MB  # read up to the cap, not inflated whole (64 MiB)


def test_read_html_under_the_cap_reads_gzip_and_plain(tmp_path: Path) -> None:
    page = tmp_path / "page.html.gz"
    page.write_bytes(gzip.compress(SEED_HTML.read_bytes()))
    assert read_html(page) == read_html(SEED_HTML)
    with pytest.raises(ValueError, match="too_large"):
        read_html(SEED_HTML, 1000)


def test_extract_rows_for_bomb_missing_and_directory_and_the_good_file_is_read(tmp_path: Path) -> None:
    bomb = gzip_bomb(tmp_path / "bomb.html.gz", 24)
    missing = tmp_path / "missing.html"
    proc = run_cli("extract", "--json", str(bomb), str(SEED_HTML), str(missing), str(tmp_path),
                   env={"NEWSFLOW_CLEAN_MAX_HTML_BYTES": str(2 * MB)})  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # --help: 1 if any file gave no article
    assert "Traceback" not in proc.stderr, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["path"] for r in rows] == [str(bomb), str(SEED_HTML), str(missing), str(tmp_path)]
    assert "too_large" in rows[0]["error"]
    assert rows[1]["title"] and "error" not in rows[1]
    assert rows[2]["error"] == "no such file"
    assert "directory" in rows[3]["error"]


@pytest.mark.parametrize("url", ["http://[::1:bad", "not a url", "ftp://example.com/a", "https://"])
def test_extract_bad_url_is_one_usage_error(url: str) -> None:
    line = one_error(run_cli("extract", "--json", "--url", url, str(SEED_HTML)))
    assert "--url" in line and "https://" in line


# --- the sources file: locations and cron schedules ----------------------------------------------
@pytest.mark.parametrize("location", ["http://[::1:bad/", "https://", "https://example.com:99999/rss"])
@pytest.mark.parametrize("kind", ["feed", "urls"])
def test_malformed_location_names_the_source_and_field(tmp_path: Path, location: str, kind: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'[[source]]\nname = "broken"\nkind = "{kind}"\nlocation = "{location}"\n')
    with pytest.raises(SourcesFileError, match=r"broken.*location"):
        load_sources(path, Settings())


def test_crawl_list_with_a_malformed_location_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[source]]\nname = "broken"\nkind = "feed"\nlocation = "http://[::1:bad/"\n')
    line = one_error(run_cli("crawl", "--sources", str(path), "--list", "--json"))
    assert "broken" in line and "location" in line


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("*/0 * * * *", "minute '\\*/0'.*at least 1"),
        ("99 * * * *", "minute '99'.*0-59"),
        ("foo * * * *", "minute 'foo'"),
        ("1/5 * * * *", "minute '1/5'"),
        ("5-3 * * * *", "low to high"),
        ("0 24 * * *", "hour '24'.*0-23"),
        ("0 0 0 * *", "day of month '0'.*1-31"),
        ("0 0 32 * *", "day of month '32'"),
        ("0 0 * 13 *", "month '13'.*jan-dec"),
        ("0 0 * * 7", "day of week '7'.*sun-sat"),
        ("0 0 * * fri-mon", "low to high"),
        ("0 0 * * funday", "day of week 'funday'"),
        ("0,,5 * * * *", "minute ''"),
        ("- * * * *", "minute '-'"),
    ],
)
def test_cron_schedules_beat_would_refuse_are_refused_on_load(schedule: str, message: str) -> None:
    with pytest.raises(SourcesFileError, match=f"source x.*{message}"):
        parse_schedule(schedule, "source x")


@pytest.mark.parametrize(
    "schedule",
    ["*/15 * * * *", "0 9-17 * * mon-fri", "0 0 1,15 * *", "30 6 * JAN-Mar SUN", "0-59/10 0-23 1-31 1-12 0-6",
     "59 23 31 12 6", "0 0 * * sat", "*/61 * * * *", "@weekly"],
)  # fmt: skip
def test_cron_schedules_taken_are_schedules_celery_takes(schedule: str) -> None:
    parsed = parse_schedule(schedule, "source x")
    assert parsed is not None and parsed.cron is not None
    minute, hour, day, month, weekday = parsed.cron
    crontab(minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday)
