"""The unsupervised flow (task: anomaly / clustering) over a run directory.

Same records as a supervised run, from the same pieces (loading + quarantine, group
split, features fitted on training rows only, the Optuna study, skops model):

    dataset -> group holdout split -> study: family + params scored by k-fold CV
    -> refit on the training rows -> metrics on train and held-out test rows
    -> per-row scores / cluster ids for every row -> model + records

CV scores: anomaly -> the metric (precision@k, ROC/PR-AUC) of the validation rows'
scores against their labels; clustering -> silhouette of the validation rows'
predicted clusters, or adjusted Rand / NMI against labels. Anomaly detection
without labels has nothing to select by: the first candidate is fitted with its
default params, and the run says so.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import pandas as pd

from cgtrain.data.formats import DatasetError
from cgtrain.evaluate.metrics import METRICS, anomaly_metrics, clustering_metrics, silhouette
from cgtrain.fsutil import atomic_write_json, atomic_write_text
from cgtrain.models import FAMILIES
from cgtrain.rundir import MODEL_FILE
from cgtrain.core.folds import FoldCache
from cgtrain.core.prepared import Prepared, model_inputs
from cgtrain.core.runs import RunResult, open_run
from cgtrain.core.fit import input_tokenizer, make_featurizer
from cgtrain.artifacts.files import save_model
from cgtrain.request import TrainingRequest
from cgtrain.tune import study as studies
from cgtrain.tune.space import grid_configs
from cgtrain import rundir
from cgtrain.quiet import optuna_quiet

UNSUPERVISED_TASKS = ("anomaly", "clustering")
LABEL_METRICS = ("precision_at_k", "roc_auc", "pr_auc", "adjusted_rand", "normalized_mutual_info")
ROWS_FILE = rundir.UNSUPERVISED_ROWS


def fit_unsupervised(request: TrainingRequest, family: str, params: dict, X) -> Any:
    return FAMILIES.get(family).make(params, request.seed, None, task=request.task).fit(X)


def fold_score(task: str, metric: str, model, X, y: np.ndarray) -> float:
    """The validation rows' metric; NaN when it is undefined there (e.g. no anomaly among them)."""
    labelled = y >= 0
    if task == "anomaly":
        scores = model.anomaly_score(X)[labelled]
        y = y[labelled]
        if metric != "precision_at_k" and len(np.unique(y)) < 2:
            return float("nan")
        return float(METRICS.get(metric).fn(y, None, scores, False))
    clusters = model.predict(X)
    if metric == "silhouette":
        return silhouette(X, clusters)
    if not labelled.any():
        return float("nan")
    return float(METRICS.get(metric).fn(y[labelled], clusters[labelled], None, False))


def make_evaluator(request: TrainingRequest, p: Prepared, cache: FoldCache):
    metric = request.validation.metric

    def evaluate(family: str, params: dict, trial: optuna.Trial) -> studies.TrialResult:
        start, scores = time.perf_counter(), []
        for k in range(len(p.folds)):
            X_tr, _, X_va, y_va = cache.features(k)
            value = fold_score(request.task, metric, fit_unsupervised(request, family, params, X_tr), X_va, y_va)
            if value == value:  # folds where the metric is undefined are left out
                scores.append(value)
                trial.report(value, k)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        if not scores:
            why = ("no labelled anomaly (or no normal row) in any validation fold" if request.task == "anomaly"
                   else "fewer than 2 clusters (noise aside) in every validation fold")
            raise ValueError(f"{metric} is undefined for these params: {why}; lower validation.folds, "
                             f"or widen the search space")
        return studies.TrialResult(family, params, scores, time.perf_counter() - start)

    return evaluate


def can_search(request: TrainingRequest, p: Prepared) -> bool:
    """Whether the metric can be computed: label metrics need labelled training rows."""
    metric, y = request.validation.metric, p.y[p.split.train]
    if metric not in LABEL_METRICS:
        return True
    has_labels = (y >= 0).any() and (request.task != "anomaly" or len(np.unique(y[y >= 0])) == 2)
    if not has_labels and request.task == "clustering":
        raise DatasetError(f"validation.metric {metric} compares clusters with labels, but no training row of "
                           f"{request.dataset.path} has one; use validation.metric: silhouette, or set "
                           f"dataset.label_column")
    return bool(has_labels)


def run_study(request: TrainingRequest, run_dir: Path, p: Prepared, say, progress) -> optuna.Study:
    """The study, Optuna's per-trial log lines off for its duration."""
    with optuna_quiet():
        return _run_study(request, run_dir, p, say, progress)


def _run_study(request: TrainingRequest, run_dir: Path, p: Prepared, say, progress) -> optuna.Study:
    spaces, fixed = studies.candidate_spaces(request), studies.fixed_params(request)
    grid = grid_configs(spaces) if request.hpo.sampler == "grid" else None
    study = studies.open_study(f"sqlite:///{run_dir / rundir.STUDY_DB}", request, grid)
    if studies.requeue_stale(study):
        say("resume: interrupted trial(s) queued again with the same parameters")
    target = min(request.hpo.n_trials, len(grid)) if grid is not None else request.hpo.n_trials
    remaining = max(0, target - studies.counted_trials(study))
    objective = studies.make_objective(spaces, fixed, grid, make_evaluator(request, p, FoldCache(request, p)))

    def report(study_: optuna.Study, _trial) -> None:
        if progress:
            progress(studies.counted_trials(study_), target, studies.best_value(study_))

    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=request.hpo.timeout_s, catch=(Exception,),
                       callbacks=[report])
    return study


def unsearched(request: TrainingRequest, say) -> tuple[dict[str, Any], pd.DataFrame]:
    cand = request.candidates[0]
    say(f"no labels to select by: fitting {cand.family} with its default params (its scores are not validated)")
    best = {"trial": None, "family": cand.family, "params": dict(cand.params), "fold_scores": []}
    board = pd.DataFrame([{"trial": 0, "state": "complete", "family": cand.family,
                           "params": json.dumps(cand.params, sort_keys=True), f"cv_{request.validation.metric}_mean":
                           float("nan"), f"cv_{request.validation.metric}_std": float("nan"), "folds": "[]",
                           "fit_seconds": 0.0, "error": "not searched: no labels"}])
    return best, board


def train_unsupervised(request: TrainingRequest, run_dir: str | Path, resume: bool = False,
                       say: Callable[[str], None] = print,
                       progress: Callable[[int, int, float | None], None] | None = None,
                       force: bool = False) -> RunResult:
    run_dir, started, p = open_run(request, run_dir, resume, say, force)
    if can_search(request, p):
        study = run_study(request, run_dir, p, say, progress)
        board = studies.leaderboard(study, request.validation.metric)
        trial = studies.best_trial(study)
        best = {"trial": trial.number, "family": trial.user_attrs["family"],
                "params": json.loads(trial.user_attrs["params"]), "fold_scores": trial.user_attrs["fold_scores"]}
    else:
        best, board = unsearched(request, say)
    board.to_csv(run_dir / rundir.LEADERBOARD, index=False)
    metrics = refit_and_score(request, run_dir, p, best, say)
    atomic_write_json(run_dir / rundir.RUN, {"status": "finished", "seconds": round(time.time() - started, 1),
                                             "trials": len(board)})
    return RunResult(run_dir, board, metrics)


def refit_and_score(request: TrainingRequest, run_dir: Path, p: Prepared, best: dict, say) -> dict[str, Any]:
    from sklearn.pipeline import Pipeline

    family, params = best["family"], best["params"]
    say(f"refit: {family} on {len(p.split.train)} training rows")
    featurizer = make_featurizer(request)
    X_train = featurizer.fit_transform(model_inputs(p, p.split.train))
    model = fit_unsupervised(request, family, params, X_train)
    X_all = featurizer.transform(model_inputs(p, np.arange(len(p.y))))
    split = np.full(len(p.y), "excluded", dtype=object)  # test rows duplicated in train are in neither
    split[p.split.train], split[p.split.test] = "train", "test"
    if request.task == "anomaly":
        values = model.anomaly_score(X_all)
        evaluate = lambda idx: anomaly_metrics(values[idx], p.y[idx])  # noqa: E731
    else:
        values = model.predict(X_all)
        if hasattr(model, "labels_"):  # the fitted clustering of the training rows, not its approximation
            values[p.split.train] = model.labels_
        evaluate = lambda idx: clustering_metrics(X_all[idx], values[idx], p.y[idx])  # noqa: E731
    write_rows(run_dir, request, p, values, split, model)
    checksum = save_model(Pipeline([("tokens", input_tokenizer(request)), ("features", featurizer),
                                    ("model", model)]), run_dir / MODEL_FILE)
    folds = best["fold_scores"]
    metrics = {
        "task": request.task, "test": evaluate(p.split.test), "train": evaluate(p.split.train),
        "cv": {"metric": request.validation.metric, "mean": float(np.mean(folds)) if folds else None,
               "std": float(np.std(folds)) if folds else None, "folds": folds},
        "best": {"trial": best["trial"], "family": family, "params": params},
        "n_train": len(p.split.train), "n_test": len(p.split.test),
    }
    if request.task == "anomaly" and "precision_at_k" in metrics["test"]:  # a random ranking's expectation
        labelled = p.y[p.split.test][p.y[p.split.test] >= 0]
        metrics["baseline_random"] = {"precision_at_k": float(labelled.mean())}
    atomic_write_json(run_dir / rundir.MODEL_JSON, {
        "format": "skops", "file": MODEL_FILE, "sha256": checksum, "family": family, "params": params,
        "classes": [], "task": request.task, "language": request.dataset.language, "trial": best["trial"],
        **({"threshold": model.threshold_} if request.task == "anomaly" else {}),
    })
    atomic_write_json(run_dir / rundir.METRICS, metrics)
    return metrics


def write_rows(run_dir: Path, request: TrainingRequest, p: Prepared, values: np.ndarray, split: np.ndarray,
               model) -> None:
    """One line per row of the dataset: id, split, score + anomaly flag or cluster id, label if any."""
    ids, classes = p.dataset.frame["id"].to_numpy(), p.dataset.classes
    lines = []
    for i, (rid, value, part, y) in enumerate(zip(ids, values, split, p.y)):
        row: dict[str, Any] = {"id": str(rid), "split": part}
        if request.task == "anomaly":
            row.update(score=round(float(value), 8), anomaly=int(value > model.threshold_))
        else:
            row["cluster"] = int(value)
        if y >= 0:
            label = classes[int(y)]
            row["label"] = label if isinstance(label, (int, str, bool)) else str(label)
        lines.append(json.dumps(row))
    atomic_write_text(run_dir / ROWS_FILE[request.task], "\n".join(lines) + ("\n" if lines else ""))
