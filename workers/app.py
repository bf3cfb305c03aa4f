"""The Celery application: `celery -A workers.app worker -Q fetch` starts a fetch worker."""

from __future__ import annotations

from celery import Celery

from tasks.topology import task_modules
from workers import logging as nf_logging
from workers import solo
from workers.celeryconfig import celery_config
from workers.settings import get_settings

settings = get_settings()
app = Celery("newsflow", include=task_modules())
app.conf.update(celery_config(settings))
# JSON logs from the first line on (Celery warns before its own logging set-up runs).
nf_logging.configure(settings.log_level)
nf_logging.connect_celery_signals(settings.log_level)
# Time limits and worker-lost handling for the solo pool of the CPU-bound stages.
solo.install(app, get_settings)

__all__ = ["app"]
