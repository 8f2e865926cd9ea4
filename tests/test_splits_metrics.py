"""Leakage-safe splits, metric functions and search-space translation."""
import numpy as np
import optuna
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from cgtrain.data.splits import digests, drop_seen, group_kfold, holdout_split
from cgtrain.evaluate.metrics import METRICS, compute, majority_baseline
from cgtrain.tune.space import grid_configs, grid_values, suggest


def grouped_data(n_groups=40, per_group=5, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"g{i}" for i in range(n_groups)], per_group)
    y = rng.integers(0, 2, size=len(groups))
    return y, groups


def test_group_kfold_never_splits_a_group_and_covers_every_row():
    y, groups = grouped_data()
    folds = group_kfold(y, groups, 5, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen) == list(range(len(y)))
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])


def test_too_few_groups_for_the_folds_is_a_clear_error():
    y, groups = grouped_data(n_groups=3)
    with pytest.raises(ValueError, match="only 3 distinct groups"):
        group_kfold(y, groups, 5, seed=0)


def test_holdout_is_by_group_and_drops_test_rows_duplicated_in_train():
    y, groups = grouped_data()
    codes = np.array([f"code {i}" for i in range(len(y))])
    split0 = holdout_split(y, groups, digests(codes), digests(codes), 0.2, seed=1)
    victim = split0.test[0]
    codes[victim] = codes[split0.train[0]]  # an exact copy of a training function
    docs = codes.copy()
    docs[split0.test[1]] = docs[split0.train[1]]  # same after normalisation only
    split = holdout_split(y, groups, digests(codes), digests(docs), 0.2, seed=1)
    assert not set(groups[split.train]) & set(groups[split.test])
    assert (split.dropped_exact, split.dropped_normalised) == (1, 1)
    assert victim not in split.test and split0.test[1] not in split.test
    assert 0.1 < (len(split.test) + 2) / len(y) < 0.3


def test_drop_seen_removes_validation_rows_seen_in_training():
    d = digests(["a", "b", "a", "c"])
    assert list(drop_seen(np.array([0, 1]), np.array([2, 3]), d)) == [3]


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(y * 0.6 + rng.random(200) * 0.5, 0, 1)
    proba = np.column_stack([1 - p1, p1])
    got = compute(y, proba)
    assert got["f1"] == pytest.approx(f1_score(y, (p1 > 0.5).astype(int)))
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, p1))
    assert all(METRICS.get(name).greater_is_better for name in got)
    base = majority_baseline(np.array([0, 0, 1]), y)
    assert base["f1"] == 0.0 and base["accuracy"] == pytest.approx(np.mean(y == 0))


def test_space_as_data_becomes_optuna_suggestions_and_grids():
    space = {"C": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
             "k": {"type": "int", "low": 2, "high": 10, "step": 2},
             "kind": {"type": "categorical", "choices": ["a", None]}}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = suggest(trial, "fam", space)
    assert set(trial.params) == {"fam.C", "fam.k", "fam.kind"}
    assert 0.01 <= params["C"] <= 1.0 and params["k"] in (2, 4, 6, 8, 10) and params["kind"] in ("a", None)
    assert grid_values(space["C"]) == [0.01, 0.1, 1.0]
    assert grid_values(space["k"]) == [2, 6, 10]
    assert len(grid_configs({"fam": space, "other": {"x": space["kind"]}})) == 3 * 3 * 2 + 2
