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

from cgtrain.data.conflicts import apply_policy as apply_conflict_policy
from cgtrain.data.loading import LoadedDataset, load_dataset
from cgtrain.data.splits import HoldoutSplit, digests, drop_seen, group_kfold, holdout_split
from cgtrain.evaluate.metrics import compute, majority_baseline, mean_baseline, score
from cgtrain.features.featurizer import CodeFeaturizer
from cgtrain.features.tabular import CodeColumnTokenizer, TabularFeaturizer, row_texts, table_input
from cgtrain.features.tokenizer import CodeTokenizer, token_docs
from cgtrain.errors import RunDirError
from cgtrain.fsutil import atomic_write_json, atomic_write_text
from cgtrain.models import FAMILIES
from cgtrain.registry.artifacts import save_model
from cgtrain.request import RequestError, TrainingRequest, request_to_yaml
from cgtrain.tune import automl, ensembles, warm
from cgtrain.tune import study as studies
from cgtrain.tune.budget import Budget
from cgtrain.tune.hooks import TrialHooks
from cgtrain.tune.space import grid_configs

MODEL_FILE = "model.skops"
HF_DIR = "hf_model"  # fine-tuned encoders: safetensors + tokenizer, for AutoModel.from_pretrained


@dataclass(frozen=True)
class Prepared:
    """Everything the study and refit need, derived once from the dataset."""

    dataset: LoadedDataset
    docs: list[str]
    y: np.ndarray
    split: HoldoutSplit
    folds: list[tuple[np.ndarray, np.ndarray]]  # row indices into the full frame
    dropped_val_duplicates: int
    use_code: bool = True  # False: table columns only (docs are empty)
    label_conflicts: dict | None = None  # data.conflicts.ConflictReport as a dict; None: not checked

    @property
    def n_classes(self) -> int:
        return len(self.dataset.classes)

    @property
    def regression(self) -> bool:
        return self.y.dtype.kind == "f"


def model_inputs(p: Prepared, idx) -> list[str] | pd.DataFrame:
    """What featurizers consume for rows `idx`: token docs, or a frame of table (+ code) columns."""
    if p.dataset.table is None:
        return [p.docs[i] for i in idx]
    return table_input(p.dataset.table, idx, p.docs if p.use_code else None)


def outputs(model, X, p: Prepared) -> np.ndarray:
    """Class probabilities (n, k); predicted values (n,) for regression."""
    if p.regression:
        return np.asarray(model.predict(X), dtype=np.float64)
    return full_proba(model, X, p.n_classes)


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
            self._features[k] = (feat.fit_transform(model_inputs(self.prepared, tr)), y[tr],
                                 feat.transform(model_inputs(self.prepared, va)), y[va])
        return self._features[k]

    def tokens(self, k: int):
        tr, va = self.prepared.folds[k]
        docs, y = self.prepared.docs, self.prepared.y
        return [docs[i] for i in tr], y[tr], [docs[i] for i in va], y[va]

    def code(self, k: int):
        """Raw code strings, for families with their own tokenizer (pre-trained encoders)."""
        tr, va = self.prepared.folds[k]
        codes, y = raw_codes(self.prepared), self.prepared.y
        return [codes[i] for i in tr], y[tr], [codes[i] for i in va], y[va]

    def fold(self, k: int, kind: str):
        if kind == "code":
            return self.code(k)
        return self.features(k) if kind == "features" else self.tokens(k)


def raw_codes(p: Prepared) -> list[str]:
    return p.dataset.frame["code"].tolist()


def make_featurizer(request: TrainingRequest) -> CodeFeaturizer | TabularFeaturizer:
    f, ds = request.features, request.dataset
    code = None if ds.code_column is None else CodeFeaturizer(
        kind=f.kind, ngram_max=f.ngram_max, max_features=f.max_features, min_df=f.min_df, metrics=f.metrics)
    if not (ds.numeric_columns or ds.categorical_columns):
        return code
    return TabularFeaturizer(tuple(ds.numeric_columns), tuple(ds.categorical_columns), code)


def input_tokenizer(request: TrainingRequest):
    """The saved pipeline's first step: raw code -> token docs (of the code column, for table input)."""
    ds = request.dataset
    if not (ds.numeric_columns or ds.categorical_columns):
        return CodeTokenizer(language=ds.language)
    return CodeColumnTokenizer(language=ds.language) if ds.code_column is not None else "passthrough"


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
    estimator = fam.make(params, request.seed, class_weight(request), task=request.task)
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
    conflicts = None
    if request.dataset.code_column is not None and request.task in ("binary", "multiclass"):
        ds, report = apply_conflict_policy(ds, request.dataset.label_conflicts, run_dir)
        conflicts = report.as_dict()
        if report.rows:
            say(f"label conflicts: {report.rows} rows in {report.bodies} code bodies carry more than one label "
                + (f"-> dropped, listed in {report.path}" if report.dropped else
                   "(kept; dataset.label_conflicts=drop removes them)"))
    what = f"classes {list(ds.classes)}" if ds.classes else f"task {request.task}"
    say(f"{len(ds.frame)} rows, {ds.frame['group'].nunique()} groups, {what}"
        + ("; tokenizing" if request.dataset.code_column is not None else ""))
    codes = ds.frame["code"].tolist()
    use_code = request.dataset.code_column is not None
    docs = token_docs(codes, request.dataset.language) if use_code else codes
    y = ds.frame["label"].to_numpy(dtype=float if request.task == "regression" else int)
    groups = ds.frame["group"].to_numpy()
    doc_digests = digests(row_texts(docs, ds.table))
    split = holdout_split(y, groups, digests(row_texts(codes, ds.table)), doc_digests,
                          request.validation.test_fraction, request.seed)
    folds, dropped = [], 0
    for tr, va in group_kfold(y[split.train], groups[split.train], request.validation.folds, request.seed):
        tr, va = split.train[tr], split.train[va]
        kept = drop_seen(tr, va, doc_digests)
        dropped += len(va) - len(kept)
        folds.append((tr, kept))
    return Prepared(ds, docs, y, split, folds, dropped, use_code, conflicts)


def dataset_record(request: TrainingRequest, p: Prepared) -> dict[str, Any]:
    ds = p.dataset
    return {
        "path": request.dataset.path, "fingerprint": ds.fingerprint, "rows_read": ds.n_read,
        "rows_bad": ds.n_bad, "bad_reasons": ds.bad_reasons,
        "quarantine": str(ds.quarantine_path) if ds.quarantine_path else None,
        "rows_used": len(ds.frame), "classes": [str(c) for c in ds.classes],
        **label_record(request, p),
        "label_conflicts": p.label_conflicts,
        "groups": int(ds.frame["group"].nunique()),
        "split": {
            "train_rows": len(p.split.train), "test_rows": len(p.split.test),
            "test_dropped_exact_duplicates": p.split.dropped_exact,
            "test_dropped_normalised_duplicates": p.split.dropped_normalised,
            "cv_folds": len(p.folds), "cv_val_dropped_duplicates": p.dropped_val_duplicates,
        },
    }


def label_record(request: TrainingRequest, p: Prepared) -> dict[str, Any]:
    """Target statistics (regression) or class counts (-1: unlabelled rows of unsupervised tasks)."""
    ds, out = request.dataset, {}
    if ds.numeric_columns or ds.categorical_columns:
        out["columns"] = {"numeric": ds.numeric_columns, "categorical": ds.categorical_columns}
    if p.regression:
        out["target"] = {k: float(getattr(np, k)(p.y)) for k in ("mean", "std", "min", "max")}
        return out
    out["class_counts"] = np.bincount(p.y[p.y >= 0], minlength=p.n_classes).tolist()
    if (p.y < 0).any():
        out["unlabelled"] = int((p.y < 0).sum())
    return out


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


def open_run(request: TrainingRequest, run_dir: str | Path, resume: bool, say: Callable[[str], None]
             ) -> tuple[Path, float, Prepared]:
    """Every task's first steps: check the run dir, record the request, load and split the data."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, request, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "request.yaml", request_to_yaml(request))
    started = time.time()
    prepared = prepare(request, run_dir, say)
    atomic_write_json(run_dir / "dataset.json", dataset_record(request, prepared))
    return run_dir, started, prepared


def train(request: TrainingRequest, run_dir: str | Path, resume: bool = False,
          say: Callable[[str], None] = print, progress: Callable[[int, int, float | None], None] | None = None
          ) -> RunResult:
    if request.task in ("anomaly", "clustering"):  # no target to fit: the unsupervised flow
        from cgtrain.unsupervised import train_unsupervised

        return train_unsupervised(request, run_dir, resume=resume, say=say, progress=progress)
    run_dir, started, prepared = open_run(request, run_dir, resume, say)
    study = run_study(request, run_dir, prepared, say, progress, started=started)
    board = studies.leaderboard(study, request.validation.metric)
    board.to_csv(run_dir / "leaderboard.csv", index=False)
    best, ensemble = studies.best_trial(study), None
    if request.hpo.ensemble != "none":  # voting / stacking of the top trials, kept only if CV says it is better
        ensemble = ensembles.choose_ensemble(request, run_dir, prepared, study, say, started)
    metrics = refit_and_test(request, run_dir, prepared, best, say, ensemble=(study, ensemble) if ensemble else None)
    atomic_write_json(run_dir / "run.json", {"status": "finished", "seconds": round(time.time() - started, 1),
                                             "trials": len(board)})
    # calibration, audit, explanations, resources, report.html (classification); never fails the run
    if request.qa.enabled and not prepared.regression:
        from cgtrain.evaluate.qa import try_run_qa

        try_run_qa(request, run_dir, prepared, say)
    return RunResult(run_dir, board, metrics)


def run_study(request, run_dir, prepared, say, progress, started: float | None = None) -> optuna.Study:
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
    budget = Budget.of(request, started)
    hooks = TrialHooks(run_dir, request.seed, store_oof=True, measure_costs=len(studies.objectives(request)) > 1,
                       limit_s=budget.trial_limit if budget else None)
    objective = studies.make_objective(spaces, fixed, grid, make_evaluator(request, prepared, cache, hooks),
                                       studies.objectives(request))

    def report(study_: optuna.Study, _trial) -> None:
        if progress:
            progress(studies.counted_trials(study_), target, studies.best_value(study_))

    if remaining and request.hpo.warm_start and not done:  # best params of earlier runs of this name first
        warm.enqueue_previous_best(study, run_dir, request, spaces, say)
    if remaining and budget is not None:  # cost-aware AutoML within a wall-clock budget
        automl.optimize(study, objective, request, prepared, budget, remaining, say, callbacks=[report])
    elif remaining:
        study.optimize(objective, n_trials=remaining, timeout=request.hpo.timeout_s,
                       catch=(Exception,), callbacks=[report])
    goals = studies.objectives(request)
    if len(goals) > 1:  # metric vs latency / size: the trade-offs, not one winner
        atomic_write_json(run_dir / "pareto_front.json", studies.pareto_front(study, goals))
    return study


def make_evaluator(request: TrainingRequest, prepared: Prepared, cache: FoldCache, hooks: TrialHooks | None = None):
    """k-fold CV of one trial; `hooks` store out-of-fold predictions, apply fidelity and time limits."""
    metric = request.validation.metric
    hooks = hooks or TrialHooks(store_oof=False)

    def evaluate(family: str, params: dict, trial: optuna.Trial) -> studies.TrialResult:
        start, scores, epochs = time.perf_counter(), [], []
        try:
            for k in range(len(prepared.folds)):
                X_tr, y_tr, X_va, y_va = cache.fold(k, FAMILIES.get(family).input)
                X_tr, y_tr = hooks.before_fold(trial, k, X_tr, y_tr)
                model = fit_family(request, family, params, X_tr, y_tr, val=(X_va, y_va),
                                   on_epoch=hooks.on_epoch(trial, epoch_reporter(trial, k, params)))
                proba = outputs(model, X_va, prepared)
                scores.append(score(metric, y_va, proba))
                hooks.after_fold(trial, k, model, X_va, proba)
                if hasattr(model, "history_"):  # neural: reported per epoch already; keep the epoch chosen
                    epochs.append(int(model.history_["best_epoch"]) + 1)
                else:
                    trial.report(scores[-1], k)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
        except BaseException:
            hooks.forget(trial)
            raise
        if epochs:
            trial.set_user_attr("best_epochs", epochs)
        hooks.trial_done(trial)
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


def refit_and_test(request, run_dir: Path, p: Prepared, best, say, ensemble=None) -> dict[str, Any]:
    """Refit the best trial (or, given `ensemble=(study, choice)`, the chosen ensemble) and test it once."""
    from sklearn.pipeline import Pipeline

    family = best.user_attrs["family"]
    params = refit_params(json.loads(best.user_attrs["params"]), best.user_attrs.get("best_epochs"))
    say(f"refit: trial {best.number} ({family}) on {len(p.split.train)} training rows" if ensemble is None else
        f"refit: {ensemble[1].method} ensemble of trials {ensemble[1].trials} on {len(p.split.train)} training rows")
    train_docs, test_docs = model_inputs(p, p.split.train), model_inputs(p, p.split.test)
    steps = [("tokens", input_tokenizer(request))]
    if ensemble is not None:  # members share one featurizer inside the ensemble model
        model, params = ensembles.refit_ensemble(request, ensemble[1], ensemble[0], train_docs, p.y[p.split.train],
                                                 fit_family, make_featurizer, refit_params)
        family, X_test = "ensemble", test_docs
    elif FAMILIES.get(family).input == "code":  # the model tokenizes raw code itself: no CodeTokenizer step
        codes = raw_codes(p)
        X_train, X_test = [codes[i] for i in p.split.train], [codes[i] for i in p.split.test]
        steps = [("code", "passthrough")]
    elif FAMILIES.get(family).input == "features":
        featurizer = make_featurizer(request)
        X_train, X_test = featurizer.fit_transform(train_docs), featurizer.transform(test_docs)
        steps.append(("features", featurizer))
    else:
        X_train, X_test = train_docs, test_docs
    if ensemble is None:
        model = fit_family(request, family, params, X_train, p.y[p.split.train])
    proba = outputs(model, X_test, p)
    test = compute(p.y[p.split.test], proba)
    write_test_predictions(run_dir, p, proba)
    pipeline = Pipeline([*steps, ("model", model)])
    checksum = save_model(pipeline, run_dir / MODEL_FILE)
    if hasattr(model, "save_pretrained"):  # a fine-tuned encoder: also a directory transformers loads
        model.save_pretrained(run_dir / HF_DIR)
    atomic_write_json(run_dir / "model.json", {
        "format": "skops", "file": MODEL_FILE, "sha256": checksum, "family": family, "params": params,
        **({"hf_dir": HF_DIR} if hasattr(model, "save_pretrained") else {}),
        "classes": [c if isinstance(c, (int, str, bool)) else str(c) for c in p.dataset.classes],
        "task": request.task, "language": request.dataset.language, "trial": best.number,
    })
    folds = best.user_attrs["fold_scores"] if ensemble is None else ensemble[1].fold_scores
    metrics = {
        "test": test,
        "cv": {"metric": request.validation.metric, "mean": float(np.mean(folds)), "std": float(np.std(folds)),
               "folds": folds},
        **({"baseline_mean": mean_baseline(p.y[p.split.train], p.y[p.split.test])} if p.regression else
           {"baseline_majority": majority_baseline(p.y[p.split.train], p.y[p.split.test])}),
        "best": {"trial": best.number, "family": family, "params": params},
        "n_train": len(p.split.train), "n_test": len(p.split.test),
    }
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


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
