"""newsflow's domain code: typed, mostly pure functions that the Celery tasks adapt.

Nothing in this package imports Celery; every stage function can be called directly.
"""

__version__ = "0.1.0"
