"""Plots as inline SVG strings (matplotlib, Agg backend): the report needs no file beside it and no network."""
from __future__ import annotations

import io
import re
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

STYLE = {"svg.fonttype": "none", "svg.hashsalt": "cgtrain", "font.size": 9, "axes.grid": True,
         "grid.alpha": 0.3, "figure.dpi": 100}
FLAWED, CLEAN, ACCENT = "#c0392b", "#2c7fb8", "#555555"


def to_svg(fig) -> str:
    """The figure as an <svg> element (no XML prolog), closed afterwards."""
    buf = io.StringIO()
    with plt.rc_context(STYLE):  # svg.fonttype is read when saving: text stays text, no glyph defs
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg"):], flags=re.S)


def _fig(w: float = 5.0, h: float = 3.4):
    with plt.rc_context(STYLE):
        return plt.subplots(figsize=(w, h))


def roc(y: np.ndarray, p: np.ndarray) -> str:
    fig, ax = _fig(4.2, 3.6)
    fpr, tpr, _ = skm.roc_curve(y, p)
    ax.plot(fpr, tpr, color=FLAWED, label=f"ROC AUC {skm.roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", color=ACCENT, lw=0.8)
    ax.set(xlabel="false-positive rate", ylabel="recall (true-positive rate)", title="ROC curve")
    ax.legend(loc="lower right")
    return to_svg(fig)


def pr(y: np.ndarray, p: np.ndarray, threshold: float | None = None) -> str:
    fig, ax = _fig(4.2, 3.6)
    prec, rec, thr = skm.precision_recall_curve(y, p)
    ax.plot(rec, prec, color=FLAWED, label=f"average precision {skm.average_precision_score(y, p):.3f}")
    ax.axhline(np.mean(y), ls="--", color=ACCENT, lw=0.8, label=f"base rate {np.mean(y):.3f}")
    if threshold is not None and len(thr):
        k = min(int(np.searchsorted(thr, threshold)), len(thr) - 1)
        ax.scatter([rec[k]], [prec[k]], color="black", zorder=3, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall curve", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return to_svg(fig)


def reliability(curves: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Reliability diagram: one line per (label, reliability record); bin counts as bars below."""
    with plt.rc_context(STYLE):
        fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.2, 4.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ls="--", color=ACCENT, lw=0.8, label="perfectly calibrated")
    for (label, rec), color in zip(curves, (FLAWED, CLEAN)):
        ax.plot(rec["prob_pred"], rec["prob_true"], marker="o", ms=3, color=color,
                label=f"{label} (ECE {rec['ece']:.3f}, Brier {rec['brier']:.3f})")
    ax.set(ylabel="observed share flawed", title="calibration (reliability curve)")
    ax.legend(loc="upper left", fontsize=7)
    n_bins = curves[0][1]["n_bins"]
    hist.bar((np.arange(n_bins) + 0.5) / n_bins, curves[0][1]["bin_counts"], width=0.9 / n_bins, color=ACCENT)
    hist.set(xlabel="predicted probability of flawed", ylabel="rows")
    return to_svg(fig)


def confusion(matrix: np.ndarray, labels: Sequence[str]) -> str:
    fig, ax = _fig(3.4, 3.0)
    ax.grid(False)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(int(v)), ha="center", va="center",
                color="white" if v > matrix.max() / 2 else "black")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title="confusion matrix (test)")
    return to_svg(fig)


def hpo_history(trials: list[dict[str, Any]], metric: str) -> str:
    fig, ax = _fig(5.0, 3.2)
    done = [t for t in trials if t["value"] is not None]
    families = sorted({t["family"] or "?" for t in done})
    for fam, color in zip(families, plt.get_cmap("tab10").colors):
        pts = [t for t in done if (t["family"] or "?") == fam]
        ax.scatter([t["trial"] for t in pts], [t["value"] for t in pts], color=color, label=fam, s=18)
    if done:
        xs = [t["trial"] for t in done]
        ax.step(xs, np.maximum.accumulate([t["value"] for t in done]), where="post", color="black", lw=1,
                label="best so far")
    ax.set(xlabel="trial", ylabel=f"CV {metric}", title="hyper-parameter search history")
    ax.legend(fontsize=7)
    return to_svg(fig)


def bars(names: Sequence[str], values: Sequence[float], title: str, xlabel: str,
         colors: Sequence[str] | None = None, errors: Sequence[tuple[float, float]] | None = None,
         reference: float | None = None) -> str:
    """Horizontal bars, first name on top; optional CI whiskers and a reference line."""
    fig, ax = _fig(5.6, max(1.6, 0.26 * len(names) + 0.9))
    y = np.arange(len(names))[::-1]
    xerr = None
    if errors is not None:
        xerr = np.array([[max(v - lo, 0) for v, (lo, _) in zip(values, errors)],
                         [max(hi - v, 0) for v, (_, hi) in zip(values, errors)]])
        xerr = np.nan_to_num(xerr)
    ax.barh(y, values, color=colors or CLEAN, xerr=xerr, ecolor=ACCENT, capsize=2)
    if reference is not None:
        ax.axvline(reference, color="black", ls="--", lw=0.8, label=f"overall {reference:.3f}")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_yticks(y, [_short(n) for n in names])
    ax.set(xlabel=xlabel, title=title)
    return to_svg(fig)


def curves(series: dict[str, Sequence[float]], title: str, xlabel: str, ylabel: str) -> str:
    fig, ax = _fig(5.0, 3.2)
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=2.5, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if len(series) <= 12:
        ax.legend(fontsize=7)
    return to_svg(fig)


def _short(text: str, width: int = 42) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"
