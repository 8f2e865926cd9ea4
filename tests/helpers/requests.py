"""The one request builder: a preset per suite, with sections merged in (dict sections key by key)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

PRESETS: dict[str, dict[str, Any]] = {
    "e2e": {"name": "tiny", "seed": 0,
            "dataset": {"segment_columns": ["bug_kind"], "language": "python"},
            "features": {"max_features": 5000},
            "candidates": [{"family": "logreg"}, {"family": "lightgbm", "params": {"n_estimators": 50}}],
            "hpo": {"sampler": "tpe", "n_trials": 3},
            "validation": {"folds": 3, "test_fraction": 0.25}},
    "tune": {"name": "tune", "seed": 0, "dataset": {"language": "python"}, "features": {"max_features": 3000},
             "candidates": [{"family": "logreg"}, {"family": "lightgbm", "params": {"n_estimators": 30, "n_jobs": 1}}],
             "hpo": {"sampler": "tpe", "n_trials": 3},
             "validation": {"folds": 3, "test_fraction": 0.25}, "qa": {"enabled": False}},
    "qa": {"name": "qa-tiny", "seed": 0, "dataset": {"segment_columns": ["cwe"], "language": "c"},
           "features": {"max_features": 3000, "ngram_max": 2}, "candidates": [{"family": "logreg"}],
           "hpo": {"sampler": "random", "n_trials": 3}, "validation": {"folds": 3, "test_fraction": 0.3},
           "qa": {"calibration": "auto", "threshold": "max_f1", "shap_rows": 60, "explain_examples": 4}},
    "service": {"name": "tiny", "seed": 0, "dataset": {"language": "python"}, "features": {"max_features": 5000},
                "candidates": [{"family": "logreg"}], "hpo": {"sampler": "tpe", "n_trials": 2},
                "validation": {"folds": 3, "test_fraction": 0.25}, "qa": {"explain_examples": 2, "shap_rows": 20}},
    "distributed": {"name": "dist", "seed": 0, "dataset": {"language": "python"}, "features": {"max_features": 2000},
                    "candidates": [{"family": "logreg"}], "hpo": {"sampler": "random", "n_trials": 4, "workers": 2},
                    "validation": {"folds": 3, "test_fraction": 0.25}, "qa": {"enabled": False}},
}


def request_dict(data_path: str | Path, preset: str = "e2e", **sections: Any) -> dict[str, Any]:
    """The preset's request on `data_path`; a dict section is merged key by key, anything else replaces."""
    request = copy.deepcopy(PRESETS[preset])
    request["dataset"]["path"] = str(data_path)
    for key, value in sections.items():
        request[key] = {**request.get(key, {}), **value} if isinstance(value, dict) else value
    return request


def write_request(directory: Path, data_path: Path, preset: str = "e2e", **sections: Any) -> Path:
    path = Path(directory) / "request.yaml"
    path.write_text(yaml.safe_dump(request_dict(data_path, preset, **sections)))
    return path


def parsed_request(data_path: str | Path, preset: str = "tune", **sections: Any):
    from cgtrain.request import parse_request

    return parse_request(request_dict(data_path, preset, **sections))
