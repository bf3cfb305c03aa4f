"""kombu's Redis transport, with one change: a queue entry that is not a message is set aside.

Stock kombu decodes each entry it pops from a queue list inside its event loop; an entry that is
not JSON (or not a message envelope) raises there, and Celery stops the whole worker
("Unrecoverable error"). Anyone who can write to the broker can then stop every worker of a
stage, one entry per restart. Here such an entry is moved to a quarantine list with the reason,
logged, and the worker goes on. Celery uses it through `broker_transport` (tasks/celeryconfig.py).

Keys: `{prefix}quarantine` on the broker's Redis, newest first, capped at `QUARANTINE_MAX` entries
(JSON: queue, reason, time, and the entry itself, cut to `QUARANTINE_BYTES`).
"""

from __future__ import annotations

import json
import time
from queue import Empty
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from config.settings import get_settings
from newsflow.logs import get_logger

log = get_logger("newsflow.transport")
QUARANTINE_MAX = 1000
QUARANTINE_BYTES = 16 * 1024


def envelope(item: bytes | str) -> tuple[dict[str, Any] | None, str]:
    """The message envelope in a queue entry, or None and why it is not one."""
    try:
        payload = loads(bytes_to_str(item))
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(payload, dict):
        return None, f"not a message envelope: a JSON {type(payload).__name__}"
    properties = payload.get("properties")
    if not isinstance(properties, dict) or "delivery_tag" not in properties:
        return None, "not a message envelope: no properties.delivery_tag"
    if not isinstance(properties.get("delivery_info", {}), dict) or not isinstance(payload.get("headers", {}), dict):
        return None, "not a message envelope: delivery_info or headers is not an object"
    return payload, ""


def quarantine_key(prefix: str | None = None) -> str:
    """The quarantine list's name under `prefix` (default: this process's settings)."""
    return f"{get_settings().key_prefix if prefix is None else prefix}quarantine"


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        # As kombu's own (5.6/5.7), but an entry that is not a message is set aside, not delivered.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # if there's a ConnectionError, disconnect so the next iteration reconnects.
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._checked(dest, item)
            if payload is None:
                raise Empty()
            self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.6 streaming re-auth
            if flush is not None:
                flush()

    def _get(self, queue: Any, timeout: Any = None) -> Any:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    payload = self._checked(queue, item)
                    if payload is not None:
                        return payload
            self._maybe_update_queues_expire(client, queue)
            raise Empty()

    def _checked(self, queue: str, item: bytes | str) -> dict[str, Any] | None:
        payload, why = envelope(item)
        if payload is not None:
            return payload
        raw = item if isinstance(item, bytes) else item.encode("utf-8", "replace")
        record = {
            "queue": queue,
            "reason": why[:300],
            "time": round(time.time(), 3),
            "bytes": len(raw),
            "entry": raw[:QUARANTINE_BYTES].decode("utf-8", "replace"),
        }
        try:
            with self.conn_or_acquire() as client:
                pipe = client.pipeline()
                pipe.lpush(quarantine_key(), json.dumps(record))
                pipe.ltrim(quarantine_key(), 0, QUARANTINE_MAX - 1)
                pipe.execute()
        except self.connection_errors as exc:  # logged below either way; the entry is not re-queued
            log.error("quarantine_not_written", queue=queue, error=str(exc))
        log.error("message_quarantined", queue=queue, reason=record["reason"], bytes=len(raw))
        return None


class Transport(kombu_redis.Transport):
    Channel = Channel
