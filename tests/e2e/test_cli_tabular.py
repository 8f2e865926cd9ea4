"""Table data, regression and unsupervised tasks through the CLI, as a user runs them."""
import json

import numpy as np
import pandas as pd
import yaml

from helpers.cli import cgtrain, read_jsonl


def request_file(tmp_path, **request) -> str:
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "seed": 0, "qa": {"enabled": False}, **request}))
    return str(path)


def test_regression_beats_the_mean_baseline_and_predict_gives_a_value_per_row(tmp_path):
    data = tmp_path / "diabetes.csv"
    cgtrain("data", "sklearn", "diabetes", "--out", data, check=True)
    columns = [c for c in pd.read_csv(data, nrows=1).columns if c not in ("id", "label")]
    req = request_file(tmp_path, task="regression",
                       dataset={"path": str(data), "code_column": None, "numeric_columns": columns,
                                "group_column": None},
                       candidates=[{"family": "ridge"},
                                   {"family": "lightgbm", "params": {"n_estimators": 60, "n_jobs": 1}}],
                       hpo={"n_trials": 4}, validation={"folds": 3})
    proc = cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    assert "mean baseline" in proc.stdout
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["test"]) == {"rmse", "mae", "r2"} and m["cv"]["metric"] == "rmse"
    assert m["test"]["rmse"] < 0.85 * m["baseline_mean"]["rmse"] and m["test"]["r2"] > 0.2
    board = pd.read_csv(run / "leaderboard.csv")
    done = board[board["state"] == "complete"]["cv_rmse_mean"].tolist()
    assert done == sorted(done) and min(done) > 0  # lower is better, shown as is (never negated)
    assert m["cv"]["mean"] == min(done)
    preds = read_jsonl(run / "test_predictions.jsonl")
    assert len(preds) == m["n_test"] and all(isinstance(r["y_pred"], float) for r in preds)
    rmse = float(np.sqrt(np.mean([(r["y_true"] - r["y_pred"]) ** 2 for r in preds])))
    assert abs(rmse - m["test"]["rmse"]) < 1e-3
    out = cgtrain("predict", "--run", run, data, check=True).stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert len(rows) == 442 and rows[0]["id"] == "diabetes-0" and all(isinstance(r["value"], float) for r in rows)


def test_table_classification_with_categories_and_gaps_quarantines_a_bad_number(tmp_path):
    from cgtrain.data.bundled import sklearn_frame

    frame, info = sklearn_frame("breast_cancer")
    rng = np.random.default_rng(0)
    frame.insert(1, "clinic", rng.choice(["north", "south", "east"], len(frame)).astype(object))
    frame.loc[rng.random(len(frame)) < 0.1, "clinic"] = None
    for col in info.numeric_columns[:5]:
        frame.loc[rng.random(len(frame)) < 0.05, col] = np.nan
    frame = frame.astype({info.numeric_columns[0]: object})
    frame.loc[7, info.numeric_columns[0]] = "twelve"  # CSV line 9 (header is line 1)
    data = tmp_path / "cancer.csv"
    frame.to_csv(data, index=False)
    req = request_file(tmp_path, task="binary",
                       dataset={"path": str(data), "code_column": None, "numeric_columns": info.numeric_columns,
                                "categorical_columns": ["clinic"], "group_column": None},
                       candidates=[{"family": "logreg"},
                                   {"family": "lightgbm", "params": {"n_estimators": 50, "n_jobs": 1}}],
                       hpo={"n_trials": 3}, validation={"folds": 3})
    cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    run = tmp_path / "run"
    [bad] = read_jsonl(run / "quarantine.jsonl")
    assert bad["line"] == 9 and bad["reason"] == "non_numeric" and "twelve" in bad["detail"]
    m = json.loads((run / "metrics.json").read_text())
    assert m["test"]["f1"] > 0.9 and m["test"]["roc_auc"] > 0.95 and m["baseline_majority"]["f1"] < 0.8
    rows = [json.loads(line) for line in cgtrain("predict", "--run", run, data, check=True).stdout.splitlines()]
    assert len(rows) == len(frame) and rows[7] == {"id": "breast_cancer-7", "error": rows[7]["error"]}
    assert all(r["label"] in (0, 1) and 0 <= r["probability"] <= 1 for r in rows if "error" not in r)


def anomaly_rows() -> list[dict]:
    """Sixty small, alike functions and six odd ones (labelled 1)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        a, b = rng.choice(["x", "y", "n", "total"], 2, replace=False)
        code = f"def f{i}({a}, {b}):\n    return {a} + {b} * {int(rng.integers(1, 9))}\n"
        rows.append({"id": f"n{i}", "code": code, "label": 0, "group": f"g{i % 20}"})
    for i in range(6):
        code = (f"class Weird{i}:\n    async def run(self):\n        async with lock:\n"
                f"            await asyncio.sleep({i})\n            yield from self.queue\n" * 2)
        rows.append({"id": f"odd{i}", "code": code, "label": 1, "group": f"odd{i}"})
    return rows


def test_anomaly_detection_scores_every_row_and_precision_at_k_matches_a_hand_count(tmp_path):
    data = tmp_path / "funcs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in anomaly_rows()))
    req = request_file(tmp_path, task="anomaly", dataset={"path": str(data), "language": "python"},
                       features={"min_df": 1}, candidates=[{"family": "isolation_forest",
                                                             "params": {"n_estimators": 100}}],
                       hpo={"n_trials": 2}, validation={"folds": 2, "test_fraction": 0.3})
    proc = cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    assert "precision_at_k" in proc.stdout
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    scored = read_jsonl(run / "scores.jsonl")
    assert len(scored) == 66 and {"id", "split", "score", "anomaly", "label"} <= set(scored[0])
    test = [r for r in scored if r["split"] == "test"]
    k = sum(r["label"] for r in test)
    top = sorted(test, key=lambda r: -r["score"])[:k]  # hand count: anomalies among the k highest scores
    assert k >= 1 and m["test"]["precision_at_k"] == sum(r["label"] for r in top) / k
    assert m["test"]["precision_at_k"] >= 0.5 and m["test"]["roc_auc"] > 0.8
    model = json.loads((run / "model.json").read_text())
    assert model["task"] == "anomaly" and model["format"] == "skops"
    rows = [json.loads(line) for line in cgtrain("predict", "--run", run, data, check=True).stdout.splitlines()]
    by_id = {r["id"]: r for r in rows}
    stored = next(r["score"] for r in scored if r["id"] == "odd0")
    assert len(rows) == 66 and abs(by_id["odd0"]["score"] - stored) < 1e-5
    assert by_id["odd0"]["score"] > by_id["n0"]["score"]


def test_clustering_table_rows_writes_cluster_ids_and_scores_them_against_labels(tmp_path):
    from cgtrain.data.bundled import write_sklearn_dataset

    data = tmp_path / "iris.csv"
    columns = write_sklearn_dataset("iris", data).numeric_columns
    req = request_file(tmp_path, task="clustering",
                       dataset={"path": str(data), "code_column": None, "numeric_columns": columns,
                                "group_column": None},
                       candidates=[{"family": "kmeans", "space": {"n_clusters": {"type": "int", "low": 2,
                                                                                  "high": 4}}}],
                       hpo={"n_trials": 3, "sampler": "grid"}, validation={"folds": 2})
    cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["cv"]["metric"] == "silhouette" and m["test"]["silhouette"] > 0.3
    assert m["train"]["adjusted_rand"] > 0.4
    clusters = read_jsonl(run / "clusters.jsonl")
    assert len(clusters) == 150 and {r["cluster"] for r in clusters} <= set(range(4))
    rows = [json.loads(line) for line in cgtrain("predict", "--run", run, data, check=True).stdout.splitlines()]
    assert [r["cluster"] for r in rows] == [r["cluster"] for r in clusters]


def test_an_ensemble_over_table_columns_predicts_through_the_cli(tmp_path):
    """A kept ensemble over table features (ridge + LightGBM, each sees what the other misses) is served by
    `cgtrain predict` on the table's rows, as its test predictions were made (it used to fail: the served
    model's table featurizer sat inside the ensemble)."""
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], n)})
    frame["label"] = 2 * frame["a"] + 3 * (frame["b"] > 0.5) + (frame["c"] == "x") + rng.normal(scale=0.3, size=n)
    frame.insert(0, "id", [f"r{i}" for i in range(n)])
    data = tmp_path / "t.csv"
    frame.to_csv(data, index=False)
    req = request_file(tmp_path, task="regression",
                       dataset={"path": str(data), "code_column": None, "numeric_columns": ["a", "b"],
                                "categorical_columns": ["c"], "group_column": None},
                       candidates=[{"family": "ridge", "space": {}, "params": {"alpha": 1.0}},
                                   {"family": "lightgbm", "space": {},
                                    "params": {"n_estimators": 50, "num_leaves": 4, "n_jobs": 1}}],
                       hpo={"sampler": "grid", "n_trials": 2, "ensemble": "voting"}, validation={"folds": 3})
    cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    run = tmp_path / "run"
    assert json.loads((run / "ensemble.json").read_text())["kept"] is True
    assert json.loads((run / "metrics.json").read_text())["best"]["family"] == "ensemble"
    served = {r["id"]: r["value"] for r in map(json.loads, cgtrain("predict", "--run", run, data,
                                                                   check=True).stdout.splitlines())}
    tested = read_jsonl(run / "test_predictions.jsonl")
    assert len(served) == n and all(abs(served[r["id"]] - r["y_pred"]) < 1e-6 for r in tested)


def test_a_budgeted_grid_of_a_two_thread_lightgbm_runs_its_grid_and_keeps_the_final_fit(tmp_path):
    """`hpo.sampler: grid` with `hpo.budget_s` used to fail with KeyError 'grid_id' (AutoML's trials are not the
    grid's); and a LightGBM refit on 2 threads (the family's default n_jobs) left the final fit on all rows hanging
    in its forked child until the budget ended, then threw it away."""
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    frame["label"] = ((frame["a"] + frame["b"] * frame["a"] + rng.normal(scale=0.3, size=n)) > 0).astype(int)
    frame.insert(0, "id", [f"r{i}" for i in range(n)])
    data = tmp_path / "t.csv"
    frame.to_csv(data, index=False)
    req = request_file(tmp_path, task="binary",
                       dataset={"path": str(data), "code_column": None, "numeric_columns": ["a", "b"],
                                "group_column": None},
                       candidates=[{"family": "lightgbm", "params": {"n_estimators": 40, "n_jobs": 2},
                                    "space": {"num_leaves": {"type": "categorical", "choices": [4, 15]}}}],
                       hpo={"sampler": "grid", "n_trials": 5, "budget_s": 40},
                       validation={"folds": 2, "final_fit": "all", "metric": "f1"})
    proc = cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv")
    assert sorted(board["state"]) == ["complete", "complete"]  # the grid's two configurations, then it stops
    assert "stopped at the budget" not in proc.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["model_rows"] == n
