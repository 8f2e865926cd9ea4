"""Ctrl-C during a study stops at the next safe point, never in the middle of a storage write.

A KeyboardInterrupt raised wherever the main thread happens to be can land inside SQLAlchemy's
commit of a trial's state, leaving the study database locked and the session broken. While a
study runs, the first Ctrl-C therefore only records the request (and says so on stderr);
`check()` raises KeyboardInterrupt at the safe points — before each CV fold, after each epoch,
between trials — and the study's caller re-queues the trial it cut. A second Ctrl-C raises at
once, as Python normally does.

A time limit works the same way for work that can stop itself (the torch training loop): inside
`time_limit(seconds)`, `check_time()` — called by the loop at every optimizer step and before each
epoch's validation — raises `TimeLimitReached` once the limit has passed.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator

_state: dict = {"pending": False, "deadline": None}


class TimeLimitReached(Exception):
    """The work passed the deadline of the innermost `time_limit` block."""


class StopTraining(Exception):
    """Raised by a training loop's step hook to end training after this step (a time budget): the loop checkpoints
    the step first, so a resume goes on from it instead of repeating the steps since the last periodic checkpoint."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Within the block, `check_time()` raises TimeLimitReached after `seconds` (None: no limit)."""
    previous = _state["deadline"]
    if seconds is not None:
        deadline = time.perf_counter() + max(0.0, seconds)
        _state["deadline"] = deadline if previous is None else min(previous, deadline)
    try:
        yield
    finally:
        _state["deadline"] = previous


def check_time() -> None:
    deadline = _state["deadline"]
    if deadline is not None and time.perf_counter() > deadline:
        raise TimeLimitReached("time limit reached")


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, Ctrl-C is deferred to the next `check()` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame) -> None:
        if _state["pending"]:  # asked twice: stop now
            raise KeyboardInterrupt
        _state["pending"] = True
        sys.stderr.write("stopping at the next safe point (end of the current fold or epoch); "
                         "Ctrl-C again to stop at once\n")
        sys.stderr.flush()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _state["pending"] = False


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed inside `deferred()`."""
    if _state["pending"]:
        raise KeyboardInterrupt
