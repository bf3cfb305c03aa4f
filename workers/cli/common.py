"""Helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click

from config.defaults import Settings
from config.settings import SettingsError, load_settings, use_settings


def settings_or_exit() -> Settings:
    """This command's settings, read from the environment and made the process's own (the Celery
    app configures itself from them on first use); a bad value is a usage error, not a traceback."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    use_settings(settings)
    return settings


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> None:
    click.echo(f"newsflow: error: {message}", err=True)
    raise SystemExit(code)
