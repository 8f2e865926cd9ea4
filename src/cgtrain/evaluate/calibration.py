"""Calibration and decision thresholds for binary flaw detectors.

* `reliability`: the reliability curve (scikit-learn's `calibration_curve`, uniform bins),
  the expected calibration error over the same bins, and the Brier score.
* `choose_calibration`: none / sigmoid (Platt) / isotonic, fitted on out-of-fold
  probabilities; "auto" picks the method with the lowest cross-validated Brier score.
  A calibrator is plain data (JSON) and `apply_calibration` maps probabilities with it.
* `choose_threshold`: the decision threshold by a request policy (argmax = 0.5, max F1,
  a false-positive rate at most `max_fpr`, precision at least `min_precision`), chosen on
  out-of-fold probabilities, never on the test rows it is then evaluated on.
* `precision_at_k`: precision among the k highest-scored rows (a review queue of k).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from cgtrain.evaluate import metrics

N_BINS = 10
_EPS = 1e-6


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    """Reliability curve, ECE and Brier score of positive-class probabilities `p`."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    return {"prob_true": prob_true.tolist(), "prob_pred": prob_pred.tolist(),
            "bin_counts": bin_counts(p, n_bins).tolist(), "ece": ece(y, p, n_bins),
            "brier": float(skm.brier_score_loss(y, p)), "n_bins": n_bins}


def bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """The uniform bin of each probability, as `calibration_curve` assigns them."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], p)


def bin_counts(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.bincount(bin_index(np.asarray(p, dtype=float), n_bins), minlength=n_bins)


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: sum over bins of (bin share) * |observed rate - mean probability|."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if not len(y):
        return float("nan")
    idx = bin_index(p, n_bins)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


# --- calibration -----------------------------------------------------------------------
def fit_calibrator(method: str, y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """A calibrator as plain data: {"method": "none"} | sigmoid {a, b} | isotonic {x, y}."""
    if method == "none":
        return {"method": "none"}
    if method == "sigmoid":  # Platt scaling on the log-odds
        lr = LogisticRegression(C=1e6, solver="lbfgs").fit(_logit(p)[:, None], y)
        return {"method": "sigmoid", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    raise ValueError(f"unknown calibration method {method!r}; choose none, sigmoid, isotonic or auto")


def apply_calibration(calibrator: dict[str, Any], p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    method = calibrator["method"]
    if method == "none":
        return p
    if method == "sigmoid":
        return 1.0 / (1.0 + np.exp(-(calibrator["a"] * _logit(p) + calibrator["b"])))
    return np.interp(p, calibrator["x"], calibrator["y"])  # isotonic: piecewise linear, clipped at the ends


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def cv_brier(method: str, y: np.ndarray, p: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Brier score of `method` fitted and scored on different folds of the out-of-fold probabilities."""
    k = min(folds, int(np.bincount(y, minlength=2).min()))
    if k < 2:
        return float("nan")
    out = np.empty_like(p)
    for tr, va in StratifiedKFold(k, shuffle=True, random_state=seed).split(p, y):
        out[va] = apply_calibration(fit_calibrator(method, y[tr], p[tr]), p[va])
    return float(skm.brier_score_loss(y, out))


def choose_calibration(method: str, y_oof: np.ndarray, p_oof: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """The calibrator for `method` ("auto": lowest CV Brier of none/sigmoid/isotonic), fitted on all OOF rows."""
    y_oof, p_oof = np.asarray(y_oof, dtype=int), np.asarray(p_oof, dtype=float)
    scores = {m: cv_brier(m, y_oof, p_oof, seed=seed) for m in ("none", "sigmoid", "isotonic")}
    chosen = method
    if method == "auto":
        finite = {m: s for m, s in scores.items() if np.isfinite(s)}
        chosen = min(finite, key=finite.get) if finite else "none"
    return {**fit_calibrator(chosen, y_oof, p_oof), "cv_brier": scores, "requested": method}


# --- thresholds ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Threshold:
    policy: str
    threshold: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_threshold(policy: str, y: np.ndarray, p: np.ndarray, *, max_fpr: float | None = None,
                     min_precision: float | None = None) -> Threshold:
    """Decision threshold on positive-class probabilities; predict flawed when p >= threshold."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if policy == "argmax":
        return Threshold(policy, 0.5)
    if policy == "max_f1":
        prec, rec, thr = skm.precision_recall_curve(y, p)
        f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(prec), where=(prec + rec) > 0)[:-1]
        k = int(np.argmax(f1))
        return Threshold(policy, float(thr[k]), f"out-of-fold F1 {f1[k]:.4f}")
    if policy == "fpr":
        fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=False)
        ok = np.flatnonzero(fpr <= max_fpr)
        k = int(ok[np.argmax(tpr[ok])])
        return Threshold(policy, float(min(thr[k], 1.0 + _EPS)),
                         f"out-of-fold FPR {fpr[k]:.4f} <= {max_fpr}, recall {tpr[k]:.4f}")
    if policy == "precision":
        prec, rec, thr = skm.precision_recall_curve(y, p)
        ok = np.flatnonzero(prec[:-1] >= min_precision)
        if not len(ok):
            return Threshold(policy, float(np.max(p)) + _EPS,
                             f"no threshold reaches precision {min_precision}; nothing is flagged")
        k = int(ok[np.argmax(rec[ok])])
        return Threshold(policy, float(thr[k]), f"out-of-fold precision {prec[k]:.4f}, recall {rec[k]:.4f}")
    raise ValueError(f"unknown threshold policy {policy!r}; choose argmax, max_f1, fpr or precision")


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Label metrics when predicting flawed at p >= threshold."""
    y, pred = np.asarray(y, dtype=int), (np.asarray(p, dtype=float) >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {"threshold": float(threshold), "precision": float(skm.precision_score(y, pred, zero_division=0)),
            "recall": float(skm.recall_score(y, pred, zero_division=0)),
            "f1": float(skm.f1_score(y, pred, zero_division=0)),
            "fpr": float(fp / (fp + tn)) if fp + tn else float("nan"),
            "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}}


def precision_at_k(y: np.ndarray, p: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """Share of flawed rows among the k highest-scored, per k (ties broken by row order); k capped at n."""
    y = np.asarray(y, dtype=int)
    return {str(k): metrics.precision_at_k(y, p, min(k, len(y))) for k in ks if len(y)}
