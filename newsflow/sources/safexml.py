"""Hostile-input-safe XML (and gzip) for feeds and sitemaps.

Feeds and sitemaps come from servers we do not control. defusedxml refuses entity declarations
(billion laughs, quadratic blow-up), external entities and DTD fetches (XXE); expat itself refuses
undefined entities. Gzip is inflated under a size cap, so a 10 kB bomb cannot become 10 GB.
Every refusal is a `SourceError` with a reason: the source is dead-lettered, other sources go on.
"""

from __future__ import annotations

import re
import zlib
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET

from newsflow.sources.model import SourceError

GZIP_MAGIC = b"\x1f\x8b"
_HTML_START = re.compile(rb"^\s*(<!doctype\s+html|<html)", re.I)


def gunzip_capped(data: bytes, max_bytes: int) -> bytes:
    """Inflate gzip data, refusing output beyond `max_bytes` (a gzip bomb is `too_large`)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise SourceError("bad_gzip", f"cannot inflate: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise SourceError("too_large", f"gzip inflates beyond {max_bytes} bytes")
    return out


def maybe_gunzip(data: bytes, max_bytes: int) -> bytes:
    if data[:2] == GZIP_MAGIC:
        return gunzip_capped(data, max_bytes)
    if len(data) > max_bytes:
        raise SourceError("too_large", f"document exceeds {max_bytes} bytes")
    return data


def local_name(tag: object) -> str:
    """`{namespace}name` -> `name` (feeds and sitemaps in the wild disagree on namespaces)."""
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1].lower()


def parse_xml(data: bytes, max_bytes: int, what: str = "document") -> Element:
    """Parse untrusted XML bytes (gzip allowed) into an element tree, or raise `SourceError`."""
    data = maybe_gunzip(data, max_bytes)
    if not data.strip():
        raise SourceError("empty_body", f"the {what} is empty")
    if _HTML_START.match(data[:512]):
        raise SourceError("not_xml", f"the {what} is an HTML page, not XML (wrong URL, or a login/consent wall?)")
    try:
        return SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)  # type: ignore[no-any-return]
    except defusedxml.EntitiesForbidden:
        raise SourceError("xml_forbidden", f"the {what} declares entities (refused: entity expansion attack)") from None
    except (defusedxml.ExternalReferenceForbidden, defusedxml.DTDForbidden):
        raise SourceError("xml_forbidden", f"the {what} references external entities (refused: XXE)") from None
    except ParseError as exc:
        raise SourceError("bad_xml", f"the {what} is not well-formed XML: {exc}") from None
    except ValueError as exc:  # e.g. encoding declarations expat cannot handle
        raise SourceError("bad_xml", f"the {what} cannot be parsed: {exc}") from None


def text_of(el: Element | None) -> str:
    """All text of an element, stripped (None-safe)."""
    if el is None:
        return ""
    return "".join(el.itertext()).strip()


def child(el: Element, name: str) -> Element | None:
    """First direct child with local name `name`, whatever its namespace."""
    for c in el:
        if local_name(c.tag) == name:
            return c
    return None


def children(el: Element, name: str) -> list[Element]:
    return [c for c in el if local_name(c.tag) == name]
