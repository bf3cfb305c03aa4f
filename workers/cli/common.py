"""Helpers shared by the CLI commands."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import click

from config.defaults import Settings
from config.settings import SettingsError, load_settings, redact_url, use_settings


def settings_or_exit() -> Settings:
    """This command's settings, read from the environment and made the process's own (the Celery
    app configures itself from them on first use); a bad value is a usage error, not a traceback."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    use_settings(settings)
    return settings


class Duration(click.ParamType[float]):
    """A duration option (a timeout, an age, an interval): a finite number of `unit`, `least` or more.
    float() takes "nan" and "inf" (click.FloatRange too), and a deadline of monotonic() + nan never
    comes (a wait that hangs), Redis refuses a nan score (a traceback), sleep() a nan interval; a
    negative one is a deadline already past."""

    def __init__(self, unit: str = "seconds", least: float = 0.0) -> None:
        self.unit, self.least = unit, least
        self.name = unit  # the metavar click shows: SECONDS

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < self.least:
            example = max(30.0, self.least)
            wanted = f"use a finite number, {self.least:g} or more (e.g. {example:g})"
            self.fail(f"{value!r} is not a number of {self.unit}: {wanted}", param, ctx)
        return number


SECONDS = Duration("seconds")


def read_list(path: str, option: str = "--file", what: str = "URLs") -> str:
    """The text of a list given as `option PATH` ('-': stdin), one of `what` per line. Files and stdin
    alike: a byte that is not UTF-8 stays in its line as a lone surrogate (surrogateescape), so that
    one entry is refused as invalid and the others go through. A file that cannot be read is a usage
    error (exit 2), not a traceback."""
    if path == "-":
        raw = sys.stdin.buffer.read()
    else:
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError:
            fail(f"{option} {path}: no such file (pass a file of {what}, one per line, or '-' for stdin)", 2)
        except IsADirectoryError:
            fail(f"{option} {path}: is a directory; pass a file of {what}, one per line", 2)
        except OSError as exc:
            fail(f"{option} {path}: cannot read it: {exc.strerror or exc}", 2)
    if b"\x00" in raw[:8192]:  # an executable, an image, a compressed list: not lines of text
        where = "stdin" if path == "-" else f"{option} {path}"
        fail(f"{where}: is not text (it holds NUL bytes); pass a file of {what}, one per line", 2)
    return raw.decode("utf-8-sig", "surrogateescape")  # -sig: a BOM is not part of the first line


def require_current_ids(settings: Settings) -> None:
    """Refuse to run on article ids made by another URL normalisation (`newsflow migrate` re-keys
    them); on a fresh deployment, record this code's version. Exit status 1 with the fix."""
    from newsflow.migrate import IdVersionError, ensure_current

    try:
        ensure_current(settings)
    except IdVersionError as exc:
        fail(str(exc))


# A lone surrogate: what Python makes of an undecodable byte (surrogateescape, e.g. a URL read from
# a non-UTF-8 file or stdin). UTF-8 cannot encode it, so it is written as its JSON escape (\udcff).
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def json_line(value: Any) -> str:
    """`value` as one line of JSON that is always valid UTF-8: non-ASCII text as itself, lone
    surrogates escaped (they read back as the same string)."""
    text = json.dumps(value, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"


def emit_json(value: Any) -> None:
    """Print `value` as one JSON line, as UTF-8 bytes whatever the locale's encoding (scripts read it)."""
    line = json_line(value)
    binary = getattr(sys.stdout, "buffer", None)
    if binary is None:  # a text-only stream (a test's capture): it takes str
        sys.stdout.write(line)
    else:
        sys.stdout.flush()
        binary.write(line.encode("utf-8"))
        binary.flush()
    sys.stdout.flush()


# Exit status of every command that could not reach Redis (after riding out a short outage):
# distinct from 1 (some articles dead, or the command's own failure) and 2 (usage, or timed out).
EXIT_REDIS_UNREACHABLE = 3


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis (broker or state) could not be reached"."""
    import kombu.exceptions
    import redis

    return (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError)


def unreachable(exc: BaseException) -> None:
    """One line saying what failed and how to fix it, then EXIT_REDIS_UNREACHABLE."""
    try:
        settings = load_settings()
        where = redact_url(settings.redis_url)
        if settings.state_redis_url and settings.state_redis_url != settings.redis_url:
            where += f" (state: {redact_url(settings.state_redis_url)})"
    except SettingsError:
        where = "NEWSFLOW_REDIS_URL"
    detail = " ".join(str(exc).split())[:300].rstrip(".")
    if "maxmemory" in detail.lower():  # it answered: it refuses writes because it is full
        fail(f"Redis at {where} is full: {detail}. {redis_fix(detail, where)}", EXIT_REDIS_UNREACHABLE)
    fail(f"cannot reach Redis at {where}: {detail}. {redis_fix(detail, where)}", EXIT_REDIS_UNREACHABLE)


def redis_fix(detail: str, where: str) -> str:
    """What to do about a Redis that did not answer as asked, by what it said."""
    lowered = detail.lower()
    if "db index is out of range" in lowered:
        return "The database number at the end of the URL is beyond the server's (16 by default): fix the URL"
    if any(word in lowered for word in ("wrongpass", "noauth", "password", "authentication")):
        return "The password in the URL is wrong or missing (redis://:PASSWORD@host:port/0)"
    if "timeout" in lowered and where.startswith("rediss://"):
        return "rediss:// speaks TLS: if the server does not, use redis://; else check that it is up"
    if "maxmemory" in lowered:
        return (
            "It refuses writes at its maxmemory (noeviction): let the workers drain the queues, or raise "
            "maxmemory (redis-cli config set maxmemory ...); see `newsflow status`"
        )
    if "ssl" in lowered or "certificate" in lowered:
        return "The TLS handshake failed: check the server's certificate and ssl_ca_certs in the URL"
    return "Start it (`newsflow up` starts one) or point NEWSFLOW_REDIS_URL at it"


def fail(message: str, code: int = 1) -> None:
    click.echo(f"newsflow: error: {message}", err=True)
    raise SystemExit(code)
