"""Values out of range, as an outside tester gave them: a NEWSFLOW_* number or log level a command
cannot use, a duration option of nan, inf or below 0, a host name DNS cannot carry, a search QUERY that
starts with '-'. Each is refused where it is read, in one line (exit 2 for usage, `bad_url` for a URL),
never a traceback, a hang or silently another value. And `up` and `demo`: an unreachable Redis is exit 3,
and the demo neither shares a data dir with a running `up` nor takes work from the configured broker."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import click
import pytest

from config.settings import ZERO_OR_MORE, SettingsError, load_settings, number_problem
from newsflow.urls import InvalidURL, normalize_url
from tests.conftest import one_error, run_cli
from workers.runtime import free_port

DEAD_REDIS = {"NEWSFLOW_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}  # refused before Redis is needed


# --- 1. settings: numbers and the log level are checked where they are loaded ----------------------
BAD_SETTINGS = [
    ("NEWSFLOW_LOG_LEVEL", "bogus", "use one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("NEWSFLOW_LOG_LEVEL", "info ", "use one of DEBUG"),
    ("NEWSFLOW_METRICS_PORT", "99999", "use a whole number from 1 to 65535"),
    ("NEWSFLOW_API_PORT", "99999", "use a whole number from 1 to 65535"),
    ("NEWSFLOW_FLOWER_PORT", "0", "use a whole number from 1 to 65535"),
    ("NEWSFLOW_API_PORT", "-1", "use a whole number from 1 to 65535"),
    ("NEWSFLOW_INDEX_BATCH_SIZE", "-5", "use a whole number of 1 or more"),
    ("NEWSFLOW_INDEX_BATCH_SIZE", "0", "use a whole number of 1 or more"),
    ("NEWSFLOW_FETCH_TOTAL_TIMEOUT_S", "nan", "not a finite number: use a number above 0"),
    ("NEWSFLOW_FETCH_TOTAL_TIMEOUT_S", "0", "use a number above 0"),
    ("NEWSFLOW_STARTUP_TIMEOUT_S", "inf", "not a finite number"),
    ("NEWSFLOW_VISIBILITY_TIMEOUT_S", "-1", "use a whole number of 1 or more"),
    ("NEWSFLOW_ARCHIVE_MAX_AGE_DAYS", "nan", "not a finite number: use a number of 0 or more"),
    ("NEWSFLOW_ARCHIVE_MAX_BYTES", "-1", "use a whole number of 0 or more"),
    ("NEWSFLOW_WORKER_CONCURRENCY", "-1", "use a whole number of 0 or more"),
    ("NEWSFLOW_ARCHIVE_GZIP_LEVEL", "10", "use a whole number from 0 to 9"),
    ("NEWSFLOW_DRIFT_MIN_CHANGE", "1.5", "use a number from 0 to 1"),
]


@pytest.mark.parametrize(("name", "raw", "fragment"), BAD_SETTINGS)
def test_a_setting_out_of_range_names_the_variable_and_the_values_it_takes(name: str, raw: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({name: raw})
    assert str(err.value).startswith(f"{name}="), str(err.value)
    assert fragment in str(err.value)


# 0 where it means something (off, no limit, none, one per core); the ends of the port range; any case.
GOOD_SETTINGS = [
    ("NEWSFLOW_ARCHIVE_MAX_BYTES", "0"),
    ("NEWSFLOW_ARCHIVE_MAX_AGE_DAYS", "0"),
    ("NEWSFLOW_WORKER_CONCURRENCY", "0"),
    ("NEWSFLOW_MAX_RETRIES", "0"),
    ("NEWSFLOW_API_RATE_LIMIT_PER_MIN", "0"),
    ("NEWSFLOW_CLEAN_MAX_ELEMENTS", "0"),
    ("NEWSFLOW_FETCH_MAX_REDIRECTS", "0"),
    ("NEWSFLOW_WORKER_NICE", "0"),
    ("NEWSFLOW_API_PORT", "1"),
    ("NEWSFLOW_METRICS_PORT", "65535"),
    ("NEWSFLOW_INDEX_BATCH_IDLE_S", "0.05"),
    ("NEWSFLOW_LOG_LEVEL", "debug"),
    ("NEWSFLOW_LOG_LEVEL", "CRITICAL"),
]


@pytest.mark.parametrize(("name", "raw"), GOOD_SETTINGS)
def test_values_with_a_meaning_load(name: str, raw: str) -> None:
    value = getattr(load_settings({name: raw}), name.removeprefix("NEWSFLOW_").lower())
    assert value == (raw if isinstance(value, str) else float(raw))


def test_every_default_is_in_range_and_every_zero_exception_is_a_setting() -> None:
    defaults = load_settings({})
    numbers = [f.name for f in dataclasses.fields(defaults) if str(f.type) in ("int", "float")]
    assert not [name for name in numbers if number_problem(name, getattr(defaults, name))]
    assert set(numbers) >= ZERO_OR_MORE  # a renamed setting would otherwise fall back to "above 0"


def test_keyword_overrides_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="NEWSFLOW_INDEX_BATCH_SIZE=-5"):
        load_settings({}, index_batch_size=-5)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("ingest", "https://example.com/a"), {"NEWSFLOW_LOG_LEVEL": "bogus"}),
        (("metrics",), {"NEWSFLOW_METRICS_PORT": "99999"}),  # was an OverflowError traceback
        (("serve",), {"NEWSFLOW_API_PORT": "99999"}),  # was a silent listen on 34463
        (("flower", "--print"), {"NEWSFLOW_FLOWER_PORT": "99999"}),  # printed --port=99999
        (("status",), {"NEWSFLOW_INDEX_BATCH_SIZE": "-5"}),
    ],
)
def test_cli_reports_a_bad_setting_in_one_line(args: tuple[str, ...], env: dict[str, str]) -> None:
    ((name, raw),) = env.items()
    line = one_error(run_cli(*args, env={**DEAD_REDIS, **env}, timeout=30))
    assert line.startswith(f"Error: {name}="), line  # the settings loader's usage error, as for a bad Redis URL
    assert raw in line and "use " in line


# --- 2. duration options: finite, 0 or more --------------------------------------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-5", "abc", ""])
def test_the_duration_type_refuses_what_is_no_duration(value: str) -> None:
    from workers.cli.common import SECONDS

    with pytest.raises(click.BadParameter, match="use a finite number, 0 or more"):
        SECONDS.convert(value, None, None)


@pytest.mark.parametrize("value", ["0", "2.5", "300", "1e3"])
def test_the_duration_type_takes_seconds(value: str) -> None:
    from workers.cli.common import SECONDS

    assert SECONDS.convert(value, None, None) == float(value)


@pytest.mark.parametrize(
    "args",
    [
        ("ingest", "http://example.com/x", "--wait", "--timeout", "nan", "--json"),  # hung forever
        ("ingest", "http://example.com/x", "--wait", "--timeout", "-5"),
        ("ingest", "http://example.com/x", "--wait", "--timeout", "inf"),
        ("reconcile", "--older-than", "nan", "--dry-run", "--json"),  # a redis ResponseError traceback
        ("reconcile", "--older-than", "-1", "--dry-run"),
        ("demo", "--timeout", "nan"),
    ],
)
def test_a_duration_option_of_nan_inf_or_below_zero_is_a_usage_error(args: tuple[str, ...]) -> None:
    # Against a dead Redis: exit 2 (not 3) shows the option is refused before anything is sent.
    line = one_error(run_cli(*args, env=DEAD_REDIS, timeout=60))
    option = next(a for a in args if a.startswith("--") and a not in ("--wait", "--json", "--dry-run"))
    assert f"'{option}'" in line and "use a finite number, 0 or more" in line


def test_wait_refuses_a_deadline_that_never_comes() -> None:
    from workers import client

    with pytest.raises(ValueError, match="finite"):
        client.wait(None, [], float("nan"))  # type: ignore[arg-type]  # refused before the ledger is read


# --- 3. `up` and an unreachable Redis it may not start --------------------------------------------
def test_up_against_an_unreachable_remote_redis_exits_3(tmp_path: Path) -> None:
    # 127.0.0.2 is not an address `up` starts a redis-server on (only 127.0.0.1, localhost, ::1).
    env = {"NEWSFLOW_REDIS_URL": f"redis://127.0.0.2:{free_port()}/0", "NEWSFLOW_DATA_DIR": str(tmp_path)}
    line = one_error(run_cli("up", env=env, timeout=120), code=3)
    assert "no Redis answers at 127.0.0.2:" in line and "NEWSFLOW_REDIS_URL" in line


def test_only_an_unreachable_redis_is_redis_unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from workers import runtime

    monkeypatch.setattr(runtime, "redis_answers", lambda *_a, **_k: False)
    remote = runtime.Deployment(load_settings({}, redis_url="redis://redis.example:6379/0"), [])
    with pytest.raises(runtime.RedisUnreachable):
        remote.ensure_redis()
    monkeypatch.setattr(runtime, "find_redis_server", lambda: (_ for _ in ()).throw(runtime.DeploymentError("x")))
    local = runtime.Deployment(load_settings({}, data_dir=str(tmp_path)), [])
    with pytest.raises(runtime.DeploymentError) as err:  # no redis-server to start: not exit 3
        local.ensure_redis()
    assert not isinstance(err.value, runtime.RedisUnreachable)


# --- 4. host names DNS cannot carry are bad URLs at submit -----------------------------------------
LONG_LABEL = "a" * 300
BAD_HOSTS = [
    f"http://{LONG_LABEL}.com/",
    f"http://{'a' * 64}.com/",
    "http://" + ".".join(["a" * 60] * 5) + "/",  # 304 characters in labels of 60
    "http://xn--/",
    "http://-a.com/",
    "http://a-.example/",
    "http://news.-x.example/",
    "http://" + "ä" * 60 + ".de/",  # 64 characters once IDNA-encoded
]
GOOD_HOSTS = [
    f"http://{'a' * 63}.com/",
    "http://" + ".".join(["a" * 63] * 3 + ["a" * 61]) + "/",  # 253 characters
    "http://a-b.example/",
    "http://a_b.example/",
    "http://xn--fa-hia.de/",
    "http://faß.de/",
    "http://127.0.0.1:8080/",
    "http://[::1]/",
    "http://[2001:db8::1]:8443/x",
]


@pytest.mark.parametrize("url", BAD_HOSTS)
def test_a_host_dns_cannot_carry_is_an_invalid_url(url: str) -> None:
    with pytest.raises(InvalidURL, match="is not a valid"):
        normalize_url(url)


@pytest.mark.parametrize("url", GOOD_HOSTS)
def test_hosts_within_the_limits_still_normalise(url: str) -> None:
    assert normalize_url(url).startswith("http://")


@pytest.mark.integration
def test_ingest_refuses_an_over_long_label_at_submit(redis_url: str) -> None:
    proc = run_cli("ingest", f"http://{LONG_LABEL}.com/", "--json", timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    (row,) = json.loads(proc.stdout)
    assert row["state"] == "dead" and row["stage"] == "submit", row
    assert row["reason"].startswith("bad_url:") and "more than 63" in row["reason"]


# --- 5. a search QUERY that starts with '-' --------------------------------------------------------
def test_a_dashed_query_says_to_put_it_after_double_dash(tmp_path: Path) -> None:
    line = one_error(run_cli("search", "-russia nato", env={"NEWSFLOW_DATA_DIR": str(tmp_path)}, timeout=60))
    assert "No such option: -r" in line and "newsflow search [OPTIONS] -- '-russia nato'" in line


def test_search_help_shows_the_double_dash(tmp_path: Path) -> None:
    proc = run_cli("search", "--help", timeout=60)
    assert proc.returncode == 0 and 'newsflow search -- "-russia nato"' in proc.stdout


def test_a_dashed_query_after_double_dash_is_a_query(tmp_path: Path) -> None:
    # It reaches the index (none in an empty data dir), not the option parser.
    line = one_error(run_cli("search", "--", "-russia nato", env={"NEWSFLOW_DATA_DIR": str(tmp_path)}), code=1)
    assert "no index" in line


def test_a_mistyped_long_option_is_not_called_a_query(tmp_path: Path) -> None:
    line = one_error(run_cli("search", "--bogus", "nato", env={"NEWSFLOW_DATA_DIR": str(tmp_path)}, timeout=60))
    assert "--bogus" in line and "QUERY" not in line


# --- 6. the demo: the data-dir lock, and a Redis of its own ---------------------------------------
def test_demo_refuses_a_data_dir_that_up_holds(tmp_path: Path) -> None:
    from workers.cli.pipeline import hold_data_dir

    fd = hold_data_dir(tmp_path)  # what a running `up` holds
    try:
        line = one_error(run_cli("demo", env={**DEAD_REDIS, "NEWSFLOW_DATA_DIR": str(tmp_path)}, timeout=120), 1)
    finally:
        os.close(fd)
    assert f"another `newsflow up` (pid {os.getpid()}) runs on the data dir" in line
    assert not any(tmp_path.glob("redis*")) and not (tmp_path / "run" / "demo-redis").exists()


def test_up_names_the_demo_that_holds_the_data_dir(tmp_path: Path) -> None:
    from workers.cli.pipeline import hold_data_dir

    fd = hold_data_dir(tmp_path, "demo")
    try:
        line = one_error(run_cli("up", env={**DEAD_REDIS, "NEWSFLOW_DATA_DIR": str(tmp_path)}, timeout=60), 1)
    finally:
        os.close(fd)
    assert f"another `newsflow demo` (pid {os.getpid()}) runs on the data dir" in line


def test_the_demo_runs_on_its_own_redis_whatever_the_settings_say() -> None:
    from workers.cli.pipeline import _demo_settings

    shared = load_settings(
        {}, redis_url="redis://broker.example:6379/0", state_redis_url="redis://state.example:6379/1", crawl_beat=True
    )
    own = _demo_settings(shared, "redis://127.0.0.1:7000/0")
    assert own.redis_url == own.state_url == "redis://127.0.0.1:7000/0"  # broker and state: nothing shared
    assert own.fetch_allow_private and not own.crawl_beat  # its pages are local; no one's crawl schedule
