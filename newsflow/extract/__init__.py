"""Article extraction: HTML in, main text and metadata out (the clean stage's pure part).

`extract_article` is the only entry point the rest of newsflow uses.
"""

from newsflow.extract.article import Article, extract_article

__all__ = ["Article", "extract_article"]
