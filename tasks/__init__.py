"""Celery tasks: one module per stage, each a thin adapter over a pure function in `newsflow`."""
