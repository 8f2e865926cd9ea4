"""Supervised column selection before tree families: a LightGBM trial on wide n-gram matrices sees the
k columns with the highest chi-squared score (fitted on the training rows it is given), not 300k."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import chi2
from sklearn.utils.validation import check_is_fitted


class Chi2Select(TransformerMixin, BaseEstimator):
    """Keep the `k` columns with the highest chi² score against the labels (all of them when there are fewer).

    Negative values (scaled table columns) are clipped to 0 for scoring only; columns are kept as they are."""

    def __init__(self, k: int = 20000):
        self.k = k

    def fit(self, X, y):
        n = X.shape[1]
        if n <= self.k:
            self.columns_ = np.arange(n)
        else:
            scores, _ = chi2(X.maximum(0) if sp.issparse(X) else np.maximum(X, 0), y)
            scores = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
            top = np.argpartition(-scores, self.k - 1)[: self.k]
            self.columns_ = np.sort(top)
        self.n_features_in_ = n
        return self

    def transform(self, X):
        check_is_fitted(self, "columns_")
        return X[:, self.columns_]
