"""Ctrl-C during a study stops at the next safe point, never in the middle of a storage write.

A KeyboardInterrupt raised wherever the main thread happens to be can land inside SQLAlchemy's
commit of a trial's state, leaving the study database locked and the session broken. While a
study runs, the first Ctrl-C therefore only records the request (and says so on stderr);
`check()` raises KeyboardInterrupt at the safe points — before each CV fold, after each epoch,
between trials — and the study's caller re-queues the trial it cut. A second Ctrl-C raises at
once, as Python normally does.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

_state = {"pending": False}


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
