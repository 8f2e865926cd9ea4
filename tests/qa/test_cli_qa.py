"""`cgtrain compare | explain | repeat | train --profile` and the champion section, checked against libraries."""
import json
import shutil

import numpy as np
import pytest
import yaml
from scipy import stats
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar
from typer.testing import CliRunner

from cgtrain.cli import app
from helpers.requests import request_dict
from qa_helpers import held_rows


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


def test_compare_two_runs_on_their_shared_test_rows(qa_run, qa_run_b, tmp_path):
    out = tmp_path / "ab.json"
    result = invoke("compare", qa_run, qa_run_b, "--out", out)
    assert result.exit_code == 0, result.output
    assert "McNemar" in result.output and "DeLong" in result.output
    r = json.loads(out.read_text())
    rows_a, rows_b = held_rows(qa_run), {row["id"]: row for row in held_rows(qa_run_b)}
    y = np.array([row["y_true"] for row in rows_a])
    pa = np.array([row["proba"][1] for row in rows_a])
    pb = np.array([rows_b[row["id"]]["proba"][1] for row in rows_a])
    ra, rb = (pa >= 0.5) == y, (pb >= 0.5) == y
    table = [[np.sum(ra & rb), np.sum(ra & ~rb)], [np.sum(~ra & rb), np.sum(~ra & ~rb)]]
    ref = mcnemar(table, exact=table[0][1] + table[1][0] < 25, correction=True)
    assert r["mcnemar"]["p"] == pytest.approx(ref.pvalue)
    assert r["delong"]["auc_a"] == pytest.approx(skm.roc_auc_score(y, pa))
    assert r["delong"]["auc_b"] == pytest.approx(skm.roc_auc_score(y, pb))
    assert r["metrics_b"]["f1"] - r["metrics_a"]["f1"] == pytest.approx(r["bootstrap"]["improvement"])
    assert r["bootstrap"]["ci_low"] <= r["bootstrap"]["improvement"] <= r["bootstrap"]["ci_high"]


def test_compare_on_a_data_file_with_5x2cv(qa_run, qa_run_b, cwe_jsonl, tmp_path):
    out = tmp_path / "ab.json"
    result = invoke("compare", qa_run, qa_run_b, "--data", cwe_jsonl, "--group-column", "group", "--5x2cv",
                    "--out", out)
    assert result.exit_code == 0, result.output
    r = json.loads(out.read_text())
    assert r["n"] == sum(1 for _ in cwe_jsonl.open())
    f = r["five_by_two"]
    d = np.asarray(f["differences"])
    s2 = ((d - d.mean(1, keepdims=True)) ** 2).sum(1)
    t = d[0, 0] / np.sqrt(s2.mean())
    assert f["t"] == pytest.approx(t) and f["p"] == pytest.approx(2 * stats.t.sf(abs(t), 5))
    bad = invoke("compare", qa_run, "no-such-model@champion", "--tracking-uri", f"sqlite:///{tmp_path}/m.db")
    assert bad.exit_code == 2 and "no MLflow store" in bad.output


def test_explain_prints_the_code_with_attributions(qa_run):
    example = next(row["id"] for row in held_rows(qa_run) if row["segments"]["cwe"] == "CWE242" and row["y_true"])
    result = invoke("explain", "--run", qa_run, "--example", example)
    assert result.exit_code == 0, result.output
    assert "gets" in result.output and "P(flawed)" in result.output and "top attributions" in result.output
    stored = json.loads((qa_run / "explanations.json").read_text())["examples"][0]
    again = invoke("explain", "--run", qa_run, "--example", stored["id"])
    assert again.exit_code == 0 and "shap-linear" in again.output and f"{stored['p_flawed']:.4f}" in again.output
    missing = invoke("explain", "--run", qa_run, "--example", "nope")
    assert missing.exit_code == 2 and "no row with id 'nope'" in missing.output


def test_repeat_over_seeds_reports_mean_and_ci(cwe_jsonl, tmp_path):
    data = request_dict(cwe_jsonl, "qa", hpo={"sampler": "random", "n_trials": 1}, qa={"enabled": False})
    request = tmp_path / "request.yaml"
    request.write_text(yaml.safe_dump(data))
    result = invoke("repeat", request, "--seeds", 2, "--run-dir", tmp_path / "seeds")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    f1 = [s["test"]["f1"] for s in summary["seeds"]]
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    assert summary["metrics"]["f1"]["mean"] == pytest.approx(np.mean(f1))
    if np.std(f1) > 0:
        low, high = stats.t.interval(0.95, 1, loc=np.mean(f1), scale=stats.sem(f1))
        assert summary["metrics"]["f1"]["ci_low"] == pytest.approx(low)


def test_train_profile_writes_a_trace(cwe_jsonl, tmp_path):
    data = request_dict(cwe_jsonl, "qa", candidates=[{"family": "mlp", "params": {"epochs": 1, "width": 16}}],
                        hpo={"sampler": "random", "n_trials": 1}, qa={"enabled": False})
    request = tmp_path / "request.yaml"
    request.write_text(yaml.safe_dump(data))
    result = invoke("train", request, "--run-dir", tmp_path / "run", "--no-track", "--profile")
    assert result.exit_code == 0, result.output
    trace = json.loads((tmp_path / "run" / "profile_trace.json").read_text())
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert any(n.startswith("aten::") for n in names)


def test_champion_significance_in_the_report(qa_run, qa_run_b, tmp_path):
    from cgtrain.qa.champion import champion_section
    from cgtrain.registry.promotion import compare, read_predictions
    from cgtrain.report import build_report
    from cgtrain.track.mlflow_tracking import log_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    champ, chall = tmp_path / "champ", tmp_path / "chall"
    shutil.copytree(qa_run_b, champ)
    shutil.copytree(qa_run, chall)
    log_run(champ, uri, "qa-tiny")
    log_run(chall, uri, "qa-tiny")
    record = champion_section(chall, uri)
    assert record["status"] == "compared" and record["champion_version"] == "1"
    ev = compare(read_predictions(champ / "test_predictions.jsonl"), read_predictions(chall / "test_predictions.jsonl"),
                 record["metric"])
    assert record["evidence"]["mcnemar_p"] == pytest.approx(ev.mcnemar_p)
    assert record["evidence"]["ci_low"] == pytest.approx(ev.ci_low)
    html = build_report(chall).read_text()
    assert "Significance against the champion" in html and "McNemar p" in html
