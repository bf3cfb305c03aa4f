"""Enrichment: what is known about an article beyond its text (the enrich stage's pure part).

`enrich_article` is the only entry point the rest of newsflow uses.
"""

from newsflow.enrich.basic import enrich_article

__all__ = ["enrich_article"]
