"""Threads of a fit in a forked child: one, where the parent already ran a fit on several.

A budgeted final fit on all rows runs in a child forked to keep the budget's deadline (`flows.refit`). GNU OpenMP,
which LightGBM uses, hangs in a child forked from a process that ran a parallel region on several threads: measured
here, a 2-thread LightGBM fit, then fork, then a 2-thread fit in the child never returns, while 2 then 1, 1 then 2
and 1 then 1 all do. A request whose LightGBM refit ran on 2 threads (the family's default n_jobs) thus lost its
final fit at the deadline, after waiting for it. `fit_threads` records the threads each fit of this process runs
with; inside `forked_fit(narrow=True)` every fit runs on one thread."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

_STATE: dict = {"most": 1, "narrow": False}  # the most threads a fit of this process ran with; whether to narrow now


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_of(n_jobs) -> int:
    """The threads an `n_jobs` value means (None, 0 and negatives: every core, as LightGBM and scikit-learn read
    them)."""
    return usable_cores() if n_jobs is None or int(n_jobs) <= 0 else int(n_jobs)


def fit_threads(params: dict) -> dict:
    """`params` as a fit runs them (n_jobs 1 inside `forked_fit(narrow=True)`); records the threads used."""
    if "n_jobs" not in params:
        return params
    if _STATE["narrow"]:
        params = {**params, "n_jobs": 1}
    _STATE["most"] = max(_STATE["most"], threads_of(params["n_jobs"]))
    return params


def fork_needs_one_thread() -> bool:
    """Whether a fit in a child forked from this process now must run on one thread (see the module's note)."""
    return _STATE["most"] > 1


@contextmanager
def forked_fit(narrow: bool) -> Iterator[None]:
    """Within (a child's fit; `narrow` read from `fork_needs_one_thread()` before the fork): every fit on one thread
    when `narrow`."""
    before = _STATE["narrow"]
    _STATE["narrow"] = narrow
    try:
        yield
    finally:
        _STATE["narrow"] = before
