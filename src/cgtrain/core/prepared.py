"""Data in, everything a study and a refit need out: load, quarantine, tokenise once, split leakage-safe."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cgtrain.data.conflicts import apply_policy as apply_conflict_policy
from cgtrain.errors import DatasetError
from cgtrain.data.loading import LoadedDataset, load_dataset
from cgtrain.data.splits import (HoldoutSplit, check_folds, check_sizes, digests, drop_seen, group_kfold,
                                 holdout_split)
from cgtrain.features.settings import feature_settings, token_mode
from cgtrain.features.tabular import row_texts, table_input
from cgtrain.features.token_cache import cached_token_docs
from cgtrain.request import TrainingRequest
from cgtrain import rundir


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


def raw_codes(p: Prepared) -> list[str]:
    return p.dataset.frame["code"].tolist()


def docs_for(request: TrainingRequest, p: Prepared, settings: dict | None) -> list[str]:
    """Token docs for a featurisation: the prepared ones, or (names kept whole / split) tokenised once and
    cached on disk per dataset content."""
    mode = token_mode(feature_settings(request.features, settings))
    if mode == token_mode(feature_settings(request.features)) or p.dataset.table is not None or not p.use_code:
        return p.docs
    return cached_token_docs(raw_codes(p), request.dataset.language, *mode)


def _check_left_after_conflicts(ds: LoadedDataset, report) -> None:
    """Dropping label conflicts can leave nothing to learn (every row's code also appears with another label):
    say so, instead of a split error about 0 usable rows."""
    left = ds.frame["label"].nunique()
    if report.dropped and left < 2:
        raise DatasetError(f"{report.rows} rows were dropped as label conflicts (the same code with more than one "
                           f"label, listed in {report.path}), leaving {len(ds.frame)} rows of {left} class(es): the "
                           "labels cannot be learned from this code; check dataset.code_column and "
                           "dataset.label_column, or keep the rows with dataset.label_conflicts=keep")


def prepare(request: TrainingRequest, run_dir: Path, say: Callable[[str], None]) -> Prepared:
    ds = load_dataset(request.dataset, request.task, run_dir / rundir.QUARANTINE, seed=request.seed)
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
        _check_left_after_conflicts(ds, report)
    what = f"classes {list(ds.classes)}" if ds.classes else f"task {request.task}"
    say(f"{len(ds.frame)} rows, {ds.frame['group'].nunique()} groups, {what}"
        + ("; tokenizing" if request.dataset.code_column is not None else ""))
    codes = ds.frame["code"].tolist()
    use_code = request.dataset.code_column is not None
    docs = cached_token_docs(codes, request.dataset.language, *token_mode(feature_settings(request.features))) \
        if use_code else codes
    y = ds.frame["label"].to_numpy(dtype=float if request.task == "regression" else int)
    groups = ds.frame["group"].to_numpy()
    dedup = request.validation.dedup
    if dedup == "rows" or (dedup == "auto" and use_code):
        code_digests, doc_digests = digests(row_texts(codes, ds.table)), digests(row_texts(docs, ds.table))
    else:  # no de-duplication: a distinct key per row, so no evaluation row "repeats" a training row
        code_digests = doc_digests = np.arange(len(y)).astype(str)
    check_sizes(len(y), len(np.unique(groups)), request.validation.test_fraction, request.validation.folds)
    split = holdout_split(y, groups, code_digests, doc_digests, request.validation.test_fraction, request.seed)
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


def has_table(ds) -> bool:
    return bool(ds.numeric_columns or ds.categorical_columns or ds.datetime_columns or ds.text_columns)


def full_proba(estimator, X, n_classes: int) -> np.ndarray:
    """predict_proba with one column per class, even if a fold lacked a class."""
    proba = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    out = np.zeros((proba.shape[0], n_classes))
    out[:, np.asarray(estimator.classes_, dtype=int)] = proba
    return out
