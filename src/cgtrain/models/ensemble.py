"""Ensembles of the study's top trials: weighted voting or stacking, chosen on out-of-fold predictions.

`select(...)` works on stored out-of-fold (OOF) predictions only, no refitting:

- voting: Caruana et al. (2004) greedy selection with replacement; the weights are how
  often each member was picked.
- stacking: a logistic regression (ridge for regression) over the members' OOF outputs.

Each is scored honestly by the same CV folds: for fold j the weights (or the meta model)
are chosen on the other folds' OOF rows and scored on fold j's, so its CV mean can be
compared with the best single trial's. `EnsembleModel` is the saved estimator: fitted
members (refit on all training rows) plus the weights or meta model; it takes what the
saved pipeline's first step gives (token docs, or a table) and applies the shared
featurizer for the members that need the feature matrix. Plain data only: saved by skops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression, Ridge

from cgtrain.evaluate.metrics import greater_is_better, of_labels, score

GREEDY_ROUNDS = 20
PATIENCE = 4  # rounds without a better blend before the greedy search stops
METHODS = ("voting", "stacking")


# --- choosing on OOF predictions -------------------------------------------------------
def _cat(parts: list[np.ndarray], folds: list[int]) -> np.ndarray:
    return np.concatenate([parts[j] for j in folds])


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log probability of the true class (sklearn's log_loss warns on every float32 blend whose rows
    sum to 1 +- 1e-7, 20 rounds x members x folds times per study)."""
    p = np.clip(proba[np.arange(len(y)), np.asarray(y, dtype=int)], 1e-7, 1.0)
    return float(-np.mean(np.log(p)))


def greedy_weights(preds: list[np.ndarray], y: np.ndarray, metric: str, rounds: int = GREEDY_ROUNDS) -> np.ndarray:
    """Caruana's greedy selection with replacement, starting from the best single member. For a metric of labels
    (f1, accuracy, mcc, ...: `metrics.of_labels`) the blend is chosen on log loss, a proper score of its probabilities:
    the decision threshold is chosen after it (qa.threshold), and a metric of labels at p = 0.5 is a step function
    that a few flipped rows move (Juliet, 2 folds: chosen on F1 it kept LightGBM + logreg at 0.5 / 0.5 of five
    members, CV F1 0.8662, and stacking all five scored 0.8659)."""
    sign = 1.0 if greater_is_better(metric) else -1.0
    on_log_loss = of_labels(metric) and preds[0].ndim == 2

    def value(proba: np.ndarray) -> float:
        return -_log_loss(y, proba) if on_log_loss else sign * score(metric, y, proba)

    counts = np.zeros(len(preds))
    total = np.zeros_like(preds[0])
    best, best_counts, stale = -np.inf, counts, 0
    for _ in range(rounds):
        trial_scores = [value((total + p) / (counts.sum() + 1)) for p in preds]
        pick = int(np.nanargmax(trial_scores))
        counts = counts.copy()
        counts[pick] += 1
        total = total + preds[pick]
        if trial_scores[pick] > best:
            best, best_counts, stale = trial_scores[pick], counts, 0
        else:
            stale += 1
            if stale >= PATIENCE:
                break
    return best_counts / best_counts.sum()


def blend(preds: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return sum(w * p for w, p in zip(weights, preds))


def stack_features(preds: list[np.ndarray]) -> np.ndarray:
    """The meta model's inputs: class-1 probability per member (binary), all classes (multiclass),
    or the predicted value (regression)."""
    cols = [p[:, 1:] if p.ndim == 2 and p.shape[1] == 2 else (p if p.ndim == 2 else p[:, None]) for p in preds]
    return np.hstack(cols)


def make_meta(regression: bool, seed: int):
    return Ridge(alpha=1.0) if regression else LogisticRegression(C=1.0, max_iter=2000, random_state=seed)


def meta_output(meta, X: np.ndarray, n_classes: int) -> np.ndarray:
    if isinstance(meta, Ridge):
        return meta.predict(X)
    out = np.zeros((X.shape[0], n_classes))
    out[:, np.asarray(meta.classes_, dtype=int)] = meta.predict_proba(X)
    return out


@dataclass(frozen=True)
class EnsembleChoice:
    method: str
    trials: list[int]  # member trial numbers, in rank order
    weights: list[float]  # voting weights (stacking: equal, informational)
    fold_scores: list[float]
    meta: Any = None  # fitted meta model (stacking)
    oof: list[np.ndarray] | None = None  # per CV fold, the ensemble's predictions as scored (cross-fitted)

    @property
    def cv_mean(self) -> float:
        return float(np.mean(self.fold_scores))


def score_voting(oofs: list[list[np.ndarray]], y_folds: list[np.ndarray], metric: str) -> EnsembleChoice | None:
    k = len(y_folds)
    fold_scores, fold_preds = [], []
    for j in range(k):
        rest = [i for i in range(k) if i != j]
        w = greedy_weights([_cat(o, rest) for o in oofs], _cat(y_folds, rest), metric)
        fold_preds.append(blend([o[j] for o in oofs], w))
        fold_scores.append(score(metric, y_folds[j], fold_preds[-1]))
    w = greedy_weights([_cat(o, list(range(k))) for o in oofs], _cat(y_folds, list(range(k))), metric)
    return EnsembleChoice("voting", [], [float(x) for x in w], fold_scores, oof=fold_preds)


def score_stacking(oofs: list[list[np.ndarray]], y_folds: list[np.ndarray], metric: str, n_classes: int,
                   regression: bool, seed: int) -> EnsembleChoice | None:
    k = len(y_folds)
    fold_scores, fold_preds = [], []
    for j in range(k):
        rest = [i for i in range(k) if i != j]
        y_rest = _cat(y_folds, rest)
        if not regression and len(np.unique(y_rest)) < 2:
            return None
        meta = make_meta(regression, seed).fit(stack_features([_cat(o, rest) for o in oofs]), y_rest)
        fold_preds.append(meta_output(meta, stack_features([o[j] for o in oofs]), n_classes))
        fold_scores.append(score(metric, y_folds[j], fold_preds[-1]))
    every = list(range(k))
    meta = make_meta(regression, seed).fit(stack_features([_cat(o, every) for o in oofs]), _cat(y_folds, every))
    return EnsembleChoice("stacking", [], [1.0 / len(oofs)] * len(oofs), fold_scores, meta, oof=fold_preds)


def select(oofs: dict[int, list[np.ndarray]], y_folds: list[np.ndarray], metric: str, method: str,
           n_classes: int, regression: bool = False, seed: int = 0) -> list[EnsembleChoice]:
    """Score voting and/or stacking over the given members (trial -> per-fold OOF), best first."""
    trials = list(oofs)
    members = [oofs[t] for t in trials]
    methods = METHODS if method == "auto" else (method,)
    found = []
    for m in methods:
        choice = score_voting(members, y_folds, metric) if m == "voting" else \
            score_stacking(members, y_folds, metric, n_classes, regression, seed)
        if choice is not None:
            found.append(EnsembleChoice(choice.method, trials, choice.weights, choice.fold_scores, choice.meta,
                                        choice.oof))
    sign = 1.0 if greater_is_better(metric) else -1.0
    return sorted(found, key=lambda c: -sign * c.cv_mean)


def beats(candidate: float, best_single: float, metric: str) -> bool:
    """Strictly better CV mean, in the metric's direction."""
    return candidate > best_single if greater_is_better(metric) else candidate < best_single


# --- the saved estimator -------------------------------------------------------------------
class EnsembleModel(BaseEstimator):
    """Voting or stacking over fitted members. `inputs[i]` is "features" when member i reads the
    shared featurizer's matrix, anything else when it reads the pipeline's input as is."""

    def __init__(self, members=None, inputs=None, featurizer=None, method: str = "voting", weights=None,
                 meta=None, task: str = "binary"):
        self.members, self.inputs, self.featurizer = members, inputs, featurizer
        self.method, self.weights, self.meta, self.task = method, weights, meta, task

    def fit(self, X, y):
        """Refit every member (and the featurizer) on X; the weights / meta model stay as chosen by CV."""
        features = self._features_needed()
        self.featurizer_ = clone(self.featurizer).fit(X) if features else None
        Xf = self.featurizer_.transform(X) if features else None
        self.estimators_ = [clone(m).fit(Xf if inp == "features" else X, y) for m, inp in zip(self.members,
                                                                                              self.inputs)]
        self._set_classes(y)
        return self

    def assemble(self, featurizer_, estimators_, y):
        """Take members the caller fitted (with its own resampling, epochs, ...)."""
        self.featurizer_, self.estimators_ = featurizer_, list(estimators_)
        self._set_classes(y)
        return self

    def _set_classes(self, y) -> None:
        if self.task != "regression":
            self.classes_ = np.unique(np.asarray(y))

    def _features_needed(self) -> bool:
        return any(inp == "features" for inp in self.inputs)

    def _member_outputs(self, X) -> list[np.ndarray]:
        Xf = self.featurizer_.transform(X) if self._features_needed() else None
        outs = []
        for est, inp in zip(self.estimators_, self.inputs):
            Xi = Xf if inp == "features" else X
            if self.task == "regression":
                outs.append(np.asarray(est.predict(Xi), dtype=np.float64))
                continue
            proba = np.zeros((_n_rows(Xi), len(self.classes_)))
            cols = np.searchsorted(self.classes_, np.asarray(est.classes_))
            proba[:, cols] = np.asarray(est.predict_proba(Xi), dtype=np.float64)
            outs.append(proba)
        return outs

    def _combine(self, X) -> np.ndarray:
        outs = self._member_outputs(X)
        if self.method == "stacking":
            return meta_output(self.meta, stack_features(outs), 0 if self.task == "regression" else len(self.classes_))
        return blend(outs, np.asarray(self.weights, dtype=np.float64))

    def predict_proba(self, X) -> np.ndarray:
        if self.task == "regression":
            raise AttributeError("a regression ensemble has no predict_proba; use predict")
        return self._combine(X)

    def predict(self, X) -> np.ndarray:
        out = self._combine(X)
        return out if self.task == "regression" else self.classes_[out.argmax(axis=1)]


def _n_rows(X) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)
