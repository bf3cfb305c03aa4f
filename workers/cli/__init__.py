"""The `newsflow` command. Results go to stdout (only JSON under --json); logs and progress to stderr."""

from __future__ import annotations

from typing import Any

import click

from workers.cli import admin, deadletters, extract, migrate, ops, pipeline, query, reconcile, services
from workers.cli import archive as archive_cli
from workers.cli import crawl as crawl_cli
from workers.cli.common import redis_errors, unreachable


class Main(click.Group):
    """Every command: a Redis that stays unreachable past a short outage is one line and exit 3."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except redis_errors() as exc:
            unreachable(exc)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="newsflow")
def main() -> None:
    """newsflow: news articles in, search hits out.

    Articles flow fetch -> clean -> enrich -> index through one Celery queue per stage (Redis
    broker) into a tantivy search index. Every setting comes from a NEWSFLOW_* environment
    variable (see config/defaults.py); the data dir is NEWSFLOW_DATA_DIR (default ./var).

    \b
    Typical session:
      newsflow up &                                 # Redis (started if needed) + workers for every queue
      newsflow ingest https://example.com/news/1 --wait
      newsflow search "putin AND nato" --json
      newsflow demo                                 # all of the above on the bundled example pages

    \b
    Exit status: 0 done; 1 some articles dead (or the command failed); 2 usage error or timed out;
    3 Redis could not be reached (after riding out a short outage).
    """


for module in (pipeline, query, extract, admin, migrate, ops, deadletters, services, reconcile):
    for command in module.COMMANDS:
        main.add_command(command)

for command in crawl_cli.COMMANDS:
    main.add_command(command)

for command in archive_cli.COMMANDS:
    main.add_command(command)
