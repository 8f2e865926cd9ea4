"""Metrics as pure functions with an explicit direction (never a negated score).

Each takes (y_true, y_pred, y_score) where y_score is the positive-class
probability (binary) or the (n, k) probability matrix (multiclass).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from sklearn import metrics as skm

from cgtrain.plugins import Registry


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray, bool], float]
    greater_is_better: bool = True


METRICS: Registry[Metric] = Registry("metric")


def _add(name: str, fn, greater_is_better: bool = True) -> None:
    METRICS.add(name, Metric(name, fn, greater_is_better))


def _avg(multiclass: bool) -> str:
    return "macro" if multiclass else "binary"


def _roc_auc(y, pred, score, multi):
    if len(np.unique(y)) < 2:
        return float("nan")
    if multi:
        return skm.roc_auc_score(y, score, multi_class="ovr", average="macro", labels=np.arange(score.shape[1]))
    return skm.roc_auc_score(y, score)


def _pr_auc(y, pred, score, multi):
    if multi:
        onehot = np.eye(score.shape[1])[y]
        return skm.average_precision_score(onehot, score, average="macro")
    return skm.average_precision_score(y, score)


_add("accuracy", lambda y, p, s, m: skm.accuracy_score(y, p))
_add("balanced_accuracy", lambda y, p, s, m: skm.balanced_accuracy_score(y, p))
_add("precision", lambda y, p, s, m: skm.precision_score(y, p, average=_avg(m), zero_division=0))
_add("recall", lambda y, p, s, m: skm.recall_score(y, p, average=_avg(m), zero_division=0))
_add("f1", lambda y, p, s, m: skm.f1_score(y, p, average=_avg(m), zero_division=0))
_add("roc_auc", _roc_auc)
_add("pr_auc", _pr_auc)
_add("mcc", lambda y, p, s, m: skm.matthews_corrcoef(y, p))

REPORTED = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "mcc")


def score(name: str, y_true, proba: np.ndarray) -> float:
    """One metric from class probabilities (n, k)."""
    return compute(y_true, proba, (name,))[name]


def compute(y_true, proba: np.ndarray, names=REPORTED) -> dict[str, float]:
    """Metrics from the (n, k) probability matrix; labels are the argmax."""
    y_true = np.asarray(y_true)
    multi = proba.shape[1] > 2
    pred = proba.argmax(axis=1)
    s = proba if multi else proba[:, 1]
    return {n: float(METRICS.get(n).fn(y_true, pred, s, multi)) for n in names}


def majority_baseline(y_train, y_test, names=REPORTED) -> dict[str, float]:
    """What always predicting the training majority class scores on the test set."""
    k = int(max(np.max(y_train), np.max(y_test))) + 1
    proba = np.zeros((len(y_test), max(k, 2)))
    proba[:, int(np.bincount(y_train).argmax())] = 1.0
    return compute(y_test, proba, names)
