"""Leakage-safe splits: by group, stratified when possible, de-duplicated.

A function and its near-copies (mutants, flow variants of one Juliet family)
share a group, so they never straddle train/test or two CV folds. Exact and
normalised duplicates of training code are removed from the evaluation side.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold


@dataclass(frozen=True)
class HoldoutSplit:
    train: np.ndarray  # row indices
    test: np.ndarray
    dropped_exact: int  # test rows whose exact code is in train
    dropped_normalised: int  # test rows whose token doc (not exact code) is in train


def digests(texts) -> np.ndarray:
    return np.array([hashlib.sha1(t.encode("utf-8", "replace")).hexdigest() for t in texts])


def group_kfold(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int):
    """(train, val) index pairs; stratified by label when every class can fill the folds.
    Float targets (regression) and unlabelled rows (label < 0) are never stratified."""
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"only {n_groups} distinct groups for {n_splits} folds; lower validation.folds "
                         f"or use a finer dataset.group_column")
    y = np.asarray(y)
    stratify = False
    if np.issubdtype(y.dtype, np.integer) and len(y) and y.min() >= 0:
        counts = np.bincount(y)
        stratify = counts[counts > 0].min() >= n_splits
    splitter = (StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed) if stratify
                else GroupKFold(n_splits, shuffle=True, random_state=seed))
    with warnings.catch_warnings():  # "least populated class" warnings say what we already handle
        warnings.simplefilter("ignore", UserWarning)
        return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y, groups)]


def holdout_split(y, groups, code_digests, doc_digests, test_fraction: float, seed: int) -> HoldoutSplit:
    """A test split of whole groups (~test_fraction of rows), minus rows duplicated in train."""
    n_splits = max(2, round(1 / test_fraction))
    train, test = group_kfold(y, groups, n_splits, seed)[0]
    seen_code, seen_doc = set(code_digests[train]), set(doc_digests[train])
    exact = np.array([d in seen_code for d in code_digests[test]], dtype=bool)
    normalised = np.array([d in seen_doc for d in doc_digests[test]], dtype=bool) & ~exact
    keep = test[~(exact | normalised)]
    return HoldoutSplit(np.sort(train), np.sort(keep), int(exact.sum()), int(normalised.sum()))


def drop_seen(train: np.ndarray, val: np.ndarray, doc_digests: np.ndarray) -> np.ndarray:
    """Validation rows whose normalised code does not occur in the fold's training rows."""
    seen = set(doc_digests[train])
    return val[np.array([d not in seen for d in doc_digests[val]], dtype=bool)]
