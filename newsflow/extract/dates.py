"""Publication dates: parsing the many shapes pages use, and sanity checks."""

from __future__ import annotations

import re
import warnings
from datetime import UTC, date, datetime, timedelta

from dateutil import parser as dateparser

EARLIEST = date(1990, 1, 1)
# Clock skew and time zones: a page published "today" in Asia may look like tomorrow in UTC.
_FUTURE_SLACK = timedelta(days=1)
_URL_DATE = re.compile(r"/((?:19|20)\d{2})[/-](0?[1-9]|1[0-2])[/-](0?[1-9]|[12]\d|3[01])(?:/|[-_]|$)")
_URL_COMPACT = re.compile(r"/((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])/")
# dateutil fills what a text lacks from `default` (today, unless told): parsing with two defaults
# that differ in year, month and day shows whether the text itself has all three.
_DEFAULTS = (datetime(2001, 2, 3), datetime(2004, 5, 6))


def parse_date(value: str | None, now: datetime | None = None) -> str | None:
    """ISO 8601 (with time and offset when the source has them) or None when unparseable, implausible
    or not a whole day: "2024", "March 2024" or "Nov 19" are not padded with today's or a default day."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        with warnings.catch_warnings():
            # Abbreviations like "EST" are reported as unknown zones; the date part is still right.
            warnings.simplefilter("ignore")
            parsed, other = (dateparser.parse(text, default=d, fuzzy=False) for d in _DEFAULTS)
    except (ValueError, OverflowError, TypeError):
        return None
    if parsed is None or other is None or parsed.date() != other.date() or not plausible(parsed.date(), now):
        return None
    has_time = bool(re.search(r"\d{1,2}:\d{2}", text))
    return str(parsed.isoformat() if has_time else parsed.date().isoformat())


def plausible(day: date, now: datetime | None = None) -> bool:
    """Not before 1990 (no web news then) and not in the future."""
    today = (now or datetime.now(UTC)).date()
    return EARLIEST <= day <= today + _FUTURE_SLACK


def date_from_url(url: str | None, now: datetime | None = None) -> str | None:
    """Many news URLs carry the publication day (/2019/11/19/...)."""
    if not url:
        return None
    match = _URL_DATE.search(url) or _URL_COMPACT.search(url)
    if not match:
        return None
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    return day.isoformat() if plausible(day, now) else None
