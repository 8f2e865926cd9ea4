"""The served decision of a run whose metric counts labels (F1 on a binary task) when QA is off.

An F1 at p >= 0.5 throws away what a model ranks well on imbalanced data: the threshold that maximises
the chosen model's out-of-fold F1 (the CV predictions the study kept, so no extra fit and no test row)
goes to decision.json, which `cgtrain predict`, the API and the registry serve; metrics.json gives the
held-out test's label metrics at that threshold ("test"), the argmax ones as "test_argmax", and the
decision ("decision"). AutoML asks for it on binary F1 (qa.threshold: max_f1); with QA on, QA decides.
A kept ensemble's threshold is chosen on its own cross-fitted out-of-fold predictions (each fold blended by
weights or a meta model fitted on the other folds), which the ensemble step stores beside the trials'.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from cgtrain import rundir
from cgtrain.evaluate import calibration as cal
from cgtrain.evaluate.metrics import METRICS
from cgtrain.fsutil import atomic_write_json
from cgtrain.qa.checks import stored_oof_predictions
from cgtrain.serve.decision import write_decision


LABEL_METRICS = ("accuracy", "precision", "recall", "f1", "mcc")  # those that change with the threshold


def wants_threshold(request, prepared) -> bool:
    return (not request.qa.enabled and request.qa.threshold != "argmax" and not prepared.regression
            and prepared.n_classes == 2)


def tune_threshold(request, run_dir: Path, prepared, say: Callable[[str], None]) -> dict[str, Any]:
    """Choose, save and report the decision threshold; returns the (possibly updated) metrics record."""
    run = rundir.RunDir(run_dir)
    metrics, manifest = run.metrics(), run.manifest()
    oof = stored_oof_predictions(run_dir, prepared)
    if oof is None or manifest is None:
        say("decision: argmax (no kept out-of-fold predictions of the chosen model to choose a threshold on)")
        return metrics
    qa = request.qa
    chosen = cal.choose_threshold(qa.threshold, *oof, max_fpr=qa.max_fpr, min_precision=qa.min_precision)
    rows = run.test_rows()
    y = np.asarray([r["y_true"] for r in rows], dtype=int)
    p = np.asarray([r["proba"][1] for r in rows], dtype=float)
    pred = (p >= chosen.threshold).astype(int)
    at = {n: float(METRICS.get(n).fn(y, pred, p, False)) for n in LABEL_METRICS} if len(y) else {}
    at = {n: v for n, v in at.items() if np.isfinite(v)}  # metrics.json is strict JSON
    metrics = {**metrics, "test_argmax": metrics["test"], "test": {**metrics["test"], **at},
               "decision": {"threshold": chosen.threshold, "policy": chosen.policy, "why": chosen.note}}
    write_decision(run_dir, {"method": "none"}, chosen.threshold, chosen.policy, manifest.sha256)
    atomic_write_json(Path(run_dir) / rundir.METRICS, metrics)
    say(f"decision: P(class 1) >= {chosen.threshold:.4f} ({chosen.policy}: {chosen.note}); test "
        f"{request.validation.metric} {at.get(request.validation.metric, float('nan')):.4f} at it, "
        f"{metrics['test_argmax'].get(request.validation.metric, float('nan')):.4f} at argmax")
    return metrics
