"""The run's QA records against library calls on its own test predictions, and report.html in Chromium."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from cgtrain.evaluate.calibration import ece
from qa_helpers import held_rows

CHROMIUM = Path("/usr/bin/chromium")
EXPECTED_PLOTS = ["hpo-history", "param-importances", "trial-curves", "roc", "pr", "calibration", "confusion",
                  "segments-cwe", "segments-code_length", "global-attributions"]
EXPECTED_SECTIONS = ["summary", "leaderboard", "hpo", "curves", "test", "segments", "explanations", "champion",
                     "resources", "environment", "quarantine"]


def _qa(run_dir):
    return json.loads((run_dir / "qa.json").read_text())


def test_run_writes_qa_records_and_segments_in_predictions(qa_run):
    for name in ("qa.json", "explanations.json", "resources.json", "report.html"):
        assert (qa_run / name).is_file(), name
    rows = held_rows(qa_run)
    assert all(set(r["segments"]) == {"cwe"} for r in rows)
    assert all(r["code_chars"] > 0 for r in rows)


def test_segment_recall_equals_sklearn_on_the_slice(qa_run):
    rows, qa = held_rows(qa_run), _qa(qa_run)
    y = np.array([r["y_true"] for r in rows])
    p = np.array([r["proba"][1] for r in rows])
    cal = qa["calibration"]
    pred = (np.interp(p, cal["calibrator"]["x"], cal["calibrator"]["y"]) if cal["calibrator"]["method"] == "isotonic"
            else p)
    if cal["calibrator"]["method"] == "sigmoid":
        z = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
        pred = 1 / (1 + np.exp(-(cal["calibrator"]["a"] * z + cal["calibrator"]["b"])))
    labels = (pred >= cal["threshold"]["threshold"]).astype(int)
    cwe = np.array([r["segments"]["cwe"] for r in rows])
    table = {r["segment"]: r for r in qa["audit"]["columns"]["cwe"]}
    for name, r in table.items():
        m = cwe == name
        assert r["recall"] == pytest.approx(skm.recall_score(y[m], labels[m], zero_division=0))
        assert r["precision"] == pytest.approx(skm.precision_score(y[m], labels[m], zero_division=0))
        assert r["n"] == int(m.sum())
    assert "recall below overall" in table["CWE134"]["flags"]  # the label-noise CWE
    assert qa["audit"]["largest_disparity"]["worst"] == "CWE134"


def test_brier_ece_and_threshold_metrics_equal_sklearn(qa_run):
    rows, qa = held_rows(qa_run), _qa(qa_run)
    y = np.array([r["y_true"] for r in rows])
    p = np.array([r["proba"][1] for r in rows])
    cal = qa["calibration"]
    assert cal["test"]["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert cal["test"]["ece"] == pytest.approx(ece(y, p))
    at = cal["at_0.5"]
    assert at["f1"] == pytest.approx(skm.f1_score(y, (p >= 0.5).astype(int)))
    assert cal["threshold"]["policy"] == "max_f1" and cal["oof_rows"] > 0
    assert cal["calibrator"]["method"] in ("none", "sigmoid", "isotonic")


def test_resources_per_trial_and_inference(qa_run):
    res = json.loads((qa_run / "resources.json").read_text())
    assert len(res["trials"]) == 3
    for t in res["trials"]:
        assert t["wall_s"] > 0 and t["cpu_s"] > 0 and t["peak_rss_mb"] > 0 and t["samples_per_s"] > 0
    inf = res["inference"]
    assert 0 < inf["p50_ms"] <= inf["p95_ms"] and inf["batch_rows_per_s"] > 0
    assert res["model_size_mb"] > 0


def test_report_opens_in_chromium_without_errors(qa_run):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    html = (qa_run / "report.html").read_text()
    for outside in ("<script", "<link", 'src="http', "url(http", "@import"):  # offline and self-contained
        assert outside not in html, outside
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
            page.goto((qa_run / "report.html").resolve().as_uri())
            sections = page.eval_on_selector_all("section", "els => els.map(e => e.id)")
            plots = page.eval_on_selector_all(
                "figure.plot", "els => els.map(e => [e.dataset.plot, e.querySelector('svg') ? "
                               "e.querySelector('svg').getBoundingClientRect().width : 0])")
            highlighted = page.eval_on_selector_all("#explanations mark", "els => els.length")
        finally:
            browser.close()
    assert errors == []
    assert sections == EXPECTED_SECTIONS
    drawn = {name: width for name, width in plots}
    for name in EXPECTED_PLOTS:
        assert drawn.get(name, 0) > 50, f"plot {name} missing or empty: {drawn}"
    assert highlighted > 0


def test_report_command_rebuilds_without_training(qa_run, tmp_path):
    from typer.testing import CliRunner

    from cgtrain.cli import app

    copy = tmp_path / "copy"
    shutil.copytree(qa_run, copy)
    (copy / "report.html").unlink()
    before = (copy / "study.db").stat().st_mtime
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "report.html").is_file() and (copy / "study.db").stat().st_mtime == before
    bad = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code == 2 and "no model.json" in bad.output
