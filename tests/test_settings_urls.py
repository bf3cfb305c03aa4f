"""Redis URL settings are checked where the settings are loaded: a malformed NEWSFLOW_REDIS_URL or
NEWSFLOW_STATE_REDIS_URL is a SettingsError naming the variable and the accepted forms (a one-line
usage error from every command), not a ValueError traceback when the first command connects."""

from __future__ import annotations

import pytest

from config.settings import SettingsError, load_settings
from tests.conftest import run_cli

GOOD = [
    "redis://127.0.0.1:6379/0",
    "redis://localhost",
    "redis://:s3cret@redis.example:6380/15",
    "redis://user:s3cret@redis.example/2",
    "redis://[::1]:6379/1",
    "REDIS://Host/0",
    "rediss://redis.example:6380/0",
    "rediss://:pw@h:6380/0?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/ca.pem",
    "rediss://h/0?ssl_cert_reqs=none",
    "sentinel://10.0.0.1:26400",
    "sentinel://:s3cret@10.0.0.1:26400/2;sentinel://10.0.0.2;sentinel://10.0.0.3:26402",
    "sentinel://s1:26379; sentinel://s2:26379;",
]
BAD = [
    ("notaurl", "it must start with redis://, rediss://, sentinel://"),
    ("http://127.0.0.1:6390/0", "not http://"),
    ("redis://127.0.0.1:notaport/0", "the port must be a number from 1 to 65535"),
    ("redis://127.0.0.1:99999/0", "the port must be a number"),
    ("redis://127.0.0.1:0/0", "the port must be a number"),
    ("redis:///0", "no host"),
    ("redis://", "no host"),
    ("redis://h:6379/zero", "the database after the host must be a number"),
    ("redis://[::1/0", "Invalid IPv6 URL"),
    ("rediss://h:6380/0?ssl_cert_reqs=maybe", "ssl_cert_reqs must be required, optional, none"),
    ("sentinel://s1:26379;redis://s2:6379", "it must start with sentinel://, not redis://"),
    ("sentinel://s1:notaport;sentinel://s2", "the port must be a number"),
    ("redis://a:6379;sentinel://b:26379", "only sentinel:// URLs name several servers"),
    ("unix:///tmp/redis.sock", "not unix://"),  # the broker (kombu) cannot use it
    ("", "it is empty"),
    ("  ", "it is empty"),
]


@pytest.mark.parametrize("url", GOOD)
def test_valid_urls_load(url: str) -> None:
    assert load_settings({"NEWSFLOW_REDIS_URL": url}).redis_url == url
    assert load_settings({"NEWSFLOW_STATE_REDIS_URL": url}).state_url == url


@pytest.mark.parametrize(("url", "fragment"), BAD)
def test_bad_broker_urls_name_the_variable_problem_and_forms(url: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"NEWSFLOW_REDIS_URL": url})
    message = str(err.value)
    assert message.startswith(f"NEWSFLOW_REDIS_URL={url!r} is not a Redis URL")
    assert fragment in message
    assert "use redis://[[user]:password@]host[:port][/db], rediss://" in message and "sentinel://" in message


# Empty is the state URL's default (the broker's), a unix socket one of its forms.
@pytest.mark.parametrize(("url", "fragment"), [(u, f) for u, f in BAD if u and "unix" not in u])
def test_bad_state_urls_too(url: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"NEWSFLOW_STATE_REDIS_URL": url})
    assert str(err.value).startswith(f"NEWSFLOW_STATE_REDIS_URL={url!r} is not a Redis URL")
    assert fragment in str(err.value) and "unix:///path/to/redis.sock" in str(err.value)


def test_state_url_may_be_a_unix_socket_and_empty_means_the_broker() -> None:
    assert load_settings({"NEWSFLOW_STATE_REDIS_URL": "unix:///run/redis.sock?db=2"}).state_url.startswith("unix:")
    assert load_settings({"NEWSFLOW_STATE_REDIS_URL": ""}).state_url == load_settings({}).redis_url
    with pytest.raises(SettingsError, match=r"NEWSFLOW_STATE_REDIS_URL='unix://' .*no socket path"):
        load_settings({"NEWSFLOW_STATE_REDIS_URL": "unix://"})


def test_keyword_overrides_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="NEWSFLOW_REDIS_URL"):
        load_settings({}, redis_url="localhost:6379")


@pytest.mark.parametrize(
    "url",
    ["redis://:hunter2@h:notaport/0", "redis://user:hunter2@h/zero", "http://:hunter2@h/0", "hunter2@h",
     "sentinel://:hunter2@s1:26379;sentinel://:hunter2@s2:x", "redis://:p@ss/hunter2@h:1:2/0"],
)  # fmt: skip
def test_the_password_never_appears_in_the_error(url: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"NEWSFLOW_REDIS_URL": url})
    assert "hunter2" not in str(err.value) and "***@" in str(err.value)


@pytest.mark.parametrize("url", ["notaurl", "http://127.0.0.1:6390/0", "redis://127.0.0.1:notaport/0"])
@pytest.mark.parametrize("command", [("status",), ("ingest", "https://example.com/a")])
def test_cli_reports_a_bad_url_in_one_line_without_a_traceback(url: str, command: tuple[str, ...]) -> None:
    proc = run_cli(*command, env={"NEWSFLOW_REDIS_URL": url}, timeout=60)
    assert proc.returncode == 2, proc.stderr  # click's usage error, as for NEWSFLOW_FETCH_MAX_BYTES=abc
    assert "Traceback" not in proc.stderr and "ValueError" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: NEWSFLOW_REDIS_URL={url!r} is not a Redis URL (")
    assert "use redis://" in errors[0]


def test_cli_bad_state_url_and_the_other_bad_settings_share_one_exit_path() -> None:
    state = run_cli("status", env={"NEWSFLOW_STATE_REDIS_URL": "redis://h:port/0"}, timeout=60)
    number = run_cli("status", env={"NEWSFLOW_FETCH_MAX_BYTES": "abc"}, timeout=60)
    assert state.returncode == number.returncode == 2
    assert "Error: NEWSFLOW_STATE_REDIS_URL='redis://h:port/0' is not a Redis URL" in state.stderr
    assert "Traceback" not in state.stderr + number.stderr
