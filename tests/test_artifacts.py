"""Model files load without running code; tampering and pickles are refused."""
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from cgtrain.models import FAMILIES
from cgtrain.artifacts.files import UnsafeModelError, load_model, save_model


class WritesMarker:
    """Unpickling this runs code: it creates a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def small_problem():
    X = sp.random(120, 30, density=0.3, format="csr", random_state=0)
    return X, np.arange(120) % 2


def outputs(model, X, task: str) -> np.ndarray:
    if task == "anomaly":
        return model.anomaly_score(X)
    return model.predict(X) if task in ("regression", "clustering") else model.predict_proba(X)


@pytest.mark.parametrize("family,task", [(n, t) for n in FAMILIES.names() if FAMILIES.get(n).input == "features"
                                         for t in sorted(FAMILIES.get(n).tasks) if t != "multiclass"])
def test_every_feature_family_round_trips_with_a_reproducible_hash(tmp_path, family, task):
    X, y = small_problem()
    y = y + np.linspace(0, 1, len(y)) if task == "regression" else y
    model = FAMILIES.get(family).make({}, seed=0, task=task).fit(X, y)
    twin = FAMILIES.get(family).make({}, seed=0, task=task).fit(X, y)
    checksum = save_model(model, tmp_path / "m.skops")
    assert save_model(twin, tmp_path / "twin.skops") == checksum  # same model, same bytes
    loaded = load_model(tmp_path / "m.skops", checksum)
    np.testing.assert_array_equal(outputs(loaded, X, task), outputs(model, X, task))


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "model.skops"
    bad.write_bytes(pickle.dumps(WritesMarker(str(marker))))
    with pytest.raises(UnsafeModelError, match="pickle"):
        load_model(bad, expected_sha256=None)
    assert not marker.exists()


def test_a_tampered_file_fails_its_checksum(tmp_path):
    X, y = small_problem()
    path = tmp_path / "m.skops"
    checksum = save_model(FAMILIES.get("logreg").make({}, seed=0).fit(X, y), path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(UnsafeModelError, match="checksum"):
        load_model(path, checksum)
