"""A plain list of URLs: one per line, `#` starts a comment, blank lines ignored."""

from __future__ import annotations

from newsflow.sources.model import Discovered, SourceError


def parse_url_list(data: bytes, max_items: int) -> list[Discovered]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SourceError("bad_url_list", "the URL list is not UTF-8 text") from None
    out: list[Discovered] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
        if not line:
            continue
        out.append(Discovered(line.split()[0]))
        if len(out) > max_items:
            raise SourceError("too_many_entries", f"the URL list has more than {max_items} URLs")
    return out
