"""The Celery application: `celery -A tasks.app worker -Q fetch` (or `-A workers.app`) starts a fetch worker.

Nothing is read or built at import: the app object is an empty shell whose configuration is made
from this process's settings the first time Celery needs it (`add_defaults` with a callable), and logging is set
up by Celery's own signals in each worker process. Tests and the CLI can therefore settle their
settings (`config.settings.use_settings`) before anything reads them.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, signals

from config.settings import get_settings
from newsflow import logs
from newsflow.pipeline import ORDER
from tasks import solo
from tasks.celeryconfig import celery_config

# The modules that define tasks: one per stage, the crawl and the maintenance tasks.
TASK_MODULES = [*(f"tasks.{name}" for name in ORDER), "tasks.crawl", "tasks.maintenance"]


def _config() -> dict[str, Any]:
    """Celery's configuration from this process's settings; Celery asks for it on first use."""
    settings = get_settings()
    # JSON logs from the first line on (Celery warns before its own logging set-up runs).
    logs.configure(settings.log_level)
    return celery_config(settings)


def _setup_logging(**_: Any) -> None:
    logs.configure(get_settings().log_level)


def _check_id_version(**_: Any) -> None:
    """A worker never starts on article ids made by another URL normalisation: it would file
    articles under ids the stored ones do not match (`newsflow migrate` re-keys them). A Redis
    that cannot be reached now is the stages' to ride out, not a reason to refuse."""
    from newsflow.migrate import IdVersionError, ensure_current

    try:
        ensure_current(get_settings())
    except IdVersionError as exc:
        raise SystemExit(f"newsflow: error: {exc}") from None
    except Exception as exc:  # Redis down or slow: the check is skipped, the worker starts
        logs.get_logger("newsflow.worker").warning("id_version_unchecked", error=str(exc)[:300])


app = Celery("newsflow", include=TASK_MODULES)
app.add_defaults(_config)  # a promise: read when the configuration is first needed
# Keep Celery from installing its own text handlers; use ours in every worker process.
signals.setup_logging.connect(_setup_logging, weak=False)
signals.worker_process_init.connect(_setup_logging, weak=False)
signals.worker_init.connect(_check_id_version, weak=False)
# Time limits and worker-lost handling for the solo pool of the CPU-bound stages.
solo.install(get_settings)

__all__ = ["app"]
