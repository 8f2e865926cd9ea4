"""The CLI end to end on tiny data, as a user runs it."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import optuna
import pytest

from helpers.cli import MLFLOW_URI, ROOT, cgtrain, read_jsonl
from helpers.requests import write_request


def test_train_writes_a_complete_run_and_learns_a_learnable_flaw(tmp_path, easy_jsonl):
    req = write_request(tmp_path, easy_jsonl, dataset={"language": "c", "segment_columns": []})
    proc = cgtrain("train", req, "--run-dir", tmp_path / "run", check=True)
    assert "leaderboard" in proc.stdout and "held-out test" in proc.stdout
    run = tmp_path / "run"
    for name in ("request.yaml", "dataset.json", "study.db", "leaderboard.csv", "metrics.json", "model.skops",
                 "model.json", "test_predictions.jsonl"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "mcc"}
    assert metrics["test"]["f1"] > 0.9 and metrics["baseline_majority"]["f1"] < 0.7
    assert len(metrics["cv"]["folds"]) == 3
    preds = read_jsonl(run / "test_predictions.jsonl")
    assert len(preds) == metrics["n_test"] and all(abs(sum(r["proba"]) - 1) < 1e-6 for r in preds)
    dataset = json.loads((run / "dataset.json").read_text())
    assert dataset["fingerprint"].startswith("sha256:") and dataset["split"]["test_rows"] > 0


def test_same_request_and_seed_give_identical_metrics_and_model(tmp_path, bugs_jsonl):
    req = write_request(tmp_path, bugs_jsonl, hpo={"n_trials": 2}, qa={"enabled": False})
    for name in ("a", "b"):
        cgtrain("train", req, "--run-dir", tmp_path / name, "--no-track", check=True)
    assert (tmp_path / "a/metrics.json").read_bytes() == (tmp_path / "b/metrics.json").read_bytes()
    assert (tmp_path / "a/model.skops").read_bytes() == (tmp_path / "b/model.skops").read_bytes()


def test_predict_scores_functions_of_a_python_file_and_a_jsonl(tmp_path, bugs_jsonl):
    req = write_request(tmp_path, bugs_jsonl, hpo={"n_trials": 1}, candidates=[{"family": "logreg"}],
                        qa={"enabled": False})
    cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    source = tmp_path / "some_file.py"
    source.write_text("def f(a, b):\n    '''doc'''\n    return a + b\n\nclass K:\n    def m(self, x):\n"
                      "        return x < 3\n")
    proc = cgtrain("predict", "--run", tmp_path / "run", source, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["some_file.py:f", "some_file.py:K.m"]
    assert all(0.0 <= r["probability"] <= 1.0 and r["label"] in (0, 1) for r in rows)
    cgtrain("predict", "--run", tmp_path / "run", bugs_jsonl, "--out", tmp_path / "p.jsonl", check=True)
    assert len(read_jsonl(tmp_path / "p.jsonl")) == len(read_jsonl(bugs_jsonl))


def test_a_malicious_model_file_is_refused_and_never_runs(tmp_path, bugs_jsonl):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Marker(str(marker)))
    evil = tmp_path / "evil.skops"
    evil.write_bytes(payload)
    proc = cgtrain("predict", "--model", evil, bugs_jsonl)
    assert proc.returncode == 2 and "refusing to load" in proc.stderr
    # Swapped into a real run directory it fails the recorded checksum first.
    req = write_request(tmp_path, bugs_jsonl, hpo={"n_trials": 1}, candidates=[{"family": "logreg"}],
                        qa={"enabled": False})
    cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    (tmp_path / "run/model.skops").write_bytes(payload)
    proc = cgtrain("predict", "--run", tmp_path / "run", bugs_jsonl)
    assert proc.returncode == 2 and "checksum" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_misspelt_key_and_family_exit_2_with_one_line_each(tmp_path, bugs_jsonl):
    req = write_request(tmp_path, bugs_jsonl)
    proc = cgtrain("train", req, "--run-dir", tmp_path / "run", "hpo.n_trails=5", "candidates.0.family=logrge")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [line.strip() for line in proc.stderr.splitlines() if line.startswith("  ")]
    from cgtrain.models import FAMILIES  # the lists grow as families and hpo settings are added
    from cgtrain.request import HpoConfig

    assert lines == [
        "candidates.0.family: unknown family 'logrge' (did you mean 'logreg'?); "
        f"choose one of: {', '.join(FAMILIES.names())}",
        "hpo.n_trails: unknown key (did you mean 'n_trials'?); allowed keys here: "
        f"{', '.join(sorted(HpoConfig.model_fields))}",
    ]
    assert cgtrain("validate", req, "hpo.n_trials=4").returncode == 0
    assert cgtrain("validate", req, "hpo.sampler=tpee").returncode == 2


def test_corrupted_rows_are_quarantined_or_stop_the_run(tmp_path, bugs_jsonl):
    lines = bugs_jsonl.read_bytes().splitlines()
    n_bad = max(4, len(lines) // 50)  # 2% bad rows
    bad = [b'{"id": "broken", "code": "def f(:', b'{"id": "nolabel", "code": "def g():\\n    return 1"}',
           b"\xff\xfe\x00binary junk\x9c", b'{"id": "empty", "code": "", "label": 0}']
    corrupted = list(lines)
    for i in range(n_bad):
        corrupted.insert(10 + i * 7, bad[i % 4])
    data = tmp_path / "corrupted.jsonl"
    data.write_bytes(b"\n".join(corrupted) + b"\n")
    req = write_request(tmp_path, data, dataset={"max_bad_fraction": 0.05}, hpo={"n_trials": 1},
                        candidates=[{"family": "logreg"}], qa={"enabled": False})
    cgtrain("train", req, "--run-dir", tmp_path / "ok", "--no-track", check=True)
    quarantined = read_jsonl(tmp_path / "ok/quarantine.jsonl")
    assert len(quarantined) == n_bad
    expected_lines = [10 + i * 7 + 1 for i in range(n_bad)]
    assert sorted(q["line"] for q in quarantined) == expected_lines
    assert {q["reason"] for q in quarantined} == {"unparseable", "missing_label", "non_utf8", "empty_code"}
    req = write_request(tmp_path, data, dataset={"max_bad_fraction": 0.005}, hpo={"n_trials": 1})
    proc = cgtrain("train", req, "--run-dir", tmp_path / "stopped")
    assert proc.returncode == 2 and str(n_bad) in proc.stderr and "quarantine.jsonl" in proc.stderr
    assert not (tmp_path / "stopped/model.skops").exists()


def test_kill_9_then_resume_keeps_finished_trials(tmp_path, bugs_jsonl):
    n_trials = 25
    req = write_request(tmp_path, bugs_jsonl, hpo={"sampler": "random", "n_trials": n_trials},
                        candidates=[{"family": "logreg"}], qa={"enabled": False})
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLFLOW_TRACKING_URI": MLFLOW_URI}
    proc = subprocess.Popen([sys.executable, "-m", "cgtrain", "train", str(req), "--run-dir", str(run), "--no-track"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = _wait_for_trials(run / "study.db", 3, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {t.number: t.params for t in _trials(run / "study.db") if t.state.name == "COMPLETE"}
    assert len(kept) >= len(before) >= 3 and len(kept) < n_trials
    assert cgtrain("train", req, "--run-dir", run).returncode == 2  # no silent overwrite without --resume
    proc2 = cgtrain("train", req, "--run-dir", run, "--resume", "--no-track", check=True)
    assert "resume:" in proc2.stderr
    trials = _trials(run / "study.db")
    complete = {t.number: t.params for t in trials if t.state.name == "COMPLETE"}
    assert all(complete[n] == p for n, p in kept.items())  # every finished trial kept as it was
    assert sum(1 for t in trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL") and not t.user_attrs.get("stale")) \
        == n_trials
    assert (run / "metrics.json").is_file()


def _trials(db):
    return optuna.load_study(study_name=None, storage=f"sqlite:///{db}").get_trials()


def _wait_for_trials(db, n, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "training ended before it could be killed"
        if db.exists():
            try:
                done = [t for t in _trials(db) if t.state.name == "COMPLETE"]
            except Exception:  # the DB is being created
                done = []
            if len(done) >= n:
                return done
        time.sleep(0.1)
    pytest.fail("no trials finished in time")


def test_neural_and_classical_families_compete_in_one_study(tmp_path, bugs_jsonl):
    one = {"type": "categorical", "choices": [1e-3]}
    req = write_request(tmp_path, bugs_jsonl, hpo={"sampler": "grid", "n_trials": 5, "pruner": "median"},
                        candidates=[{"family": "logreg", "space": {"C": {"type": "categorical", "choices": [1.0]}}},
                                    {"family": "textcnn", "space": {"lr": one},
                                     "params": {"epochs": 2, "embed_dim": 32, "width": 32}}],
                        qa={"enabled": False})  # integrated gradients over a textcnn are QA's test, not this one's
    cgtrain("train", req, "--run-dir", tmp_path / "run", "--no-track", check=True)
    board = (tmp_path / "run/leaderboard.csv").read_text()
    assert "textcnn" in board and "logreg" in board
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'run/study.db'}")
    neural = [t for t in study.trials if t.user_attrs.get("family") == "textcnn" and t.state.name == "COMPLETE"]
    assert neural and all(1 <= e <= 2 for t in neural for e in t.user_attrs["best_epochs"])
    assert len(neural[0].intermediate_values) >= 3  # per-epoch reports across the folds, for pruning
    proc = cgtrain("predict", "--run", tmp_path / "run", bugs_jsonl, check=True)
    assert len(proc.stdout.splitlines()) == len(read_jsonl(bugs_jsonl))
