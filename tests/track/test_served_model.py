"""Served = reported: QA's calibration and threshold travel with the model to `cgtrain predict`,
the Python API, the registry and MLflow serving (`mlflow.pyfunc.load_model("models:/NAME@champion")`)."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import cgtrain
from cgtrain.cli import app

CODES = ["def last(xs):\n    return xs[len(xs)]\n", "def inc(x):\n    return x + 1\n",
         "def first(xs):\n    if xs:\n        return xs[0]\n"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def served(tmp_path_factory, mlflow_store):
    from cgtrain.data.synth_bugs import write_dataset

    root = tmp_path_factory.mktemp("served")
    write_dataset(root / "bugs.jsonl", seed=0, max_functions=150)
    request = {"name": "served-test", "dataset": {"path": str(root / "bugs.jsonl"), "language": "python"},
               "candidates": [{"family": "logreg"}], "hpo": {"n_trials": 1},
               "validation": {"folds": 2, "test_fraction": 0.25},
               "qa": {"calibration": "sigmoid", "threshold": "max_f1"}}
    (root / "request.yaml").write_text(yaml.safe_dump(request))
    uri = mlflow_store(root / "mlflow")
    result = invoke("train", root / "request.yaml", "--run-dir", root / "run", "--tracking-uri", uri)
    assert result.exit_code == 0, result.output
    (root / "in.jsonl").write_text("".join(json.dumps({"id": str(i), "code": c}) + "\n" for i, c in enumerate(CODES)))
    return root, uri


def predictions(*args) -> list[dict]:
    result = invoke("predict", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_predict_serves_the_calibration_and_threshold_qa_reported(served):
    root, _ = served
    qa = json.loads((root / "run" / "qa.json").read_text())["calibration"]
    served_rows = predictions("--run", root / "run", root / "in.jsonl")
    raw_rows = predictions("--run", root / "run", "--raw", root / "in.jsonl")
    model = cgtrain.load(root / "run", raw=True)
    raw_p = model.predict_proba(CODES)[:, 1]
    assert [r["probability"] for r in raw_rows] == pytest.approx(raw_p, abs=1e-6)
    a, b = qa["calibrator"]["a"], qa["calibrator"]["b"]
    logit = np.log(np.clip(raw_p, 1e-12, 1 - 1e-12) / (1 - np.clip(raw_p, 1e-12, 1 - 1e-12)))
    expected = 1 / (1 + np.exp(-(a * logit + b)))
    assert [r["probability"] for r in served_rows] == pytest.approx(expected, abs=1e-5)
    threshold = qa["threshold"]["threshold"]
    assert [r["label"] for r in served_rows] == [int(p >= threshold) for p in expected]
    assert cgtrain.load(root / "run").predict(CODES) == [r["label"] for r in served_rows]


def test_registered_champion_is_an_mlflow_model_that_serves_the_same(served):
    import mlflow

    root, uri = served
    by_cli = predictions("--model", "served-test@champion", "--tracking-uri", uri, root / "in.jsonl")
    assert by_cli == predictions("--run", root / "run", root / "in.jsonl")
    mlflow.set_tracking_uri(uri)
    try:
        out = mlflow.pyfunc.load_model("models:/served-test@champion").predict(pd.DataFrame({"code": CODES}))
    finally:
        mlflow.set_tracking_uri(None)
    assert out["probability"].tolist() == pytest.approx([r["probability"] for r in by_cli], abs=1e-6)
    assert out["label"].tolist() == [r["label"] for r in by_cli]


def test_a_decision_for_another_model_is_not_served(served, tmp_path):
    import shutil

    root, _ = served
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    decision = json.loads((run / "decision.json").read_text())
    decision["model_sha256"] = "sha256:" + "0" * 64  # made for a model since replaced
    (run / "decision.json").write_text(json.dumps(decision))
    assert predictions("--run", run, root / "in.jsonl") == predictions("--run", root / "run", "--raw",
                                                                       root / "in.jsonl")
