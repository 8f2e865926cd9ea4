"""A real trained run (tracked, registered as champion) whose model file each test swaps for a hostile one."""
import json
import shutil

import pytest
import yaml

from hostile import invoke  # this directory's helper module (pytest puts the directory on sys.path)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, mlflow_store):
    """(run_dir, tracking_uri) of a tiny logreg run, registered as tiny-sec@champion."""
    from cgtrain.data.synth_bugs import write_dataset

    root = tmp_path_factory.mktemp("security")
    data = root / "bugs.jsonl"
    write_dataset(data, seed=0, max_functions=120)
    request = {"name": "tiny-sec", "seed": 0, "dataset": {"path": str(data), "language": "python"},
               "features": {"max_features": 2000}, "candidates": [{"family": "logreg"}],
               "hpo": {"sampler": "random", "n_trials": 1}, "validation": {"folds": 2, "test_fraction": 0.25}}
    (root / "request.yaml").write_text(yaml.safe_dump(request))
    uri = mlflow_store(root / "mlflow")
    result = invoke("train", root / "request.yaml", "--run-dir", root / "run", "--tracking-uri", uri)
    assert result.exit_code == 0, result.output
    return root / "run", uri


@pytest.fixture
def hostile_run(tmp_path, trained):
    """name -> (run_dir, model_file, marker): a copy of the trained run whose model.skops is the
    hostile file, with model.json carrying its sha256 (a checksum proves integrity, not trust)."""
    from cgtrain.artifacts.files import sha256_file

    def make(name: str):
        from hostile import HOSTILE

        run_dir = tmp_path / f"run-{name}"
        shutil.copytree(trained[0], run_dir)
        marker = tmp_path / f"marker-{name}"
        model = run_dir / "model.skops"
        model.write_bytes(HOSTILE[name](marker))
        manifest = json.loads((run_dir / "model.json").read_text())
        manifest["sha256"] = sha256_file(model)
        (run_dir / "model.json").write_text(json.dumps(manifest))
        return run_dir, model, marker

    return make
