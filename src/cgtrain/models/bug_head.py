"""The function-level head of `bug_spotter`: a logistic model over its pooled inputs and their pairwise
products, kept as plain arrays.

The pooled inputs (top token scores, soft maxima per kind of place, the function's length, data-flow
counts, contrasts, the n-gram score) do not add up independently: a top token score means more in a
short function than in a long one, an odd name more where a local is also stored and never read. The
products of pairs of standardised inputs let a linear model weigh such interactions; a small C keeps
the many products from fitting noise.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression


def expand(z: np.ndarray) -> np.ndarray:
    """Standardised inputs followed by every product of two of them (squares included)."""
    z = np.asarray(z, dtype=np.float64)
    i, j = np.triu_indices(z.shape[1])
    return np.hstack([z, z[:, i] * z[:, j]])


def fit_head(pooled: np.ndarray, y: np.ndarray, C: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, coef, intercept) of the head fitted on out-of-fold pooled inputs `pooled`."""
    mean, scale = pooled.mean(0), pooled.std(0) + 1e-6
    head = LogisticRegression(C=C, max_iter=5000).fit(expand((pooled - mean) / scale), y)
    return mean, scale, head.coef_[0].copy(), float(head.intercept_[0])


def head_decision(pooled: np.ndarray, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray,
                  intercept: float) -> np.ndarray:
    """The head's margin for each row of pooled inputs."""
    return expand((np.asarray(pooled, dtype=np.float64) - mean) / scale) @ coef + intercept
