"""The pipeline's contract: its stages, the message between them, and where an article re-enters.

This is the one place these are written down; task names, queues, routes, ledger states, the
reconciler's next-stage map, replay and lost-input handling are all derived from it.

Task and queue names are a wire protocol shared by every worker and client: renaming one is a
breaking change for messages already queued. So is the message's layout: bump `PAYLOAD_VERSION`
when a key's meaning changes (adding an optional key is not a change of meaning).
"""

from __future__ import annotations

import enum
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from newsflow.errors import PermanentError


class Input(enum.Enum):
    """What a stage reads from the state store besides its message."""

    NONE = "none"  # the URL is enough (fetch)
    BLOB = "blob"  # the raw HTML parked by fetch, named by the message's `blob` key (claim check)
    DOC = "doc"  # the article document written by clean, keyed by the article id


@dataclass(frozen=True)
class Stage:
    name: str
    task: str  # Celery task name (wire protocol)
    queue: str  # Redis list the task's messages wait in (wire protocol)
    done_state: str  # the ledger state an article is in once this stage is done with it
    input: Input


# The four article stages, in pipeline order.
STAGES: tuple[Stage, ...] = (
    Stage("fetch", "fetch.page", "fetch", "fetched", Input.NONE),
    Stage("clean", "clean.page", "clean", "cleaned", Input.BLOB),
    Stage("enrich", "enrich.article", "enrich", "enriched", Input.DOC),
    Stage("index", "index.article", "index", "indexed", Input.DOC),
)
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
ORDER: tuple[str, ...] = tuple(s.name for s in STAGES)
FIRST, LAST = STAGES[0], STAGES[-1]

# Ledger states: discovered, then each stage's done state, or dead (with a stage and a reason).
STATES: tuple[str, ...] = ("discovered", *(s.done_state for s in STAGES), "dead")
TERMINAL_STATES = frozenset({LAST.done_state, "dead"})

# Not article stages: a crawl reads one source and feeds the first stage (docs/crawling.md);
# housekeeping (resuming articles whose message was lost) rides the same light queue.
CRAWL_TASK, CRAWL_QUEUE = "crawl.source", "crawl"
RECONCILE_TASK = "maintenance.reconcile"

PAYLOAD_VERSION = 1


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"no stage {name!r}: the stages are {', '.join(ORDER)}") from None


def next_stage(name: str) -> Stage | None:
    i = ORDER.index(name)
    return STAGES[i + 1] if i + 1 < len(STAGES) else None


def stage_after(state: str) -> Stage | None:
    """The stage that consumes an article in ledger state `state` (None once terminal)."""
    if state == "discovered":
        return FIRST
    for i, s in enumerate(STAGES):
        if s.done_state == state:
            return STAGES[i + 1] if i + 1 < len(STAGES) else None
    return None


def state_before(name: str) -> str:
    """The ledger state of an article waiting for stage `name` (what a replay there records)."""
    i = ORDER.index(name)
    return STAGES[i - 1].done_state if i else "discovered"


def reached(state: str | None, name: str) -> bool:
    """Whether an article in ledger state `state` is past stage `name` (dead is not past anything)."""
    if state is None or state == "dead" or state not in STATES:
        return False
    return STATES.index(state) >= STATES.index(BY_NAME[name].done_state)


def beyond(state: str | None, name: str) -> bool:
    """Whether an article in ledger state `state` has gone past stage `name`'s own state: a later
    stage has worked on it since, so a delivery of `name` still running is a stale duplicate."""
    if state is None or state == "dead" or state not in STATES:
        return False
    return STATES.index(state) > STATES.index(BY_NAME[name].done_state)


def task_routes() -> dict[str, dict[str, str]]:
    routes = {s.task: {"queue": s.queue} for s in STAGES}
    routes[CRAWL_TASK] = {"queue": CRAWL_QUEUE}
    routes[RECONCILE_TASK] = {"queue": CRAWL_QUEUE}
    return routes


# --- the message ---------------------------------------------------------------------------------

# Keys that say where an article came from. They ride along every hop, are kept in the ledger
# when the article is discovered, and come back whenever the article starts again (reconcile,
# replay, a refetch after lost input): a resumed article keeps its source's rate limit, its
# language hint and its per-source count.
ORIGIN_KEYS = ("source", "hints", "rate_per_s", "submitted_at")
# Bounds on what a message may carry: ids are hashes; an over-long URL is the fetcher's to refuse
# (`bad_url`), this only keeps a hostile one from bloating queues.
_MAX_ID, _MAX_URL = 128, 65536


def _now() -> float:
    return round(time.time(), 3)


@dataclass(frozen=True)
class Message:
    """One article's message between stages: ids and keys only, never page bodies."""

    id: str
    url: str
    source: str | None = None  # the configured source that found it (None: ad-hoc ingest)
    hints: Mapping[str, Any] | None = None  # e.g. language, feed date and title (used by clean)
    rate_per_s: float | None = None  # the source's own politeness rate, if it sets one
    submitted_at: float | None = None  # start of the submit-to-indexed lag
    enqueued_at: float | None = None  # when this message was sent (age of a queue's oldest)
    refetched: bool = False  # started over at fetch after its input was lost: only once
    slot_ms: int | None = None  # fetch: the host-limiter slot booked for this message
    blob: str | None = None  # clean: the claim-check key of the raw HTML
    fetch: Mapping[str, Any] | None = field(default=None)  # clean: what the fetch saw (final URL, status, ...)
    waits: int = 0  # this stage's retries spent waiting for newsflow's own Redis: not the article's failures

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def new(
        cls,
        url: str,
        article_id: str,
        *,
        source: str | None = None,
        hints: Mapping[str, Any] | None = None,
        rate_per_s: float | None = None,
    ) -> Message:
        """A newly discovered article, for the first stage."""
        now = _now()
        return cls(
            article_id,
            url,
            source=source or None,
            hints=dict(hints) if hints else None,
            rate_per_s=rate_per_s or None,
            submitted_at=now,
            enqueued_at=now,
        )

    @classmethod
    def from_origin(cls, article_id: str, url: str, origin: Mapping[str, Any] | None) -> Message:
        """The message of an article known only by its ledger entry (id, URL and stored origin)."""
        kept = {k: v for k, v in (origin or {}).items() if k in ORIGIN_KEYS}
        try:
            return cls.from_wire({"v": PAYLOAD_VERSION, "id": article_id, "url": url, **kept})
        except BadMessage:  # an origin written by an older or foreign writer: the URL alone will do
            return cls.from_wire({"v": PAYLOAD_VERSION, "id": article_id, "url": url})

    @classmethod
    def from_wire(cls, payload: Any) -> Message:
        """Parse and check a received payload; a malformed one is a permanent `bad_payload`."""
        if not isinstance(payload, dict):
            raise BadMessage(f"expected a JSON object, got {type(payload).__name__}")
        if payload.get("v") != PAYLOAD_VERSION:
            raise BadMessage(f"expected payload version {PAYLOAD_VERSION}, got {payload.get('v')!r}")
        aid, url = payload.get("id"), payload.get("url")
        if not isinstance(aid, str) or not aid or len(aid) > _MAX_ID:
            raise BadMessage("payload lacks a valid id")
        if not isinstance(url, str) or not url or len(url) > _MAX_URL:
            raise BadMessage("payload lacks a valid url")
        return cls(
            aid,
            url,
            source=_opt(payload, "source", str),
            hints=_opt(payload, "hints", dict),
            rate_per_s=_number(payload, "rate_per_s"),
            submitted_at=_number(payload, "submitted_at"),
            enqueued_at=_number(payload, "enqueued_at"),
            refetched=payload.get("refetched") is True,
            slot_ms=_opt(payload, "slot_ms", int),
            blob=_opt(payload, "blob", str),
            fetch=_opt(payload, "fetch", dict),
            waits=_count(payload, "waits"),
        )

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": PAYLOAD_VERSION, "id": self.id, "url": self.url}
        for key in ("source", "hints", "rate_per_s", "submitted_at", "enqueued_at", "slot_ms", "blob", "fetch"):
            value = getattr(self, key)
            if value is not None:
                out[key] = dict(value) if isinstance(value, Mapping) else value
        if self.refetched:
            out["refetched"] = True
        if self.waits:
            out["waits"] = self.waits
        return out

    # -- moves --------------------------------------------------------------------------------
    def origin(self) -> dict[str, Any]:
        """Where the article came from: what the ledger keeps to start it again later."""
        wire = self.to_wire()
        return {k: wire[k] for k in ORIGIN_KEYS if k in wire}

    def origin_json(self) -> str:
        return json.dumps(self.origin(), ensure_ascii=False, separators=(",", ":"))

    def forward(self, **outputs: Any) -> Message:
        """The message for the next stage: the origin kept, this stage's outputs set, the rest dropped.

        `outputs` are the next stage's own keys (`blob` and `fetch` for clean); keys of the stage
        just done (a booked fetch slot, the claim check already released) do not travel further.
        """
        changes: dict[str, Any] = {
            "slot_ms": None, "blob": None, "fetch": None, "waits": 0, "enqueued_at": _now(), **outputs
        }  # fmt: skip
        return replace(self, **changes)

    def restart(self, at: str) -> Message:
        """The same article sent again to stage `at` (reconcile, replay): origin kept, a new
        submission time; at fetch, nothing of an earlier fetch kept."""
        now = _now()
        if at == FIRST.name:
            return replace(self, slot_ms=None, blob=None, fetch=None, waits=0, enqueued_at=now, submitted_at=now)
        return replace(self, slot_ms=None, waits=0, enqueued_at=now, submitted_at=now)

    def refetch(self) -> Message:
        """Start over at fetch after the stage's input was lost (allowed once)."""
        return replace(self.restart(FIRST.name), refetched=True, submitted_at=self.submitted_at)

    def describe(self) -> str:
        """What Flower and logs show for the message (the id and URL say which article it is)."""
        return f"({self.id} {self.url[:200]})"


class BadMessage(PermanentError):
    def __init__(self, detail: str) -> None:
        super().__init__("bad_payload", detail)


# Bounds of a payload's numbers. Every producer stamps real clocks and configured rates, so a
# number outside them is a forged or corrupt message: refused as `bad_payload` before any stage
# hands it to Redis (the limiter's Lua script), Celery (a countdown) or the metrics.
# Timestamps (s) and booked slots (ms) are Unix times between 1970 and 2100.
_MAX_EPOCH_S = 4_102_444_800.0  # 2100-01-01T00:00:00Z
_INT_BOUNDS: dict[str, tuple[int, int]] = {"slot_ms": (0, int(_MAX_EPOCH_S) * 1000), "waits": (0, 1_000_000)}
_NUMBER_BOUNDS: dict[str, tuple[float, float]] = {
    "submitted_at": (0.0, _MAX_EPOCH_S),
    "enqueued_at": (0.0, _MAX_EPOCH_S),
}
# A rate (requests/s) must be > 0; a positive one is clamped into what the limiter can honour: its
# slots are whole milliseconds (so at most 1,000/s), and its floor is newsflow.polite.hosts'.
_RATE_KEYS = frozenset({"rate_per_s"})
_MIN_RATE_PER_S, _MAX_RATE_PER_S = 1e-6, 1000.0


def _opt(payload: Mapping[str, Any], key: str, kind: type) -> Any:
    value = payload.get(key)
    if value is None:
        return None
    if kind is int and isinstance(value, bool):
        raise BadMessage(f"{key} must be {kind.__name__}")
    if not isinstance(value, kind):
        raise BadMessage(f"{key} must be {kind.__name__}, got {type(value).__name__}")
    if key in _INT_BOUNDS:
        low, high = _INT_BOUNDS[key]
        if not isinstance(value, int) or not low <= value <= high:
            raise BadMessage(f"{key} must be between {low} and {high}, got {str(value)[:40]}")
    return value


def _count(payload: Mapping[str, Any], key: str) -> int:
    value = _opt(payload, key, int)
    return 0 if value is None else int(value)


def _number(payload: Mapping[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadMessage(f"{key} must be a finite number")
    try:
        number = float(value)  # an int beyond a float (10**400) overflows
    except OverflowError:
        raise BadMessage(f"{key} must be a finite number") from None
    if not math.isfinite(number):
        raise BadMessage(f"{key} must be a finite number")
    if key in _RATE_KEYS:
        if number <= 0:
            raise BadMessage(f"{key} must be > 0, got {number:g}")
        return min(max(number, _MIN_RATE_PER_S), _MAX_RATE_PER_S)
    if key in _NUMBER_BOUNDS:
        low, high = _NUMBER_BOUNDS[key]
        if not low <= number <= high:
            raise BadMessage(f"{key} must be between {low:g} and {high:g}, got {number:g}")
    return number


# --- where an article re-enters ------------------------------------------------------------------


class InputProbe(Protocol):
    """Asks the state store whether a stage's input is still there."""

    def has_blob(self, key: str) -> bool: ...

    def has_doc(self, article_id: str) -> bool: ...


def has_input(at: Stage, message: Message, store: InputProbe) -> bool:
    if at.input is Input.NONE:
        return True
    if at.input is Input.BLOB:
        # The raw HTML's key and what the fetch saw travel only in the clean message.
        return message.blob is not None and message.fetch is not None and store.has_blob(message.blob)
    return store.has_doc(message.id)


def reentry(at: str, message: Message, store: InputProbe) -> Stage:
    """Where an article sent again to stage `at` starts: there if that stage's input is still
    stored, else at fetch (a fresh start from the URL). Used by reconcile, replay and lost input."""
    target = stage(at)
    return target if has_input(target, message, store) else FIRST


def resume_from(state: str) -> Stage:
    """The stage an article stuck in ledger state `state` was about to enter (reconcile)."""
    return stage_after(state) or FIRST


LostInputFate = Literal["skip", "refetch", "dead"]


def on_lost_input(at: str, ledger_state: str | None, message: Message) -> LostInputFate:
    """A stage found its input gone. A redelivery of work already done is skipped (its input was
    cleaned up after use); otherwise the article is fetched anew, once; the second loss is dead."""
    if reached(ledger_state, at):
        return "skip"
    return "dead" if message.refetched else "refetch"
