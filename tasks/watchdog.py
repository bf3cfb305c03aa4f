"""A soft time limit for tasks that run on the threads pool, where Celery enforces none.

Prefork children get `SoftTimeLimitExceeded` from a signal, and solo workers from tasks/solo.py.
A thread cannot be signalled: the watchdog instead raises `SoftTimeLimitExceeded` in the task's
own thread (CPython's `PyThreadState_SetAsyncExc`), and the stage runner turns it into a
`time_limit` dead letter as on the other pools. The exception arrives when the thread next runs
Python code, so a thread blocked in a socket call gets it when the call returns; the fetcher's
own timeouts and total deadline bound those calls, so this is the net under them, not the rule.

Only tasks running outside their process's main thread are watched (prefork and solo run tasks
in the main thread, where the signal-based limits apply), and a watch costs a dict insert and
delete under a lock: one watchdog thread per process sleeps until the nearest deadline.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from celery.exceptions import SoftTimeLimitExceeded

from newsflow.logs import get_logger

log = get_logger("newsflow.watchdog")

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object]
_set_async_exc.restype = ctypes.c_int


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> int:
    """Make `thread_id` raise `exc` at its next Python instruction (None: cancel a pending one)."""
    return int(_set_async_exc(thread_id, ctypes.py_object(exc) if exc is not None else ctypes.py_object()))


class Watchdog:
    """Deadlines of running tasks, by thread; fires `SoftTimeLimitExceeded` into late ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, str]] = {}  # thread id -> (monotonic deadline, what runs)
        self._fired: set[int] = set()
        self._thread: threading.Thread | None = None
        self._wake_at = float("inf")  # when the watchdog thread wakes next (monotonic)

    @contextmanager
    def limit(self, seconds: float, what: str = "") -> Iterator[None]:
        """Run the block under a soft limit of `seconds` (no limit in the main thread, or <= 0)."""
        if seconds <= 0 or threading.current_thread() is threading.main_thread():
            yield
            return
        tid = threading.get_ident()
        deadline = time.monotonic() + seconds
        with self._cond:
            self._start()
            self._due[tid] = (deadline, what)
            if deadline < self._wake_at:  # else the thread wakes in time anyway: no switch per task
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._due.pop(tid, None)
                if tid in self._fired:
                    # Fired while the block was finishing: cancel it if not raised yet, so it cannot
                    # surface after the message's fate was decided.
                    self._fired.discard(tid)
                    _raise_in(tid, None)

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="newsflow-watchdog", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                late = [tid for tid, (deadline, _) in self._due.items() if deadline <= now]
                for tid in late:
                    _, what = self._due.pop(tid)
                    self._fired.add(tid)
                    _raise_in(tid, SoftTimeLimitExceeded)
                    log.warning("soft_time_limit", thread=tid, task=what)
                upcoming = [deadline for deadline, _ in self._due.values()]
                self._wake_at = max(now + 0.01, min(upcoming)) if upcoming else float("inf")
                self._cond.wait(self._wake_at - now if upcoming else None)


_watchdog = Watchdog()


def soft_limit(seconds: float, what: str = "") -> AbstractContextManager[None]:
    """This process's watchdog: `with soft_limit(s): ...` (see Watchdog.limit)."""
    return _watchdog.limit(seconds, what)
