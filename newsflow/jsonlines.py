"""Reading a JSON-lines file that people keep (a backup, an audit log): each line is checked, and a
line that is not what the file should hold is named with its number and what is wrong with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def record_problem(raw: bytes, check: Callable[[Any], str | None]) -> tuple[Any, str | None]:
    """The JSON value of one line and what is wrong with it (None: nothing): not UTF-8, not JSON, or
    what `check` says of the value."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "it is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"it is not JSON ({exc.msg}, column {exc.colno})"
    return row, check(row)
