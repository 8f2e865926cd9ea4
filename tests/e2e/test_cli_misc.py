"""The smaller commands: schema, families, synth-bugs, validate."""
import json

from helpers.cli import cgtrain, read_jsonl
from helpers.requests import write_request


def test_schema_prints_the_generated_json_schema(tmp_path):
    proc = cgtrain("schema", check=True)
    schema = json.loads(proc.stdout)
    assert schema["title"] == "TrainingRequest" and "hpo" in schema["properties"]
    cgtrain("schema", "--out", tmp_path / "s.json", check=True)
    assert json.loads((tmp_path / "s.json").read_text()) == schema


def test_families_lists_every_family_with_its_space():
    out = cgtrain("families", check=True).stdout
    for name in ("logreg", "linear_svm", "random_forest", "lightgbm", "textcnn", "bigru", "transformer", "mlp"):
        assert name in out
    listed = {f["name"]: f for f in json.loads(cgtrain("families", "--json", check=True).stdout)}
    assert listed["textcnn"]["available"] and listed["textcnn"]["extra"] == "torch"  # this env has every extra
    assert listed["logreg"]["extra"] is None and listed["lightgbm"]["default_space"]["num_leaves"]["type"] == "int"


def test_synth_bugs_command_writes_a_labelled_corpus(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "mod.py").write_text("def f(a, b):\n    if a < b and b > 0:\n        return max(a, b) + 1\n"
                                "    return True\n")
    proc = cgtrain("data", "synth-bugs", "--out", tmp_path / "b.jsonl", "--source", src, check=True)
    rows = read_jsonl(tmp_path / "b.jsonl")
    assert "wrote 2 rows" in proc.stdout and [r["label"] for r in rows] == [0, 1]
    assert rows[0]["group"] == rows[1]["group"] == "mod"
    proc = cgtrain("data", "synth-bugs", "--out", tmp_path / "x.jsonl", "--source", tmp_path / "missing")
    assert proc.returncode == 1 and "missing" in proc.stderr


def test_validate_prints_the_request_as_it_would_run(tmp_path):
    req = tmp_path / "r.yaml"
    req.write_text(f"dataset: {{path: {tmp_path / 'd.jsonl'}}}\n")
    missing = cgtrain("validate", req)  # a missing dataset is reported, as train would
    assert missing.returncode == 2 and "dataset file not found" in missing.stderr
    (tmp_path / "d.jsonl").write_text('{"code": "x", "label": 0}\n')
    proc = cgtrain("validate", req, "hpo.n_trials=3", check=True)
    assert "valid" in proc.stdout and "n_trials: 3" in proc.stdout


def test_train_json_is_one_object_on_stdout_with_the_progress_on_stderr(tmp_path, bugs_jsonl):
    req = write_request(tmp_path, bugs_jsonl, candidates=[{"family": "logreg"}], hpo={"n_trials": 1},
                        qa={"enabled": False})
    proc = cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", "--json", check=True)
    record = json.loads(proc.stdout)  # all of stdout is the one object: a pipeline can parse it as is
    assert record["test"] == json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]
    assert record["model"] == str(tmp_path / "run" / "model.skops") and record["best"]["family"] == "logreg"
    assert "leaderboard" in proc.stderr and "held-out test" in proc.stderr
    assert "trials 1/1 finished, best" in proc.stderr  # not a terminal: a plain line per trial, for CI logs
    import optuna  # the study is named after the request (optuna-dashboard lists it by that name)

    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'run' / 'study.db'}") == ["tiny"]
    assert json.loads(cgtrain("metrics", tmp_path / "run", "--json", check=True).stdout)["test"] == record["test"]
    shown = cgtrain("metrics", tmp_path / "run", check=True).stdout
    assert "held-out test" in shown and "best trial 0 (logreg)" in shown
    nothing = cgtrain("metrics", tmp_path)
    assert nothing.returncode == 2 and "no metrics.json" in nothing.stderr

    quiet = cgtrain("train", req, "--run-dir", tmp_path / "quiet", "--no-track", "-q", check=True)
    assert quiet.stdout == f"{tmp_path / 'quiet' / 'model.skops'}\n"
    assert "leaderboard" not in quiet.stderr and "trials" not in quiet.stderr
