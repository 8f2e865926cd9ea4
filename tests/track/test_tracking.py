"""MLflow tracking of a finished run on a real embedded SQLite store: parent run, nested trial runs,
artifacts, registered version; the environment snapshot; failures that never cost the run."""
import json
from pathlib import Path

import numpy as np
import pytest

from cgtrain.flows.supervised import train
from cgtrain.request import parse_request
from cgtrain.track.environment import git_state, snapshot
from cgtrain.track import try_log_run
from cgtrain.track.mlflow_tracking import TRACKING_FILE, log_run
from cgtrain.track.store import artifact_root, resolve_tracking_uri, tracking_client

# MLflow 3.17's store with SQLAlchemy 2.1: a deprecation inside MLflow, nothing of ours
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from cgtrain.data.synth_bugs import write_dataset

    base = tmp_path_factory.mktemp("tracked")
    write_dataset(base / "bugs.jsonl", seed=0, max_functions=80)
    request = parse_request({
        "name": "tiny", "seed": 0,
        "dataset": {"path": str(base / "bugs.jsonl"), "language": "python"},
        "features": {"max_features": 2000},
        "candidates": [{"family": "logreg"}, {"family": "random_forest", "params": {"n_estimators": 10}}],
        "hpo": {"sampler": "random", "n_trials": 2}, "validation": {"folds": 2, "test_fraction": 0.25},
    })
    train(request, base / "run", say=lambda _m: None)
    return base / "run"


@pytest.fixture(scope="module")
def logged(run_dir, tmp_path_factory, mlflow_store):
    uri = mlflow_store(tmp_path_factory.mktemp("store"))
    return log_run(run_dir, uri, "tiny"), uri


def test_a_run_is_a_parent_run_with_one_nested_run_per_trial(logged, run_dir):
    tracked, uri = logged
    client = tracking_client(uri)
    parent = client.get_run(tracked.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["best.family"] == json.loads((run_dir / "model.json").read_text())["family"]
    assert parent.data.params["validation.metric"] == "f1"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert parent.data.metrics["test_f1"] == pytest.approx(metrics["test"]["f1"])
    assert [m.value for m in client.get_metric_history(tracked.run_id, "cv_f1_fold")] == metrics["cv"]["folds"]

    children = client.search_runs([tracked.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{tracked.run_id}'")
    assert sorted(r.info.run_id for r in children) == sorted(tracked.trial_run_ids)
    assert len(children) == 2
    for child in children:
        assert child.data.params["family"] in ("logreg", "random_forest")
        folds = client.get_metric_history(child.info.run_id, "fold_f1")
        assert [m.step for m in folds] == [0, 1]
        assert child.data.metrics["duration_seconds"] > 0
        assert child.info.end_time >= child.info.start_time


def test_records_and_model_files_are_logged_as_artifacts(logged):
    tracked, uri = logged
    client = tracking_client(uri)
    top = {a.path for a in client.list_artifacts(tracked.run_id)}
    assert {"request.yaml", "leaderboard.csv", "metrics.json", "dataset.json", "environment.json",
            "artifacts.json", "test_predictions.jsonl", "model"} <= top
    model = {a.path for a in client.list_artifacts(tracked.run_id, "model")}
    assert {"model/model.skops", "model/model.json", "model/model.onnx"} <= model
    # artifacts live beside the embedded database, not in the working directory
    run = client.get_run(tracked.run_id)
    assert run.info.artifact_uri.startswith(artifact_root(uri))


def test_the_model_is_registered_as_the_first_champion(logged, run_dir):
    tracked, uri = logged
    client = tracking_client(uri)
    assert (tracked.model_name, tracked.model_version, tracked.alias) == ("tiny", "1", "champion")
    version = client.get_model_version_by_alias("tiny", "champion")
    assert version.run_id == tracked.run_id
    manifest = json.loads((run_dir / "model.json").read_text())
    assert version.tags["cgtrain.sha256"] == manifest["sha256"]
    assert version.tags["cgtrain.onnx"] == "ok"


def test_portable_artifacts_and_environment_are_recorded_in_the_run_dir(logged, run_dir):
    artifacts = json.loads((run_dir / "artifacts.json").read_text())
    assert artifacts["formats"]["onnx"]["parity"]["ok"]
    for fmt in ("skops", "onnx"):
        assert artifacts["formats"][fmt]["bytes"] > 0
        assert artifacts["formats"][fmt]["latency_ms"]["batch64"]["p95"] > 0
    env = json.loads((run_dir / "environment.json").read_text())
    dataset = json.loads((run_dir / "dataset.json").read_text())
    assert env["dataset"]["fingerprint"] == dataset["fingerprint"]
    assert env["seed"] == 0
    assert env["packages"]["numpy"] == np.__version__
    assert env["packages"]["mlflow-skinny"] or env["packages"]["mlflow"]
    assert {"python", "os", "cpu", "gpu"} <= set(env)
    predictions = [json.loads(line) for line in (run_dir / "test_predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == json.loads((run_dir / "metrics.json").read_text())["n_test"]


def test_logging_the_same_run_again_returns_the_first_record(logged, run_dir):
    tracked, uri = logged
    assert json.loads((run_dir / TRACKING_FILE).read_text())["run_id"] == tracked.run_id
    again = log_run(run_dir, uri, "tiny")
    assert again.already_logged and again.run_id == tracked.run_id
    assert len(tracking_client(uri).search_model_versions("name = 'tiny'")) == 1


def test_a_tracking_failure_is_reported_and_leaves_the_run_usable(run_dir, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    said = []
    before = sorted(p.name for p in run_dir.iterdir())
    result = try_log_run(run_dir, f"sqlite:///{blocker}/mlflow.db", "tiny", say=said.append)
    assert result is None
    assert "tracking failed" in said[0] and "complete and usable" in said[0]
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing added or lost
    from cgtrain.serve.predictor import load_predictor

    assert load_predictor(run_dir=run_dir).predict([{"id": "a", "code": "def f(x):\n    return x"}])


def test_store_location_flag_then_environment_then_embedded_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert artifact_root(resolve_tracking_uri(None)) == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_tracking_uri(None) == "http://tracking.example:5000"
    assert artifact_root("http://tracking.example:5000") is None
    assert resolve_tracking_uri("sqlite:///rel/x.db") == f"sqlite:///{tmp_path.resolve()}/rel/x.db"


def test_environment_records_the_request_files_git_commit(tmp_path):
    outside = snapshot(tmp_path, request_path=tmp_path / "request.yaml")
    assert outside["git"] is None  # not in a repository
    here = git_state(Path(__file__))
    if here is None:
        pytest.skip("the tests are not in a git checkout")
    assert len(here["commit"]) == 40 and isinstance(here["dirty"], bool)


def test_derived_records_are_remade_when_the_model_changed(logged, run_dir):
    from cgtrain.track.mlflow_tracking import prepare_records

    path = run_dir / "artifacts.json"
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "model_sha256": "sha256:an-older-model"}))
    assert prepare_records(run_dir) == []
    assert json.loads(path.read_text())["model_sha256"] == json.loads((run_dir / "model.json").read_text())["sha256"]


@pytest.mark.parametrize("rebuilt", [False, True])
def test_a_table_model_is_exported_to_onnx_with_parity_on_its_held_out_rows(tmp_path, mlflow_store, rebuilt):
    """A table run's held-out rows are table columns, not code: the export used to feed it code strings and
    record `onnx: failed (TypeError: expected a DataFrame of table columns)` on every table run. `rebuilt`: the
    run's test predictions are gone and its held-out rows are made again from the dataset."""
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300), "c": rng.choice(["x", "y"], 300)})
    frame["label"] = ((frame["a"] + (frame["c"] == "x")) > 0.5).astype(int)
    frame.insert(0, "id", [f"r{i}" for i in range(300)])
    frame.to_csv(tmp_path / "t.csv", index=False)
    request = parse_request({
        "name": "table", "seed": 0, "task": "binary",
        "dataset": {"path": str(tmp_path / "t.csv"), "code_column": None, "numeric_columns": ["a", "b"],
                    "categorical_columns": ["c"], "group_column": None},
        "candidates": [{"family": "lightgbm", "params": {"n_estimators": 20, "n_jobs": 1}}],
        "hpo": {"n_trials": 1}, "validation": {"folds": 2}})
    train(request, tmp_path / "run", say=lambda _m: None)
    if rebuilt:
        (tmp_path / "run" / "test_predictions.jsonl").unlink()
    log_run(tmp_path / "run", mlflow_store(tmp_path / "store"), "table")
    artifacts = json.loads((tmp_path / "run" / "artifacts.json").read_text())
    onnx_rec = artifacts["formats"]["onnx"]
    assert onnx_rec["status"] == "ok" and onnx_rec["parity"]["ok"] and onnx_rec["parity"]["rows"] > 0, onnx_rec
    assert artifacts["predictions"]["source"] == ("rebuilt" if rebuilt else "pipeline")
    n_test = json.loads((tmp_path / "run" / "metrics.json").read_text())["n_test"]
    assert len((tmp_path / "run" / "test_predictions.jsonl").read_text().splitlines()) == n_test
