"""The Python API (`import cgtrain`): train, load, predict — and the README's example, run as written."""
import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

import cgtrain

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cgtrain.data.synth_bugs import write_dataset

    root = tmp_path_factory.mktemp("api")
    write_dataset(root / "bugs.jsonl", seed=0, max_functions=150)
    request = {"name": "api-test", "dataset": {"path": "unused.jsonl", "language": "python"},
               "features": {"max_features": 3000}, "candidates": [{"family": "logreg"}],
               "validation": {"folds": 2, "test_fraction": 0.25}}
    result = cgtrain.train(request, data=root / "bugs.jsonl", run_dir=root / "run", hpo__n_trials=2)
    return root, result


def test_train_returns_the_run_and_its_metrics(run):
    root, result = run
    assert result.run_dir == root / "run" and (result.run_dir / "model.skops").is_file()
    assert 0.0 <= result.metrics["test"]["f1"] <= 1.0
    assert len(result.leaderboard) == 2  # hpo__n_trials=2 reached the request as hpo.n_trials
    assert json.loads((result.run_dir / "metrics.json").read_text())["test"] == result.metrics["test"]


def test_load_predicts_from_a_run_a_model_file_and_a_frame(run):
    root, result = run
    codes = ["def last(xs):\n    return xs[len(xs)]\n", "def first(xs):\n    return xs[0]\n"]
    by_run, by_file = cgtrain.load(result.run_dir), cgtrain.load(result.run_dir / "model.skops")
    proba = by_run.predict_proba(codes)
    assert proba.shape == (2, 2) and (proba.sum(axis=1).round(6) == 1).all()
    assert (by_file.predict_proba(codes) == proba).all()
    assert by_run.predict(codes) == [by_run.classes[i] for i in proba.argmax(axis=1)]
    frame = pd.DataFrame({"code": codes, "other": [1, 2]})
    assert by_run.predict(frame) == by_run.predict(codes)
    with pytest.raises(TypeError, match="list of code strings"):
        by_run.predict(codes[0])


def test_every_json_file_of_a_run_is_strict_json(run):
    """No NaN / Infinity anywhere (a strict parser, as other languages' JSON readers are)."""
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    files = sorted(run[1].run_dir.rglob("*.json"))
    assert files
    for path in files:
        json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_user_errors_raise_cgtrain_errors(tmp_path):
    with pytest.raises(cgtrain.RequestError):
        cgtrain.train({"name": "x", "dataset": {"path": "d.jsonl"}, "candidates": [{"family": "nope"}]},
                      run_dir=tmp_path / "r")
    with pytest.raises(cgtrain.CgtrainError):
        cgtrain.load(tmp_path / "missing-run-or-registered-name")


def test_the_readme_api_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md lost its API example (marked <!-- api-example -->)"
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    exec(compile(block.group(1), "README.md", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "runs" / "api" / "model.skops").is_file()


def test_version_is_the_installed_one():
    from importlib.metadata import version

    assert cgtrain.__version__ == version("cgtrain")
