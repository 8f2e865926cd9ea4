"""The Optuna study: a trial is a family + params scored by k-fold CV.

Storage is SQLite in the run directory, so an interrupted study resumes with
every finished trial kept; trials left RUNNING by a killed process are marked
failed and re-queued with the same parameters.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import optuna
import pandas as pd

from cgtrain.models import FAMILIES
from cgtrain.plugins import Registry
from cgtrain.request import TrainingRequest
from cgtrain.tune.space import grid_configs, suggest

SAMPLERS: Registry[Callable[[int, list], optuna.samplers.BaseSampler]] = Registry("sampler")
SAMPLERS.add("random", lambda seed, grid: optuna.samplers.RandomSampler(seed=seed))
SAMPLERS.add("tpe", lambda seed, grid: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                                                  n_startup_trials=5))
SAMPLERS.add("gp", lambda seed, grid: optuna.samplers.GPSampler(seed=seed, n_startup_trials=5))
SAMPLERS.add("cmaes", lambda seed, grid: optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=5,
                                                                      warn_independent_sampling=False))
SAMPLERS.add("qmc", lambda seed, grid: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False))
SAMPLERS.add("grid", lambda seed, grid: optuna.samplers.GridSampler({"config": list(range(len(grid)))}, seed=seed))

PRUNERS: Registry[Callable[[], optuna.pruners.BasePruner]] = Registry("pruner")
PRUNERS.add("none", optuna.pruners.NopPruner)
PRUNERS.add("median", lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
PRUNERS.add("percentile", lambda: optuna.pruners.PercentilePruner(25.0, n_startup_trials=3, n_warmup_steps=1))
PRUNERS.add("successive_halving", optuna.pruners.SuccessiveHalvingPruner)
PRUNERS.add("hyperband", optuna.pruners.HyperbandPruner)

STUDY_NAME = "cgtrain"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


@dataclass(frozen=True)
class TrialResult:
    family: str
    params: dict[str, Any]
    fold_scores: list[float]
    fit_seconds: float


def candidate_spaces(request: TrainingRequest) -> dict[str, dict[str, Any]]:
    """family -> search space (the request's, else the family's default)."""
    spaces = {}
    for cand in request.candidates:
        space = cand.space if cand.space is not None else FAMILIES.get(cand.family).default_space
        spaces[cand.family] = {k: v for k, v in space.items() if k not in cand.params}
    return spaces


def fixed_params(request: TrainingRequest) -> dict[str, dict[str, Any]]:
    return {c.family: dict(c.params) for c in request.candidates}


def choose(trial: optuna.Trial, spaces: dict, grid: list | None) -> tuple[str, dict[str, Any]]:
    """The trial's family and searched params."""
    if grid is not None:
        family, params = grid[trial.suggest_categorical("config", list(range(len(grid))))]
        return family, dict(params)
    names = list(spaces)
    family = names[0] if len(names) == 1 else trial.suggest_categorical("family", names)
    return family, suggest(trial, family, spaces[family])


def open_study(storage_url: str, request: TrainingRequest, grid: list | None) -> optuna.Study:
    with warnings.catch_warnings():  # multivariate TPE and GP are flagged experimental; we rely on them
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = SAMPLERS.get(request.hpo.sampler)(request.seed, grid or [])
        return optuna.create_study(study_name=STUDY_NAME, storage=storage_url, sampler=sampler,
                                   pruner=PRUNERS.get(request.hpo.pruner)(),
                                   direction="maximize", load_if_exists=True)


def requeue_stale(study: optuna.Study) -> int:
    """Trials a killed process left RUNNING: mark failed, queue again with their params."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, "stale", True)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return len(stale)


def counted_trials(study: optuna.Study) -> int:
    """Finished trials that count toward n_trials (stale ones are re-run, not counted)."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if not t.user_attrs.get("stale"))


def make_objective(spaces: dict, fixed: dict, grid: list | None,
                   evaluate: Callable[[str, dict, optuna.Trial], TrialResult]):
    def objective(trial: optuna.Trial) -> float:
        family, params = choose(trial, spaces, grid)
        params = {**params, **fixed.get(family, {})}
        trial.set_user_attr("family", family)
        trial.set_user_attr("params", json.dumps(params, sort_keys=True, default=str))
        start = time.perf_counter()
        try:
            result = evaluate(family, params, trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # the study goes on; the reason stays in the leaderboard
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        trial.set_user_attr("fold_scores", result.fold_scores)
        trial.set_user_attr("cv_std", float(np.std(result.fold_scores)))
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - start, 3))
        return float(np.mean(result.fold_scores))

    return objective


def leaderboard(study: optuna.Study, metric: str) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("stale") or "family" not in t.user_attrs:
            continue
        rows.append({
            "trial": t.number, "state": t.state.name.lower(), "family": t.user_attrs["family"],
            "params": t.user_attrs["params"], f"cv_{metric}_mean": t.value,
            f"cv_{metric}_std": t.user_attrs.get("cv_std"),
            "folds": json.dumps(t.user_attrs.get("fold_scores")),
            "fit_seconds": t.user_attrs.get("fit_seconds"),
            "error": t.user_attrs.get("error", ""),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values([f"cv_{metric}_mean", "trial"], ascending=[False, True],
                             na_position="last").reset_index(drop=True)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not done:
        raise RuntimeError("no trial completed; see the leaderboard's error column")
    return max(done, key=lambda t: (t.value, -t.number))
