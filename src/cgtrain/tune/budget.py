"""A wall-clock budget for a whole run: data, study, ensemble, refit and test.

The study may spend what is left after a reserve for the steps that follow it
(refit of the chosen model or ensemble, test, model file); the AutoML loop keeps
the reserve up to date from the measured cost of the best trials. A trial's time
limit is fixed when it starts: the request's `trial_timeout_s` (default: a quarter
of the budget), never more than the study has left.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from cgtrain.request import TrainingRequest

TRIAL_SHARE = 0.25  # default per-trial limit, as a share of the budget
INITIAL_RESERVE = 0.10  # share kept for refit + test until a trial says what a refit costs
SAFETY = 0.015  # share of the budget never planned for: timer granularity, writing files
BASELINE_SHARE = 0.6  # the anytime baseline trial may use this much: a run without it has no floor


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
        return cls(float(total), started if started is not None else time.time(), float(timeout),
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
