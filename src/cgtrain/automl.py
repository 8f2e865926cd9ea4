"""`cgtrain automl DATA --budget 300 --metric f1`: a training request from a dataset, a metric and a budget.

The request it builds searches every registered family that fits the task and the data
(code or table), cheap families and low fidelities first, inside `hpo.budget_s` (see
`cgtrain.tune.automl`), tries a voting / stacking ensemble of the top trials, and warm-starts
from earlier AutoML runs of the same dataset in sibling run directories. What it infers
(task, columns) can be overridden with `key=value` arguments, as for `cgtrain train`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from cgtrain.models import FAMILIES
from cgtrain.request import RequestError, TrainingRequest, apply_overrides, parse_request

SAMPLE_ROWS = 20_000  # rows read to infer the task and the columns
AUTOML_FOLDS = 3
ID_LIKE = ("id", "group")


def peek(path: Path) -> pd.DataFrame:
    """The first rows of a CSV / Parquet / JSONL(.gz) file (a directory of sources: an empty frame)."""
    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            return pd.read_csv(path, nrows=SAMPLE_ROWS, sep="\t" if name.endswith(".tsv") else ",")
        if name.endswith(".parquet"):
            return pd.read_parquet(path).head(SAMPLE_ROWS)
        if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
            return pd.read_json(path, lines=True, nrows=SAMPLE_ROWS)
    except Exception:  # the loader reports a broken file properly; inference just stays silent
        pass
    return pd.DataFrame()


def infer_task(labels: pd.Series) -> str:
    values = labels.dropna()
    if values.empty:
        return "binary"
    if pd.api.types.is_float_dtype(values) and not (values == values.round()).all():
        return "regression"
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > 20:
        return "regression"
    return "binary" if values.nunique() <= 2 else "multiclass"


def infer_dataset(path: Path, label: str) -> dict[str, Any]:
    """dataset.* fields: a code dataset as is; a table without a `code` column gets its feature columns."""
    frame = peek(path)
    dataset: dict[str, Any] = {"path": str(path)}
    if frame.empty or "code" in frame.columns:
        return dataset
    features = [c for c in frame.columns if c != label and c not in ID_LIKE]
    dataset.update({
        "code_column": None,
        "numeric_columns": [c for c in features if pd.api.types.is_numeric_dtype(frame[c])],
        "categorical_columns": [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])],
        "id_column": "id" if "id" in frame.columns else None,
        "group_column": "group" if "group" in frame.columns else None,
    })
    return dataset


def families_for(task: str, tabular: bool, only: list[str] | None) -> list[str]:
    """Every registered family that learns the task from this kind of input (or the ones named)."""
    names = only or FAMILIES.names()
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        from cgtrain.plugins import did_you_mean

        raise RequestError([f"--families: unknown family '{unknown[0]}'{did_you_mean(unknown[0], FAMILIES.names())}"
                            f"; choose from: {', '.join(FAMILIES.names())}"])
    fits = []
    for name in names:
        fam = FAMILIES.get(name)
        supports = fam.supports(task) if hasattr(fam, "supports") else task in ("binary", "multiclass")
        if supports and (fam.input == "features" or not tabular):
            fits.append(name)
    return fits


def single_threaded(family: str) -> dict[str, Any]:
    """A candidate entry; families with a thread count get one thread: many short trials on a small or shared
    machine lose far more to OpenMP threads waiting on each other than they gain (LightGBM: 20x on 2 busy cores)."""
    params = {"n_jobs": 1} if "n_jobs" in FAMILIES.get(family).param_names() else {}
    return {"family": family, **({"params": params} if params else {})}


def build_request(data: Path, budget_s: float, metric: str | None = None, task: str | None = None,
                  families: list[str] | None = None, overrides: list[str] | None = None, seed: int = 0,
                  qa: bool = False) -> TrainingRequest:
    data = Path(data)
    if not data.exists():
        raise RequestError([f"dataset not found: {data}; give a JSONL/CSV/Parquet file or a directory"], "automl")
    label = "label"
    frame = peek(data)
    task = task or (infer_task(frame[label]) if label in frame.columns else "binary")
    dataset = infer_dataset(data, label)
    tabular = dataset.get("code_column", "code") is None
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"automl-{data.name.split('.')[0]}")[:80] or "automl"
    request: dict[str, Any] = {
        "name": name, "task": task, "seed": seed, "dataset": dataset,
        "candidates": [single_threaded(f) for f in families_for(task, tabular, families)],
        "hpo": {"sampler": "tpe", "n_trials": 100_000, "budget_s": float(budget_s), "ensemble": "auto",
                "warm_start": True},
        "validation": {"folds": AUTOML_FOLDS, **({"metric": metric} if metric else {})},
        "qa": {"enabled": qa},
    }
    request = apply_overrides(request, overrides or [])
    if not request["candidates"]:
        raise RequestError([f"no registered family learns task '{task}' from this data; see `cgtrain families`"],
                           "automl")
    return parse_request(request, f"automl {data}")
