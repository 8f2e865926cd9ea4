"""The QA step after the refit: calibration + threshold, per-segment audit, explanations, resources.

Reads the run directory (model via the safe loader, held-out predictions) and writes
`qa.json`, `explanations.json`, `resources.json`, then `report.html`. Everything here
is derived from the run's records, so `cgtrain report DIR` can redo it without training.
`try_run_qa` is what training calls: a QA failure is reported and never loses the run.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cgtrain.evaluate import calibration as cal
from cgtrain.evaluate.resources import file_size_mb, latency, measure
from cgtrain.extras import missing
from cgtrain.fsutil import atomic_write_json
from cgtrain import rundir
from cgtrain.artifacts.files import load_run_model
from cgtrain.core.fit import fit_family
from cgtrain.core.folds import FoldCache
from cgtrain.core.prepared import full_proba
from cgtrain.core.prepared import prepare
from cgtrain.models import FAMILIES
from cgtrain.report import build_report
from cgtrain.serve.decision import write_decision

QA_FILE, EXPLANATIONS_FILE, RESOURCES_FILE = rundir.QA, rundir.EXPLANATIONS, rundir.RESOURCES


def try_run_qa(request, run_dir: Path, prepared=None, say: Callable[[str], None] = print) -> Path | None:
    """run_qa + the report; on any error say why and return None (the model and metrics stay)."""
    try:
        run_qa(request, Path(run_dir), prepared, say)
        path = build_report(Path(run_dir))
        say(f"QA report: {path}")
        return path
    except Exception as exc:  # noqa: BLE001 - QA is a bonus; a finished run must never be lost to it
        say(f"QA failed ({type(exc).__name__}: {exc}); the model and metrics in {run_dir} are complete")
        return None


def run_qa(request, run_dir: Path, prepared=None, say: Callable[[str], None] = print) -> dict[str, Any]:
    run_dir, qa = Path(run_dir), request.qa
    if request.task not in ("binary", "multiclass"):
        record = {"skipped": f"calibration, audit and explanations are for classifiers; task is {request.task}"}
        atomic_write_json(run_dir / QA_FILE, record)
        return record
    with measure() as usage:
        pipeline, manifest = load_run_model(run_dir)
        rows = rundir.RunDir(run_dir).test_rows()
        ids = [r["id"] for r in rows]
        y = np.asarray([r["y_true"] for r in rows], dtype=int)
        proba = np.asarray([r["proba"] for r in rows], dtype=float)
        codes = test_codes(run_dir, prepared, ids)
        record: dict[str, Any] = {"n_test": len(rows), "binary": proba.shape[1] == 2}
        if record["binary"]:
            say("QA: calibration and decision threshold")
            record["calibration"], y_pred = calibration_section(request, run_dir, prepared, y, proba[:, 1])
            c = record["calibration"]
            write_decision(run_dir, c["calibrator"], c["threshold"]["threshold"], c["threshold"].get("policy", ""),
                           manifest.sha256)  # predict serves what this reports
        else:
            y_pred = proba.argmax(1)
        say("QA: per-segment audit")
        segments = {c: [str(r.get("segments", {}).get(c)) for r in rows] for c in request.dataset.segment_columns
                    if any(c in r.get("segments", {}) for r in rows)}
        chars = [r.get("code_chars", len(code)) for r, code in zip(rows, codes)]
        record["audit"] = audit_section(y, y_pred, segments, chars, qa)
        if missing(EXPLAIN_NEEDS):
            record["explanations"] = {"skipped": f"explanations need {', '.join(missing(EXPLAIN_NEEDS))}: "
                                                 f"pip install 'cgtrain[qa]'"}
        elif code_only(request):
            say("QA: explanations")
            record["explanations"] = explanations_section(request, run_dir, pipeline, codes, ids, y, proba, manifest)
        else:  # the model reads table columns too: attributions and latency need those rows rebuilt
            record["explanations"] = {"skipped": "explanations cover models over code only"}
        record["resources"] = resources_section(run_dir, pipeline, codes if code_only(request) else None)
        history = getattr(pipeline[-1], "history_", None)  # neural families: per-epoch loss and metric
        if isinstance(history, dict):
            record["history"] = history
    record["seconds"] = round(usage.wall_s, 2)
    record["resources"]["qa"] = usage.as_dict()
    atomic_write_json(run_dir / RESOURCES_FILE, record["resources"])
    atomic_write_json(run_dir / QA_FILE, record)
    return record


AUDIT_NEEDS, EXPLAIN_NEEDS = ("fairlearn", "statsmodels"), ("shap",)  # the [qa] extra


def audit_section(y, y_pred, segments, chars, qa) -> dict[str, Any]:
    """Per-segment and per-length recall/precision with intervals (the [qa] extra; skipped without it)."""
    if missing(AUDIT_NEEDS):
        return {"skipped": f"the audit needs {', '.join(missing(AUDIT_NEEDS))}: pip install 'cgtrain[qa]'"}
    from cgtrain.qa import bias as audits

    return audits.audit(y, y_pred, segments, chars, n_buckets=qa.length_buckets, alpha=qa.alpha)


def code_only(request) -> bool:
    ds = request.dataset
    return ds.code_column is not None and not getattr(ds, "numeric_columns", None) and \
        not getattr(ds, "categorical_columns", None)


def test_codes(run_dir: Path, prepared, ids: list[str]) -> list[str]:
    """Source of the held-out rows, in the order of test_predictions.jsonl."""
    if prepared is not None:
        frame = prepared.dataset.frame.iloc[prepared.split.test]
        code = dict(zip(frame["id"].astype(str), frame["code"]))
    else:
        from cgtrain.registry.promotion import held_out_codes

        code = dict(zip(ids, held_out_codes(run_dir, ids, len(ids))))
    missing = [i for i in ids if i not in code]
    if missing:
        raise ValueError(f"{len(missing)} held-out rows (e.g. {missing[0]!r}) are not in the dataset any more")
    return [code[i] for i in ids]


# --- calibration + threshold ----------------------------------------------------------------------
def calibration_section(request, run_dir: Path, prepared, y: np.ndarray, p: np.ndarray
                        ) -> tuple[dict[str, Any], np.ndarray]:
    qa = request.qa
    out: dict[str, Any] = {"test": cal.reliability(y, p), "precision_at_k": cal.precision_at_k(y, p, qa.precision_at_k)}
    calibrator, threshold = {"method": "none", "requested": "none"}, cal.Threshold("argmax", 0.5)
    if qa.calibration != "none" or qa.threshold != "argmax":
        y_oof, p_oof = oof_predictions(request, run_dir, prepared)
        out["oof_rows"] = int(len(y_oof))
        if qa.calibration != "none":
            calibrator = cal.choose_calibration(qa.calibration, y_oof, p_oof, seed=request.seed)
            p_oof = cal.apply_calibration(calibrator, p_oof)
        threshold = cal.choose_threshold(qa.threshold, y_oof, p_oof, max_fpr=qa.max_fpr,
                                         min_precision=qa.min_precision)
    p_used = cal.apply_calibration(calibrator, p)
    out["calibrator"] = calibrator
    if calibrator["method"] != "none":
        out["test_calibrated"] = cal.reliability(y, p_used)
    out["threshold"] = threshold.as_dict()
    out["at_threshold"] = cal.at_threshold(y, p_used, threshold.threshold)
    out["at_0.5"] = cal.at_threshold(y, p, 0.5)
    return out, (p_used >= threshold.threshold).astype(int)


def oof_predictions(request, run_dir: Path, prepared) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold P(flawed) of the chosen configuration over the CV folds (one more CV pass)."""

    if prepared is None:
        with tempfile.TemporaryDirectory() as tmp:
            prepared = prepare(request, Path(tmp), say=lambda _m: None)
    stored = stored_oof_predictions(run_dir, prepared)
    if stored is not None:
        return stored
    best = json.loads((run_dir / rundir.METRICS).read_text(encoding="utf-8"))["best"]
    cache, kind = FoldCache(request, prepared), FAMILIES.get(best["family"]).input
    ys, ps = [], []
    for k in range(len(prepared.folds)):
        X_tr, y_tr, X_va, y_va = cache.fold(k, kind)
        model = fit_family(request, best["family"], best["params"], X_tr, y_tr)
        ys.append(y_va)
        ps.append(full_proba(model, X_va, prepared.n_classes)[:, 1])
    return np.concatenate(ys), np.concatenate(ps)


def stored_oof_predictions(run_dir: Path, prepared) -> tuple[np.ndarray, np.ndarray] | None:
    """(y, P(flawed)) out of fold for the chosen trial as the study kept them; None when it kept none."""
    best = json.loads((Path(run_dir) / rundir.METRICS).read_text(encoding="utf-8"))["best"]
    # kept by the study for every full-fidelity trial, and by the ensemble step for a kept ensemble
    stored = _stored_oof(Path(run_dir), "ensemble" if best.get("family") == "ensemble" else best.get("trial"))
    if stored is None or len(stored) != len(prepared.folds) or \
            any(len(p) != len(va) for p, (_, va) in zip(stored, prepared.folds)):
        return None
    return (np.concatenate([prepared.y[va] for _, va in prepared.folds]),
            np.concatenate([np.asarray(p)[:, 1] for p in stored]))


def _stored_oof(run_dir: Path, trial: int | None):
    try:
        from cgtrain.tune.hooks import load_oof
    except ImportError:  # a tree without stored out-of-fold predictions
        return None
    return load_oof(run_dir, trial if trial == "ensemble" else int(trial)) if trial is not None else None


# --- explanations ------------------------------------------------------------------------------------
def pick_examples(y: np.ndarray, proba: np.ndarray, n: int) -> list[int]:
    """A few telling rows: confident true positives, false positives, false negatives, true negatives."""
    if n <= 0 or not len(y):
        return []
    pred, p = proba.argmax(1), proba[:, -1]
    groups = [np.flatnonzero((y != 0) & (pred != 0)), np.flatnonzero((y == 0) & (pred != 0)),
              np.flatnonzero((y != 0) & (pred == 0)), np.flatnonzero((y == 0) & (pred == 0))]
    ranked = [list(g[np.argsort(-p[g] if i < 2 else p[g])]) for i, g in enumerate(groups)]
    picked: list[int] = []
    while len(picked) < min(n, len(y)) and any(ranked):
        for g in ranked:
            if g and len(picked) < n:
                picked.append(int(g.pop(0)))
    return picked


def explanations_section(request, run_dir: Path, pipeline, codes, ids, y, proba, manifest) -> dict[str, Any]:
    qa = request.qa
    rng = np.random.default_rng(request.seed)
    examples = pick_examples(y, proba, qa.explain_examples)
    n = min(qa.shap_rows, len(codes))
    sample = sorted(set(rng.choice(len(codes), size=n, replace=False).tolist()) | set(examples))
    position = {row: k for k, row in enumerate(sample)}
    start = time.perf_counter()
    from cgtrain.qa.explain import explain, explain_record

    att = explain(pipeline, [codes[i] for i in sample], [position[i] for i in examples], manifest.language)
    rec = explain_record(att, [codes[i] for i in sample], [ids[i] for i in sample], [int(y[i]) for i in sample],
                         [float(proba[i, -1]) for i in sample], [position[i] for i in examples],
                         manifest.language)
    rec.update({"n_rows": len(sample), "seconds": round(time.perf_counter() - start, 2),
                "toward_class": str((manifest.classes or [0, 1])[-1])})
    atomic_write_json(run_dir / EXPLANATIONS_FILE, rec)
    return {"method": rec["method"], "n_rows": rec["n_rows"], "file": EXPLANATIONS_FILE,
            "top_toward_flawed": rec["global"]["toward_flawed"][:5]}


# --- resources ------------------------------------------------------------------------------------------
def resources_section(run_dir: Path, pipeline, codes) -> dict[str, Any]:
    dataset = _json(run_dir / rundir.DATASET)
    split = dataset.get("split", {})
    rows_per_trial = int(split.get("train_rows", 0)) * max(int(split.get("cv_folds", 1)) - 1, 1)
    trials = []
    for t in rundir.RunDir(run_dir).trial_records():
        res = t.get("resources") or {}
        wall = res.get("wall_s")
        trials.append({"trial": t["trial"], "family": t.get("family"), "state": t["state"], **res,
                       "samples_per_s": round(rows_per_trial / wall, 1) if wall else None})
    run = _json(run_dir / rundir.RUN)
    peaks = [t["peak_rss_mb"] for t in trials if t.get("peak_rss_mb")]
    return {"run_seconds": run.get("seconds"), "trials": trials,
            "trial_peak_rss_mb_max": max(peaks) if peaks else None,
            "model_size_mb": file_size_mb(run_dir / _json(run_dir / rundir.MODEL_JSON).get("file", rundir.MODEL_FILE)),
            "inference": latency(pipeline.predict_proba, codes) if codes is not None else {"n_single": 0}}


_json = rundir.read_json
