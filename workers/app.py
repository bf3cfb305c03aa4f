"""The Celery application, for `celery -A workers.app worker -Q fetch` (it lives in `tasks.app`)."""

from __future__ import annotations

from tasks.app import app

__all__ = ["app"]
