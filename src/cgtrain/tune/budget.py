"""A wall-clock budget for a whole run: data, study, ensemble, refit and test.

The study may spend what is left after a reserve for the steps that follow it
(refit of the chosen model or ensemble, test, model file); the AutoML loop keeps
the reserve up to date from the measured cost of the best trials. A trial's time
limit is fixed when it starts: the request's `trial_timeout_s` (default: a quarter
of the budget), never more than the study has left.

The clock runs from when the run began: the `cgtrain automl` command anchors it at its
process start (`start_clock_at`), so the budget covers start-up, loading and featurising too.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from dataclasses import dataclass, field
from typing import Iterator

from cgtrain.request import TrainingRequest

TRIAL_SHARE = 0.25  # default per-trial limit, as a share of the budget
INITIAL_RESERVE = 0.10  # share kept for refit + test until a trial says what a refit costs
SAFETY = 0.01  # share of the budget never planned for: timer granularity, load spikes
BASELINE_SHARE = 0.6  # the anytime baseline trial may use this much: a run without it has no floor


_ANCHOR: dict[str, float | None] = {"started": None}  # when the process began, set by the CLI command


def process_started() -> float | None:
    """time.time() at which this process started (Linux /proc), or None where that cannot be read."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{os.getpid()}/stat", encoding="ascii") as fh:
            stat = fh.read()
        start_ticks = float(stat.rsplit(")", 1)[1].split()[19])  # field 22 (starttime), after the command name
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return time.time() - (uptime - start_ticks / ticks)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def start_clock_at(started: float | None) -> None:
    """Budgets of this process count from `started` (e.g. process_started()); None: from when each run began."""
    _ANCHOR["started"] = started


@contextmanager
def counting_from_process_start() -> Iterator[None]:
    """Within: budgets count from this process's start (start-up and loading included) when the process is
    the `cgtrain` command itself. Another process (a library caller, a test runner running the command in
    process) started long before the run: its budgets count from when each run began. Restored after."""
    entry = sys.argv[0] if sys.argv else ""
    own = Path(entry).name == "cgtrain" or entry.endswith(os.path.join("cgtrain", "__main__.py"))
    before = _ANCHOR["started"]
    _ANCHOR["started"] = process_started() if own else None
    try:
        yield
    finally:
        _ANCHOR["started"] = before


def run_started(started: float | None) -> float:
    """When the budget's clock starts: the anchored process start when it is earlier than `started`."""
    anchor, now = _ANCHOR["started"], time.time()
    begun = started if started is not None else now
    return min(begun, anchor) if anchor is not None and anchor <= now else begun


@dataclass
class Budget:
    total_s: float
    started: float  # time.time() when the run began
    trial_timeout_s: float
    reserve_s: float
    _limits: dict[int, float] = field(default_factory=dict)

    @classmethod
    def of(cls, request: TrainingRequest, started: float | None) -> "Budget | None":
        total = getattr(request.hpo, "budget_s", None)
        if total is None:
            return None
        timeout = request.hpo.trial_timeout_s or TRIAL_SHARE * total
        return cls(float(total), run_started(started), float(timeout),
                   INITIAL_RESERVE * total)

    def elapsed(self) -> float:
        return time.time() - self.started

    def left(self) -> float:
        """Seconds left of the whole budget."""
        return self.total_s - self.elapsed()

    def study_left(self) -> float:
        """Seconds the study may still spend: what is left minus the reserve and a safety margin."""
        return self.left() - self.reserve_s - SAFETY * self.total_s

    def set_reserve(self, seconds: float) -> None:
        self.reserve_s = max(0.02 * self.total_s, float(seconds))

    def trial_limit(self, trial) -> float:
        """The trial's time limit, fixed the first time it is asked for."""
        if trial.number not in self._limits:
            cap = self.trial_timeout_s if "baseline" not in trial.user_attrs else BASELINE_SHARE * self.total_s
            self._limits[trial.number] = max(0.0, min(max(cap, self.trial_timeout_s), self.study_left()))
        return self._limits[trial.number]

    def record(self) -> dict:
        return {"budget_s": self.total_s, "elapsed_s": round(self.elapsed(), 2),
                "trial_timeout_s": round(self.trial_timeout_s, 2), "reserve_s": round(self.reserve_s, 2)}
