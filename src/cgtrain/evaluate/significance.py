"""A/B statistics: two models on the same rows, two training procedures, one procedure over seeds.

* Paired predictions: McNemar's test on the argmax labels, the paired bootstrap CI of a metric's difference
  (both used by the promotion gate, `cgtrain.registry.promotion`), and DeLong's test of two ROC AUCs on the
  same rows (fast DeLong, Sun & Xu 2014: midranks, structural components, the AUCs' covariance).
* Two procedures: Dietterich's 5x2cv paired t-test (five repetitions of a stratified,
  group-aware 2-fold split; t with 5 degrees of freedom).
* Seeds: mean and Student-t 95% CI of a metric over repeated runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cgtrain.evaluate.metrics import score

_LABEL_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "mcc")


# --- DeLong -----------------------------------------------------------------------------------
def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    return stats.rankdata(x, method="average")


def delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(AUCs (k,), V10 (k, m positives), V01 (k, n negatives)) for k score vectors (k, N)."""
    y = np.asarray(y, dtype=int)
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong's test needs both classes among the rows")
    aucs, v10, v01 = [], [], []
    for s, sp, sn in zip(scores, pos, neg):
        tz = _midranks(np.concatenate([sp, sn]))
        tx, ty = _midranks(sp), _midranks(sn)
        aucs.append((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
        v10.append((tz[:m] - tx) / n)
        v01.append(1.0 - (tz[m:] - ty) / m)
    return np.asarray(aucs), np.asarray(v10), np.asarray(v01)


@dataclass(frozen=True)
class DeLong:
    auc_a: float
    auc_b: float
    difference: float  # b - a
    se: float
    z: float
    p: float
    ci_low: float
    ci_high: float
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def delong_test(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, confidence: float = 0.95) -> DeLong:
    """Two-sided test of AUC(b) == AUC(a) on the same rows, with a normal CI of the difference."""
    aucs, v10, v01 = delong_components(y, np.vstack([score_a, score_b]).astype(float))
    m, n = v10.shape[1], v01.shape[1]
    cov = np.cov(v10) / m + np.cov(v01) / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = float(aucs[1] - aucs[0])
    se = float(np.sqrt(max(var, 0.0)))
    z = diff / se if se > 0 else (0.0 if diff == 0 else float("inf") * np.sign(diff))
    p = float(2 * stats.norm.sf(abs(z))) if np.isfinite(z) else 0.0
    half = stats.norm.ppf(0.5 + confidence / 2) * se
    return DeLong(float(aucs[0]), float(aucs[1]), diff, se, float(z), p, diff - half, diff + half, confidence)


def delong_variance(y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """(AUC, DeLong variance) of one score vector."""
    aucs, v10, v01 = delong_components(y, np.asarray(score, dtype=float)[None, :])
    return float(aucs[0]), float(np.var(v10[0], ddof=1) / v10.shape[1] + np.var(v01[0], ddof=1) / v01.shape[1])


# --- 5x2cv ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FiveByTwo:
    metric: str
    differences: list[list[float]]  # 5 x 2: score(a) - score(b) per repetition and fold
    t: float
    p: float
    mean_a: float
    mean_b: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def five_by_two_t(differences: np.ndarray) -> tuple[float, float]:
    """Dietterich's statistic from the (5, 2) differences: t = d_11 / sqrt(mean of per-repetition variances)."""
    d = np.asarray(differences, dtype=float)
    mean = d.mean(axis=1, keepdims=True)
    s2 = ((d - mean) ** 2).sum(axis=1)
    denom = np.sqrt(s2.mean())
    if denom == 0:
        return (0.0, 1.0) if d[0, 0] == 0 else (float("inf"), 0.0)
    t = float(d[0, 0] / denom)
    return t, float(2 * stats.t.sf(abs(t), df=5))


def paired_5x2cv(estimator_a, estimator_b, X: Sequence, y: np.ndarray,
                 scorer: Callable[[Any, Sequence, np.ndarray], float], metric: str,
                 groups: np.ndarray | None = None, seed: int = 0) -> FiveByTwo:
    """Fit clones of both procedures on the same 2-fold splits, five times; X is indexable by row lists."""
    y = np.asarray(y)
    diffs, a_scores, b_scores = np.zeros((5, 2)), [], []
    for rep in range(5):
        splitter = (StratifiedGroupKFold(2, shuffle=True, random_state=seed + rep) if groups is not None
                    else StratifiedKFold(2, shuffle=True, random_state=seed + rep))
        for fold, (tr, te) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            rows_tr, rows_te = _take(X, tr), _take(X, te)
            sa = scorer(clone(estimator_a).fit(rows_tr, y[tr]), rows_te, y[te])
            sb = scorer(clone(estimator_b).fit(rows_tr, y[tr]), rows_te, y[te])
            diffs[rep, fold] = sa - sb
            a_scores.append(sa)
            b_scores.append(sb)
    t, p = five_by_two_t(diffs)
    return FiveByTwo(metric, diffs.tolist(), t, p, float(np.mean(a_scores)), float(np.mean(b_scores)))


def _take(X, idx):
    return X[idx] if hasattr(X, "shape") else [X[i] for i in idx]


# --- seeds ------------------------------------------------------------------------------------
def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean and Student-t confidence interval of independent repeats."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    if len(v) == 0:
        return {"n": 0, "mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    mean = float(v.mean())
    if len(v) < 2:
        return {"n": 1, "mean": mean, "std": 0.0, "ci_low": float("nan"), "ci_high": float("nan")}
    sem = float(stats.sem(v))
    low, high = stats.t.interval(confidence, len(v) - 1, loc=mean, scale=sem) if sem > 0 else (mean, mean)
    return {"n": int(len(v)), "mean": mean, "std": float(v.std(ddof=1)), "ci_low": float(low),
            "ci_high": float(high), "confidence": confidence}


# --- paired predictions: McNemar, bootstrap ---------------------------------------------------
def mcnemar_test(y: np.ndarray, proba_a: np.ndarray, proba_b: np.ndarray) -> tuple[float, float, bool, int, int]:
    """(statistic, p, exact, only a right, only b right) on the argmax labels."""
    right_a, right_b = proba_a.argmax(1) == y, proba_b.argmax(1) == y
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(right_b & ~right_a))
    if only_a + only_b == 0:
        return 0.0, 1.0, True, 0, 0
    n, exact = only_a + only_b, only_a + only_b < 25
    if exact:  # the discordant pairs as n fair coin flips: a two-sided binomial test (statsmodels' exact McNemar)
        return float(min(only_a, only_b)), float(stats.binomtest(min(only_a, only_b), n, 0.5).pvalue), exact, only_a, only_b
    statistic = (abs(only_a - only_b) - 1) ** 2 / n  # chi-squared with continuity correction, 1 degree of freedom
    return float(statistic), float(stats.chi2.sf(statistic, 1)), exact, only_a, only_b


def resampled_scores(metric: str, y: np.ndarray, proba: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The metric on each row of resampled indices `idx` (B, n)."""
    if metric in _LABEL_METRICS and proba.shape[1] == 2:
        return np.concatenate([_label_metric(metric, y[block], proba.argmax(1)[block])
                               for block in np.array_split(idx, max(1, len(idx) // 200))])
    return np.asarray([score(metric, y[i], proba[i]) for i in idx], dtype=np.float64)


def _label_metric(metric: str, y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Binary label metrics for a block of resamples at once, as scikit-learn defines them (zero_division=0)."""
    tp = np.sum((pred == 1) & (y == 1), 1).astype(float)
    fp = np.sum((pred == 1) & (y == 0), 1).astype(float)
    fn = np.sum((pred == 0) & (y == 1), 1).astype(float)
    tn = y.shape[1] - tp - fp - fn

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    if metric == "accuracy":
        return (tp + tn) / y.shape[1]
    if metric == "precision":
        return ratio(tp, tp + fp)
    if metric == "recall":
        return ratio(tp, tp + fn)
    if metric == "f1":
        return ratio(2 * tp, 2 * tp + fp + fn)
    if metric == "balanced_accuracy":  # mean recall over the classes present
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanmean(np.stack([tp / (tp + fn), tn / (tn + fp)]), axis=0)
    return ratio(tp * tn - fp * fn, np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))  # mcc


def bootstrap_difference(metric: str, y: np.ndarray, proba_a: np.ndarray, proba_b: np.ndarray, sign: float,
                         n_resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Paired bootstrap CI of sign * (metric(b) - metric(a)) over the same resampled rows."""
    idx = np.random.default_rng(seed).integers(0, len(y), size=(n_resamples, len(y)))
    diffs = sign * (resampled_scores(metric, y, proba_b, idx) - resampled_scores(metric, y, proba_a, idx))
    diffs = diffs[np.isfinite(diffs)]  # a resample holding one class has no ROC AUC
    tail = (1 - confidence) / 2 * 100
    if not len(diffs):
        return float("nan"), float("nan")
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)
