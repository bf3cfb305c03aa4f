"""The sources file: which sources exist, what they are, when they are crawled.

A TOML file (see the commented `config/sources.toml`):

    [defaults]                  # optional; any source key below except name/kind/location
    max_items = 500

    [[source]]
    name = "example-news"       # unique; letters, digits, `-`, `_`, `.`
    kind = "feed"               # feed | sitemap | urls
    location = "https://www.example.com/rss.xml"   # URL; for `urls` also a file path
    schedule = "*/15 * * * *"   # cron (5 fields, UTC), `@hourly`, `@daily`, `@every 90s`; "" = manual only
    language = "en"             # optional hint for the clean stage
    max_items = 200             # URLs enqueued per run at most
    rate_per_s = 0.5            # optional: this source's pages at most this fast per host
    recrawl_after_s = 0         # optional: fetch a known URL again after this long (0 = never)
    allow_hosts = []            # extra hosts counted as on-site
    deny_paths = []             # extra regexes on the path (defaults deny tags, authors, ads, ...)
    allow_paths = []            # if given, a path must match one
    default_deny = true         # false drops the default deny patterns
    enabled = true
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from config.defaults import Settings
from newsflow.sources.rules import LinkRules

KINDS = ("feed", "sitemap", "urls")
BUNDLED_SOURCES = Path(__file__).resolve().parents[2] / "config" / "sources.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_EVERY = re.compile(r"^@every\s+(\d+(?:\.\d+)?)\s*(s|m|h)$")
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
}
_KEYS = {
    "name", "kind", "location", "schedule", "language", "max_items", "rate_per_s", "recrawl_after_s",
    "allow_hosts", "deny_paths", "allow_paths", "default_deny", "enabled",
}  # fmt: skip


class SourcesFileError(ValueError):
    """The sources file is missing or wrong; the message names the file, the source and the fix."""


@dataclass(frozen=True)
class Schedule:
    """A cron expression (5 fields) or a fixed interval."""

    cron: tuple[str, str, str, str, str] | None = None
    every: timedelta | None = None

    def describe(self) -> str:
        if self.cron:
            return " ".join(self.cron)
        seconds = self.every.total_seconds() if self.every else 0
        return f"@every {seconds:g}s"


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    location: str
    schedule: Schedule | None = None
    language: str | None = None
    max_items: int = 1000
    rate_per_s: float | None = None
    recrawl_after_s: float = 0.0
    allow_hosts: tuple[str, ...] = ()
    deny_paths: tuple[str, ...] = ()
    allow_paths: tuple[str, ...] = ()
    default_deny: bool = True
    enabled: bool = True
    base_dir: Path = field(default=Path("."), compare=False)

    @property
    def is_url(self) -> bool:
        return urlsplit(self.location).scheme.lower() in ("http", "https")

    def rules(self) -> LinkRules:
        # A URL list names its URLs one by one: no "site" to stay on, only path rules.
        site_location = None if self.kind == "urls" else self.location
        return LinkRules.build(
            site_location,
            allow_hosts=self.allow_hosts,
            deny_paths=self.deny_paths,
            allow_paths=self.allow_paths,
            default_deny=self.default_deny,
        )

    def local_path(self) -> Path:
        path = Path(self.location)
        return path if path.is_absolute() else self.base_dir / path


def parse_schedule(raw: str, where: str) -> Schedule | None:
    text = raw.strip()
    if not text:
        return None
    text = _ALIASES.get(text, text)
    m = _EVERY.match(text)
    if m:
        value, unit = float(m.group(1)), m.group(2)
        seconds = value * {"s": 1, "m": 60, "h": 3600}[unit]
        if seconds < 1:
            raise SourcesFileError(f"{where}: schedule {raw!r} is shorter than one second")
        return Schedule(every=timedelta(seconds=seconds))
    fields = text.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[\d*/,\-A-Za-z]+", f) for f in fields):
        raise SourcesFileError(
            f"{where}: schedule {raw!r} is not a 5-field cron expression (minute hour day month weekday), "
            "@hourly/@daily/@weekly/@monthly, or '@every 30s|5m|1h'"
        )
    for spec, text_field in zip(_CRON_FIELDS, fields, strict=True):
        problem = _cron_field_problem(text_field, spec)
        if problem:
            raise SourcesFileError(f"{where}: schedule {raw!r}: {problem}")
    return Schedule(cron=(fields[0], fields[1], fields[2], fields[3], fields[4]))


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # the 3-letter names of low, low + 1, ... (months, weekdays)

    def allowed(self) -> str:
        named = f" or {self.names[0]}-{self.names[-1]}" if self.names else ""
        return f"{self.low}-{self.high}{named}"


# Checked here, when the file is read, so that `crawl --list` and every crawl refuse what Celery
# beat's crontab would refuse only when beat starts (or, for a wrapped range like `fri-mon`, would
# read differently from cron). What passes is a subset of what celery.schedules.crontab takes.
_CRON_FIELDS = (
    _CronField("minute", 0, 59),
    _CronField("hour", 0, 23),
    _CronField("day of month", 1, 31),
    _CronField("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    _CronField("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_PART = re.compile(r"^(?:(\*)|([^-/]+)(?:-([^-/]+))?)(?:/(\d+))?$")


def _cron_field_problem(value: str, spec: _CronField) -> str | None:
    """What is wrong with one cron field (`*`, `*/N`, `A`, `A-B`, `A-B/N`, comma-separated), or None."""
    for part in value.split(","):
        m = _CRON_PART.match(part)
        if not m or (m.group(4) is not None and m.group(1) is None and m.group(3) is None):
            return f"{spec.name} {part!r} is not *, */N, A, A-B or A-B/N (A, B in {spec.allowed()})"
        if m.group(4) is not None and int(m.group(4)) < 1:
            return f"{spec.name} {part!r}: the step after '/' must be at least 1"
        if m.group(1):
            continue
        ends = [e for e in (m.group(2), m.group(3)) if e is not None]
        numbers = [n for n in (_cron_value(e, spec) for e in ends) if n is not None]
        if len(numbers) < len(ends):
            return f"{spec.name} {part!r}: each value must be in {spec.allowed()}"
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            return f"{spec.name} {part!r}: a range goes from low to high (write it as two ranges)"
    return None


def _cron_value(text: str, spec: _CronField) -> int | None:
    """A field's number or name as its number, or None if outside the field's range."""
    if text.isdigit():
        number = int(text)
        return number if spec.low <= number <= spec.high else None
    lowered = text.lower()
    return spec.low + spec.names.index(lowered) if lowered in spec.names else None


def sources_path(settings: Settings, override: str | None = None) -> Path:
    raw = override or settings.crawl_sources_file
    return Path(raw) if raw else BUNDLED_SOURCES


def load_sources(path: Path, settings: Settings) -> list[Source]:
    """Read and check the whole file; any mistake raises `SourcesFileError` naming it."""
    doc = _read_toml(path)
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise SourcesFileError(f"{path}: [defaults] must be a table")
    unknown_top = set(doc) - {"defaults", "source"}
    if unknown_top:
        raise SourcesFileError(
            f"{path}: unknown top-level keys {sorted(unknown_top)} (expected [defaults], [[source]])"
        )
    raw_sources = doc.get("source", [])
    if not isinstance(raw_sources, list):
        raise SourcesFileError(f"{path}: sources are declared as [[source]] tables")
    out: list[Source] = []
    names: set[str] = set()
    for i, raw in enumerate(raw_sources):
        src = _source({**defaults, **raw}, f"{path}: source #{i + 1}", path.parent.resolve(), settings)
        if src.name in names:
            raise SourcesFileError(f"{path}: two sources are named {src.name!r}")
        names.add(src.name)
        out.append(src)
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed file; whatever keeps it from being read is a SourcesFileError saying which and why."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SourcesFileError(
            f"sources file {path} does not exist (set NEWSFLOW_CRAWL_SOURCES_FILE or --sources)"
        ) from None
    except IsADirectoryError:
        raise SourcesFileError(f"sources file {path} is a directory: name the TOML file in it") from None
    except OSError as exc:
        raise SourcesFileError(f"cannot read sources file {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # TOML is UTF-8 by definition
        line = raw[: exc.start].count(b"\n") + 1
        raise SourcesFileError(
            f"{path}: not valid TOML: line {line} has a byte that is not UTF-8 (0x{raw[exc.start]:02x}); "
            "save the file as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SourcesFileError(f"{path}: not valid TOML: {exc}") from None


def _source(raw: dict[str, Any], where: str, base_dir: Path, settings: Settings) -> Source:
    unknown = set(raw) - _KEYS
    if unknown:
        raise SourcesFileError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    name = str(raw.get("name", ""))
    if not _NAME.match(name):
        raise SourcesFileError(f"{where}: name {name!r} must be 1-64 letters, digits, '-', '_' or '.'")
    where = f"{where} ({name})"
    kind = str(raw.get("kind", ""))
    if kind not in KINDS:
        raise SourcesFileError(f"{where}: kind {kind!r} must be one of {', '.join(KINDS)}")
    location = str(raw.get("location", "")).strip()
    if not location:
        raise SourcesFileError(f"{where}: location is missing")
    scheme = _location_scheme(location, where)
    if kind != "urls" and scheme not in ("http", "https"):
        raise SourcesFileError(f"{where}: a {kind} location must be an http(s) URL, not {location!r}")
    # Outside the try below: its SourcesFileError already names the source (a ValueError, it would
    # be caught there and prefixed a second time).
    schedule = parse_schedule(str(raw.get("schedule", "")), where)
    try:
        rate = raw.get("rate_per_s")
        src = Source(
            name=name,
            kind=kind,
            location=location,
            schedule=schedule,
            language=str(raw["language"]) if raw.get("language") else None,
            max_items=int(raw.get("max_items", settings.crawl_max_items)),
            rate_per_s=float(rate) if rate is not None else None,
            recrawl_after_s=float(raw.get("recrawl_after_s", 0)),
            allow_hosts=tuple(str(h) for h in raw.get("allow_hosts", ())),
            deny_paths=tuple(str(p) for p in raw.get("deny_paths", ())),
            allow_paths=tuple(str(p) for p in raw.get("allow_paths", ())),
            default_deny=bool(raw.get("default_deny", True)),
            enabled=bool(raw.get("enabled", True)),
            base_dir=base_dir,
        )
    except (TypeError, ValueError) as exc:
        raise SourcesFileError(f"{where}: {exc}") from None
    if src.max_items < 1:
        raise SourcesFileError(f"{where}: max_items must be at least 1")
    if src.rate_per_s is not None and src.rate_per_s <= 0:
        raise SourcesFileError(f"{where}: rate_per_s must be > 0")
    try:
        src.rules()
    except re.error as exc:
        raise SourcesFileError(f"{where}: bad path pattern: {exc}") from None
    return src


def _location_scheme(location: str, where: str) -> str:
    """The location's URL scheme ('' for a file path), checked here: a URL that does not parse
    would otherwise raise ValueError wherever it is next split (`crawl --list`, the crawl itself)."""
    try:
        parts = urlsplit(location)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            _ = parts.port  # raises ValueError for a port that is not a number in 0-65535
            if not parts.hostname:
                raise ValueError("no host")
    except ValueError as exc:
        raise SourcesFileError(
            f"{where}: location {location!r} is not a valid URL ({exc}); write it as https://host/path"
        ) from None
    return scheme


def select(sources: list[Source], names: list[str] | tuple[str, ...], all_enabled: bool) -> list[Source]:
    """The sources a crawl asked for: by name (disabled ones too), or every enabled one."""
    if all_enabled and not names:
        return [s for s in sources if s.enabled]
    by_name = {s.name: s for s in sources}
    missing = [n for n in names if n not in by_name]
    if missing:
        known = ", ".join(sorted(by_name)) or "none"
        raise SourcesFileError(f"unknown source(s) {', '.join(missing)}; the sources file declares: {known}")
    return [by_name[n] for n in names]
