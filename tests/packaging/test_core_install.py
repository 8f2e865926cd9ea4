"""A core install (`pip install cgtrain`, no extras) trains and serves the classical families, and says
which extra a family needs instead of failing on an import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.core_env import closure, core_requirements, make_core_venv

pytestmark = pytest.mark.slow
NOT_CORE = ("torch", "transformers", "mlflow", "shap", "fairlearn", "statsmodels", "matplotlib", "onnx", "fastapi",
            "ray", "flaml")


@pytest.fixture(scope="module")
def core(tmp_path_factory) -> Path:
    return make_core_venv(tmp_path_factory.mktemp("core") / "venv")


def run(core: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    return subprocess.run([str(core.parent / "cgtrain"), *args], capture_output=True, text=True, cwd=cwd,
                          env={**env, "COLUMNS": "200"}, timeout=300)


def test_core_dependencies_hold_no_extra():
    names = set(closure(core_requirements()))
    assert not names & {"torch", "transformers", "mlflow", "mlflow-skinny", "shap", "fastapi", "ray", "flaml"}


def test_core_install_trains_and_predicts_logreg(core, tmp_path):
    absent = subprocess.run([str(core), "-c", f"import importlib.util as u; print([m for m in {NOT_CORE!r} "
                                              f"if u.find_spec(m)])"], capture_output=True, text=True, check=True)
    assert absent.stdout.strip() == "[]"  # the venv really is a core install
    assert run(core, "data", "synth-bugs", "--out", "bugs.jsonl", "--seed", "0", "--max-functions", "150",
               cwd=tmp_path).returncode == 0
    (tmp_path / "req.yaml").write_text(yaml.safe_dump({
        "name": "core", "seed": 0, "dataset": {"path": "bugs.jsonl", "language": "python"},
        "features": {"max_features": 2000}, "candidates": [{"family": "logreg"}],
        "hpo": {"sampler": "random", "n_trials": 2}, "validation": {"folds": 3, "test_fraction": 0.25}}))
    trained = run(core, "train", "req.yaml", "--run-dir", "run", "--json", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert result["best"]["family"] == "logreg" and 0 <= result["test"]["roc_auc"] <= 1
    assert "tracking off: MLflow is not installed (pip install 'cgtrain[mlflow]')" in trained.stderr
    assert (tmp_path / "run" / "report.html").is_file()  # QA ran what the core has: calibration, threshold
    assert json.loads((tmp_path / "run" / "qa.json").read_text())["audit"]["skipped"].endswith("cgtrain[qa]'")
    predicted = run(core, "predict", "--run", "run", "bugs.jsonl", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(rows) == sum(1 for _ in open(tmp_path / "bugs.jsonl")) and {"id", "probability"} <= set(rows[0])


def test_core_install_names_the_extra_a_family_needs(core, tmp_path):
    (tmp_path / "bugs.jsonl").write_text('{"id": "a", "code": "x = 1", "label": 0}\n')
    (tmp_path / "req.yaml").write_text(yaml.safe_dump({
        "name": "cnn", "dataset": {"path": "bugs.jsonl"}, "candidates": [{"family": "textcnn"}]}))
    said = run(core, "validate", "req.yaml", cwd=tmp_path)
    assert said.returncode == 2 and "Traceback" not in said.stdout + said.stderr
    assert "family 'textcnn' needs torch, not installed here; install with: pip install 'cgtrain[torch]'" in \
        said.stdout + said.stderr
    listed = {f["name"]: f for f in json.loads(run(core, "families", "--json", cwd=tmp_path).stdout)}
    assert listed["textcnn"]["available"] is False and listed["textcnn"]["extra"] == "torch"
    assert listed["hf_finetune"]["extra"] == "hf" and listed["lightgbm"]["available"] is True
    for command, extra in ((["serve", "--data-root", "."], "service"), (["models", "list"], "mlflow"),
                           (["pretrain", "--out", "enc"], "hf")):
        said = run(core, *command, cwd=tmp_path)
        assert said.returncode == 2 and said.stderr.strip().endswith(f"pip install 'cgtrain[{extra}]'"), said.stderr


def test_light_commands_import_no_heavy_library():
    """validate / families / schema know the families from their declarations alone."""
    code = ("import sys; import cgtrain.models, cgtrain.request, cgtrain.data.check; "
            "print(sorted(m for m in ('torch', 'transformers', 'lightgbm', 'sklearn', 'pandas', 'mlflow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")})
    assert out.stdout.strip() == "[]"
