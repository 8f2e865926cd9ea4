"""report.html: one self-contained page per run (inline SVG and CSS, no script, no network).

Built only from the run directory's records (request.yaml, dataset.json, metrics.json,
leaderboard.csv, study.db, test_predictions.jsonl, qa.json, explanations.json,
resources.json, champion.json, environment.json), so `cgtrain report DIR` rebuilds it
at any time without training.
"""
from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cgtrain.fsutil import atomic_write_text
from cgtrain import rundir
from cgtrain.report import sections as s

REPORT_FILE = rundir.REPORT

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:14px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#cfd8dc;font-size:13px}
nav{padding:8px 28px;background:#eceff1;font-size:13px}nav a{margin-right:12px;color:#37474f}
section{background:#fff;margin:16px 28px;padding:12px 20px;border:1px solid #e0e0e0;border-radius:6px}
h2{font-size:17px;margin:6px 0 10px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f5f5f5}tr.flagged td{background:#fdecea}
table.board code{font-size:11px;word-break:break-all}
.grid{display:flex;flex-wrap:wrap;gap:10px}figure.plot{margin:6px 0}figure.plot svg{max-width:100%;height:auto}
figcaption{font-size:11px;color:#666}.note{font-size:12px;color:#444}.disparity{font-size:13px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px}dt{color:#666}dd{margin:0}
pre{background:#f7f7f7;border:1px solid #e5e5e5;padding:8px;font-size:12px;overflow-x:auto;max-height:420px}
mark{border-radius:2px;padding:0 1px;color:#000}.warn{color:#b71c1c}
"""


_json = rundir.read_json


def load_records(run_dir: Path) -> dict[str, Any]:
    r: dict[str, Any] = {name: _json(run_dir / f"{name}.json") for name in
                         ("metrics", "dataset", "model", "run", "qa", "explanations", "resources", "champion",
                          "environment")}
    r["request"] = yaml.safe_load((run_dir / rundir.REQUEST).read_text(encoding="utf-8")) or {}
    board = run_dir / rundir.LEADERBOARD
    r["board"] = pd.read_csv(board).replace({np.nan: None}).to_dict("records") if board.is_file() and \
        board.stat().st_size > 1 else []
    r["trials"] = rundir.RunDir(run_dir).trial_records()
    rows = rundir.RunDir(run_dir).test_rows() if (run_dir / rundir.TEST_PREDICTIONS).is_file() else []
    rows = [row for row in rows if "proba" in row]  # regression rows hold y_pred: no class plots
    r["y"] = np.asarray([row["y_true"] for row in rows], dtype=int)
    r["proba"] = np.asarray([row["proba"] for row in rows], dtype=float).reshape(len(rows), -1)
    if not r["environment"]:
        from cgtrain.track.environment import snapshot

        r["environment"] = snapshot(run_dir)
    return r


def param_importances(run_dir: Path) -> dict[str, float] | None:
    import optuna

    try:
        study = rundir.RunDir(run_dir).study()
        with warnings.catch_warnings():  # "some regimes have less than 2 trials": the section says how many ran
            warnings.simplefilter("ignore", UserWarning)
            imp = optuna.importance.get_param_importances(study)
    except Exception:  # noqa: BLE001 - too few trials, or no parameter shared by all of them
        return None
    return {k: float(v) for k, v in imp.items()} or None


def render(run_dir: Path, r: dict[str, Any]) -> str:
    metric = r["metrics"].get("cv", {}).get("metric", "f1")
    classes = [str(c) for c in r["model"].get("classes", [0, 1])]
    qa = r["qa"]
    parts = [
        ("summary", "Summary", s.summary(r)),
        ("leaderboard", "Leaderboard", s.leaderboard(r["board"], metric)),
        ("hpo", "Hyper-parameter search", s.hpo(r["trials"], param_importances(run_dir), metric)),
        ("curves", "Loss and metric curves", s.learning_curves(r["trials"], qa.get("history"))),
        ("test", "Held-out test: ROC, PR, calibration, confusion",
         s.test_plots(r["y"], r["proba"], classes, qa.get("calibration")) if len(r["y"]) else s.note("no test rows")),
        ("segments", "Per-segment audit", s.audit(qa.get("audit", {}))),
        ("explanations", "Explanations", s.explanations(r["explanations"] or None)),
        ("champion", "Significance against the champion", s.champion(r["champion"] or None)),
        ("resources", "Resources", s.resources(r["resources"] or qa.get("resources", {}))),
        ("environment", "Environment", s.environment(r["environment"])),
        ("quarantine", "Data quality and quarantine", s.quarantine(r["dataset"], run_dir)),
    ]
    nav = "".join(f'<a href="#{key}">{s.esc(title.split(":")[0])}</a>' for key, title, _ in parts)
    body = "".join(f'<section id="{key}"><h2>{s.esc(title)}</h2>{html}</section>' for key, title, html in parts)
    if not qa:
        body = s.note("no qa.json: run `cgtrain report --qa DIR` to compute calibration, audit and explanations") + body
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"cgtrain run {run_dir.name} — {r['request'].get('name', '')}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{s.esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><header><h1>{s.esc(title)}</h1><p>{s.esc(str(run_dir.resolve()))} · built {stamp}</p></header>'
            f'<nav>{nav}</nav><main>{body}</main></body></html>')


def build_report(run_dir: str | Path) -> Path:
    """Write report.html into the run directory from its records; returns its path."""
    run_dir = Path(run_dir)
    return atomic_write_text(run_dir / REPORT_FILE, render(run_dir, load_records(run_dir)))
