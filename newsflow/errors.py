"""Exceptions whose type decides what happens to a message.

- `TransientError`: the same input may succeed later (timeouts, 5xx, 429, a Redis hiccup):
  the task retries with exponential backoff and jitter, then dead-letters with the reason.
- `PermanentError`: retrying cannot help (404, not HTML, no article text, SSRF refusal):
  the article is dead-lettered at once with `reason`.
Any other exception is a bug or an input we did not foresee: it is dead-lettered with reason
`internal_error` so it is visible and replayable, and the worker goes on.
"""

from __future__ import annotations


class StageError(Exception):
    """Base of the errors stage functions raise on purpose."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class PermanentError(StageError):
    """Dead-letter the article now with `reason`."""


class InputGone(StageError):
    """The stage's stored input (claim-check blob or document) is gone.

    A redelivered message of work already done meets this (its input was cleaned up after the
    article moved on), and so does an article whose input was lost with a Redis restart. The task
    base decides: done already -> skip; otherwise fetch the page again, once; then dead-letter.
    """


class TransientError(StageError):
    """Retry later; `retry_after_s` overrides the backoff when the server told us when."""

    def __init__(self, reason: str, detail: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(reason, detail)
        self.retry_after_s = retry_after_s
