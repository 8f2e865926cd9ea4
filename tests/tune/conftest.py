"""Small data and requests for the study / AutoML tests."""
from pathlib import Path

import pytest

from cgtrain.request import parse_request

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bugs_jsonl(tmp_path_factory) -> Path:
    from cgtrain.data.synth_bugs import write_dataset

    path = tmp_path_factory.mktemp("tune-data") / "bugs.jsonl"
    write_dataset(path, seed=0, max_functions=200)
    return path


def make_request(data: Path, **sections):
    request = {
        "name": "tune", "seed": 0,
        "dataset": {"path": str(data), "language": "python"},
        "features": {"max_features": 3000},
        "candidates": [{"family": "logreg"}, {"family": "lightgbm", "params": {"n_estimators": 30, "n_jobs": 1}}],
        "hpo": {"sampler": "tpe", "n_trials": 3},
        "validation": {"folds": 3, "test_fraction": 0.25},
        "qa": {"enabled": False},
    }
    for key, value in sections.items():
        request[key] = {**request.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_request(request)
