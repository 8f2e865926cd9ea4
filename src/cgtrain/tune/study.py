"""The Optuna study: a trial is a family + params scored by k-fold CV.

Storage is SQLite in the run directory, so an interrupted study resumes with
every finished trial kept. Trials a killed process left RUNNING are marked stale
(failed, not counted) and queued again with the same parameters: at once on
`--resume`, and by the storage's heartbeat (a trial whose heartbeat stops for
`GRACE_S`) while a study runs.

Multi-objective studies (`hpo.objectives: [metric, latency_ms]`) maximise the
metric and minimise the others; their Pareto front is `pareto_front(study)`.
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

from cgtrain.errors import RunDirError
from cgtrain.evaluate.resources import measure
from cgtrain.models import FAMILIES
from cgtrain.plugins import Registry
from cgtrain.request import TrainingRequest
from cgtrain.tune.space import grid_configs, suggest
from cgtrain import rundir

SAMPLERS: Registry[Callable[[int, list], optuna.samplers.BaseSampler]] = Registry("sampler")
SAMPLERS.add("random", lambda seed, grid: optuna.samplers.RandomSampler(seed=seed))
SAMPLERS.add("tpe", lambda seed, grid: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                                                  n_startup_trials=5))
SAMPLERS.add("gp", lambda seed, grid: optuna.samplers.GPSampler(seed=seed, n_startup_trials=5))
SAMPLERS.add("cmaes", lambda seed, grid: optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=5,
                                                                      warn_independent_sampling=False))
SAMPLERS.add("qmc", lambda seed, grid: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False))
SAMPLERS.add("grid", lambda seed, grid: optuna.samplers.GridSampler({"config": list(range(len(grid)))}, seed=seed))
# Small populations: a study here runs tens of trials, not thousands.
SAMPLERS.add("nsga2", lambda seed, grid: optuna.samplers.NSGAIISampler(seed=seed, population_size=8))

PRUNERS: Registry[Callable[[], optuna.pruners.BasePruner]] = Registry("pruner")
PRUNERS.add("none", optuna.pruners.NopPruner)
PRUNERS.add("median", lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
PRUNERS.add("percentile", lambda: optuna.pruners.PercentilePruner(25.0, n_startup_trials=3, n_warmup_steps=1))
PRUNERS.add("successive_halving", optuna.pruners.SuccessiveHalvingPruner)
PRUNERS.add("hyperband", optuna.pruners.HyperbandPruner)

STUDY_NAME = rundir.STUDY_NAME
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
HEARTBEAT_S, GRACE_S = 10, 60  # a RUNNING trial whose heartbeat is older than GRACE_S is stale
OBJECTIVE_ATTRS = {"latency_ms": "latency_ms", "model_kb": "model_kb"}  # objective -> trial user attr


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


def greater_is_better(metric: str) -> bool:
    from cgtrain.evaluate.metrics import METRICS

    return METRICS.get(metric).greater_is_better


def objectives(request: TrainingRequest) -> list[str]:
    return list(getattr(request.hpo, "objectives", None) or ["metric"])


def directions(request: TrainingRequest) -> list[str]:
    """The metric's direction, then "minimize" for each cost objective (latency, size)."""
    first = "maximize" if greater_is_better(request.validation.metric) else "minimize"
    return [first] + ["minimize"] * (len(objectives(request)) - 1)


def open_study(storage_url: str, request: TrainingRequest, grid: list | None) -> optuna.Study:
    with warnings.catch_warnings():  # multivariate TPE, GP and heartbeats are flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = SAMPLERS.get(request.hpo.sampler)(request.seed, grid or [])
        storage = optuna.storages.RDBStorage(storage_url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                             heartbeat_stale_trial_callback=retry_stale_trial)
        existing = optuna.get_all_study_names(storage)  # a resumed run keeps its study's name, old runs "cgtrain"
        return optuna.create_study(study_name=existing[0] if len(existing) == 1 else request.name, storage=storage,
                                   sampler=sampler,
                                   pruner=PRUNERS.get(request.hpo.pruner)(),
                                   directions=directions(request), load_if_exists=True)


def retry_stale_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """A trial found dead (heartbeat, or --resume): queued again with the same parameters.

    The retry's `retry_of` attribute is what marks the dead trial stale (a finished trial
    cannot be changed any more), so it is neither counted nor shown in the leaderboard.
    """
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, **_carried_attrs(trial)})


def stale_numbers(study: optuna.Study) -> set[int]:
    """Trials that were retried: left running by a killed process."""
    trials = study.get_trials(deepcopy=False)
    return {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs} | \
        {t.number for t in trials if t.user_attrs.get("stale")}


def _carried_attrs(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Attributes set at enqueue time that define the trial (AutoML fidelity, warm start origin)."""
    return {k: v for k, v in trial.user_attrs.items() if k in ("fidelity", "warm_start_from", "baseline")}


def requeue_stale(study: optuna.Study) -> int:
    """On --resume: trials a killed process left RUNNING are failed, marked stale and queued again.

    A run directory belongs to one `cgtrain train` process, so every RUNNING trial found
    when it starts is stale; no need to wait for its heartbeat to expire.
    """
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, "stale", True)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        retry_stale_trial(study, t)
    return len(stale)


def counted_trials(study: optuna.Study) -> int:
    """Finished trials that count toward n_trials (stale ones are re-run, not counted)."""
    stale = stale_numbers(study)
    return sum(1 for t in study.get_trials(deepcopy=False, states=FINISHED) if t.number not in stale)


class _NoPruning:
    """A trial as the evaluator sees it in a multi-objective study: Optuna cannot prune those."""

    def __init__(self, trial: optuna.Trial):
        self._trial = trial

    def report(self, value: float, step: int) -> None:
        pass

    def should_prune(self) -> bool:
        return False

    def __getattr__(self, name: str):
        return getattr(self._trial, name)


FEATURE_PREFIX = "features"  # searched featurisation params are named "features.<key>"


def trial_features(trial) -> dict[str, Any]:
    """The featurisation settings a trial searched (empty: the request's `features`)."""
    raw = trial.user_attrs.get("features")
    return json.loads(raw) if raw else {}


def make_objective(spaces: dict, fixed: dict, grid: list | None,
                   evaluate: Callable[[str, dict, optuna.Trial], TrialResult], goals: list[str] | None = None,
                   feature_space: dict[str, Any] | None = None):
    goals = goals or ["metric"]

    def objective(trial: optuna.Trial):
        family, params = choose(trial, spaces, grid)
        params = {**params, **fixed.get(family, {})}
        trial.set_user_attr("family", family)
        trial.set_user_attr("params", json.dumps(params, sort_keys=True, default=str))
        if feature_space:  # featurisation is part of the search: the evaluator reads it from the trial
            trial.set_user_attr("features", json.dumps(suggest(trial, FEATURE_PREFIX, feature_space),
                                                       sort_keys=True))
        start = time.perf_counter()
        try:
            with measure() as usage:  # wall/CPU time, peak RSS, GPU memory of the trial (QA report)
                result = evaluate(family, params, trial if len(goals) == 1 else _NoPruning(trial))
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # the study goes on; the reason stays in the leaderboard
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        finally:
            trial.set_user_attr("resources", usage.as_dict())
        trial.set_user_attr("fold_scores", result.fold_scores)
        trial.set_user_attr("cv_std", float(np.std(result.fold_scores)))
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - start, 3))
        value = float(np.mean(result.fold_scores))
        if len(goals) == 1:
            return value
        return (value, *(float(trial.user_attrs[OBJECTIVE_ATTRS[g]]) for g in goals[1:]))

    return objective


def trial_value(t: optuna.trial.FrozenTrial) -> float | None:
    """The metric's CV mean (the first objective), None if the trial has none."""
    return None if t.values is None else t.values[0]


def leaderboard(study: optuna.Study, metric: str) -> pd.DataFrame:
    rows = []
    extra = [d for d in OBJECTIVE_ATTRS if len(study.directions) > 1]
    stale = stale_numbers(study)
    named = any("baseline" in t.user_attrs for t in study.get_trials(deepcopy=False))  # the anytime baseline
    for t in study.get_trials(deepcopy=False):
        if t.number in stale or "family" not in t.user_attrs:
            continue
        rows.append({
            "trial": t.number, "state": t.state.name.lower(), "family": t.user_attrs["family"],
            **({"name": t.user_attrs.get("baseline", "")} if named else {}),
            "params": t.user_attrs["params"],
            **({"features": t.user_attrs["features"]} if "features" in t.user_attrs else {}),
            f"cv_{metric}_mean": trial_value(t),
            f"cv_{metric}_std": t.user_attrs.get("cv_std"),
            "folds": json.dumps(t.user_attrs.get("fold_scores")),
            "fit_seconds": t.user_attrs.get("fit_seconds"),
            **({"fidelity": t.user_attrs["fidelity"]} if "fidelity" in t.user_attrs else {}),
            **{name: t.user_attrs.get(OBJECTIVE_ATTRS[name]) for name in extra},
            "error": t.user_attrs.get("error", ""),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    ascending = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    return frame.sort_values([f"cv_{metric}_mean", "trial"], ascending=[ascending, True],
                             na_position="last").reset_index(drop=True)


def full_fidelity_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Complete trials scored on all training rows (AutoML's low-fidelity probes are left out)."""
    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if float(t.user_attrs.get("fidelity", 1.0)) >= 1.0]


def ranked_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Full-fidelity complete trials, best CV metric first (ties: the earlier trial)."""
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else 1.0
    return sorted(full_fidelity_trials(study), key=lambda t: (-sign * t.values[0], t.number))


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The best trial by the metric; in a multi-objective study, the best-metric member of the Pareto front.

    When a budget ended before any trial ran on all rows, the best low-fidelity trial (its
    params are refit on all training rows all the same)."""
    done = ranked_trials(study)
    if not done:
        sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else 1.0
        done = sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)),
                      key=lambda t: (-sign * t.values[0], t.number))
    if not done:
        raise RuntimeError("no trial completed; see the leaderboard's error column")
    return done[0]


def best_value(study: optuna.Study) -> float | None:
    done = ranked_trials(study)
    return done[0].values[0] if done else None


def pareto_front(study: optuna.Study, goals: list[str]) -> list[dict[str, Any]]:
    """The non-dominated complete trials of a multi-objective study, best metric first."""
    front = sorted(study.best_trials, key=lambda t: (t.values[0] * (1 if study.directions[0].name == "MINIMIZE"
                                                                     else -1), t.number))
    return [{"trial": t.number, "family": t.user_attrs.get("family"), "params": json.loads(t.user_attrs["params"]),
             **{g if g != "metric" else "cv_metric": v for g, v in zip(goals, t.values)}} for t in front]


def pin_fingerprint(study: optuna.Study, fingerprint: str, where: str, fix: str) -> None:
    """The study's trials were scored on this data: record it once, refuse to go on with other data.
    `where` names the study in the message, `fix` says what to do instead."""
    pinned = study.user_attrs.get("dataset_fingerprint")
    if pinned is None:
        study.set_user_attr("dataset_fingerprint", fingerprint)
    elif pinned != fingerprint:
        raise RunDirError(f"{where} was scored on dataset {pinned}, the data now is {fingerprint}; "
                          f"restore the data, or {fix}")
