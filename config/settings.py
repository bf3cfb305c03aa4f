"""The one module that reads the environment.

Each field of `config.defaults.Settings` can be set with `NEWSFLOW_<NAME>`; values are parsed by the
field's type. Nothing else in newsflow looks at `os.environ` for settings.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from config.defaults import Settings

ENV_PREFIX = "NEWSFLOW_"
# How a yes/no is spelled, in a setting or an API parameter (lower-cased; empty is "no").
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")
CPU_POOLS = ("solo", "prefork")
CPU_WORKERS = ("shared", "per-stage")
# What a Redis URL setting may be. Both reach kombu (the broker; the state URL falls back to it) and
# redis-py (the state), which refuse anything else only when the first command connects, with a
# traceback. The state client alone (redis-py) also takes a unix socket.
REDIS_URL_FORMS = (
    "redis://[[user]:password@]host[:port][/db]",
    "rediss://... (TLS)",
    "sentinel://[[user]:password@]host[:port][/db];sentinel://host2[:port2];...",
)
UNIX_URL_FORM = "unix:///path/to/redis.sock[?db=N]"
_SCHEMES = ("redis", "rediss", "sentinel")
SSL_CERT_REQS = ("required", "optional", "none")  # what tasks/celeryconfig.py's broker_ssl takes
# What the stdlib's logging takes as a level (any case); anything else fails at the first log line.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The range of each number setting, checked at load: out of range, it fails later and far away (a port
# past 65535 is an OverflowError at listen or silently another port, a negative batch size a writer that
# never commits, a nan timeout a wait that never ends). Every int and float setting must be finite and
# above 0 unless listed here, so a new setting is checked without being added; 0 is taken only where
# it means something (off, no limit, none, the same: config/defaults.py).
PORT_RANGE = (1, 65535)
PORT_SETTINGS = frozenset({"flower_port", "metrics_port", "api_port"})
ZERO_OR_MORE = frozenset(
    {
        "fetch_max_redirects",  # 0: no redirect is followed
        "clean_max_elements",  # 0: no cap
        "clean_min_body_chars",
        "archive_max_bytes",  # 0: no size limit
        "archive_max_age_days",  # 0: kept forever
        "archive_max_clean_queue",  # 0: send only while the clean queue is empty
        "drift_min_window",
        "drift_min_baseline",
        "drift_min_z",
        "max_retries",  # 0: dead-lettered at the first transient error
        "retry_backoff_base_s",
        "retry_backoff_max_s",
        "index_batch_idle_s",  # 0: commit as soon as no document waits
        "worker_concurrency",  # 0: one per core
        "worker_nice",  # 0: the same priority as `up`
        "crawl_max_child_sitemaps",
        "crawl_max_fetch_queue",
        "crawl_backpressure_max_wait_s",
        "polite_max_reserve_s",
        "polite_inline_wait_s",
        "polite_robots_memo_s",  # 0: read Redis on every fetch
        "polite_max_crawl_delay_s",
        "metrics_flush_s",  # CounterBuffer flushes at most every 50 ms anyway
        "api_rate_limit_per_min",  # 0: no limit
        "api_rate_burst",
    }
)
# A gzip level; a share of the articles.
BOUNDED: dict[str, tuple[float, float]] = {"archive_gzip_level": (0, 9), "drift_min_change": (0, 1)}


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def _parse(name: str, kind: str, raw: str) -> object:
    try:
        if kind == "bool":
            low = raw.strip().lower()
            if low in TRUE_WORDS:
                return True
            if low in FALSE_WORDS:
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from defaults, then `NEWSFLOW_*` variables, then keyword overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = _parse(f.name, str(f.type), raw)
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.cpu_pool not in CPU_POOLS:
        raise SettingsError(f"{ENV_PREFIX}CPU_POOL={settings.cpu_pool!r}: use one of {', '.join(CPU_POOLS)}")
    if settings.cpu_workers not in CPU_WORKERS:
        raise SettingsError(f"{ENV_PREFIX}CPU_WORKERS={settings.cpu_workers!r}: use one of {', '.join(CPU_WORKERS)}")
    _check_log_level(settings.log_level)
    _check_numbers(settings)
    _check_redis_url("redis_url", settings.redis_url)
    if settings.state_redis_url:  # empty: the same as redis_url
        _check_redis_url("state_redis_url", settings.state_redis_url, unix=True)
    return settings


def _check_log_level(level: str) -> None:
    if level.upper() not in LOG_LEVELS:  # logging upper-cases it, and takes nothing else
        raise SettingsError(f"{ENV_PREFIX}LOG_LEVEL={level!r}: use one of {', '.join(LOG_LEVELS)}")


def _check_numbers(settings: Settings) -> None:
    """SettingsError naming the variable and the values it takes, for the first number out of range."""
    for f in dataclasses.fields(Settings):
        if str(f.type) in ("int", "float"):
            problem = number_problem(f.name, getattr(settings, f.name))
            if problem:
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()}={getattr(settings, f.name)!r}: {problem}")


def number_problem(name: str, value: float) -> str:
    """What is wrong with `value` for the number setting `name`, saying the values it takes; or ""."""
    low, high, above = allowed_range(name)
    whole = isinstance(value, int)
    kind = "a whole number" if whole else "a number"
    if high is not None:
        wanted = f"{kind} from {low:g} to {high:g}"
    elif above:
        wanted = f"{kind} of {low + 1:g} or more" if whole else f"{kind} above {low:g}"
    else:
        wanted = f"{kind} of {low:g} or more"
    if not math.isfinite(value):
        return f"not a finite number: use {wanted}"
    if value < low or (above and value == low) or (high is not None and value > high):
        return f"out of range: use {wanted}"
    return ""


def allowed_range(name: str) -> tuple[float, float | None, bool]:
    """(least, most or None, whether the least itself is refused) of a number setting: above 0
    unless listed."""
    if name in PORT_SETTINGS:
        return (*PORT_RANGE, False)
    if name in BOUNDED:
        return (*BOUNDED[name], False)
    return (0, None, name not in ZERO_OR_MORE)


def _check_redis_url(name: str, url: str, unix: bool = False) -> None:
    """SettingsError naming the variable, the problem and the accepted forms unless `url` is one."""
    problem = _redis_url_problem(url, unix)
    if problem:
        forms = (*REDIS_URL_FORMS, UNIX_URL_FORM) if unix else REDIS_URL_FORMS
        raise SettingsError(
            f"{ENV_PREFIX}{name.upper()}={redact_url(url)!r} is not a Redis URL ({problem}): "
            f"use {', '.join(forms[:-1])} or {forms[-1]}"
        )


def _redis_url_problem(url: str, unix: bool) -> str:
    """What is wrong with a Redis URL, or "" if nothing is."""
    if not url.strip():
        return "it is empty"
    if url.strip().lower().startswith("sentinel://"):  # newsflow.sentinel: each `;` part names one sentinel
        problems = [_server_url_problem(part.strip(), ("sentinel",)) for part in url.split(";") if part.strip()]
        return next((problem for problem in problems if problem), "")
    if ";" in url:
        return "only sentinel:// URLs name several servers, separated by ';'"
    return _server_url_problem(url, (*_SCHEMES, "unix") if unix else _SCHEMES)


def _server_url_problem(url: str, schemes: tuple[str, ...]) -> str:
    """What is wrong with the URL of one server, or "": what kombu or redis-py would trip on later."""
    try:
        parts = urlsplit(url)
        port = parts.port  # a ValueError unless digits from 0 to 65535
    except ValueError as exc:  # "Invalid IPv6 URL", "Port could not be cast to integer value"
        return "the port must be a number from 1 to 65535" if "port" in str(exc).lower() else str(exc)[:100]
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        wrong = f", not {scheme}://" if scheme else ""
        return f"it must start with {', '.join(s + '://' for s in schemes)}{wrong}"
    if scheme == "unix":
        return "" if parts.path.strip("/") else "no socket path after unix://"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "the port must be a number from 1 to 65535"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return "the database after the host must be a number, e.g. /0"  # not echoed: a password may be in it
    reqs = {k.lower(): v for k, v in parse_qsl(parts.query)}.get("ssl_cert_reqs", "required")
    if scheme == "rediss" and reqs.lower().removeprefix("cert_") not in SSL_CERT_REQS:
        return f"ssl_cert_reqs must be {', '.join(SSL_CERT_REQS)}"
    return ""


def redact_url(url: str) -> str:
    """The URL with the password of each `;` part (a sentinel URL has several) hidden, for messages and
    logs: a password must not reach a terminal or a log (SECRET_FIELDS). The one redactor of the project.

    Everything before the last `@` of a part is the user information, however malformed the URL
    (a password may hold an unescaped `@` or `/`); only a plain user name before a `:` is kept."""
    return ";".join(_redact_part(part) for part in url.split(";"))


_PLAIN_USER = re.compile(r"[\w.%+-]*")


def _redact_part(part: str) -> str:
    scheme, sep, rest = part.partition("://")
    if not sep:
        scheme, rest = "", part
    userinfo, at, host_and_path = rest.rpartition("@")
    if not at:
        return part
    user, colon, _ = userinfo.partition(":")
    who = f"{user}:***" if colon and _PLAIN_USER.fullmatch(user) else "***"
    return f"{scheme}{sep}{who}@{host_and_path}"


_current: Settings | None = None


def get_settings() -> Settings:
    """Settings of this process: read from the environment on first use, then kept."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def use_settings(settings: Settings | None) -> None:
    """Make `settings` this process's settings (None: read the environment again on next use).

    For tests and embedders; call it before anything has used the settings (the Celery app
    configures itself from them on first use).
    """
    global _current
    _current = settings


def env_for(settings: Settings) -> dict[str, str]:
    """The `NEWSFLOW_*` variables that reproduce `settings` in a child process."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        out[ENV_PREFIX + f.name.upper()] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return out


# Set for worker processes unless the environment already says otherwise. glibc gives every thread
# that allocates its own malloc arena (up to 8 per core); the threads of the fetch and index workers
# then hold freed memory in dozens of arenas and resident memory creeps up (bench/pipeline.py --soak).
WORKER_ENV_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}


def process_env() -> dict[str, str]:
    """A copy of this process's environment, for starting worker processes (with their defaults)."""
    return {**WORKER_ENV_DEFAULTS, **os.environ}
