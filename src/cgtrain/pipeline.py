"""Runs a TrainingRequest over a run directory: the flow in docs/DESIGN.md.

request -> dataset (+ quarantine, fingerprint) -> leakage-safe splits ->
Optuna study over k-fold CV -> best trial refit on all training data ->
one evaluation on the held-out test split -> model + records in the run dir.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
import pandas as pd
import yaml
from sklearn.exceptions import ConvergenceWarning

from cgtrain.data.loading import LoadedDataset, load_dataset
from cgtrain.data.splits import HoldoutSplit, digests, drop_seen, group_kfold, holdout_split
from cgtrain.evaluate.metrics import compute, majority_baseline, score
from cgtrain.features.featurizer import CodeFeaturizer
from cgtrain.features.tokenizer import CodeTokenizer, token_docs
from cgtrain.errors import RunDirError
from cgtrain.fsutil import atomic_write_json, atomic_write_text
from cgtrain.models import FAMILIES
from cgtrain.registry.artifacts import save_model
from cgtrain.request import RequestError, TrainingRequest, request_to_yaml
from cgtrain.tune import study as studies
from cgtrain.tune.space import grid_configs

MODEL_FILE = "model.skops"


@dataclass(frozen=True)
class Prepared:
    """Everything the study and refit need, derived once from the dataset."""

    dataset: LoadedDataset
    docs: list[str]
    y: np.ndarray
    split: HoldoutSplit
    folds: list[tuple[np.ndarray, np.ndarray]]  # row indices into the full frame
    dropped_val_duplicates: int

    @property
    def n_classes(self) -> int:
        return len(self.dataset.classes)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    leaderboard: pd.DataFrame
    metrics: dict[str, Any]


class FoldCache:
    """Per-fold features, fitted on the fold's training rows only, built once per study."""

    def __init__(self, request: TrainingRequest, prepared: Prepared):
        self.request, self.prepared = request, prepared
        self._features: dict[int, tuple] = {}

    def features(self, k: int):
        if k not in self._features:
            tr, va = self.prepared.folds[k]
            docs, y = self.prepared.docs, self.prepared.y
            feat = make_featurizer(self.request)
            self._features[k] = (feat.fit_transform([docs[i] for i in tr]), y[tr],
                                 feat.transform([docs[i] for i in va]), y[va])
        return self._features[k]

    def tokens(self, k: int):
        tr, va = self.prepared.folds[k]
        docs, y = self.prepared.docs, self.prepared.y
        return [docs[i] for i in tr], y[tr], [docs[i] for i in va], y[va]

    def fold(self, k: int, kind: str):
        return self.features(k) if kind == "features" else self.tokens(k)


def make_featurizer(request: TrainingRequest) -> CodeFeaturizer:
    f = request.features
    return CodeFeaturizer(kind=f.kind, ngram_max=f.ngram_max, max_features=f.max_features,
                          min_df=f.min_df, metrics=f.metrics)


def class_weight(request: TrainingRequest) -> str | None:
    return "balanced" if request.imbalance == "class_weight" else None


def resample(request: TrainingRequest, X, y):
    """SMOTE on the training rows of one fold only (never on validation or test rows)."""
    if request.imbalance != "smote":
        return X, y
    from imblearn.over_sampling import SMOTE

    minority = int(np.bincount(y)[np.bincount(y) > 0].min())
    if minority < 2:
        return X, y
    return SMOTE(k_neighbors=min(5, minority - 1), random_state=request.seed).fit_resample(X, y)


def full_proba(estimator, X, n_classes: int) -> np.ndarray:
    """predict_proba with one column per class, even if a fold lacked a class."""
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    out = np.zeros((proba.shape[0], n_classes))
    out[:, np.asarray(estimator.classes_, dtype=int)] = proba
    return out


def fit_family(request: TrainingRequest, family: str, params: dict, X, y, val=None, on_epoch=None):
    """Fit one family; neural ones also get the validation rows (early stopping) and on_epoch (pruning)."""
    fam = FAMILIES.get(family)
    if fam.input == "features":  # SMOTE interpolates feature vectors; token sequences have none
        X, y = resample(request, X, y)
    estimator = fam.make(params, request.seed, class_weight(request))
    fit_kwargs = {}
    if "val_metric" in estimator.get_params():
        estimator.set_params(val_metric=request.validation.metric)
        if val is not None:
            fit_kwargs = {"X_val": val[0], "y_val": val[1], "on_epoch": on_epoch}
    with warnings.catch_warnings():  # a trial's CV score already says how well a non-converged fit did
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, **fit_kwargs)


# --- preparation ------------------------------------------------------------------
def prepare(request: TrainingRequest, run_dir: Path, say: Callable[[str], None]) -> Prepared:
    ds = load_dataset(request.dataset, request.task, run_dir / "quarantine.jsonl", seed=request.seed)
    if ds.n_bad:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(ds.bad_reasons.items()))
        say(f"quarantined {ds.n_bad} of {ds.n_read} rows ({reasons}) -> {ds.quarantine_path}")
    say(f"{len(ds.frame)} rows, {ds.frame['group'].nunique()} groups, classes {list(ds.classes)}; tokenizing")
    codes = ds.frame["code"].tolist()
    docs = token_docs(codes, request.dataset.language)
    y = ds.frame["label"].to_numpy(dtype=int)
    groups = ds.frame["group"].to_numpy()
    split = holdout_split(y, groups, digests(codes), digests(docs), request.validation.test_fraction, request.seed)
    doc_digests = digests(docs)
    folds, dropped = [], 0
    for tr, va in group_kfold(y[split.train], groups[split.train], request.validation.folds, request.seed):
        tr, va = split.train[tr], split.train[va]
        kept = drop_seen(tr, va, doc_digests)
        dropped += len(va) - len(kept)
        folds.append((tr, kept))
    return Prepared(ds, docs, y, split, folds, dropped)


def dataset_record(request: TrainingRequest, p: Prepared) -> dict[str, Any]:
    ds = p.dataset
    return {
        "path": request.dataset.path, "fingerprint": ds.fingerprint, "rows_read": ds.n_read,
        "rows_bad": ds.n_bad, "bad_reasons": ds.bad_reasons,
        "quarantine": str(ds.quarantine_path) if ds.quarantine_path else None,
        "rows_used": len(ds.frame), "classes": [str(c) for c in ds.classes],
        "class_counts": np.bincount(p.y, minlength=p.n_classes).tolist(),
        "groups": int(ds.frame["group"].nunique()),
        "split": {
            "train_rows": len(p.split.train), "test_rows": len(p.split.test),
            "test_dropped_exact_duplicates": p.split.dropped_exact,
            "test_dropped_normalised_duplicates": p.split.dropped_normalised,
            "cv_folds": len(p.folds), "cv_val_dropped_duplicates": p.dropped_val_duplicates,
        },
    }


# --- the run ----------------------------------------------------------------------
def check_run_dir(run_dir: Path, request: TrainingRequest, resume: bool) -> None:
    saved = run_dir / "request.yaml"
    if resume:
        if not saved.is_file():
            raise RunDirError(f"--resume: {run_dir} holds no run (no request.yaml); drop --resume to start one")
        before = yaml.safe_load(saved.read_text(encoding="utf-8"))
        now = request.model_dump(mode="json")
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            raise RunDirError(f"--resume: the request differs from the one in {saved} in: {', '.join(changed)}; "
                              f"resume with the same request, or start a new --run-dir")
    elif (run_dir / "study.db").exists():
        raise RunDirError(f"{run_dir} already holds a run; add --resume to continue it, or choose another --run-dir")


def train(request: TrainingRequest, run_dir: str | Path, resume: bool = False,
          say: Callable[[str], None] = print, progress: Callable[[int, int, float | None], None] | None = None
          ) -> RunResult:
    run_dir = Path(run_dir)
    check_run_dir(run_dir, request, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "request.yaml", request_to_yaml(request))
    started = time.time()
    prepared = prepare(request, run_dir, say)
    atomic_write_json(run_dir / "dataset.json", dataset_record(request, prepared))
    study = run_study(request, run_dir, prepared, say, progress)
    board = studies.leaderboard(study, request.validation.metric)
    board.to_csv(run_dir / "leaderboard.csv", index=False)
    metrics = refit_and_test(request, run_dir, prepared, studies.best_trial(study), say)
    atomic_write_json(run_dir / "run.json", {"status": "finished", "seconds": round(time.time() - started, 1),
                                             "trials": len(board)})
    return RunResult(run_dir, board, metrics)


def run_study(request, run_dir, prepared, say, progress) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spaces, fixed = studies.candidate_spaces(request), studies.fixed_params(request)
    grid = grid_configs(spaces) if request.hpo.sampler == "grid" else None
    study = studies.open_study(f"sqlite:///{run_dir / 'study.db'}", request, grid)
    requeued = studies.requeue_stale(study)
    if requeued:
        say(f"resume: {requeued} interrupted trial(s) queued again with the same parameters")
    done = studies.counted_trials(study)
    target = min(request.hpo.n_trials, len(grid)) if grid is not None else request.hpo.n_trials
    remaining = max(0, target - done)
    if done:
        say(f"resume: {done} finished trial(s) kept, {remaining} to run")
    cache = FoldCache(request, prepared)
    objective = studies.make_objective(spaces, fixed, grid, make_evaluator(request, prepared, cache))

    def report(study_: optuna.Study, _trial) -> None:
        if progress:
            best = max((t.value for t in study_.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))),
                       default=None)
            progress(studies.counted_trials(study_), target, best)

    if remaining:
        study.optimize(objective, n_trials=remaining, timeout=request.hpo.timeout_s,
                       catch=(Exception,), callbacks=[report])
    return study


def make_evaluator(request: TrainingRequest, prepared: Prepared, cache: FoldCache):
    metric = request.validation.metric

    def evaluate(family: str, params: dict, trial: optuna.Trial) -> studies.TrialResult:
        start, scores, epochs = time.perf_counter(), [], []
        for k in range(len(prepared.folds)):
            X_tr, y_tr, X_va, y_va = cache.fold(k, FAMILIES.get(family).input)
            model = fit_family(request, family, params, X_tr, y_tr, val=(X_va, y_va),
                               on_epoch=epoch_reporter(trial, k, params))
            scores.append(score(metric, y_va, full_proba(model, X_va, prepared.n_classes)))
            if hasattr(model, "history_"):  # neural: reported per epoch already; keep the epoch chosen
                epochs.append(int(model.history_["best_epoch"]) + 1)
            else:
                trial.report(scores[-1], k)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        if epochs:
            trial.set_user_attr("best_epochs", epochs)
        return studies.TrialResult(family, params, scores, time.perf_counter() - start)

    return evaluate


def _epochs(params: dict) -> int:
    return int(params.get("epochs", 10))


def epoch_reporter(trial: optuna.Trial, fold: int, params: dict):
    """Per-epoch validation metric -> the trial, so a pruner can stop a bad neural trial early."""
    def on_epoch(epoch: int, value: float) -> None:
        if value == value:  # NaN when there is no validation set
            trial.report(value, fold * _epochs(params) + epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

    return on_epoch


def refit_and_test(request, run_dir: Path, p: Prepared, best, say) -> dict[str, Any]:
    from sklearn.pipeline import Pipeline

    family = best.user_attrs["family"]
    params = refit_params(json.loads(best.user_attrs["params"]), best.user_attrs.get("best_epochs"))
    say(f"refit: trial {best.number} ({family}) on {len(p.split.train)} training rows")
    train_docs = [p.docs[i] for i in p.split.train]
    test_docs = [p.docs[i] for i in p.split.test]
    steps = [("tokens", CodeTokenizer(language=request.dataset.language))]
    if FAMILIES.get(family).input == "features":
        featurizer = make_featurizer(request)
        X_train, X_test = featurizer.fit_transform(train_docs), featurizer.transform(test_docs)
        steps.append(("features", featurizer))
    else:
        X_train, X_test = train_docs, test_docs
    model = fit_family(request, family, params, X_train, p.y[p.split.train])
    proba = full_proba(model, X_test, p.n_classes)
    test = compute(p.y[p.split.test], proba)
    write_test_predictions(run_dir, p, proba)
    pipeline = Pipeline([*steps, ("model", model)])
    checksum = save_model(pipeline, run_dir / MODEL_FILE)
    atomic_write_json(run_dir / "model.json", {
        "format": "skops", "file": MODEL_FILE, "sha256": checksum, "family": family, "params": params,
        "classes": [c if isinstance(c, (int, str, bool)) else str(c) for c in p.dataset.classes],
        "task": request.task, "language": request.dataset.language, "trial": best.number,
    })
    folds = best.user_attrs["fold_scores"]
    metrics = {
        "test": test,
        "cv": {"metric": request.validation.metric, "mean": float(np.mean(folds)), "std": float(np.std(folds)),
               "folds": folds},
        "baseline_majority": majority_baseline(p.y[p.split.train], p.y[p.split.test]),
        "best": {"trial": best.number, "family": family, "params": params},
        "n_train": len(p.split.train), "n_test": len(p.split.test),
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def write_test_predictions(run_dir: Path, p: Prepared, proba: np.ndarray) -> None:
    """Per-row held-out predictions: paired tests against another model need the same rows."""
    ids = p.dataset.frame["id"].to_numpy()[p.split.test]
    lines = [json.dumps({"id": str(i), "y_true": int(t), "proba": [round(float(v), 8) for v in row]})
             for i, t, row in zip(ids, p.y[p.split.test], proba)]
    atomic_write_text(run_dir / "test_predictions.jsonl", "\n".join(lines) + "\n")


def refit_params(params: dict, best_epochs: list[int] | None) -> dict:
    """Neural refits have no validation rows: train for the epochs early stopping chose in CV."""
    if not best_epochs:
        return params
    return {**params, "epochs": max(1, int(round(float(np.median(best_epochs))))), "patience": None}


def load_run_request(run_dir: Path) -> dict:
    path = Path(run_dir) / "request.yaml"
    if not path.is_file():
        raise RequestError([f"no request.yaml in {run_dir}"], str(run_dir))
    return yaml.safe_load(path.read_text(encoding="utf-8"))
