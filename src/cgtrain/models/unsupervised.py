"""Unsupervised families over the feature matrix: anomaly detectors and clusterers.

Anomaly detectors share one API: `anomaly_score(X)`, higher = more anomalous (the
opposite sign of scikit-learn's `score_samples`, hence the other name), and
`predict(X)`: 1 for rows scored above `threshold_` (the training scores' 1 -
`contamination` quantile), else 0. Clusterers: `predict(X)` gives a cluster id,
-1 for noise.

Fitted state is plain data (numpy arrays, sklearn estimators), so every model is
stored by skops without pickling; the autoencoder keeps its weights as numpy arrays
and rebuilds the torch module on first use, as `NeuralClassifier` does.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted


def _reduce(X, n_components: int, seed: int) -> TruncatedSVD | None:
    """A TruncatedSVD for inputs wider than n_components (sparse n-grams); None: use X as it is."""
    if not n_components or X.shape[1] <= n_components:
        return None
    k = min(n_components, X.shape[0] - 1, X.shape[1] - 1)
    return TruncatedSVD(n_components=max(1, k), random_state=seed).fit(X)


def _dense(X, svd: TruncatedSVD | None) -> np.ndarray:
    if svd is not None:
        return np.asarray(svd.transform(X), dtype=np.float64)
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


class _Detector(BaseEstimator):
    """Threshold and predict from `anomaly_score`; subclasses implement `_fit` and `anomaly_score`."""

    def fit(self, X, y=None):
        self._fit(X)
        scores = self.anomaly_score(X)
        self.threshold_ = float(np.quantile(scores, 1.0 - float(self.contamination))) if len(scores) else 0.0
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "threshold_")
        return (self.anomaly_score(X) > self.threshold_).astype(np.int64)


class IsolationForestDetector(_Detector):
    """scikit-learn's IsolationForest; anomaly score = minus its `score_samples`."""

    def __init__(self, n_estimators: int = 200, max_samples: Any = "auto", max_features: float = 1.0,
                 contamination: float = 0.1, random_state: int = 0, n_jobs: int | None = None):
        self.n_estimators, self.max_samples, self.max_features = n_estimators, max_samples, max_features
        self.contamination, self.random_state, self.n_jobs = contamination, random_state, n_jobs

    def _fit(self, X) -> None:
        self.forest_ = IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                       max_features=self.max_features, random_state=self.random_state,
                                       n_jobs=self.n_jobs).fit(X)

    def anomaly_score(self, X) -> np.ndarray:
        check_is_fitted(self, "forest_")
        return -np.asarray(self.forest_.score_samples(X), dtype=np.float64)


class AutoencoderDetector(_Detector):
    """A small MLP autoencoder; anomaly score = mean squared reconstruction error per row.

    Wide sparse input is first projected by a TruncatedSVD (`svd_components`), then
    standardised with the training mean and std; the autoencoder reconstructs that.
    """

    def __init__(self, svd_components: int = 64, hidden: int = 32, code: int = 8, epochs: int = 50,
                 batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-5,
                 contamination: float = 0.1, random_state: int = 0):
        self.svd_components, self.hidden, self.code, self.epochs = svd_components, hidden, code, epochs
        self.batch_size, self.lr, self.weight_decay = batch_size, lr, weight_decay
        self.contamination, self.random_state = contamination, random_state

    def _standard(self, X) -> np.ndarray:
        return (_dense(X, self.svd_) - self.mean_) / self.scale_

    def _fit(self, X) -> None:
        self.svd_ = _reduce(X, self.svd_components, self.random_state)
        Z = _dense(X, self.svd_)
        self.mean_, std = Z.mean(axis=0), Z.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self.n_features_in_ = int(X.shape[1])
        from cgtrain.models import autoencoder_net  # torch, only for this family

        self._module, self.weights_, losses = autoencoder_net.fit((Z - self.mean_) / self.scale_, self)
        self.history_ = {"loss": losses}

    def _net(self) -> Any:
        from cgtrain.models import autoencoder_net

        if getattr(self, "_module", None) is None:
            self._module = autoencoder_net.rebuild(len(self.mean_), int(self.hidden), int(self.code), self.weights_)
        return self._module

    def anomaly_score(self, X) -> np.ndarray:
        check_is_fitted(self, "weights_")
        from cgtrain.models import autoencoder_net

        return autoencoder_net.reconstruction_error(self._net(), self._standard(X))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_module", None)  # rebuilt from weights_ on first use
        return state


class HDBSCANClusterer(ClusterMixin, BaseEstimator):
    """scikit-learn's HDBSCAN (on a TruncatedSVD projection of wide input). HDBSCAN itself cannot
    label new rows; `predict` assigns a row to the nearest cluster centroid if it lies within
    that cluster's radius (the largest member distance seen in training), else -1 (noise)."""

    def __init__(self, min_cluster_size: int = 5, min_samples: int | None = None,
                 cluster_selection_epsilon: float = 0.0, svd_components: int = 32, random_state: int = 0):
        self.min_cluster_size, self.min_samples = min_cluster_size, min_samples
        self.cluster_selection_epsilon, self.svd_components = cluster_selection_epsilon, svd_components
        self.random_state = random_state

    def fit(self, X, y=None):
        self.svd_ = _reduce(X, self.svd_components, self.random_state)
        Z = _dense(X, self.svd_)
        model = HDBSCAN(min_cluster_size=int(self.min_cluster_size), min_samples=self.min_samples,
                        cluster_selection_epsilon=float(self.cluster_selection_epsilon), copy=True).fit(Z)
        self.labels_ = np.asarray(model.labels_, dtype=np.int64)
        ids = np.unique(self.labels_[self.labels_ >= 0])
        self.centroids_ = np.array([Z[self.labels_ == c].mean(axis=0) for c in ids]).reshape(len(ids), Z.shape[1])
        self.radius_ = np.array([np.linalg.norm(Z[self.labels_ == c] - self.centroids_[i], axis=1).max()
                                 for i, c in enumerate(ids)], dtype=np.float64)
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "labels_")
        Z = _dense(X, self.svd_)
        if not len(self.centroids_):
            return np.full(len(Z), -1, dtype=np.int64)
        dist = np.linalg.norm(Z[:, None, :] - self.centroids_[None, :, :], axis=2)
        nearest = dist.argmin(axis=1)
        inside = dist[np.arange(len(Z)), nearest] <= self.radius_[nearest] + 1e-12
        return np.where(inside, nearest, -1).astype(np.int64)


# --- builders (the families are declared in cgtrain.models.catalog) --------------------------
def build_isolation_forest(p: dict[str, Any], seed: int, class_weight: str | None = None) -> IsolationForestDetector:
    return IsolationForestDetector(random_state=seed, **p)


def build_autoencoder(p: dict[str, Any], seed: int, class_weight: str | None = None) -> AutoencoderDetector:
    return AutoencoderDetector(random_state=seed, **p)


def build_kmeans(p: dict[str, Any], seed: int, class_weight: str | None = None) -> KMeans:
    return KMeans(n_clusters=p["n_clusters"], n_init=p["n_init"], random_state=seed)


def build_hdbscan(p: dict[str, Any], seed: int, class_weight: str | None = None) -> HDBSCANClusterer:
    return HDBSCANClusterer(random_state=seed, **p)
