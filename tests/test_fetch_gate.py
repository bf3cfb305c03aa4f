"""The fetch stage's politeness gate: a booked slot close by is waited for in the thread; a far one
sends the message again with a countdown (tasks/fetch.py `_gate`)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from config.defaults import Settings
from newsflow.pipeline import Message
from newsflow.polite.limiter import Permit


class Limiter:
    def __init__(self, permit: Permit) -> None:
        self.permit = permit

    def acquire(self, host: str, interval_s: float, booked_ms: int | None = None) -> Permit:
        return self.permit


class Stores:
    def __init__(self, permit: Permit) -> None:
        self.settings = replace(Settings(), polite_obey_robots=False)
        self.limiter = Limiter(permit)


def _gate(permit: Permit, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[float], float]:
    from tasks import fetch

    deferred: list[float] = []
    monkeypatch.setattr(fetch, "_defer", lambda task, msg, wait_s, slot: deferred.append(wait_s))
    msg = Message.new("https://news.example/a", "a" * 32)
    started = time.monotonic()
    got = fetch._gate(None, Stores(permit), msg, msg.url, "news.example", "https://news.example")  # type: ignore[arg-type]
    return got, deferred, time.monotonic() - started


def test_a_slot_now_fetches_now(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import fetch

    got, deferred, _ = _gate(Permit(True, 0.0, 123), monkeypatch)
    assert got is fetch.handle and deferred == []


def test_a_near_booked_slot_is_waited_for_in_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks import fetch

    got, deferred, took = _gate(Permit(False, 0.05, 123), monkeypatch)
    assert got is fetch.handle and deferred == []
    assert took >= 0.05  # the request goes out at its slot, not before


def test_a_far_slot_or_an_unbooked_one_goes_back_to_the_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    far = Settings().polite_inline_wait_s + 1.0
    got, deferred, took = _gate(Permit(False, far, 123), monkeypatch)
    assert got is None and deferred == [far] and took < 0.2
    got, deferred, _ = _gate(Permit(False, 0.01, None), monkeypatch)  # not booked: never waited for here
    assert got is None and deferred == [0.01]
