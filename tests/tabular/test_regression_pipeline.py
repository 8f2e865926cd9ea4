"""A regression run in-process: minimised metric, same request and seed -> same bytes."""
import optuna

from cgtrain.flows.supervised import train as train_run
from cgtrain.data.bundled import request_dataset, write_sklearn_dataset
from cgtrain.request import parse_request


def test_regression_runs_are_reproducible_and_minimise_rmse(tmp_path):
    info = write_sklearn_dataset("diabetes", tmp_path / "d.csv")
    req = parse_request({"task": "regression", "dataset": request_dataset(info, tmp_path / "d.csv"),
                         "candidates": [{"family": "ridge"},
                                        {"family": "random_forest", "params": {"n_estimators": 20}}],
                         "hpo": {"n_trials": 3}, "validation": {"folds": 3}, "qa": {"enabled": False}})
    runs = [train_run(req, tmp_path / name, say=lambda m: None) for name in ("a", "b")]
    assert (tmp_path / "a/metrics.json").read_bytes() == (tmp_path / "b/metrics.json").read_bytes()
    assert (tmp_path / "a/model.skops").read_bytes() == (tmp_path / "b/model.skops").read_bytes()
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'a/study.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    board = runs[0].leaderboard
    assert runs[0].metrics["best"]["trial"] == int(board.iloc[0]["trial"])
    assert board["cv_rmse_mean"].iloc[0] == board["cv_rmse_mean"].min()
