"""Per-segment audit: does the model miss flaws (recall) or cry wolf (precision) more on some slices?

For each segment column of the request (CWE, language, bug kind...) and a code-length
bucket, fairlearn's `MetricFrame` gives recall, precision, F1 and counts per segment.
Each segment's recall and precision get a Wilson interval (statsmodels); a segment is
flagged when the interval's upper bound lies below the overall value, i.e. it is
significantly worse than the model as a whole at level `alpha`. The largest disparity
is the largest between-segment difference (fairlearn's `difference()`) over segments
with at least `min_support` rows in the metric's denominator.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count
from sklearn import metrics as skm
from statsmodels.stats.proportion import proportion_confint

LENGTH_COLUMN = "code_length"
MIN_SUPPORT = 10


def length_buckets(chars: Sequence[int], n_buckets: int) -> np.ndarray:
    """Quantile buckets of code length, labelled by their character range ("120-340 chars")."""
    chars = np.asarray(chars, dtype=float)
    if n_buckets <= 1 or len(np.unique(chars)) <= 1:
        return np.full(len(chars), "all", dtype=object)
    edges = np.unique(np.quantile(chars, np.linspace(0, 1, n_buckets + 1)))
    idx = np.clip(np.searchsorted(edges[1:-1], chars, side="right"), 0, len(edges) - 2)
    lows = [int(edges[0])] + [int(e) + 1 for e in edges[1:-1]]
    names = [f"{lows[i]}-{int(edges[i + 1])} chars" for i in range(len(edges) - 1)]
    return np.asarray([names[i] for i in idx], dtype=object)


def _metrics(multiclass: bool) -> dict[str, Any]:
    avg = "macro" if multiclass else "binary"
    return {"recall": partial(skm.recall_score, average=avg, zero_division=0),
            "precision": partial(skm.precision_score, average=avg, zero_division=0),
            "f1": partial(skm.f1_score, average=avg, zero_division=0),
            "n": count,
            "positives": lambda y, p: int(np.sum(np.asarray(y) != 0)),
            "predicted_positive": lambda y, p: int(np.sum(np.asarray(p) != 0))}


def wilson(successes: int, trials: int, alpha: float) -> tuple[float, float]:
    if trials <= 0:
        return float("nan"), float("nan")
    low, high = proportion_confint(successes, trials, alpha=alpha, method="wilson")
    return float(low), float(high)


def audit(y_true: Sequence[int], y_pred: Sequence[int], segments: Mapping[str, Sequence[str]],
          code_chars: Sequence[int] | None = None, *, n_buckets: int = 4, alpha: float = 0.05,
          min_support: int = MIN_SUPPORT) -> dict[str, Any]:
    """The audit record: overall metrics, per-column segment tables with CIs and flags, largest disparity."""
    y, pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    multiclass = max(int(y.max(initial=0)), int(pred.max(initial=0))) > 1
    columns = {name: np.asarray(values, dtype=object) for name, values in segments.items()}
    if code_chars is not None and len(code_chars) == len(y):
        columns[LENGTH_COLUMN] = length_buckets(code_chars, n_buckets)
    overall = {k: float(v) for k, v in MetricFrame(metrics=_metrics(multiclass), y_true=y, y_pred=pred,
                                                   sensitive_features=np.zeros(len(y))).overall.items()}
    tables = {name: segment_table(y, pred, values, overall, multiclass, alpha)
              for name, values in columns.items()}
    return {"overall": overall, "alpha": alpha, "ci": "wilson", "min_support": min_support,
            "columns": tables, "largest_disparity": largest_disparity(tables, min_support),
            "flagged": [{"column": c, **row} for c, t in tables.items() for row in t if row["flags"]]}


def segment_table(y: np.ndarray, pred: np.ndarray, values: np.ndarray, overall: dict[str, float],
                  multiclass: bool, alpha: float) -> list[dict[str, Any]]:
    frame = MetricFrame(metrics=_metrics(multiclass), y_true=y, y_pred=pred,
                        sensitive_features=pd.Series(values, name="segment"))
    rows = []
    for segment, m in frame.by_group.iterrows():
        mask = values == segment
        tp = int(np.sum((pred[mask] != 0) & (y[mask] != 0))) if not multiclass else None
        row = {"segment": str(segment), **{k: (int(m[k]) if k in ("n", "positives", "predicted_positive")
                                               else float(m[k])) for k in m.index}}
        flags = []
        if not multiclass:  # Wilson intervals are for the binary "flawed" class
            row["recall_ci"] = wilson(tp, row["positives"], alpha)
            row["precision_ci"] = wilson(tp, row["predicted_positive"], alpha)
            for metric in ("recall", "precision"):
                high = row[f"{metric}_ci"][1]
                if metric == "precision" and row["positives"] == 0:
                    continue  # no flawed rows: precision is 0 by definition, not a finding
                if high == high and high < overall[metric]:
                    flags.append(f"{metric} below overall")
        row["flags"] = flags
        rows.append(row)
    return sorted(rows, key=lambda r: (-len(r["flags"]), r.get("recall", 0.0), r["segment"]))


def largest_disparity(tables: dict[str, list[dict[str, Any]]], min_support: int) -> dict[str, Any] | None:
    """The largest gap (max - min) in recall or precision between segments of one column with enough support."""
    best = None
    for column, rows in tables.items():
        for metric, support in (("recall", "positives"), ("precision", "predicted_positive")):
            kept = [r for r in rows if r[support] >= min_support and r["positives"] > 0]
            if len(kept) < 2:
                continue
            frame = pd.Series({r["segment"]: r[metric] for r in kept})
            gap = float(frame.max() - frame.min())
            if best is None or gap > best["difference"]:
                best = {"column": column, "metric": metric, "difference": gap,
                        "worst": str(frame.idxmin()), "worst_value": float(frame.min()),
                        "best": str(frame.idxmax()), "best_value": float(frame.max()),
                        "segments_compared": len(kept)}
    return best
