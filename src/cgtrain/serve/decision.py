"""The decision QA chose for a binary model, served exactly as it was reported.

QA picks a calibrator (none / sigmoid / isotonic, plain numbers) and a decision threshold on
out-of-fold predictions and reports the test metrics *with* them. `decision.json` keeps that
choice next to the model, bound to the model file's checksum: `cgtrain predict`, the Python
API, registered versions and MLflow serving apply it, so the probability served is the
calibrated one and the label is `p >= threshold`; `--raw` (or `raw=True`) gives the
uncalibrated score and the argmax label. A decision made for another model file (a refit
since) is ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cgtrain.fsutil import atomic_write_json
from cgtrain import rundir

DECISION_FILE = rundir.DECISION


@dataclass(frozen=True)
class Decision:
    calibrator: dict[str, Any]
    threshold: float
    policy: str

    @property
    def identity(self) -> bool:
        """No calibration and the argmax decision: serving it changes nothing."""
        return self.calibrator.get("method") == "none" and self.policy == "argmax"

    def calibrate(self, p_positive: np.ndarray) -> np.ndarray:
        from cgtrain.evaluate.calibration import apply_calibration

        return np.clip(apply_calibration(self.calibrator, np.asarray(p_positive, dtype=np.float64)), 0.0, 1.0)

    def apply(self, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated [n, 2] probabilities, positive-class decisions) from raw [n, 2] probabilities."""
        p1 = self.calibrate(np.asarray(proba, dtype=np.float64)[:, 1])
        return np.column_stack([1.0 - p1, p1]), p1 >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {"calibrator": self.calibrator, "threshold": self.threshold, "policy": self.policy}


def write_decision(run_dir: str | Path, calibrator: dict[str, Any], threshold: float, policy: str,
                   model_sha256: str) -> Path:
    keep = {k: v for k, v in calibrator.items() if k in ("method", "a", "b", "x", "y")}
    return atomic_write_json(Path(run_dir) / DECISION_FILE, {
        **Decision(keep, float(threshold), policy).as_dict(), "model_sha256": model_sha256})


def read_decision(path: str | Path, model_sha256: str | None) -> Decision | None:
    """The decision in `path` (a decision.json, or a run directory holding one) if it was made for
    the model with this checksum; None when there is none, it is for another model, or unreadable."""
    path = Path(path)
    path = path / DECISION_FILE if path.is_dir() else path
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_bytes()[:4 << 20].decode("utf-8"))
        decision = Decision(dict(record["calibrator"]), float(record["threshold"]), str(record.get("policy", "")))
        _check(decision.calibrator)
    except (ValueError, KeyError, TypeError):
        return None
    if model_sha256 is not None and record.get("model_sha256") != model_sha256:
        return None
    return decision


def _check(calibrator: dict[str, Any]) -> None:
    method = calibrator.get("method")
    if method == "sigmoid":
        float(calibrator["a"]), float(calibrator["b"])
    elif method == "isotonic":
        x, y = np.asarray(calibrator["x"], dtype=float), np.asarray(calibrator["y"], dtype=float)
        if x.shape != y.shape or x.ndim != 1 or not len(x):
            raise ValueError("isotonic calibrator with mismatched points")
    elif method != "none":
        raise ValueError(f"unknown calibration method {method!r}")
