"""Warm start: queue the best parameters of earlier runs of the same request name.

Earlier runs are the run directories next to this one (`--run-dir runs/b` looks in
`runs/*`) whose `request.yaml` has the same `name` and which finished (`run.json`).
The best few trials of each (newest run first) are queued before the sampler takes
over, as long as their family is still a candidate and their values lie inside this
request's search space.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import optuna
import yaml

from cgtrain.request import TrainingRequest
from cgtrain.tune import study as studies
from cgtrain.tune.space import as_dict
from cgtrain import rundir

PER_RUN = 2  # best trials taken from each earlier run
MAX_QUEUED = 6


def earlier_runs(run_dir: Path, name: str) -> list[Path]:
    """Finished sibling run directories of the same request name, newest first."""
    run_dir = Path(run_dir).resolve()
    found = []
    for req in run_dir.parent.glob("*/request.yaml"):
        other = req.parent
        if other == run_dir or not (other / rundir.RUN).is_file() or not (other / rundir.STUDY_DB).is_file():
            continue
        try:
            if (yaml.safe_load(req.read_text(encoding="utf-8")) or {}).get("name") == name:
                found.append(other)
        except (OSError, yaml.YAMLError):
            continue
    return sorted(found, key=lambda p: (p / rundir.RUN).stat().st_mtime, reverse=True)


def best_params(run: Path, k: int) -> list[tuple[str, dict[str, Any]]]:
    """(family, searched params) of the run's k best full-fidelity trials."""
    try:
        study = rundir.RunDir(run).study()
        ranked = studies.ranked_trials(study)
    except Exception:  # an unreadable or foreign study is no reason to stop this run
        return []
    return [(t.user_attrs["family"], {**json.loads(t.user_attrs["params"]),
                                      **{f"{studies.FEATURE_PREFIX}.{key}": v
                                         for key, v in studies.trial_features(t).items()}})
            for t in ranked[:k] if "family" in t.user_attrs]


def inside(value: Any, spec: Any) -> bool:
    s = as_dict(spec)
    if s["type"] == "categorical":
        return value in s["choices"]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    if s["type"] == "int" and int(value) != value:
        return False
    return s["low"] <= value <= s["high"]


def as_trial_params(family: str, params: dict[str, Any], spaces: dict, several: bool) -> dict[str, Any] | None:
    """The Optuna params (`family`, `family.param`) of a config, or None if it is outside the space."""
    space = spaces.get(family)
    if space is None:
        return None
    out = {"family": family} if several else {}
    for name, spec in space.items():
        if name not in params or not inside(params[name], spec):
            return None
        out[f"{family}.{name}"] = params[name]
    return out


def with_features(trial_params: dict[str, Any], params: dict[str, Any], feature_space: dict | None) -> dict[str, Any]:
    """The earlier trial's featurisation too, where the request searches it and the value is inside the space."""
    for name, spec in (feature_space or {}).items():
        key = f"{studies.FEATURE_PREFIX}.{name}"
        if key in params and inside(params[key], spec):
            trial_params[key] = params[key]
    return trial_params


def enqueue_previous_best(study: optuna.Study, run_dir: Path, request: TrainingRequest, spaces: dict,
                          say: Callable[[str], None]) -> list[dict[str, Any]]:
    if request.hpo.sampler == "grid":
        return []  # a grid is enumerated in order; nothing to warm-start
    queued: list[dict[str, Any]] = []
    for run in earlier_runs(run_dir, request.name):
        for family, params in best_params(run, PER_RUN):
            trial_params = as_trial_params(family, params, spaces, len(spaces) > 1)
            if trial_params is None or trial_params in queued or len(queued) >= MAX_QUEUED:
                continue
            trial_params = with_features(trial_params, params, request.features.space)
            study.enqueue_trial(trial_params, user_attrs={"warm_start_from": str(run)})
            queued.append(trial_params)
    if queued:
        say(f"warm start: {len(queued)} best config(s) of earlier '{request.name}' runs queued first")
    return queued
