"""kombu's Redis transport, with one change: a queue entry that is not a message is set aside.

Stock kombu decodes each entry it pops from a queue list inside its event loop; an entry that is
not JSON (or not a message envelope) raises there, and Celery stops the whole worker
("Unrecoverable error"). Anyone who can write to the broker can then stop every worker of a
stage, one entry per restart. Here such an entry is moved to a quarantine list with the reason,
logged, and the worker goes on. Celery uses it through `broker_transport` (tasks/celeryconfig.py);
`SentinelTransport` is the same for `sentinel://` URLs (a Redis that fails over, docs/scaling.md).

Keys: `{prefix}quarantine` on the broker's Redis, newest first, capped at `QUARANTINE_MAX` entries
(JSON: queue, reason, time, and the entry itself, cut to `QUARANTINE_BYTES`).

A full Redis (maxmemory with noeviction) is ridden out too (`QoS` below). Redis then refuses every
command that needs memory, and every command queued in a MULTI, while reads, pops and deletes go on.
Stock kombu acks with a MULTI (ZREM + HDEL) from the worker's event loop: the refusal escaped it and
Celery stopped the worker ("Unrecoverable error: OutOfMemoryError"). Here an ack is the same two
deletes without MULTI; a requeue Redis cannot take leaves the message in the unacked set, for the
visibility timeout to bring back; a message just popped whose unacked record is refused is
parked in the worker (not delivered, no more pops) until a later tick of the event loop can write
it; the sweep for expired messages skips a round.

Acks are written once per turn of the worker's event loop (`QoS.ack`): Celery runs every ack as
a callback of that loop, and the ones that land in one turn (a whole batch of the index stage,
fetch threads that finished together) reach Redis in one round trip instead of one each.

A stage's forward and its ack can ride in the stage's own commit (`tasks.base.commit`): a publish
made inside `captured_publish` is not sent but handed back as the queue entry kombu would have
pushed (`Carried`), with the commands that remove the delivery's unacked record (`ack_commands`);
the delivery tag is then noted (`settled`) so Celery's ack that follows costs no round trip.

A broken broker connection (a Redis restart, a Sentinel failover) is settled when the worker has a
new one (`Orphans`): the messages it held and will not run (prefetched, or held for a retry's
countdown: Celery drops them with the old connection) go back to their queue at once instead of
after the visibility timeout (an hour by default), and the acks of tasks that ended in between are
made on the new connection.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

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
            if not self._deliver_unless_full(payload, dest):
                self.park(payload, dest)
                raise Empty()
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.6 streaming re-auth
            if flush is not None:
                flush()

    # --- a full Redis: messages popped that cannot be recorded as unacked yet ----------------------
    # BRPOP works on a full Redis, but kombu's unacked record of the popped message (ZADD + HSET in
    # a MULTI) is refused: stock kombu lost the message and stopped the worker. Here it is parked in
    # this process, not delivered, and this channel stops consuming (`QoS.can_consume`) until the
    # record is written on a later tick of the event loop. The loop itself never waits: a prefork
    # worker must keep reading its children's results (a child blocked on a full pipe runs into
    # its soft time limit, and its half-written result stopped the worker).
    PARKED_RETRY_S = 0.2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.parked: list[tuple[dict[str, Any], str]] = []  # (envelope, queue), oldest first
        self._parked_retry_at = 0.0
        self._from_loop = False  # delivering from the event loop: QoS.append must not wait
        super().__init__(*args, **kwargs)

    def park(self, payload: dict[str, Any], queue: str) -> None:
        self.parked.append((payload, queue))
        self._parked_retry_at = time.monotonic() + self.PARKED_RETRY_S
        log.warning("message_parked_redis_full", queue=queue, parked=len(self.parked))

    def deliver_parked(self) -> bool:
        """Try to record and deliver the parked messages (at most every PARKED_RETRY_S); whether
        none is left."""
        if not self.parked:
            return True
        if time.monotonic() < self._parked_retry_at:
            return False
        while self.parked:
            payload, queue = self.parked[0]
            if not self._deliver_unless_full(payload, queue):
                self._parked_retry_at = time.monotonic() + self.PARKED_RETRY_S
                return False
            self.parked.pop(0)
            log.info("message_unparked", queue=queue, parked=len(self.parked))
        return True

    def _deliver_unless_full(self, payload: dict[str, Any], queue: str) -> bool:
        self._from_loop = True  # QoS.append raises instead of waiting
        try:
            self.connection._deliver(payload, queue)
        except redis.RedisError as exc:
            if not redis_full(exc):
                raise
            return False
        finally:
            self._from_loop = False
        return True

    def close(self) -> None:
        # The last turn's acks first: kombu restores what is still held only when something is
        # (restore_unacked_once), and a warm shutdown cancels the consumer before it closes.
        if self._qos is not None:
            self._qos.flush_acks()
        # Parked messages are in no queue and not unacked: put them back at the head of their
        # queue if Redis takes them now; else say which are lost (the reconciler resumes them).
        for payload, queue in self.parked:
            try:
                with self.conn_or_acquire() as client:
                    client.rpush(queue, json.dumps(payload))
            except redis.RedisError as exc:
                tag = (payload.get("properties") or {}).get("delivery_tag")
                log.error("parked_message_lost", queue=queue, delivery_tag=tag, error=str(exc)[:200])
        self.parked.clear()
        super().close()

    def _size(self, queue: str) -> int:
        # A queue's length (kombu asks for it when a publish declares the queue, e.g. on a fresh
        # channel): stock kombu reads it in a MULTI, which a full Redis refuses whole, so the
        # publish failed and its article was retried to death while Redis was full. Reads need no
        # transaction.
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            for pri in self.priority_steps:
                pipe.llen(self._q_for_pri(queue, pri))
            return sum(size for size in pipe.execute() if isinstance(size, int))

    def _connparams(self, asynchronous: bool = False) -> Any:
        # A channel closed after its connection broke has no connection left: kombu 5.7 then fails
        # with AttributeError ('NoneType' object has no attribute 'client') when a producer still
        # holding it publishes, and the stage took that for a bug (`internal_error`). As a
        # connection error, kombu's publish retry reconnects and revives the producer instead.
        if self.connection is None:
            raise redis.exceptions.ConnectionError("this broker channel was closed; reconnect")
        return super()._connparams(asynchronous=asynchronous)

    def _create_client(self, asynchronous: bool = False) -> Any:
        # Stock kombu builds a new redis.Redis for every publish, every unacked record and every
        # ack (`conn_or_acquire`), and redis-py's constructor costs some 0.17 ms of CPU: half a
        # millisecond per message and hop. A client holds no connection of its own (it borrows one
        # from the pool per command) and is thread-safe, so one per pool serves them all. The
        # asynchronous client (BRPOP, which pins a connection on the client) stays kombu's.
        if asynchronous:
            return super()._create_client(asynchronous=True)
        pool = self.pool
        shared = self.__dict__.get("_shared_client")
        if shared is None or shared[0] is not pool:  # first use, or the pool was rebuilt
            shared = (pool, super()._create_client())
            self._shared_client = shared
        return shared[1]

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        pushes = _capture.pushes
        if pushes is None:
            super()._put(queue, message, **kwargs)
            return
        if kwargs.get("_publish_batch") is not None or (self._expires and queue in self._expires):
            # kombu would write more than one LPUSH (a batch, a queue's expiry): not carried.
            raise CannotCarry(f"a publish to {queue!r} is more than one list push")
        pri = self._get_message_priority(message, reverse=False)
        pushes.append(Carried(self.global_keyprefix + self._q_for_pri(queue, pri), dumps(message), self))

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


def redis_full(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from: kombu wraps publish errors) is Redis refusing a
    write because it is full (OOM under maxmemory with noeviction)."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; a bound, not a loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, redis.exceptions.OutOfMemoryError) or "used memory > 'maxmemory'" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# How long a popped message waits between two tries of its unacked record while Redis is full.
UNACKED_RECORD_RETRY_S = (0.05, 1.0)


class CannotCarry(Exception):
    """This publish cannot be written by another atomic step; send it the ordinary way."""


@dataclass(frozen=True)
class Carried:
    """One captured publish: the queue list and the entry kombu would have pushed onto it."""

    key: str
    entry: str
    channel: Channel

    def push_command(self) -> tuple[str, ...]:
        return ("LPUSH", self.key, self.entry)


class _Capture(threading.local):
    pushes: list[Carried] | None = None


_capture = _Capture()


@contextmanager
def captured_publish() -> Iterator[list[Carried]]:
    """Publishes on this thread inside the block are collected, not sent (kombu builds the message
    exactly as it would: delivery tag, body encoding, the priority's list)."""
    pushes: list[Carried] = []
    _capture.pushes = pushes
    try:
        yield pushes
    finally:
        _capture.pushes = None


def ack_commands(channel: Channel, delivery_tag: str) -> tuple[tuple[str, ...], ...]:
    """What acking `delivery_tag` writes (QoS._remove_from_indices: payload first, then index)."""
    prefix = channel.global_keyprefix
    return (
        ("HDEL", prefix + channel.unacked_key, delivery_tag),
        ("ZREM", prefix + channel.unacked_index_key, delivery_tag),
    )


class _Settled:
    """Delivery tags whose unacked record a stage's commit already removed (`ack_commands`), so the
    ack Celery makes next writes nothing. Bounded: a tag acked by another process (a prefork
    child commits, its parent acks) is never asked for here and ages out; that parent's ack is an
    ordinary one, deleting what is already gone."""

    MAX = 4096

    def __init__(self) -> None:
        self._tags: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, tag: str) -> None:
        with self._lock:
            self._tags[tag] = None
            if len(self._tags) > self.MAX:
                self._tags.popitem(last=False)

    def take(self, tag: str) -> bool:
        """Whether `tag` was settled by a commit (and forget it)."""
        with self._lock:
            return self._tags.pop(tag, False) is None


settled = _Settled()


class Orphans:
    """What this process held when its broker connection broke, settled on the next connection.

    A channel closed after its connection broke cannot ack, requeue or restore anything: its
    messages stay in Redis's unacked set (Redis kept them: append-only file, replica) until the
    visibility timeout brings them back. Of those, the ones this process will never run again
    (Celery drops its prefetched and countdown-held requests with the old connection) are put back
    at the head of their queue as soon as a live channel can do it; the ones still running (Celery's
    active requests, a batched stage's buffer: `in_use`) are left alone, and their ack or reject,
    made while the connection was gone, is carried out then. A restore finds nothing when Redis
    lost the record (no persistence): the reconciler resumes those articles from the ledger."""

    SETTLE_EVERY_S = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.held: set[str] = set()  # delivery tags of the broken channels, not settled
        self.done: dict[str, bool] = {}  # tag -> requeue: settled by this process after the break
        self.in_use: set[str] = set()  # tags a batched stage holds (buffered or in its timer)
        self._next = 0.0

    def broke(self, tags: Iterator[str] | list[str]) -> None:
        with self._lock:
            self.held.update(tags)

    def settled(self, tag: str, requeue: bool) -> None:
        with self._lock:
            self.held.discard(tag)
            self.done[tag] = requeue

    def use(self, tag: str) -> None:
        if tag:
            with self._lock:
                self.in_use.add(tag)

    def release(self, tag: str) -> None:
        with self._lock:
            self.in_use.discard(tag)

    def pending(self) -> bool:
        return bool(self.held or self.done)

    def settle(self, qos: QoS) -> None:
        """On a live channel, at most every SETTLE_EVERY_S: restore what nobody here runs, carry out
        the deferred acks and requeues. What Redis refuses now is tried again next time."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.SETTLE_EVERY_S
        running = _running_tags()
        if running is None:
            return  # the next tick asks again
        with self._lock:
            idle = [t for t in self.held if t not in running and t not in self.in_use]
            done = dict(self.done)
        restored = acked = 0
        try:
            for tag in idle:
                qos.restore_by_tag(tag, leftmost=True)
                with self._lock:
                    self.held.discard(tag)
                restored += 1
            for tag, requeue in done.items():
                if requeue:
                    qos.restore_by_tag(tag, leftmost=True)
                else:
                    qos._remove_from_indices(tag).execute()
                with self._lock:
                    self.done.pop(tag, None)
                acked += 1
        except redis.RedisError as exc:
            log.warning("orphans_not_settled", error=str(exc)[:200], left=len(self.held) + len(self.done))
        if restored or acked:
            log.info("orphans_settled", restored=restored, settled=acked, still_running=len(self.held))


def _running_tags() -> set[str] | None:
    """Delivery tags of the requests this worker process is running (Celery's own record); None
    when the set changed under the copy (a pool thread accepted a task meanwhile): ask again later."""
    from celery.worker import state

    try:
        requests = list(state.active_requests)
    except RuntimeError:  # "set changed size during iteration"
        return None
    tags = set()
    for request in requests:
        tag = getattr(getattr(request, "message", None), "delivery_tag", None)
        if tag:
            tags.add(str(tag))
    return tags


orphans = Orphans()


class QoS(kombu_redis.QoS):
    """kombu's ack emulation, made to ride out a full Redis (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turn_acks: list[str] = []  # acked in this turn of the event loop, not yet in Redis
        self._sweep_ceil: float | None = None  # while sweeping: restore only records older than this

    def can_consume(self) -> bool:
        # The event loop asks before every poll, after running the turn's callbacks (the acks).
        self.flush_acks()
        # No more BRPOP while a popped message waits for room to be recorded (Channel.park).
        if not self.channel.deliver_parked():
            return False
        if orphans.pending() and not self.connection_gone():
            orphans.settle(self)
        return bool(super().can_consume())

    def append(self, message: Any, delivery_tag: str) -> None:
        if getattr(self.channel, "_from_loop", False):
            super().append(message, delivery_tag)  # refused: the channel parks the message
            return
        # basic_get (a synchronous consumer, never the worker's event loop): the message is popped
        # (RPOP works on a full Redis) but its unacked record (ZADD + HSET) is refused. Giving up
        # would lose it, and Redis cannot take it back either (RPUSH is refused too): hold it, in
        # this process, until there is room; the caller is waiting for a message anyway.
        delay, since, warned = UNACKED_RECORD_RETRY_S[0], time.monotonic(), 0.0
        while True:
            try:
                super().append(message, delivery_tag)
            except redis.RedisError as exc:
                if not redis_full(exc):
                    raise
                waited = time.monotonic() - since
                if waited >= warned:
                    log.warning("unacked_record_waits_for_room", delivery_tag=delivery_tag, waited_s=round(waited, 1))
                    warned = waited + 10.0
                time.sleep(delay)
                delay = min(UNACKED_RECORD_RETRY_S[1], delay * 2)
                continue
            if warned:
                log.info("unacked_recorded", delivery_tag=delivery_tag, waited_s=round(time.monotonic() - since, 1))
            return

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        # An ack: HDEL and ZREM in one round trip but without MULTI, which a full Redis refuses
        # (the deletes alone it accepts). Payload first: an index entry left alone by a crash in
        # between is cleaned up by the next restore (it finds no payload), never restored twice.
        if pipe is not None:  # part of a restore's transaction: keep kombu's
            return super()._remove_from_indices(delivery_tag, pipe)
        with self.channel.conn_or_acquire() as client:
            return (
                client.pipeline(transaction=False)
                .hdel(self.unacked_key, delivery_tag)
                .zrem(self.unacked_index_key, delivery_tag)
            )

    def connection_gone(self) -> bool:
        """This channel's broker connection broke and was closed (a Redis restart, a Sentinel
        failover): kombu 5.7 would build a new pool from the closed connection's parameters, which
        are gone, and the AttributeError ends the whole worker ("Unrecoverable error"). Redis
        cannot be asked through this channel any more; the worker reconnects on a new one."""
        transport = getattr(self.channel, "connection", None)  # None too once the channel is closed
        return self.channel._pool is None and getattr(transport, "client", None) is None

    def remove_many(self, tags: list[str]) -> None:
        """The unacked records of many acked messages, in one round trip (payloads first, as
        `_remove_from_indices`)."""
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            pipe.hdel(self.unacked_key, *tags).zrem(self.unacked_index_key, *tags).execute()

    def ack(self, delivery_tag: str) -> None:
        if settled.take(delivery_tag):
            virtual.QoS.ack(self, delivery_tag)  # its record went with the stage's commit
            return
        if self._polled() and not self.connection_gone():
            # Celery acks from its event loop, one callback per message; the acks of one turn go
            # out together before the loop polls again (`can_consume`, `flush_acks`). A process
            # killed in between leaves their records behind: they come back after the visibility
            # timeout, and the ledger makes that redelivery a no-op, as for any ack that was lost.
            # Only while the loop polls this channel: a closed one, or one whose consumer was
            # cancelled (`celery control cancel_consumer`, a draining host), gets no later turn.
            self._turn_acks.append(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)  # leaves the prefetch count at once
            return
        if self.connection_gone():
            # A task that ended after its channel's connection broke: the ack is made on the next
            # live channel (`orphans`); if this process dies first, the message comes back after
            # the visibility timeout, where the ledger (the stage already recorded) makes it a no-op.
            log.warning("ack_deferred_connection_gone", delivery_tag=delivery_tag)
            orphans.settled(delivery_tag, requeue=False)
            virtual.QoS.ack(self, delivery_tag)  # this process no longer holds it
            return
        super().ack(delivery_tag)

    def _polled(self) -> bool:
        """Whether this runs in the thread of the worker's event loop while the loop polls this
        channel: only then does it call `can_consume` on every turn. Elsewhere (a consumer with no
        event loop, `basic_get`, a closed or cancelled channel) an ack is written at once."""
        channel = self.channel
        transport = channel.connection
        return (
            transport is not None
            and getattr(transport, "loop_thread", None) == threading.get_ident()
            and not channel.closed
            and bool(channel.active_queues)
        )

    def flush_acks(self) -> None:
        """Write the acks of this turn of the event loop in one round trip."""
        tags, self._turn_acks = self._turn_acks, []
        if not tags:
            return
        try:
            if not self.connection_gone():
                self.remove_many(tags)
                return
        except redis.RedisError as exc:
            log.warning("acks_deferred", acks=len(tags), error=str(exc)[:200])
            if not isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                # A rare refusal (a full Redis takes deletes): the records stay, and the messages
                # come back after the visibility timeout as no-ops.
                return
        for tag in tags:
            orphans.settled(tag, requeue=False)  # made on the next live channel

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        settled.take(delivery_tag)  # a committed delivery has nothing left to requeue: its forward is out
        if self.connection_gone():
            log.warning("reject_deferred_connection_gone", delivery_tag=delivery_tag, requeue=requeue)
            orphans.settled(delivery_tag, requeue=requeue)  # on the next live channel
            virtual.QoS.ack(self, delivery_tag)  # this process no longer holds it
            return
        if not requeue:
            super().reject(delivery_tag, requeue=False)
            return
        try:
            self.restore_by_tag(delivery_tag, leftmost=True)
        except redis.RedisError as exc:
            if not redis_full(exc):
                raise
            # The restore is one transaction and Redis refused all of it: the message is still in
            # the unacked set, and comes back after the visibility timeout. Nothing is lost.
            log.warning("requeue_deferred_redis_full", delivery_tag=delivery_tag)
        virtual.QoS.ack(self, delivery_tag)  # this process no longer holds it

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        """kombu's sweep for messages past the visibility timeout, with each message's age checked
        again in the transaction that restores it (`restore_by_tag`): a sweep that stalled (a
        frozen Redis, a busy process) past its lock's expiry, while another sweep restored the
        same message and a worker took it again, would otherwise restore that worker's live copy
        a second time."""
        self.flush_acks()  # a message acked this turn must not look expired to the sweep
        self._sweep_ceil = time.time() - self.visibility_timeout
        try:
            super().restore_visible(*args, **kwargs)
        except redis.RedisError as exc:
            if not redis_full(exc):
                raise
            log.info("restore_visible_deferred_redis_full")  # the next sweep tries again
        finally:
            self._sweep_ceil = None

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        if self._sweep_ceil is None:  # a requeue, a restore at shutdown or of orphans: kombu's
            super().restore_by_tag(tag, client, leftmost)
            return
        ceil, tag = self._sweep_ceil, bytes_to_str(tag)

        def restore(pipe: Any) -> None:  # kombu's restore transaction, if the record is still old
            score = pipe.zscore(self.unacked_index_key, tag)
            raw = pipe.hget(self.unacked_key, tag)
            if score is not None and score > ceil:
                return  # taken again since the sweep looked: not ours to restore
            pipe.multi()
            self._remove_from_indices(tag, pipe)
            if raw:
                payload, exchange, routing_key = loads(bytes_to_str(raw))
                self.channel._do_restore_message(payload, exchange, routing_key, pipe, leftmost)

        with self.channel.conn_or_acquire(client) as conn:
            conn.transaction(restore, self.unacked_key, self.unacked_index_key)

    def restore_unacked(self, client: Any = None) -> None:
        # At shutdown: what Redis cannot take back now stays in the unacked set (visibility timeout).
        self.flush_acks()  # the last turn's acks first: those messages are done, not to be restored
        if client is None and self.connection_gone():
            # The channel is closed after its connection broke: what this process held stays in
            # the unacked set until the next live channel settles it (`orphans`).
            log.warning("restore_unacked_skipped_connection_gone", held=len(self._delivered))
            orphans.broke(list(self._delivered))
            self._delivered.clear()
            return
        with self.channel.conn_or_acquire(client) as conn:
            for tag in list(self._delivered):
                try:
                    self.restore_by_tag(tag, client=conn)
                except redis.RedisError as exc:
                    if not redis_full(exc):
                        raise
                    log.warning("requeue_deferred_redis_full", delivery_tag=tag)
        self._delivered.clear()


Channel.QoS = QoS  # Channel (and SentinelChannel) make their QoS from this attribute


class _EventLoop:
    """Notes the thread of the worker's event loop (see `QoS.ack`)."""

    loop_thread: int | None = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)  # type: ignore[misc]
        self.loop_thread = threading.get_ident()  # Celery registers from the loop's own thread


class Transport(_EventLoop, kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The same behaviour (quarantine, the QoS above) on kombu's Sentinel channel (`sentinel://`
    broker URLs): the methods above come first, kombu's Sentinel pool (`_get_pool`: ask the
    sentinels for the master) next."""


class SentinelTransport(_EventLoop, kombu_redis.SentinelTransport):
    Channel = SentinelChannel
