"""Redis behind Sentinel: the `sentinel://host:port;sentinel://host2:port2` URLs of Celery.

NEWSFLOW_REDIS_URL and NEWSFLOW_STATE_REDIS_URL may name the sentinels of a master group instead of
one server. The broker then goes through kombu's Sentinel transport (tasks/transport.py), the state
through redis-py's `Sentinel.master_for`: both ask the sentinels where the master is, and ask again
when a connection to it breaks or it answers as a replica (a failover demoted it).

URL form (each `;`-separated part names one sentinel; userinfo and `/db` of the first part apply):

    sentinel://[[user]:password@]host[:port][/db];sentinel://host2[:port2];...

The password in the URL is the *master's* (Redis `requirepass`), as in Celery. The sentinels' own
password and the master group's name are settings (`redis_sentinel_password`,
`redis_sentinel_master`), never part of a URL that may be logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from config.settings import redact_url

SCHEME = "sentinel"
DEFAULT_PORT = 26379


def is_sentinel_url(url: str) -> bool:
    return url.strip().lower().startswith(f"{SCHEME}://")


@dataclass(frozen=True)
class SentinelURL:
    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse(url: str) -> SentinelURL:
    """The sentinels, db and master credentials of a `sentinel://...;sentinel://...` URL."""
    sentinels: list[tuple[str, int]] = []
    db, username, password = 0, None, None
    for i, part in enumerate(p.strip() for p in url.split(";") if p.strip()):
        parts = urlsplit(part)
        if parts.scheme.lower() != SCHEME or not parts.hostname:
            raise ValueError(f"not a sentinel URL part: {redact_url(part)!r} (expected sentinel://host:port)")
        sentinels.append((parts.hostname, parts.port or DEFAULT_PORT))
        if i == 0:
            path = parts.path.strip("/")
            db = int(path) if path.isdigit() else 0
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password is not None else None
    if not sentinels:
        raise ValueError("a sentinel URL names no sentinel")
    return SentinelURL(tuple(sentinels), db, username, password)


def master_client(url: str, master: str, sentinel_password: str = "", **client_kwargs: Any) -> Any:
    """A redis.Redis for the current master of group `master`, found through the sentinels of `url`.

    Its connections ask the sentinels again on every reconnect, so after a failover the next
    retried command reaches the new master (a demoted master's READONLY reply counts as a
    connection error in redis-py and is retried the same way).
    """
    import redis
    from redis import sentinel as redis_sentinel

    Sentinel: Any = redis_sentinel.Sentinel  # untyped in redis-py

    parsed = parse(url)
    sentinel_kwargs: dict[str, Any] = {
        k: client_kwargs[k] for k in ("socket_timeout", "socket_connect_timeout") if k in client_kwargs
    }
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    manager = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(
        master,
        redis_class=redis.Redis,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **client_kwargs,
    )


def broker_options(url: str, master: str, sentinel_password: str = "") -> dict[str, Any]:
    """kombu transport options a sentinel broker URL needs (empty for any other URL)."""
    if not is_sentinel_url(url):
        return {}
    options: dict[str, Any] = {"master_name": master}
    kwargs: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2}
    if sentinel_password:
        kwargs["password"] = sentinel_password
    options["sentinel_kwargs"] = kwargs
    return options
