"""Metrics as pure functions with an explicit direction (never a negated score).

Each takes (y_true, y_pred, y_score, multiclass) where y_score is the positive-class
probability (binary), the (n, k) probability matrix (multiclass), the predicted
value (regression) or the anomaly score, higher = more anomalous (anomaly).
Clustering metrics that need the feature matrix (silhouette) live in
`clustering_metrics`; the registry still holds them for their name and direction.
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
    of_labels: bool = False  # reads only the predicted labels (argmax), not the probabilities


METRICS: Registry[Metric] = Registry("metric")


def _add(name: str, fn, greater_is_better: bool = True, of_labels: bool = False) -> None:
    METRICS.add(name, Metric(name, fn, greater_is_better, of_labels))


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


_add("accuracy", lambda y, p, s, m: skm.accuracy_score(y, p), of_labels=True)
_add("balanced_accuracy", lambda y, p, s, m: skm.balanced_accuracy_score(y, p), of_labels=True)
_add("precision", lambda y, p, s, m: skm.precision_score(y, p, average=_avg(m), zero_division=0), of_labels=True)
_add("recall", lambda y, p, s, m: skm.recall_score(y, p, average=_avg(m), zero_division=0), of_labels=True)
_add("f1", lambda y, p, s, m: skm.f1_score(y, p, average=_avg(m), zero_division=0), of_labels=True)
_add("roc_auc", _roc_auc)
_add("pr_auc", _pr_auc)
_add("mcc", lambda y, p, s, m: skm.matthews_corrcoef(y, p), of_labels=True)

REPORTED = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "mcc")


# --- regression: y_pred is the predicted value ----------------------------------------
def _rmse(y, pred, score, multi):
    return float(np.sqrt(np.mean((np.asarray(y, dtype=float) - np.asarray(pred, dtype=float)) ** 2)))


_add("rmse", _rmse, greater_is_better=False)
_add("mae", lambda y, p, s, m: skm.mean_absolute_error(y, p), greater_is_better=False)
_add("r2", lambda y, p, s, m: skm.r2_score(y, p) if len(y) > 1 else float("nan"))

REGRESSION_REPORTED = ("rmse", "mae", "r2")


# --- anomaly: y_score is the anomaly score, y_true 1 = anomaly ------------------------
def precision_at_k(y_true, scores, k: int | None = None) -> float:
    """Share of true anomalies among the k highest scores; k defaults to the number of true
    anomalies (R-precision). Ties are broken by row order, so the result is deterministic."""
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=float)
    k = int(y_true.sum()) if k is None else int(k)
    if k <= 0 or len(y_true) == 0:
        return float("nan")
    top = np.argsort(-scores, kind="stable")[:k]
    return float(y_true[top].sum() / len(top))


_add("precision_at_k", lambda y, p, s, m: precision_at_k(y, s))


# --- clustering ------------------------------------------------------------------------
def _silhouette_by_name(y, pred, X, multi):
    return silhouette(X, pred)


_add("adjusted_rand", lambda y, p, s, m: skm.adjusted_rand_score(y, p))
_add("normalized_mutual_info", lambda y, p, s, m: skm.normalized_mutual_info_score(y, p))
_add("silhouette", _silhouette_by_name)  # y_score: the feature matrix

SILHOUETTE_SAMPLE = 2000  # rows; silhouette is O(n^2) in time


def silhouette(X, clusters, seed: int = 0) -> float:
    """Mean silhouette of the clustered rows (noise, cluster -1, left out); NaN for < 2 clusters."""
    clusters = np.asarray(clusters)
    keep = clusters >= 0
    n_clusters = len(np.unique(clusters[keep]))
    if n_clusters < 2 or n_clusters >= keep.sum():
        return float("nan")
    X = X[np.flatnonzero(keep)]
    size = SILHOUETTE_SAMPLE if keep.sum() > SILHOUETTE_SAMPLE else None
    return float(skm.silhouette_score(X, clusters[keep], sample_size=size, random_state=seed))


def clustering_metrics(X, clusters, y_true=None) -> dict[str, float]:
    """silhouette always; adjusted Rand and NMI against the labelled rows (label >= 0) when there are any."""
    clusters = np.asarray(clusters)
    found = clusters[clusters >= 0]
    out = {"silhouette": silhouette(X, clusters), "n_clusters": float(len(np.unique(found))),
           "noise_fraction": float(np.mean(clusters < 0)) if len(clusters) else float("nan")}
    labelled = None if y_true is None else np.asarray(y_true) >= 0
    if labelled is not None and labelled.any():
        y, pred = np.asarray(y_true)[labelled], clusters[labelled]
        out["adjusted_rand"] = float(skm.adjusted_rand_score(y, pred))
        out["normalized_mutual_info"] = float(skm.normalized_mutual_info_score(y, pred))
    return out


def anomaly_metrics(scores, y_true=None, ks=(10, 50, 100)) -> dict[str, float]:
    """Over the labelled rows (label 0/1): precision@k (k = #anomalies and each of ks), ROC/PR-AUC."""
    scores, out = np.asarray(scores, dtype=float), {}
    if y_true is None:
        return out
    labelled = np.asarray(y_true) >= 0
    y, s = np.asarray(y_true)[labelled], scores[labelled]
    if not len(y):
        return out
    out["precision_at_k"] = precision_at_k(y, s)
    out["k"] = float(y.sum())
    for k in ks:
        if k < len(y):
            out[f"precision_at_{k}"] = precision_at_k(y, s, k)
    two = len(np.unique(y)) == 2
    out["roc_auc"] = float(skm.roc_auc_score(y, s)) if two else float("nan")
    out["pr_auc"] = float(skm.average_precision_score(y, s)) if two else float("nan")
    return out


def greater_is_better(name: str) -> bool:
    return METRICS.get(name).greater_is_better


def of_labels(name: str) -> bool:
    """Whether the metric reads only predicted labels (F1, accuracy, MCC...): a step function of the probabilities."""
    return METRICS.get(name).of_labels


def score(name: str, y_true, proba: np.ndarray) -> float:
    """One metric from class probabilities (n, k), or from predicted values (n,) for regression."""
    return compute(y_true, proba, (name,))[name]


def compute(y_true, proba: np.ndarray, names=None) -> dict[str, float]:
    """Metrics from the (n, k) probability matrix (labels are the argmax), or, for a 1-D
    array of predicted values, the regression metrics."""
    y_true = np.asarray(y_true)
    if np.ndim(proba) == 1:
        pred = np.asarray(proba, dtype=float)
        return {n: float(METRICS.get(n).fn(y_true, pred, pred, False)) for n in (names or REGRESSION_REPORTED)}
    names = names or REPORTED
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


def mean_baseline(y_train, y_test, names=REGRESSION_REPORTED) -> dict[str, float]:
    """What always predicting the training mean scores on the test set."""
    pred = np.full(len(y_test), float(np.mean(y_train)))
    return compute(np.asarray(y_test, dtype=float), pred, names)
