"""Runs a TrainingRequest over a run directory: the flow in docs/DESIGN.md.

request -> dataset (+ quarantine, fingerprint) -> leakage-safe splits ->
Optuna study over k-fold CV -> best trial refit on all training data ->
one evaluation on the held-out test split -> model + records in the run dir.
"""
from __future__ import annotations

import json
import logging
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
from cgtrain.data.loading import LoadedDataset, current_fingerprint, load_dataset
from cgtrain.data.splits import (HoldoutSplit, check_folds, check_sizes, digests, drop_seen, group_kfold,
                                 holdout_split)
from cgtrain.evaluate.metrics import compute, majority_baseline, mean_baseline, score
from cgtrain.features.featurizer import CodeFeaturizer
from cgtrain.features import ngram_counts
from cgtrain.features.ngram_counts import NgramCounts
from cgtrain.features.settings import code_featurizer, feature_settings, settings_key, token_mode
from cgtrain.features.token_cache import cached_token_docs
from cgtrain.features.tabular import CodeColumnTokenizer, TabularFeaturizer, row_texts, table_input
from cgtrain.features.tokenizer import CodeTokenizer
from cgtrain import interrupts
from cgtrain.errors import RunDirError
from cgtrain.rundir_lock import run_dir_lock
from cgtrain.fsutil import atomic_write_json, atomic_write_text
from cgtrain.models import FAMILIES
from cgtrain.registry.artifacts import save_model
from cgtrain.request import RequestError, TrainingRequest, request_to_yaml
from cgtrain.tune import automl, ensembles, parallel, warm
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


def model_inputs(p: Prepared, idx, docs: list[str] | None = None):
    """What featurizers consume for rows `idx`: token docs, or a frame of table (+ code) columns.
    With idx None: a function of idx (over `docs`, the prepared token docs by default)."""
    docs = p.docs if docs is None else docs
    if idx is None:
        return lambda rows: model_inputs(p, rows, docs)
    if p.dataset.table is None:
        return [docs[i] for i in idx]
    return table_input(p.dataset.table, idx, docs if p.use_code else None)


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
    """Per-fold features, fitted on the fold's training rows only, built once per featurisation and kept
    for the trials that share it (the `KEEP` most recently used featurisations stay in memory)."""

    KEEP = 2

    def __init__(self, request: TrainingRequest, prepared: Prepared):
        self.request, self.prepared = request, prepared
        self._features: dict[tuple[str, int], tuple] = {}
        self._used: list[str] = []  # settings keys, least recently used first
        self.feat_seconds: dict[str, list[float]] = {}  # settings key -> seconds per fold built
        self._counts: dict[tuple, NgramCounts] = {}  # n-gram counts of all rows per token mode (see ngram_counts)
        self.count_seconds, self._count_s = 0.0, 0.0  # spent counting n-grams (once per token mode); the last pass

    def _ngram_counts(self, docs: list[str], mode: tuple) -> NgramCounts:
        self._count_s = 0.0
        if mode not in self._counts:
            start = time.perf_counter()
            self._counts = {mode: NgramCounts(docs)}  # one token mode in memory at a time
            self._count_s = time.perf_counter() - start
            self.count_seconds += self._count_s
        return self._counts[mode]

    def feature_cost(self, settings: dict | None = None) -> float:
        """Estimated seconds to build one fold's features of a new featurisation (the dearest so far, plus a
        count pass when its token mode has none yet)."""
        per_fold = max((max(v) for v in self.feat_seconds.values()), default=0.0)
        full = self._settings(settings)
        recount = ngram_counts.supports(full) and token_mode(full) not in self._counts
        return per_fold + (self.count_seconds if recount and self._counts else 0.0)

    def has(self, k: int, settings: dict | None = None) -> bool:
        return (settings_key(self._settings(settings)), k) in self._features

    def _settings(self, settings: dict | None) -> dict:
        return feature_settings(self.request.features, settings)

    def features(self, k: int, settings: dict | None = None):
        full = self._settings(settings)
        key = settings_key(full)
        if (key, k) not in self._features:
            start = time.perf_counter()
            tr, va = self.prepared.folds[k]
            y = self.prepared.y
            docs = docs_for(self.request, self.prepared, full)
            if self.prepared.dataset.table is None and self.prepared.use_code and ngram_counts.supports(full):
                X_tr, X_va = self._ngram_counts(docs, token_mode(full)).fold(tr, va, full)
                self._features[(key, k)] = (X_tr, y[tr], X_va, y[va])
                start += self._count_s
            else:
                feat = make_featurizer(self.request, full)
                inputs = model_inputs(self.prepared, None, docs)
                self._features[(key, k)] = (feat.fit_transform(inputs(tr), y[tr]), y[tr], feat.transform(inputs(va)),
                                            y[va])
            self.feat_seconds.setdefault(key, []).append(time.perf_counter() - start)
        if key in self._used:
            self._used.remove(key)
        self._used.append(key)
        for old in self._used[:-self.KEEP]:  # bounded memory: a featurisation is a few hundred MB on 60k rows
            self._used.remove(old)
            for kk in [kk for kk in self._features if kk[0] == old]:
                del self._features[kk]
        return self._features[(key, k)]

    def tokens(self, k: int):
        tr, va = self.prepared.folds[k]
        docs, y = self.prepared.docs, self.prepared.y
        return [docs[i] for i in tr], y[tr], [docs[i] for i in va], y[va]

    def code(self, k: int):
        """Raw code strings, for families with their own tokenizer (pre-trained encoders)."""
        tr, va = self.prepared.folds[k]
        codes, y = raw_codes(self.prepared), self.prepared.y
        return [codes[i] for i in tr], y[tr], [codes[i] for i in va], y[va]

    def fold(self, k: int, kind: str, settings: dict | None = None):
        if kind == "code":
            return self.code(k)
        return self.features(k, settings) if kind == "features" else self.tokens(k)


def raw_codes(p: Prepared) -> list[str]:
    return p.dataset.frame["code"].tolist()


def docs_for(request: TrainingRequest, p: Prepared, settings: dict | None) -> list[str]:
    """Token docs for a featurisation: the prepared ones, or (names kept whole / split) tokenised once and
    cached on disk per dataset content."""
    mode = token_mode(feature_settings(request.features, settings))
    if mode == token_mode(feature_settings(request.features)) or p.dataset.table is not None or not p.use_code:
        return p.docs
    return cached_token_docs(raw_codes(p), request.dataset.language, *mode)


def make_featurizer(request: TrainingRequest, settings: dict | None = None) -> CodeFeaturizer | TabularFeaturizer:
    ds = request.dataset
    code = None if ds.code_column is None else code_featurizer(feature_settings(request.features, settings))
    if not has_table(ds):
        return code
    return TabularFeaturizer(tuple(ds.numeric_columns), tuple(ds.categorical_columns), code,
                             datetime=tuple(ds.datetime_columns), text=tuple(ds.text_columns))


def has_table(ds) -> bool:
    return bool(ds.numeric_columns or ds.categorical_columns or ds.datetime_columns or ds.text_columns)


def input_tokenizer(request: TrainingRequest, settings: dict | None = None):
    """The saved pipeline's first step: raw code -> token docs (of the code column, for table input)."""
    ds = request.dataset
    if not has_table(ds):
        split, words = token_mode(feature_settings(request.features, settings))
        return CodeTokenizer(language=ds.language, split_names=split, string_words=words)
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
        if request.train is not None:  # train.device / train.distributed (DDP): see train/distributed.py
            from cgtrain.train.distributed import fit_with

            return fit_with(request.train, estimator, X, y, fit_kwargs)
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
    docs = cached_token_docs(codes, request.dataset.language, request.features.split_names,
                             request.features.string_words) if use_code else codes
    y = ds.frame["label"].to_numpy(dtype=float if request.task == "regression" else int)
    groups = ds.frame["group"].to_numpy()
    doc_digests = digests(row_texts(docs, ds.table))
    check_sizes(len(y), len(np.unique(groups)), request.validation.test_fraction, request.validation.folds)
    split = holdout_split(y, groups, digests(row_texts(codes, ds.table)), doc_digests,
                          request.validation.test_fraction, request.seed)
    folds, dropped = [], 0
    for tr, va in group_kfold(y[split.train], groups[split.train], request.validation.folds, request.seed):
        tr, va = split.train[tr], split.train[va]
        kept = drop_seen(tr, va, doc_digests)
        dropped += len(va) - len(kept)
        folds.append((tr, kept))
    check_folds(folds)
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
    if has_table(ds):
        out["columns"] = {"numeric": ds.numeric_columns, "categorical": ds.categorical_columns,
                          **({"datetime": ds.datetime_columns} if ds.datetime_columns else {}),
                          **({"text": ds.text_columns} if ds.text_columns else {})}
    if p.regression:
        out["target"] = {k: float(getattr(np, k)(p.y)) for k in ("mean", "std", "min", "max")}
        return out
    out["class_counts"] = np.bincount(p.y[p.y >= 0], minlength=p.n_classes).tolist()
    if (p.y < 0).any():
        out["unlabelled"] = int((p.y < 0).sum())
    return out


# --- the run ----------------------------------------------------------------------
def check_run_dir(run_dir: Path, request: TrainingRequest, resume: bool, force: bool = False) -> None:
    saved = run_dir / "request.yaml"
    if resume:
        if not saved.is_file():
            raise RunDirError(f"--resume: {run_dir} holds no run (no request.yaml); drop --resume to start one")
        if _finished(run_dir) and not force:
            raise RunDirError(f"--resume: {run_dir} holds a finished run (run.json); add --force to redo its refit "
                              f"and test (the model is replaced), or start a new --run-dir")
        before = _as_current(yaml.safe_load(saved.read_text(encoding="utf-8")))
        now = request.model_dump(mode="json")
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            raise RunDirError(f"--resume: the request differs from the one in {saved} in: {', '.join(changed)}; "
                              f"resume with the same request, or start a new --run-dir")
    elif (run_dir / "study.db").exists() or (run_dir / parallel.JOURNAL_FILE).exists():
        raise RunDirError(f"{run_dir} already holds a run; add --resume to continue it, or choose another --run-dir")


def _as_current(saved: Any) -> Any:
    """A stored request with the fields added since it was written at their defaults, so a run
    started by an older cgtrain resumes (the same request then compares equal)."""
    from cgtrain.request import RequestError, parse_request

    try:
        return parse_request(saved).model_dump(mode="json")
    except (RequestError, TypeError, ValueError):
        return saved if isinstance(saved, dict) else {}


def _finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("status") == "finished"
    except (OSError, ValueError, AttributeError):
        return False


def check_fingerprint(run_dir: Path, request: TrainingRequest) -> None:
    """--resume on changed data would mix trials scored on the old data with a refit on the new: refuse."""
    try:
        before = json.loads((run_dir / "dataset.json").read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return  # interrupted before the data was recorded: nothing to compare with
    now = current_fingerprint(request.dataset)
    if before and now != before:
        raise RunDirError(f"--resume: the dataset {request.dataset.path} changed since the run started (fingerprint "
                          f"then {before}, now {now}); restore the data, or start a new --run-dir")


def open_run(request: TrainingRequest, run_dir: str | Path, resume: bool, say: Callable[[str], None],
             force: bool = False) -> tuple[Path, float, Prepared]:
    """Every task's first steps: check the run dir, record the request, load and split the data."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, request, resume, force)
    if resume:
        check_fingerprint(run_dir, request)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "request.yaml", request_to_yaml(request))
    started = time.time()
    prepared = prepare(request, run_dir, say)
    atomic_write_json(run_dir / "dataset.json", dataset_record(request, prepared))
    return run_dir, started, prepared


def train(request: TrainingRequest, run_dir: str | Path, resume: bool = False,
          say: Callable[[str], None] = print, progress: Callable[[int, int, float | None], None] | None = None,
          force: bool = False) -> RunResult:
    """The whole run, holding the run directory's lock (a second process is refused at once)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a directory; choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir, say):
        if request.task in ("anomaly", "clustering"):  # no target to fit: the unsupervised flow
            from cgtrain.unsupervised import train_unsupervised

            return train_unsupervised(request, run_dir, resume=resume, say=say, progress=progress, force=force)
        return _train(request, run_dir, resume, say, progress, force)


def _train(request: TrainingRequest, run_dir: Path, resume: bool, say: Callable[[str], None],
           progress: Callable[[int, int, float | None], None] | None, force: bool) -> RunResult:
    run_dir, started, prepared = open_run(request, run_dir, resume, say, force)
    study = run_study(request, run_dir, prepared, say, progress, started=started)
    board = studies.leaderboard(study, request.validation.metric)
    board.to_csv(run_dir / "leaderboard.csv", index=False)
    best, ensemble = best_or_default(request, study, say), None
    # voting / stacking of the top trials, kept only if CV says it is better (none: no trial finished)
    if request.hpo.ensemble != "none" and best.number >= 0:
        ensemble = ensembles.choose_ensemble(request, run_dir, prepared, study, say, started)
    budget_s = getattr(request.hpo, "budget_s", None)
    metrics = refit_and_test(request, run_dir, prepared, best, say, ensemble=(study, ensemble) if ensemble else None,
                             time_left=(lambda: budget_s - (time.time() - started)) if budget_s else None)
    atomic_write_json(run_dir / "run.json", {"status": "finished", "seconds": round(time.time() - started, 1),
                                             "trials": len(board)})
    # calibration, audit, explanations, resources, report.html (classification); never fails the run
    if request.qa.enabled and not prepared.regression:
        from cgtrain.evaluate.qa import try_run_qa

        try_run_qa(request, run_dir, prepared, say)
    return RunResult(run_dir, board, metrics)


@dataclass(frozen=True)
class DefaultTrial:
    """Stands in for a trial when a budget ended before any finished: a family's defaults, never cross-validated."""

    user_attrs: dict[str, Any]
    number: int = -1


def best_or_default(request: TrainingRequest, study: optuna.Study, say: Callable[[str], None]):
    """The best trial; when none completed (a budget too short for the data), the default model of the
    fastest strong family (LightGBM where it is a candidate), so a budget always ends with a model."""
    try:
        return studies.best_trial(study)
    except RuntimeError:
        names = [c.family for c in request.candidates]
        family = "lightgbm" if "lightgbm" in names else names[0]
        say(f"no trial finished inside the budget: refitting {family} with its default params (not cross-validated)")
        params = studies.fixed_params(request).get(family, {})
        return DefaultTrial({"family": family, "params": json.dumps(params), "fold_scores": [], "default": True})


def run_study(request, run_dir, prepared, say, progress, started: float | None = None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spaces, fixed = studies.candidate_spaces(request), studies.fixed_params(request)
    grid = grid_configs(spaces) if request.hpo.sampler == "grid" else None
    if parallel.is_shared(request):  # hpo.workers / hpo.storage / hpo.executor: worker processes share the study
        return parallel.run_shared_study(request, run_dir, prepared.dataset.fingerprint, grid, say, progress,
                                         started or time.time())
    study = studies.open_study(f"sqlite:///{run_dir / 'study.db'}", request, grid)
    studies.pin_fingerprint(study, prepared.dataset.fingerprint, "--resume: the study's trials",
                            "start a new --run-dir")
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
                                       studies.objectives(request), feature_space=request.features.space)

    def report(study_: optuna.Study, _trial) -> None:
        if progress:
            progress(studies.counted_trials(study_), target, studies.best_value(study_))

    if remaining and request.hpo.warm_start and not done:  # best params of earlier runs of this name first
        warm.enqueue_previous_best(study, run_dir, request, spaces, say)
    first_new = len(study.get_trials(deepcopy=False))
    try:
        with interrupts.deferred():  # Ctrl-C stops at a fold / epoch / trial boundary, not inside a commit
            if remaining and budget is not None:  # cost-aware AutoML within a wall-clock budget
                automl.optimize(study, objective, request, prepared, budget, remaining, say,
                                callbacks=[report, _interrupt_point])
            elif remaining:
                study.optimize(objective, n_trials=remaining, timeout=request.hpo.timeout_s,
                               catch=(Exception,), callbacks=[report, _interrupt_point])
    except KeyboardInterrupt:
        requeue_interrupted(study, first_new)
        raise
    goals = studies.objectives(request)
    if len(goals) > 1:  # metric vs latency / size: the trade-offs, not one winner
        atomic_write_json(run_dir / "pareto_front.json", studies.pareto_front(study, goals))
    return study


def _interrupt_point(_study: optuna.Study, _trial) -> None:
    interrupts.check()  # between trials


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a Ctrl-C'd trial (with its traceback, then its value); the CLI says "interrupted" instead."""

    after_interrupt = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.after_interrupt = True
            return False
        if self.after_interrupt and "failed with value" in record.getMessage():
            self.after_interrupt = False
            return False
        return True


logging.getLogger("optuna.study._optimize").addFilter(_NoInterruptTraceback())


def requeue_interrupted(study: optuna.Study, first_new: int) -> int:
    """After Ctrl-C: the trial that was running (failed by the interrupt, or still RUNNING) is queued again
    with its parameters and not counted, so a --resume ends with exactly n_trials finished trials."""
    backend = getattr(study._storage, "_backend", study._storage)
    try:
        if hasattr(backend, "scoped_session"):  # the interrupted write's session may still hold the database lock
            backend.scoped_session.remove()
        stale = studies.stale_numbers(study)
        trials = study.get_trials(deepcopy=False)
        cut = [t for t in trials[first_new:] if t.number not in stale and "error" not in t.user_attrs
               and t.state == optuna.trial.TrialState.FAIL]
        for t in cut[-1:]:  # one trial runs at a time: the last one without an error of its own
            studies.retry_stale_trial(study, t)
        return len(cut[-1:]) + studies.requeue_stale(study)
    except Exception:  # noqa: BLE001 - a trial left RUNNING is re-queued by --resume all the same
        return 0


def make_evaluator(request: TrainingRequest, prepared: Prepared, cache: FoldCache, hooks: TrialHooks | None = None):
    """k-fold CV of one trial; `hooks` store out-of-fold predictions, apply fidelity and time limits."""
    metric = request.validation.metric
    hooks = hooks or TrialHooks(store_oof=False)

    def evaluate(family: str, params: dict, trial: optuna.Trial) -> studies.TrialResult:
        start, scores, epochs = time.perf_counter(), [], []
        settings, kind = studies.trial_features(trial), FAMILIES.get(family).input
        interruptible = "val_metric" in FAMILIES.get(family).make(params, request.seed, task=request.task).get_params()
        hooks.start(trial)
        built = 0.0  # seconds spent building fold features this trial (not cached by an earlier one)
        try:
            for k in range(len(prepared.folds)):
                interrupts.check()  # a deferred Ctrl-C ends the trial here, before the next fold
                if kind == "features" and not cache.has(k, settings):  # building features cannot be stopped
                    hooks.check_time(trial, k, cache.feature_cost(settings))
                    t0, counted = time.perf_counter(), cache.count_seconds
                    cache.fold(k, kind, settings)
                    built += time.perf_counter() - t0
                    trial.set_user_attr("feat_seconds", round(built, 3))
                    if cache.count_seconds > counted:  # counted the dataset's n-grams: once per token mode
                        trial.set_user_attr("count_seconds", round(cache.count_seconds - counted, 3))
                X_tr, y_tr, X_va, y_va = cache.fold(k, kind, settings)
                X_tr, y_tr = hooks.before_fold(trial, k, X_tr, y_tr)

                def fit_predict(X_tr=X_tr, y_tr=y_tr, X_va=X_va, y_va=y_va, k=k):
                    m = fit_family(request, family, params, X_tr, y_tr, val=(X_va, y_va),
                                   on_epoch=hooks.on_epoch(trial, epoch_reporter(trial, k, params)))
                    return m, outputs(m, X_va, prepared)

                model, proba = hooks.run_fold(trial, k, fit_predict, interruptible)
                scores.append(score(metric, y_va, proba))
                hooks.after_fold(trial, k, model, X_va, proba)
                if model is not None and hasattr(model, "history_"):  # neural: reported per epoch; keep the epoch
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
        interrupts.check()  # a deferred Ctrl-C ends the trial after this epoch
        if value == value:  # NaN when there is no validation set
            trial.report(value, fold * _epochs(params) + epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

    return on_epoch


def refit_and_test(request, run_dir: Path, p: Prepared, best, say, ensemble=None,
                   time_left: Callable[[], float] | None = None) -> dict[str, Any]:
    """Refit the best trial (or, given `ensemble=(study, choice)`, the chosen ensemble) and test it once.
    `time_left` (a budget's seconds left): the final fit on all rows is skipped when it would not fit."""
    from sklearn.pipeline import Pipeline

    family = best.user_attrs["family"]
    params = refit_params(json.loads(best.user_attrs["params"]), best.user_attrs.get("best_epochs"))
    say(f"refit: trial {best.number} ({family}) on {len(p.split.train)} training rows" if ensemble is None else
        f"refit: {ensemble[1].method} ensemble of trials {ensemble[1].trials} on {len(p.split.train)} training rows")
    settings = studies.trial_features(best)  # the trial's featurisation (token docs with or without name split)
    inputs = model_inputs(p, None, docs_for(request, p, settings))

    def fit_on(rows):
        """(pipeline steps, model fitted on `rows`, rows -> the model's input, ensemble description)."""
        steps, y = [("tokens", input_tokenizer(request, settings))], p.y[rows]
        if ensemble is not None:  # each member has its own featurizer inside the ensemble model
            model, described = ensembles.refit_ensemble(request, ensemble[1], ensemble[0], inputs(rows), y,
                                                        fit_family, make_featurizer, refit_params)
            return steps, model, inputs, described
        if FAMILIES.get(family).input == "code":  # the model tokenizes raw code itself: no CodeTokenizer step
            codes = raw_codes(p)
            code_of = lambda r: [codes[i] for i in r]  # noqa: E731
            return [("code", "passthrough")], fit_family(request, family, params, code_of(rows), y), code_of, None
        if FAMILIES.get(family).input == "features":
            featurizer = make_featurizer(request, settings)
            X = featurizer.fit_transform(inputs(rows), y)
            return ([*steps, ("features", featurizer)], fit_family(request, family, params, X, y),
                    lambda r: featurizer.transform(inputs(r)), None)
        return steps, fit_family(request, family, params, inputs(rows), y), inputs, None

    fit_start = time.perf_counter()
    steps, model, input_of, described = fit_on(p.split.train)
    fit_s = time.perf_counter() - fit_start
    if ensemble is not None:
        family, params = "ensemble", described
    proba = outputs(model, input_of(p.split.test), p)
    test = compute(p.y[p.split.test], proba)
    write_test_predictions(run_dir, p, proba)
    all_rows, model_rows = np.sort(np.concatenate([p.split.train, p.split.test])), len(p.split.train)
    need = 1.2 * fit_s * len(all_rows) / max(len(p.split.train), 1) + 2.0  # + saving the model
    if request.validation.final_fit == "all" and len(p.split.test) and time_left is not None and time_left() < need:
        say(f"refit on all rows skipped: ~{need:.0f}s needed, the budget has {time_left():.0f}s left")
    elif request.validation.final_fit == "all" and len(p.split.test):  # the test is done: learn from its rows too
        say(f"refit: once more on all {len(all_rows)} rows (training + test) for the saved model")
        steps, model, _, _ = fit_on(all_rows)
        model_rows = len(all_rows)
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
        "cv": {"metric": request.validation.metric, "mean": float(np.mean(folds)) if folds else None,
               "std": float(np.std(folds)) if folds else None, "folds": folds},
        **({"baseline_mean": mean_baseline(p.y[p.split.train], p.y[p.split.test])} if p.regression else
           {"baseline_majority": majority_baseline(p.y[p.split.train], p.y[p.split.test])}),
        "best": {"trial": best.number, "family": family, "params": params},
        "n_train": len(p.split.train), "n_test": len(p.split.test), "model_rows": model_rows,
    }
    metrics = checked_metrics(metrics, say)
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


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
