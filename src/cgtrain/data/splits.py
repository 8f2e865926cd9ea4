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
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

from cgtrain.errors import SplitError

MAX_TEST_FRACTION = 0.5  # the test split is one of round(1 / test_fraction) group folds: at least 2


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
    uniq, groups = np.unique(groups, return_inverse=True)  # int codes: GroupKFold's isin on strings is O(n^2)
    n_groups = len(uniq)
    if n_groups < n_splits:
        raise SplitError(f"only {n_groups} distinct groups for {n_splits} folds; lower validation.folds "
                         f"or use a finer dataset.group_column")
    y = np.asarray(y)
    stratify = False
    if np.issubdtype(y.dtype, np.integer) and len(y) and y.min() >= 0:
        counts = np.bincount(y)
        stratify = counts[counts > 0].min() >= n_splits
    splitter = (StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed) if stratify
                else GroupKFold(n_splits, shuffle=True, random_state=seed))
    if stratify and n_groups == len(y):  # a group per row: the same thing in O(n) (StratifiedGroupKFold: 50 s at 60k)
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class" warnings say what we already handle
        warnings.simplefilter("ignore", UserWarning)
        return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y, groups)]


def test_parts(test_fraction: float) -> int:
    """The held-out split is one of this many group folds."""
    if not 0 < test_fraction <= MAX_TEST_FRACTION:
        raise SplitError(f"validation.test_fraction={test_fraction:g} cannot be honoured: the test split is one of "
                         f"round(1 / test_fraction) group folds, so at most {MAX_TEST_FRACTION:g}; use a value in "
                         f"(0, {MAX_TEST_FRACTION:g}]")
    return max(2, round(1 / test_fraction))


def min_groups(test_fraction: float, folds: int) -> int:
    """Fewest groups for a held-out split of ~test_fraction plus `folds` CV folds on the rest."""
    parts, n = test_parts(test_fraction), 2
    while n < parts or n - -(-n // parts) < folds:  # the test part may take ceil(n / parts) groups
        n += 1
    return n


def check_sizes(n_rows: int, n_groups: int, test_fraction: float, folds: int) -> None:
    """Refuse, naming the real minimum, data too small for the held-out split plus the CV folds."""
    need = min_groups(test_fraction, folds)
    if n_groups < need:
        parts = test_parts(test_fraction)
        raise SplitError(f"the dataset has {n_rows} usable rows in {n_groups} groups; validation.test_fraction="
                         f"{test_fraction:g} holds out 1 of {parts} group parts and validation.folds={folds} needs "
                         f"{folds} groups in the rest: at least {need} groups are needed; add data, lower "
                         f"validation.folds or raise validation.test_fraction (max {MAX_TEST_FRACTION:g})")


def holdout_split(y, groups, code_digests, doc_digests, test_fraction: float, seed: int) -> HoldoutSplit:
    """A test split of whole groups (~test_fraction of rows), minus rows duplicated in train."""
    n_splits = test_parts(test_fraction)
    if len(np.unique(groups)) < n_splits:
        raise SplitError(f"only {len(np.unique(groups))} distinct groups: validation.test_fraction={test_fraction:g} "
                         f"needs at least {n_splits}; add data or use a finer dataset.group_column")
    train, test = group_kfold(y, groups, n_splits, seed)[0]
    seen_code, seen_doc = set(code_digests[train]), set(doc_digests[train])
    exact = np.array([d in seen_code for d in code_digests[test]], dtype=bool)
    normalised = np.array([d in seen_doc for d in doc_digests[test]], dtype=bool) & ~exact
    keep = test[~(exact | normalised)]
    if len(keep) == 0:
        raise SplitError(f"the held-out test split is empty: all {len(test)} of its rows repeat code of the training "
                         f"rows ({int(exact.sum())} exactly, {int(normalised.sum())} up to names and formatting); "
                         f"the dataset needs distinct code per group (check dataset.code_column and the data), or "
                         f"validation.dedup=none keeps repeated rows in the evaluation")
    return HoldoutSplit(np.sort(train), np.sort(keep), int(exact.sum()), int(normalised.sum()))


def drop_seen(train: np.ndarray, val: np.ndarray, doc_digests: np.ndarray) -> np.ndarray:
    """Validation rows whose normalised code does not occur in the fold's training rows."""
    seen = set(doc_digests[train])
    return val[np.array([d not in seen for d in doc_digests[val]], dtype=bool)]


def check_folds(folds: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Every CV fold keeps validation rows after de-duplication, else its score would be undefined."""
    empty = [k for k, (_, va) in enumerate(folds) if len(va) == 0]
    if empty:
        raise SplitError(f"CV fold(s) {empty} have no validation rows left: all of them repeat code of the fold's "
                         f"training rows; the dataset needs distinct code per group, or fewer validation.folds")
