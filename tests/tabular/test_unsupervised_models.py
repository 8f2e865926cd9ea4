"""Anomaly detectors and clusterers: they find what is planted, are seeded, and store safely."""
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from cgtrain.evaluate.metrics import precision_at_k
from cgtrain.models import FAMILIES
from cgtrain.models.unsupervised import AutoencoderDetector, HDBSCANClusterer, IsolationForestDetector
from cgtrain.artifacts.files import load_model, save_model


@pytest.fixture(scope="module")
def planted():
    """200 rows on a 2-D plane inside 8-D space, 10 rows off it: the anomalies."""
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(2, 8))
    normal = rng.normal(size=(200, 2)) @ basis + rng.normal(0, 0.05, (200, 8))
    odd = rng.normal(0, 3, (10, 8))
    X = np.vstack([normal, odd])
    return X, np.r_[np.zeros(200, dtype=int), np.ones(10, dtype=int)]


@pytest.mark.parametrize("make", [
    lambda: IsolationForestDetector(n_estimators=100, random_state=0),
    lambda: AutoencoderDetector(svd_components=0, hidden=16, code=2, epochs=60, batch_size=32, lr=3e-3),
], ids=["isolation_forest", "autoencoder"])
def test_detectors_rank_planted_anomalies_first_and_are_seeded(planted, tmp_path, make):
    X, y = planted
    det = make().fit(X)
    scores = det.anomaly_score(X)
    assert precision_at_k(y, scores) >= 0.8
    assert det.predict(X).sum() == pytest.approx(0.1 * len(X), abs=2)  # contamination 0.1 -> ~10% flagged
    np.testing.assert_allclose(clone(det).fit(X).anomaly_score(X), scores)  # same seed, same scores
    save_model(det, tmp_path / "det.skops")  # weights as numpy arrays: no pickle, allowlisted type
    np.testing.assert_allclose(load_model(tmp_path / "det.skops", None).anomaly_score(X), scores, rtol=1e-6)


def test_the_autoencoder_projects_wide_sparse_input_first():
    X = sp.random(120, 500, density=0.05, format="csr", random_state=0)
    det = AutoencoderDetector(svd_components=16, epochs=3).fit(X)
    assert det.svd_.n_components == 16 and det.anomaly_score(X[:5]).shape == (5,)


def test_hdbscan_finds_blobs_and_labels_new_rows_by_nearest_cluster(tmp_path):
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]])
    X = np.vstack([c + rng.normal(0, 0.5, (40, 2)) for c in centers])
    model = HDBSCANClusterer(min_cluster_size=10).fit(X)
    assert len(set(model.labels_) - {-1}) == 3
    new = model.predict(np.array([[0.1, 0.2], [10.2, -0.1], [50.0, 50.0]]))
    assert new[0] != new[1] and new[0] >= 0 and new[1] >= 0 and new[2] == -1
    assert (model.predict(X) == model.labels_)[model.labels_ >= 0].mean() > 0.9
    save_model(model, tmp_path / "h.skops")
    np.testing.assert_array_equal(load_model(tmp_path / "h.skops", None).predict(X), model.predict(X))


def test_kmeans_family_builds_a_seeded_kmeans():
    km = FAMILIES.get("kmeans").make({"n_clusters": 3}, seed=1, task="clustering")
    assert km.n_clusters == 3 and km.random_state == 1
