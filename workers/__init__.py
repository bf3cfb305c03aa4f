"""newsflow's runtime: the Celery app, settings loader, logging, local deployment and CLI."""
