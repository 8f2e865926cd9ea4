"""AutoML's anytime defaults: the trials a budget runs first, so it can only end at or above what a
practitioner would try first (code text: TF-IDF n-grams + logistic regression, then LightGBM on the chi²
columns; tables: LightGBM with its defaults)."""
from __future__ import annotations

from typing import Any

from cgtrain.models import FAMILIES
from cgtrain.request import TrainingRequest
from cgtrain.tune.space import as_dict

# The anytime baseline for code text: what a practitioner writes first (TF-IDF 1-3-grams of whole-name tokens and
# string words, sublinear tf, min_df 3, LogisticRegression(C=10, class_weight="balanced")), on the tokens and the
# tokens again with local names numbered by first use (Juliet, unseen families, 60k rows, bench/ordinal_names.py: F1
# 0.885 -> 0.896 and 0.889 -> 0.894 on two splits; LightGBM 0.918 -> 0.927 and 0.912 -> 0.922); tables: LightGBM
# defaults.
BASELINE_FEATURES = {"kind": "tfidf", "ngram_max": 3, "min_df": 3, "max_features": None, "sublinear_tf": True,
                     "split_names": False, "string_words": True, "ordinal_names": True, "name_flow": True,
                     "metrics": False}
BASELINE_LOGREG = {"C": 10.0, "class_weight": "balanced"}
# The second anytime default on code text: LightGBM on the chi²-selected n-gram columns at full fidelity (a tree
# model finds what a linear one misses, and a blend of the two beats both: Juliet, unseen families, 3k columns:
# F1 0.893 / 0.912 vs LR 0.886 / 0.889, LightGBM 0.885 / 0.902). Queued when its estimate fits the time left.
# 127 leaves, not 63: Juliet, unseen families, 60k rows, the chi² top 8k columns, 200 trees, 2 threads, seeds 0 / 1 / 2
# (`runs/exp/lgb.py`, ad hoc, 2026-12-01): F1 0.942 / 0.949 / 0.932 at 63 leaves (30-34 s), 0.948 / 0.950 / 0.934 at
# 127 (33-37 s), 0.944 / 0.944 / 0.937 at 255 (38-44 s); all ~20k columns instead of the top 8k: 0.947 / 0.947 / 0.938
# at 63 leaves, 0.953 / 0.946 / 0.941 at 127, for twice the time (42-52 s).
CODE_TREE = {"n_estimators": 200, "learning_rate": 0.1, "num_leaves": 127, "min_child_samples": 20,
             "colsample_bytree": 0.3, "reg_lambda": 1.0}
CODE_TREE_NAME = "default: lightgbm on chi² n-grams"
# Name-flow terms (cgtrain.features.flow) are on for the linear baseline and off for the tree default: Juliet, unseen
# families, 60k rows, seeds 0 / 1 / 2 (`python bench/name_flow.py --seeds 0,1,2`): logreg F1 0.914 / 0.913 / 0.903
# without them, 0.925 / 0.926 / 0.914 with them; LightGBM on the chi² top 8k columns 0.942 / 0.949 / 0.932 without,
# 0.928 / 0.933 / 0.920 with; the average of the two scores best with the terms for logreg only.
# The anytime baseline on a table: LightGBM as shipped (100 trees, 31 leaves, every column per tree, no L2 beyond
# the space's floor), not the family's code-text defaults (30% of the columns per tree: 1-3 of a 9-column table).
TABLE_TREE = {"n_estimators": 100, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20,
              "colsample_bytree": 1.0, "reg_lambda": 1e-3}


def baseline_trial(request: TrainingRequest, prepared, spaces: dict, feature_space: dict
                   ) -> tuple[str, dict[str, Any], dict[str, Any], str] | None:
    """(family, queued params, features, name) of the anytime baseline, or None when no candidate fits it.

    Code text: TF-IDF n-grams + logistic regression (C=10, balanced); tables: LightGBM with its defaults."""
    table = prepared.dataset.table is not None and not prepared.use_code
    if request.task not in ("binary", "multiclass", "regression") or (request.task == "regression" and not table):
        return None
    if not table and "logreg" in spaces and request.task != "regression":
        params = _queued("logreg", BASELINE_LOGREG, spaces["logreg"])
        features = {k: v for k, v in BASELINE_FEATURES.items() if k in feature_space and _inside(feature_space[k], v)}
        return "logreg", params, features, "baseline: tfidf + logreg"
    if table and "lightgbm" in spaces:
        space = spaces["lightgbm"]
        params = {**default_params("lightgbm", space), **_queued("lightgbm", TABLE_TREE, space)}
        return "lightgbm", params, {}, "baseline: lightgbm defaults"
    return None


def code_tree_trial(request: TrainingRequest, prepared, spaces: dict, baseline
                    ) -> tuple[str, dict[str, Any], dict[str, Any], str] | None:
    """(family, queued params, features, name) of the second anytime trial on code text: LightGBM with
    CODE_TREE params on the baseline's featurisation, or None (tables, regression, no lightgbm candidate)."""
    table = prepared.dataset.table is not None and not prepared.use_code
    if table or request.task not in ("binary", "multiclass") or "lightgbm" not in spaces or baseline is None:
        return None
    features = dict(baseline[2])
    if "name_flow" in features:  # the terms help the linear baseline, not the trees (see above)
        features["name_flow"] = False
    return "lightgbm", _queued("lightgbm", CODE_TREE, spaces["lightgbm"]), features, CODE_TREE_NAME


def _inside(spec: Any, value: Any) -> bool:
    s = as_dict(spec)
    if s["type"] == "categorical":
        return value in s["choices"]
    return isinstance(value, (int, float)) and s["low"] <= value <= s["high"]


def _queued(family: str, values: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """`values` that lie inside the searched space, as the study queues them (`family.param`)."""
    return {f"{family}.{k}": v for k, v in values.items() if k in space and _inside(space[k], v)}


def default_params(family: str, space: dict[str, Any]) -> dict[str, Any]:
    """The family's defaults, where they lie inside the searched space (queued as `family.param`)."""
    return _queued(family, FAMILIES.get(family).defaults, space)
