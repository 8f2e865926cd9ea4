"""Datasets bundled with scikit-learn, written as tables: examples and benchmarks need no download.

Each file has an `id` column, the feature columns (numeric) and a `label` column; the
returned `BundledInfo` says which task and request columns fit it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from cgtrain.data.formats import DatasetError
from cgtrain.fsutil import atomic_write_bytes
from cgtrain.plugins import did_you_mean


@dataclass(frozen=True)
class BundledInfo:
    name: str
    task: str
    rows: int
    numeric_columns: list[str]
    classes: list | None  # class names in label order, None for regression


def _loaders() -> dict[str, tuple[Callable, str]]:
    from sklearn import datasets

    return {"diabetes": (datasets.load_diabetes, "regression"),
            "breast_cancer": (datasets.load_breast_cancer, "binary"),
            "iris": (datasets.load_iris, "multiclass"),
            "wine": (datasets.load_wine, "multiclass"),
            "digits": (datasets.load_digits, "multiclass")}


def sklearn_frame(name: str) -> tuple[pd.DataFrame, BundledInfo]:
    """(frame with id, feature columns, label; its description)."""
    loaders = _loaders()
    if name not in loaders:
        raise DatasetError(f"unknown bundled dataset '{name}'{did_you_mean(name, sorted(loaders))}; "
                           f"choose one of: {', '.join(sorted(loaders))}")
    load, task = loaders[name]
    bunch = load(as_frame=True)
    features = bunch.frame.drop(columns=[bunch.target.name])
    features.columns = [str(c).strip().replace(" ", "_") for c in features.columns]
    frame = pd.concat([pd.DataFrame({"id": [f"{name}-{i}" for i in range(len(features))]}), features,
                       pd.DataFrame({"label": bunch.target.to_numpy()})], axis=1)
    classes = None if task == "regression" else sorted(int(c) for c in frame["label"].unique())
    return frame, BundledInfo(name, task, len(frame), list(features.columns), classes)


def write_sklearn_dataset(name: str, path: str | Path) -> BundledInfo:
    """Write the dataset to `path` as CSV, Parquet or JSONL (by suffix), atomically."""
    path = Path(path)
    frame, info = sklearn_frame(name)
    suffix = path.name.lower()
    buf = io.BytesIO()
    if suffix.endswith(".csv"):
        frame.to_csv(buf, index=False)
    elif suffix.endswith((".parquet", ".pq")):
        frame.to_parquet(buf, index=False)
    elif suffix.endswith((".jsonl", ".ndjson")):
        frame.to_json(buf, orient="records", lines=True)
    else:
        raise DatasetError(f"--out {path}: unknown suffix; use .csv, .parquet or .jsonl")
    atomic_write_bytes(path, buf.getvalue())
    return info


def request_dataset(info: BundledInfo, path: str | Path) -> dict:
    """The request's `dataset:` section for a file written by `write_sklearn_dataset`."""
    section = {"path": str(path), "code_column": None, "numeric_columns": list(info.numeric_columns),
               "label_column": "label", "id_column": "id", "group_column": None}
    if info.task == "multiclass":
        section["classes"] = list(info.classes)
    return section
