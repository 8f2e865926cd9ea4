"""Turns a search space declared as data into Optuna suggestions (and grids)."""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import optuna

GRID_POINTS = 3  # values per continuous parameter when a grid is asked for


def as_dict(spec: Any) -> dict[str, Any]:
    return spec.model_dump() if hasattr(spec, "model_dump") else dict(spec)


def suggest(trial: optuna.Trial, prefix: str, space: dict[str, Any]) -> dict[str, Any]:
    """Ask the trial for every parameter of `space`; names are `prefix.param`."""
    params = {}
    for name, spec in space.items():
        s, key = as_dict(spec), f"{prefix}.{name}"
        if s["type"] == "float":
            params[name] = trial.suggest_float(key, s["low"], s["high"], log=s.get("log", False))
        elif s["type"] == "int":
            step = s.get("step", 1)
            log = s.get("log", False)
            params[name] = trial.suggest_int(key, s["low"], s["high"], step=1 if log else step, log=log)
        else:
            params[name] = trial.suggest_categorical(key, list(s["choices"]))
    return params


def grid_values(spec: Any) -> list:
    """A small grid for one parameter: all choices, or GRID_POINTS spread over the range."""
    s = as_dict(spec)
    if s["type"] == "categorical":
        return list(s["choices"])
    low, high = s["low"], s["high"]
    if s["type"] == "float":
        points = np.geomspace(low, high, GRID_POINTS) if s.get("log") else np.linspace(low, high, GRID_POINTS)
        return sorted({float(f"{p:.6g}") for p in points})
    points = np.geomspace(max(low, 1), high, GRID_POINTS) if s.get("log") else np.linspace(low, high, GRID_POINTS)
    step = s.get("step", 1)
    return sorted({int(low + round((p - low) / step) * step) for p in points})


def grid_configs(spaces: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every (family, params) combination of the per-family grids, in a stable order."""
    configs = []
    for family, space in spaces.items():
        names = list(space)
        for combo in itertools.product(*(grid_values(space[n]) for n in names)):
            configs.append((family, dict(zip(names, combo))))
    return configs
