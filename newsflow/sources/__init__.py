"""Where crawls find URLs: the sources file, feeds, sitemaps, URL lists and the link rules.

Everything here is pure parsing plus one small HTTP helper; the crawl itself lives in
`newsflow.crawl`, the Celery task in `tasks.crawl`.
"""

from newsflow.sources.model import Discovered, SourceError

__all__ = ["Discovered", "SourceError"]
