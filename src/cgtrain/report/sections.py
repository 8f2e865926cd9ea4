"""The report's sections, each a function of the run's records returning an HTML fragment."""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cgtrain.extras import installed

if installed("matplotlib"):
    from cgtrain.report import plots
else:  # a core install: the report keeps its tables and numbers, each plot says how to get it
    class _NoPlots:
        def __getattr__(self, name: str):
            return lambda *args, **kwargs: ('<p class="note">plots need matplotlib: '
                                            "pip install 'cgtrain[qa]'</p>")

    plots = _NoPlots()
from cgtrain import rundir


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(value: Any, digits: int = 4) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return esc(value if value is not None else "–")
    return "–" if v != v else f"{v:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "", row_classes=None) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for k, row in enumerate(rows):
        rc = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        body.append(f"<tr{rc}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure(name: str, svg: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure class="plot" data-plot="{esc(name)}">{svg}{cap}</figure>'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


# --- sections -------------------------------------------------------------------------------------------
def summary(r: dict[str, Any]) -> str:
    m, qa = r["metrics"], r["qa"]
    best = m.get("best", {})
    rows = [[esc(k), num(v), num(m.get("baseline_majority", {}).get(k))] for k, v in m.get("test", {}).items()]
    facts = [("request", r["request"].get("name")), ("best", f"trial {best.get('trial')} · {best.get('family')}"),
             ("CV", f"{m.get('cv', {}).get('metric')} {num(m.get('cv', {}).get('mean'))} ± "
                    f"{num(m.get('cv', {}).get('std'))}"),
             ("rows", f"{m.get('n_train')} train · {m.get('n_test')} test"),
             ("run time", f"{r['run'].get('seconds', '–')} s training · {qa.get('seconds', '–')} s QA")]
    cal = qa.get("calibration")
    if cal:
        t = cal["threshold"]
        facts.append(("decision", f"{t['policy']} threshold {num(t['threshold'], 3)} → precision "
                                  f"{num(cal['at_threshold']['precision'], 3)}, recall "
                                  f"{num(cal['at_threshold']['recall'], 3)}"))
    flagged = len(qa.get("audit", {}).get("flagged", []))
    facts.append(("segments flagged", str(flagged)))
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    return f'<dl class="facts">{dl}</dl>' + table(["metric", "test", "majority baseline"], rows)


def leaderboard(board: list[dict[str, Any]], metric: str) -> str:
    mean, std = f"cv_{metric}_mean", f"cv_{metric}_std"
    rows = [[esc(b.get("trial")), esc(b.get("family")), f"<code>{esc(b.get('params'))}</code>",
             f"{num(b.get(mean))} ± {num(b.get(std))}", num(b.get("fit_seconds"), 1), esc(b.get("state")),
             esc(b.get("error") or "")] for b in board[:25]]
    return table(["trial", "family", "params", f"CV {metric}", "fit s", "state", "error"], rows, "board")


def hpo(trials: list[dict[str, Any]], importances: dict[str, float] | None, metric: str) -> str:
    out = [figure("hpo-history", plots.hpo_history(trials, metric), "CV score per trial; line: best so far")]
    if importances:
        names = list(importances)
        out.append(figure("param-importances", plots.bars(names, [importances[n] for n in names],
                                                          "parameter importances (Optuna, fANOVA)", "importance")))
    else:
        out.append(note("parameter importances need at least two completed trials with varied parameters"))
    return "".join(out)


def learning_curves(trials: list[dict[str, Any]], history: dict[str, Any] | None) -> str:
    series = {f"trial {t['trial']} ({t['family']})": [v for _, v in sorted(t["intermediate"].items())]
              for t in trials if t.get("intermediate")}
    out = []
    if series:
        out.append(figure("trial-curves", plots.curves(series, "reported values per trial (per fold; per epoch for "
                                                               "neural nets)", "step", "validation metric")))
    epochs = (history or {}).get("history") if isinstance(history, dict) else None
    if isinstance(epochs, list) and epochs and isinstance(epochs[0], dict):
        keys = [k for k in ("train_loss", "val_metric") if isinstance(epochs[0].get(k), (int, float))]
        out.append(figure("refit-history", plots.curves({k: [e.get(k) for e in epochs] for k in keys},
                                                        "refit: loss and metrics per epoch", "epoch", "value")))
    return "".join(out) or note("no per-fold or per-epoch values were reported")


def test_plots(y: np.ndarray, proba: np.ndarray, classes: list[str], cal: dict[str, Any] | None) -> str:
    out = []
    if proba.shape[1] == 2 and len(np.unique(y)) == 2:
        thr = cal["threshold"]["threshold"] if cal else None
        out += [figure("roc", plots.roc(y, proba[:, 1])), figure("pr", plots.pr(y, proba[:, 1], thr))]
    if cal:
        curves = [("uncalibrated", cal["test"])]
        if cal.get("test_calibrated"):
            curves.append((cal["calibrator"]["method"], cal["test_calibrated"]))
        out.append(figure("calibration", plots.reliability(curves)))
        c = cal["at_threshold"]["confusion"]
        matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    else:
        from sklearn.metrics import confusion_matrix

        matrix = confusion_matrix(y, proba.argmax(1), labels=range(proba.shape[1]))
    out.append(figure("confusion", plots.confusion(matrix, classes)))
    return f'<div class="grid">{"".join(out)}</div>' + (decision_table(cal) if cal else "")


def decision_table(cal: dict[str, Any]) -> str:
    calibrator, t = cal["calibrator"], cal["threshold"]
    rows = [[esc(name), num(a["threshold"], 3), num(a["precision"]), num(a["recall"]), num(a["f1"]), num(a["fpr"])]
            for name, a in (("0.5 (uncalibrated)", cal["at_0.5"]), (f"{t['policy']} policy", cal["at_threshold"]))]
    cv = calibrator.get("cv_brier")
    text = (f"calibration: {calibrator.get('requested')} → {calibrator['method']}"
            + (f" (CV Brier: {', '.join(f'{k} {v:.4f}' for k, v in cv.items())})" if cv else "")
            + f"; threshold note: {t.get('note') or '–'}; test ECE {cal['test']['ece']:.4f}, "
              f"Brier {cal['test']['brier']:.4f}")
    pk = " · ".join(f"P@{k} {v:.3f}" for k, v in cal.get("precision_at_k", {}).items())
    return (table(["decision at", "threshold", "precision", "recall", "F1", "FPR"], rows)
            + note(text) + note(f"precision at k (review queue): {pk}"))


def audit(a: dict[str, Any]) -> str:
    if not a:
        return note("no audit")
    if "skipped" in a:
        return note(f"no audit: {a['skipped']}")
    out = []
    d = a.get("largest_disparity")
    if d:
        out.append(f'<p class="disparity">largest disparity: <b>{esc(d["metric"])}</b> over '
                   f'<b>{esc(d["column"])}</b>: {esc(d["worst"])} {num(d["worst_value"], 3)} vs {esc(d["best"])} '
                   f'{num(d["best_value"], 3)} (difference {num(d["difference"], 3)}, {d["segments_compared"]} '
                   f'segments with ≥ {a["min_support"]} rows)</p>')
    overall = a["overall"]
    out.append(note(f"overall: recall {overall['recall']:.4f}, precision {overall['precision']:.4f}; a segment is "
                    f"flagged when its {1 - a['alpha']:.0%} Wilson interval lies wholly below the overall value"))
    for column, rows in a["columns"].items():
        body = [[esc(r["segment"]), num(r["n"]), num(r["positives"]), _with_ci(r, "recall"),
                 _with_ci(r, "precision"), num(r["f1"], 3), esc(", ".join(r["flags"]))] for r in rows]
        classes = ["flagged" if r["flags"] else "" for r in rows]
        out.append(f'<h3>{esc(column)}</h3>' + table(["segment", "rows", "flawed", "recall [CI]", "precision [CI]",
                                                      "F1", "flags"], body, "segments", classes))
        shown = [r for r in rows if r["positives"] > 0][:30]
        if shown and "recall_ci" in shown[0]:
            out.append(figure(f"segments-{column}", plots.bars(
                [r["segment"] for r in shown], [r["recall"] for r in shown], f"recall by {column}", "recall",
                colors=[plots.FLAWED if "recall below overall" in r["flags"] else plots.CLEAN for r in shown],
                errors=[tuple(r["recall_ci"]) for r in shown], reference=overall["recall"])))
    return "".join(out)


def _with_ci(row: dict[str, Any], metric: str) -> str:
    ci = row.get(f"{metric}_ci")
    return f"{num(row[metric], 3)} [{num(ci[0], 2)}, {num(ci[1], 2)}]" if ci else num(row[metric], 3)


def explanations(e: dict[str, Any] | None) -> str:
    if not e:
        return note("no explanations were computed")
    g = e["global"]
    out = [note(f"method: {e['method']} over {e['n_rows']} test rows ({e.get('seconds', '–')} s); positive values "
                f"push toward '{e.get('toward_class', 'flawed')}'")]
    top = g["toward_flawed"][:15] + g["toward_clean"][:5]
    if top:
        out.append(figure("global-attributions", plots.bars(
            [t["name"] for t in top], [t["mean"] for t in top], "mean attribution: toward flawed (red) / clean (blue)",
            "mean attribution", colors=[plots.FLAWED if t["mean"] > 0 else plots.CLEAN for t in top])))
    for ex in e["examples"]:
        out.append(f'<div class="example"><h3>{esc(ex["id"])} — true {ex["y_true"]}, P(flawed) '
                   f'{ex["p_flawed"]:.3f}</h3>{highlighted(ex)}</div>')
    return "".join(out)


def highlighted(ex: dict[str, Any], top: int = 12) -> str:
    """The example's code with its most attributed tokens shaded (red: toward flawed, blue: toward clean)."""
    attr = np.asarray(ex["token_attr"], dtype=float)
    if not len(attr):
        return f"<pre>{esc(ex['code'])}</pre>"
    cut = np.sort(np.abs(attr))[-min(top, len(attr))]
    scale = np.abs(attr).max() or 1.0
    if not ex.get("spans"):
        parts = [_mark(tok, a, scale, abs(a) >= cut and a != 0) for tok, a in zip(ex["tokens"], attr)]
        return f'<pre class="tokens">{" ".join(parts)}</pre>'
    code, pos, k, parts = ex["code"], 0, 0, []
    for start, end, n in ex["spans"]:
        a = float(attr[k:k + n].sum())
        k += n
        parts.append(esc(code[pos:start]))
        parts.append(_mark(code[start:end], a, scale, abs(a) >= cut and a != 0))
        pos = end
    parts.append(esc(code[pos:]))
    return f'<pre class="code">{"".join(parts)}</pre>'


def _mark(text: str, a: float, scale: float, strong: bool) -> str:
    if not strong:
        return esc(text)
    rgb = "192,57,43" if a > 0 else "44,127,184"
    alpha = 0.25 + 0.65 * min(abs(a) / scale, 1.0)
    return f'<mark style="background: rgba({rgb},{alpha:.2f})" title="{a:+.4f}">{esc(text)}</mark>'


def champion(c: dict[str, Any] | None) -> str:
    if not c:
        return note("this run was not registered (trained with --no-track or tracking failed)")
    if c.get("status") != "compared":
        return note(f"{c.get('model')} version {c.get('version')}: {c.get('status')}"
                    + (f" — {c['reason']}" if c.get("reason") else ""))
    ev = c["evidence"]
    rows = [["metric", esc(ev["metric"])], ["champion (version " + esc(c["champion_version"]) + ")",
                                             num(ev["champion"])], ["this run", num(ev["challenger"])],
            ["improvement [95% bootstrap CI]", f"{num(ev['improvement'])} [{num(ev['ci_low'])}, {num(ev['ci_high'])}]"],
            ["McNemar p", num(ev["mcnemar_p"])]]
    if c.get("delong"):
        d = c["delong"]
        rows.append(["ROC AUC (DeLong)", f"{num(d['auc_a'])} → {num(d['auc_b'])}, p {num(d['p'])}"])
    verdict = "significantly better" if c.get("significantly_better") else "not significantly better"
    return table(["", ""], rows) + note(f"verdict: {verdict} than the champion")


def resources(res: dict[str, Any]) -> str:
    if not res:
        return note("no resource figures")
    rows = [[esc(t["trial"]), esc(t.get("family")), esc(t.get("state")), num(t.get("wall_s"), 2),
             num(t.get("cpu_s"), 2), num(t.get("peak_rss_mb"), 1), num(t.get("gpu_peak_mb"), 1),
             num(t.get("samples_per_s"), 1)] for t in res.get("trials", [])]
    inf = res.get("inference", {})
    facts = (f"run {res.get('run_seconds', '–')} s; model file {res.get('model_size_mb', '–')} MiB; inference p50 "
             f"{inf.get('p50_ms', '–')} ms, p95 {inf.get('p95_ms', '–')} ms per function (n={inf.get('n_single')}); "
             f"batch {inf.get('batch_rows_per_s', '–')} functions/s; QA took {res.get('qa', {}).get('wall_s', '–')} s")
    return note(facts) + table(["trial", "family", "state", "wall s", "CPU s", "peak RSS MiB", "GPU peak MiB",
                                "training rows/s"], rows)


def environment(env: dict[str, Any]) -> str:
    pk = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
    rows = [["python", esc((env.get("python") or {}).get("version"))], ["packages", esc(pk)],
            ["os", esc((env.get("os") or {}).get("platform"))], ["cpu", esc(json.dumps(env.get("cpu")))],
            ["gpu", esc(json.dumps(env.get("gpu")))], ["git", esc(json.dumps(env.get("git")))],
            ["dataset", esc(json.dumps(env.get("dataset")))]]
    return table(["", ""], rows, "env")


def quarantine(dataset: dict[str, Any], run_dir: Path, limit: int = 10) -> str:
    reasons = dataset.get("bad_reasons") or {}
    text = (f"{dataset.get('rows_bad', 0)} of {dataset.get('rows_read', '–')} rows quarantined"
            + (": " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) if reasons else ""))
    split = dataset.get("split", {})
    text += (f"; duplicates dropped from test: {split.get('test_dropped_exact_duplicates', 0)} exact, "
             f"{split.get('test_dropped_normalised_duplicates', 0)} normalised; from CV validation: "
             f"{split.get('cv_val_dropped_duplicates', 0)}")
    path = run_dir / rundir.QUARANTINE
    rows = []
    if path.is_file():
        with path.open(encoding="utf-8") as fh:
            for line, _ in zip(fh, range(limit)):
                q = json.loads(line)
                rows.append([esc(q.get("line")), esc(q.get("reason")), esc(q.get("detail")),
                             f"<code>{esc(str(q.get('excerpt'))[:120])}</code>"])
    return note(text) + (table(["line", "reason", "detail", "excerpt"], rows) if rows else "")
