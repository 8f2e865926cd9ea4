"""The linear families for sparse text: probabilities for every SGD loss, class weights, saved and loaded."""
import numpy as np
import pytest
import scipy.sparse as sp

from cgtrain.models import FAMILIES
from cgtrain.artifacts.files import load_model, save_model


@pytest.mark.parametrize("family,params", [
    ("sgd", {"loss": "hinge"}), ("sgd", {"loss": "modified_huber", "penalty": "elasticnet"}),
    ("sgd", {"loss": "log_loss", "class_weight": None}), ("complement_nb", {}),
    ("logreg", {"C": 10.0, "class_weight": "balanced", "solver": "saga"}),
    ("lightgbm", {"select_k": 20, "n_estimators": 50, "min_child_samples": 5, "n_jobs": 1}),
])
def test_family_learns_sparse_text_and_round_trips(tmp_path, family, params):
    X = sp.random(300, 200, density=0.05, random_state=0, format="csr", dtype=np.float32)
    y = (np.asarray(X[:, :10].sum(axis=1)).ravel() > np.median(np.asarray(X[:, :10].sum(axis=1)))).astype(int)
    model = FAMILIES.get(family).make(params, 0, None, task="binary").fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (300, 2) and np.allclose(proba.sum(axis=1), 1) and list(model.classes_) == [0, 1]
    assert (model.predict(X) == y).mean() > 0.7
    checksum = save_model(model, tmp_path / "m.skops")
    assert np.allclose(load_model(tmp_path / "m.skops", checksum).predict_proba(X), proba)
