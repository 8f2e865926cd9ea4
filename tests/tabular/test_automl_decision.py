"""AutoML on binary F1 serves the threshold that maximises out-of-fold F1, and says so in metrics.json."""
import json

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification

from helpers.cli import cgtrain, read_jsonl


def test_automl_on_binary_f1_serves_the_out_of_fold_threshold(tmp_path):
    X, y = make_classification(n_samples=800, n_features=8, n_informative=4, weights=[0.9], flip_y=0.02,
                               random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]).assign(label=y)
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    frame.to_csv(tmp_path / "t.csv", index=False)
    cgtrain("automl", tmp_path / "t.csv", "--budget", "20", "--run-dir", tmp_path / "run",
            check=True)  # a single model or a kept ensemble: each has its own out-of-fold predictions
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    decision, served = metrics["decision"], json.loads((tmp_path / "run" / "decision.json").read_text())
    assert decision["policy"] == "max_f1" and served["threshold"] == decision["threshold"]
    assert set(metrics["test_argmax"]) == set(metrics["test"])  # the argmax figures are kept beside
    rows = read_jsonl(tmp_path / "run" / "test_predictions.jsonl")
    p = np.array([r["proba"][1] for r in rows])
    labels = np.array([r["y_true"] for r in rows])
    tp = int(((p >= decision["threshold"]) & (labels == 1)).sum())
    predicted = int((p >= decision["threshold"]).sum())
    assert abs(metrics["test"]["f1"] - 2 * tp / (predicted + int(labels.sum()))) < 1e-9  # F1 at the threshold
    out = cgtrain("predict", "--run", tmp_path / "run", tmp_path / "t.csv", check=True).stdout
    served_rows = [json.loads(line) for line in out.splitlines()]
    assert all(r["label"] == int(r["probability"] >= decision["threshold"]) for r in served_rows)
