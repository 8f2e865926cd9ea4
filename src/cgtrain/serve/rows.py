"""Predictions for models beyond code classifiers: table input, regression, anomaly, clustering.

Output per row (JSONL): regression `{"id", "value"}`, anomaly `{"id", "score", "anomaly"}`
(score: higher = more anomalous; anomaly: 1 above the threshold fitted in training),
clustering `{"id", "cluster"}` (-1: noise), classification over table rows the same
`{"id", "label", "probability" | "probabilities"}` as for code. A table row whose
numeric column holds a non-number gets `{"id", "error"}` instead of a silent imputation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cgtrain.data.formats import FORMATS, detect_format
from cgtrain.data.table import categorical_value, numeric_value, text_value
from cgtrain.features.tabular import CODE, TabularFeaturizer

CLASSIFICATION = ("binary", "multiclass")


def _steps(model) -> list:
    return [step for _, step in model.steps] if hasattr(model, "steps") else [model]


def table_featurizer(model) -> TabularFeaturizer | None:
    """The model's table featurizer: a pipeline step, an ensemble's shared one, or a member's own."""
    for step in _steps(model):
        if isinstance(step, TabularFeaturizer):
            return step
        if isinstance(getattr(step, "featurizer_", None), TabularFeaturizer):  # an ensemble over table features
            return step.featurizer_
        for member in getattr(step, "estimators_", None) or []:  # ensemble members with their own featurizer
            if hasattr(member, "steps") and (found := table_featurizer(member)) is not None:
                return found
    return None


def model_task(model) -> str:
    """binary/multiclass ("classification" here), regression, anomaly or clustering, from the final estimator."""
    est = _steps(model)[-1]
    if hasattr(est, "anomaly_score"):
        return "anomaly"
    kind = getattr(est.__sklearn_tags__(), "estimator_type", None) if hasattr(est, "__sklearn_tags__") else None
    if kind == "regressor":
        return "regression"
    if kind == "clusterer":
        return "clustering"
    return "classification"


def task_of(predictor) -> str:
    task = getattr(predictor, "task", None)
    return task if task else model_task(predictor.model)


def needs_rows(predictor) -> bool:
    """True unless the model is a code classifier (handled by `Predictor.predict` itself)."""
    if task_of(predictor) not in (*CLASSIFICATION, "classification"):
        return True
    return table_featurizer(predictor.model) is not None


# --- reading --------------------------------------------------------------------------
def read_table_rows(source: Path, id_column: str | None, code_column: str | None) -> list[dict]:
    """Records of a CSV / JSONL / Parquet file, each with an "id" (the id column, else "line:N")."""
    source = Path(source)
    if not source.is_file():
        from cgtrain.artifacts.files import UnsafeModelError

        raise UnsafeModelError(f"input not found: {source}; give a CSV, JSONL or Parquet file of table rows")
    items = []
    for row in FORMATS.get(detect_format(source))(source, None):
        rid = f"line:{row.line}"
        if row.record is None:
            items.append({"id": rid, "error": row.error})
            continue
        record = dict(row.record)
        if id_column and record.get(id_column) not in (None, ""):
            rid = str(record[id_column])
        if code_column and code_column in record:
            record[CODE] = record.pop(code_column)
        items.append({**record, "id": rid})
    return items


# --- predicting -------------------------------------------------------------------------
def _table_frame(feat: TabularFeaturizer, items: list[dict]) -> tuple[pd.DataFrame, list[str | None]]:
    """The model input frame, and per item an error (or None): bad numbers are reported, not imputed."""
    rows, errors = [], []
    for item in items:
        values, error = {}, item.get("error")
        for name in feat.numeric:
            values[name], problem = numeric_value(name, item.get(name))
            error = error or (problem[1] if problem else None)
        for name in feat.categorical:
            values[name], problem = categorical_value(name, item.get(name))
            error = error or (problem[1] if problem else None)
        for name in (*getattr(feat, "datetime", ()), *getattr(feat, "text", ())):  # older models lack them
            values[name], problem = text_value(name, item.get(name))
            error = error or (problem[1] if problem else None)
        if feat.code is not None:
            code = item.get(CODE)
            values[CODE] = code if isinstance(code, str) else ""
            error = error or (None if isinstance(code, str) else "no code")
        rows.append(values)
        errors.append(error)
    columns = [*feat.numeric, *feat.categorical, *getattr(feat, "datetime", ()), *getattr(feat, "text", ()),
               *([CODE] if feat.code else [])]
    return pd.DataFrame(rows, columns=columns), errors


def _inputs(predictor, items: list[dict]) -> tuple[Any, list[str | None]]:
    feat = table_featurizer(predictor.model)
    if feat is not None:
        return _table_frame(feat, items)
    errors = [None if isinstance(it.get("code"), str) else "no code" for it in items]
    return [it.get("code") if isinstance(it.get("code"), str) else "" for it in items], errors


def _outputs(predictor, X, task: str) -> list[dict]:
    model = predictor.model
    if task == "regression":
        return [{"value": round(float(v), 6)} for v in model.predict(X)]
    if task == "anomaly":
        detector = _steps(model)[-1]
        features = model[:-1].transform(X) if hasattr(model, "steps") else X
        scores = detector.anomaly_score(features)
        return [{"score": round(float(s), 6), "anomaly": int(s > detector.threshold_)} for s in scores]
    if task == "clustering":
        return [{"cluster": int(c)} for c in model.predict(X)]
    return predictor.class_rows(predictor.served(model.predict_proba(X)))


def _subset(X, keep: np.ndarray):
    return X.iloc[keep].reset_index(drop=True) if isinstance(X, pd.DataFrame) else [X[i] for i in keep]


def predict_rows(predictor, items: list[dict]) -> list[dict]:
    X, errors = _inputs(predictor, items)
    keep = np.array([i for i, e in enumerate(errors) if e is None], dtype=int)
    outs = iter(_outputs(predictor, _subset(X, keep), task_of(predictor)) if len(keep) else [])
    return [{"id": item["id"], **({"error": err} if err is not None else next(outs))}
            for item, err in zip(items, errors)]
