"""Run directories and data that cannot be used as asked: one line, exit 2, nothing replaced."""
import json
import math

import pytest
from faults_kit import invoke, one_error_line, tiny_rows, write_jsonl, write_request


def train(req, run, *args):
    return invoke("train", req, *args, "--run-dir", run, "--no-track")


def test_resume_of_a_finished_run_is_refused_unless_forced(tiny, tmp_path):
    req, _ = tiny
    run = tmp_path / "run"
    assert train(req, run).exit_code == 0
    model = (run / "model.skops").read_bytes()
    stamp = (run / "metrics.json").stat().st_mtime_ns
    refused = train(req, run, "--resume")
    assert refused.exit_code == 2
    one_error_line(refused.stderr, "holds a finished run", "--force")
    assert (run / "metrics.json").stat().st_mtime_ns == stamp  # nothing rewritten
    forced = train(req, run, "--resume", "--force")
    assert forced.exit_code == 0, forced.output
    assert (run / "metrics.json").stat().st_mtime_ns != stamp
    assert (run / "model.skops").read_bytes() == model  # same trials, same data: the same model


def test_resume_after_the_data_changed_is_refused_naming_both_fingerprints(tiny, tmp_path):
    req, data = tiny
    run = tmp_path / "run"
    assert train(req, run, "hpo.n_trials=1").exit_code == 0
    (run / "run.json").unlink()  # as if interrupted before the refit
    before = json.loads((run / "dataset.json").read_text())["fingerprint"]
    write_jsonl(data, tiny_rows(13))
    refused = train(req, run, "hpo.n_trials=1", "--resume")
    assert refused.exit_code == 2
    line = one_error_line(refused.stderr, "changed since the run started", before)
    assert line.count("sha256:") == 2
    assert json.loads((run / "dataset.json").read_text())["fingerprint"] == before


def test_a_second_run_in_a_used_run_dir_is_refused(tiny, tmp_path):
    req, _ = tiny
    run = tmp_path / "run"
    assert train(req, run, "hpo.n_trials=1").exit_code == 0
    again = train(req, run, "hpo.n_trials=1")
    assert again.exit_code == 2
    one_error_line(again.stderr, "already holds a run", "--resume")


@pytest.mark.parametrize("rows, overrides, needles", [
    (tiny_rows(12)[:3], [], ["3 usable rows in 2 groups", "test_fraction=0.25", "at least 4 groups"]),
    (tiny_rows(12, same_code=True), [], ["test split is empty", "repeat code of the training rows"]),
    (tiny_rows(12), ["validation.test_fraction=0.89"], ["test_fraction=0.89 cannot be honoured", "at most 0.5"]),
], ids=["3-rows", "every-row-the-same-code", "test_fraction-0.89"])
def test_data_too_small_to_split_is_one_line(tmp_path, rows, overrides, needles):
    req = write_request(tmp_path, write_jsonl(tmp_path / "d.jsonl", rows))
    result = train(req, tmp_path / "run", *overrides)
    assert result.exit_code == 2, result.output
    one_error_line(result.stderr, *needles)
    assert not (tmp_path / "run" / "study.db").exists()


def test_eight_rows_warn_and_write_no_nan(tmp_path):
    rows = tiny_rows(4)  # 8 rows; the test split is one group of 2
    req = write_request(tmp_path, write_jsonl(tmp_path / "d.jsonl", rows),
                        validation={"folds": 2, "test_fraction": 0.34})
    result = train(req, tmp_path / "run", "hpo.n_trials=1")
    assert result.exit_code == 0, result.output
    assert "warning: the held-out test split has only" in result.stderr
    text = (tmp_path / "run" / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    metrics = json.loads(text)
    assert any("test split has only" in w for w in metrics["warnings"])
    assert all(v is None or math.isfinite(v) for v in metrics["test"].values())


def test_run_dir_that_is_a_file_is_one_line(tiny, tmp_path):
    req, _ = tiny
    (tmp_path / "file").write_text("x")
    result = train(req, tmp_path / "file")
    assert result.exit_code == 2
    one_error_line(result.stderr, "is a file, not a directory")


def test_an_undefined_metric_is_null_and_named_never_nan():
    from cgtrain.core.heldout import checked_metrics

    said = []
    out = checked_metrics({"test": {"roc_auc": float("nan"), "f1": 0.5}, "baseline_majority": {"mcc": float("inf")},
                           "cv": {"mean": 0.5}, "n_test": 2}, said.append)
    assert out["test"] == {"roc_auc": None, "f1": 0.5} and out["baseline_majority"] == {"mcc": None}
    assert "NaN" not in json.dumps(out) and "Infinity" not in json.dumps(out)
    assert any("test.roc_auc" in w and "baseline_majority.mcc" in w for w in out["warnings"])
    assert len(said) == 2


def test_split_minimums_are_computed_not_guessed():
    import numpy as np

    from cgtrain.data.splits import check_folds, min_groups
    from cgtrain.errors import SplitError

    assert min_groups(0.25, 2) == 4 and min_groups(0.2, 5) == 7 and min_groups(0.5, 2) == 4
    with pytest.raises(SplitError, match=r"CV fold\(s\) \[1\]"):
        check_folds([(np.arange(3), np.arange(1)), (np.arange(3), np.arange(0))])
