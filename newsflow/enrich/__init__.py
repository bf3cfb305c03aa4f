"""Enrichment: what is known about an article beyond its text (the enrich stage).

`enrich_article` (pure) and `assign_cluster` (near-duplicate clustering in Redis) are the entry points
the rest of newsflow uses.
"""

from newsflow.enrich.clusters import assign_cluster
from newsflow.enrich.pipeline import enrich_article, warm_up

__all__ = ["assign_cluster", "enrich_article", "warm_up"]
