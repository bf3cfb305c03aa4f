"""The one module that reads the environment.

Each field of `config.defaults.Settings` can be set with `NEWSFLOW_<NAME>`; values are parsed by the
field's type. Nothing else in newsflow looks at `os.environ` for settings.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from config.defaults import Settings

ENV_PREFIX = "NEWSFLOW_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
CPU_POOLS = ("solo", "prefork")
CPU_WORKERS = ("shared", "per-stage")


class SettingsError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def _parse(name: str, kind: str, raw: str) -> object:
    try:
        if kind == "bool":
            low = raw.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
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
    return settings


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
