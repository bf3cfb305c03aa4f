"""Feed and sitemap dates (RFC 822, W3C/ISO 8601) to ISO strings and unix seconds."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime


def parse_feed_date(value: str | None) -> datetime | None:
    """RFC 822 (RSS) or ISO 8601 (Atom, sitemaps, JSON Feed); naive times are taken as UTC."""
    if not value or not value.strip():
        return None
    raw = value.strip()
    when: datetime | None = None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def iso_and_ts(value: str | None) -> tuple[str | None, float | None]:
    when = parse_feed_date(value)
    if when is None:
        return None, None
    return when.isoformat(), when.timestamp()
