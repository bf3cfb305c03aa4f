"""What a source yields: URLs with the metadata that travels with them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from newsflow.errors import PermanentError


class SourceError(PermanentError):
    """A source's document could not be read or parsed; `reason` says why (e.g. `xml_forbidden`)."""


@dataclass(frozen=True)
class Discovered:
    """One URL found by a source.

    `hints` (title, published, language) reach the clean stage as fallbacks for the page's own
    metadata; `lastmod` (unix seconds) lets the recrawl policy see that a known URL changed.
    """

    url: str
    hints: dict[str, Any] = field(default_factory=dict)
    lastmod: float | None = None
