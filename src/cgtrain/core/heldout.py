"""The one look at the held-out test split: metrics with baselines, per-row predictions, no NaN on disk."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cgtrain import rundir
from cgtrain.core.prepared import Prepared
from cgtrain.fsutil import atomic_write_text


MIN_TEST_ROWS = 30  # below this a held-out metric moves by several points per row


def checked_metrics(metrics: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """No NaN in metrics.json: an undefined metric is null and named in `warnings`, as is a tiny test split."""
    warns, undefined = [], []
    for section in ("test", *(k for k in metrics if k.startswith("baseline_")), "cv"):
        values = metrics.get(section) or {}
        for name, value in list(values.items()):
            if isinstance(value, float) and not np.isfinite(value):
                values[name] = None
                undefined.append(f"{section}.{name}")
    n_test = metrics.get("n_test", 0)
    if n_test < MIN_TEST_ROWS:
        warns.append(f"the held-out test split has only {n_test} rows: its metrics are noisy; add data or raise "
                     f"validation.test_fraction")
    if undefined:
        warns.append(f"undefined on these rows (e.g. one class only), recorded as null: {', '.join(undefined)}")
    for w in warns:
        say(f"warning: {w}")
    return {**metrics, **({"warnings": warns} if warns else {})}


def write_test_predictions(run_dir: Path, p: Prepared, proba: np.ndarray) -> None:
    """Per-row held-out predictions: paired tests against another model need the same rows."""
    frame = p.dataset.frame.iloc[p.split.test]
    segments = [c for c in frame.columns if c not in ("id", "code", "label", "group")]  # the per-segment audit
    seg_values = [dict(zip(segments, vals)) for vals in zip(*(frame[c].astype(str) for c in segments))] \
        if segments else [{}] * len(frame)
    if p.regression:  # y_pred: the predicted value
        outs = [{"y_true": float(t), "y_pred": round(float(v), 8)} for t, v in zip(p.y[p.split.test], proba)]
    else:
        outs = [{"y_true": int(t), "proba": [round(float(v), 8) for v in row]}
                for t, row in zip(p.y[p.split.test], proba)]
    lines = [json.dumps({"id": str(i), **out, "segments": seg, "code_chars": len(code)})
             for i, out, seg, code in zip(frame["id"].to_numpy(), outs, seg_values, frame["code"])]
    atomic_write_text(run_dir / rundir.TEST_PREDICTIONS, "\n".join(lines) + "\n")
