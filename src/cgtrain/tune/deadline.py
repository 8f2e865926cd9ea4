"""A deadline that holds inside a fit: the work runs in a forked child process that is ended at the deadline.

scikit-learn's solvers (liblinear, saga, SGD) and LightGBM cannot be interrupted from Python once
they run; checking the clock between folds only skips the *next* fold. `call_with_deadline` forks
(the child shares the parent's memory copy-on-write: the fold's feature matrix is not copied),
runs `fn` there and sends its result back through a pipe; at the deadline the child is killed and
`DeadlineExceeded` raised, so a budget is kept whatever one fit would have cost.

Where fork is unavailable (not POSIX) `fn` runs in-process.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any, Callable

GRACE_S = 0.05


class DeadlineExceeded(TimeoutError):
    """The work did not finish before its deadline; its process was ended."""


class ChildFailed(RuntimeError):
    """The work raised in the child process (the message names the exception)."""


def _run(fn: Callable[[], Any], conn) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (at a safe point)
    try:
        result = ("ok", fn())
    except BaseException as exc:  # sent back and re-raised in the parent
        result = ("err", f"{type(exc).__name__}: {exc}"[:1000])
    try:
        conn.send(result)
    finally:
        conn.close()


def can_fork() -> bool:
    return hasattr(os, "fork") and "fork" in mp.get_all_start_methods()


def call_with_deadline(fn: Callable[[], Any], seconds: float | None) -> Any:
    """fn() in a forked child; DeadlineExceeded when it has not answered within `seconds`."""
    if seconds is None or not can_fork():
        return fn()
    if seconds <= 0:
        raise DeadlineExceeded("no time left")
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run, args=(fn, send), daemon=True)
    start = time.monotonic()
    proc.start()
    send.close()
    try:
        if not recv.poll(max(0.0, seconds - (time.monotonic() - start)) + GRACE_S):
            raise DeadlineExceeded(f"not finished after {seconds:.1f}s; its process was ended")
        try:
            status, value = recv.recv()
        except EOFError:
            proc.join(5)
            raise ChildFailed(f"the fit's process died (exit code {proc.exitcode})") from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        recv.close()
    if status == "err":
        raise ChildFailed(value)
    return value


def call_within(fn: Callable[[], Any], seconds: float | None, in_process: bool) -> Any:
    """fn() stopped at `seconds`, DeadlineExceeded either way: in this process through `interrupts.time_limit` when
    `in_process` (fn checks `interrupts.check_time()`, as the torch training loop does at every step; forking after
    an accelerator started is unsafe), else in a forked child ended at the deadline (`call_with_deadline`)."""
    if not in_process or seconds is None:
        return call_with_deadline(fn, seconds)
    from cgtrain import interrupts

    try:
        with interrupts.time_limit(seconds):
            return fn()
    except interrupts.TimeLimitReached:
        raise DeadlineExceeded(f"stopped at its time limit of {seconds:.1f}s") from None
