"""Tiny end-to-end fixtures: a small synthetic-bug dataset and a fast request."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# One MLflow store for the whole session: a new one spends seconds creating its tables.
MLFLOW_URI = f"sqlite:///{tempfile.mkdtemp(prefix='cgtrain-mlflow-')}/mlflow.db"


@pytest.fixture(scope="session")
def bugs_jsonl(tmp_path_factory) -> Path:
    from cgtrain.data.synth_bugs import write_dataset

    path = tmp_path_factory.mktemp("data") / "bugs.jsonl"
    write_dataset(path, seed=0, max_functions=200)
    return path


@pytest.fixture(scope="session")
def easy_jsonl(tmp_path_factory) -> Path:
    """C functions whose flaw is visible in the tokens: an unbounded copy vs its bounded twin."""
    import random

    rng = random.Random(0)
    unsafe = [("strcpy(dst, src);", "strncpy(dst, src, sizeof(dst) - 1);"),
              ("gets(buf);", "fgets(buf, sizeof(buf), stdin);"),
              ("sprintf(out, fmt, x);", "snprintf(out, sizeof(out), fmt, x);")]
    rows = []
    for g in range(60):
        for v in range(4):
            bad, good = unsafe[(g + v) % 3]
            names = [rng.choice(["count", "total", "idx", "len", "n"]) for _ in range(3)]
            body = "".join(f"    int {n}{i} = {rng.randint(0, 9)};\n" for i, n in enumerate(names))
            for label, call in ((1, bad), (0, good)):
                code = f"void f{g}_{v}(char *src) {{\n    char dst[64];\n{body}    {call}\n}}"
                rows.append({"id": f"g{g}:v{v}:{label}", "code": code, "label": label, "group": f"g{g}"})
    path = tmp_path_factory.mktemp("easy") / "easy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_request(directory: Path, data_path: Path, **sections) -> Path:
    request = {
        "name": "tiny", "seed": 0,
        "dataset": {"path": str(data_path), "segment_columns": ["bug_kind"], "language": "python"},
        "features": {"max_features": 5000},
        "candidates": [{"family": "logreg"}, {"family": "lightgbm", "params": {"n_estimators": 50}}],
        "hpo": {"sampler": "tpe", "n_trials": 3},
        "validation": {"folds": 3, "test_fraction": 0.25},
    }
    for key, value in sections.items():
        request[key] = {**request.get(key, {}), **value} if isinstance(value, dict) else value
    path = directory / "request.yaml"
    path.write_text(yaml.safe_dump(request))
    return path


def cgtrain(*args, check=False, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200", "MLFLOW_TRACKING_URI": MLFLOW_URI}
    proc = subprocess.run([sys.executable, "-m", "cgtrain", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=kwargs.pop("cwd", ROOT), timeout=kwargs.pop("timeout", 600), **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"cgtrain {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
