"""Linear families for sparse text features: what FLAML and practitioners reach for on n-grams.

- `sgd`: SGDClassifier (hinge / log-loss / modified-Huber, L2 or elastic-net). Hinge has no
  probabilities of its own: `SGDText` gives sigmoid(decision) (softmax for multiclass), which keeps
  the ranking (ROC-AUC) and the argmax decision of the margin.
- `complement_nb`: complement naive Bayes (non-negative features only: code text, not scaled tables).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import SGDClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.utils.validation import check_is_fitted


# Families that need non-negative inputs (TF-IDF / counts): not offered for scaled table columns.
TEXT_ONLY = frozenset({"complement_nb"})


class SGDText(ClassifierMixin, BaseEstimator):
    """SGDClassifier with predict_proba for every loss."""

    def __init__(self, loss: str = "hinge", penalty: str = "l2", alpha: float = 1e-5, l1_ratio: float = 0.15,
                 max_iter: int = 30, tol: float = 1e-4, class_weight=None, average: bool = False,
                 random_state: int = 0):
        self.loss, self.penalty, self.alpha, self.l1_ratio = loss, penalty, alpha, l1_ratio
        self.max_iter, self.tol, self.class_weight, self.average = max_iter, tol, class_weight, average
        self.random_state = random_state

    def fit(self, X, y):
        self.model_ = SGDClassifier(loss=self.loss, penalty=self.penalty, alpha=self.alpha, l1_ratio=self.l1_ratio,
                                    max_iter=self.max_iter, tol=self.tol, class_weight=self.class_weight,
                                    average=self.average, random_state=self.random_state)
        self.model_.fit(X, y)
        # The fitted loss object (a Cython type) is only needed for more training; a saved model holds plain data.
        self.model_.__dict__.pop("_loss_function_", None)
        self.model_.__dict__.pop("loss_function_", None)
        self.classes_ = self.model_.classes_
        return self

    def decision_function(self, X):
        check_is_fitted(self, "model_")
        return self.model_.decision_function(X)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        if self.loss in ("log_loss", "modified_huber"):
            return self.model_.predict_proba(X)
        d = np.asarray(self.model_.decision_function(X), dtype=np.float64)
        if d.ndim == 1:
            p = 1.0 / (1.0 + np.exp(-np.clip(d, -50, 50)))
            return np.column_stack([1 - p, p])
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def build_sgd(p, seed, class_weight):
    return SGDText(loss=p["loss"], penalty=p["penalty"], alpha=p["alpha"], l1_ratio=p["l1_ratio"],
                   max_iter=p["max_iter"], tol=p["tol"], class_weight=p.get("class_weight") or class_weight,
                   average=p["average"], random_state=seed)


def build_complement_nb(p, seed, class_weight):
    return ComplementNB(alpha=p["alpha"], norm=p["norm"])
