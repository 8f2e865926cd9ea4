"""AutoML's anytime defaults: the trials a budget runs first, so it can only end at or above what a
practitioner would try first (code text: TF-IDF n-grams + logistic regression, then LightGBM on the chi²
columns; tables: LightGBM with its defaults)."""
from __future__ import annotations

from typing import Any

from cgtrain.models import FAMILIES
from cgtrain.request import TrainingRequest
from cgtrain.tune.space import as_dict

# The anytime baseline for code text: what a practitioner writes first (TF-IDF 1-3-grams of whole-name tokens and
# string words, sublinear tf, min_df 3, LogisticRegression(C=10, class_weight="balanced")); tables: LightGBM defaults.
BASELINE_FEATURES = {"kind": "tfidf", "ngram_max": 3, "min_df": 3, "max_features": None, "sublinear_tf": True,
                     "split_names": False, "string_words": True, "metrics": False}
BASELINE_LOGREG = {"C": 10.0, "class_weight": "balanced"}
# The second anytime default on code text: LightGBM on the chi²-selected n-gram columns at full fidelity (a tree
# model finds what a linear one misses, and a blend of the two beats both: Juliet, unseen families, 3k columns:
# F1 0.893 / 0.912 vs LR 0.886 / 0.889, LightGBM 0.885 / 0.902). Queued when its estimate fits the time left.
CODE_TREE = {"n_estimators": 200, "learning_rate": 0.1, "num_leaves": 63, "min_child_samples": 20,
             "colsample_bytree": 0.3, "reg_lambda": 1.0}
CODE_TREE_NAME = "default: lightgbm on chi² n-grams"
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
        params = {f"logreg.{k}": v for k, v in BASELINE_LOGREG.items() if k in spaces["logreg"]
                  and _inside(spaces["logreg"][k], v)}
        features = {k: v for k, v in BASELINE_FEATURES.items() if k in feature_space and _inside(feature_space[k], v)}
        return "logreg", params, features, "baseline: tfidf + logreg"
    if table and "lightgbm" in spaces:
        space = spaces["lightgbm"]
        params = {**default_params("lightgbm", space),
                  **{f"lightgbm.{k}": v for k, v in TABLE_TREE.items() if k in space and _inside(space[k], v)}}
        return "lightgbm", params, {}, "baseline: lightgbm defaults"
    return None


def code_tree_trial(request: TrainingRequest, prepared, spaces: dict, baseline
                    ) -> tuple[str, dict[str, Any], dict[str, Any], str] | None:
    """(family, queued params, features, name) of the second anytime trial on code text: LightGBM with
    CODE_TREE params on the baseline's featurisation, or None (tables, regression, no lightgbm candidate)."""
    table = prepared.dataset.table is not None and not prepared.use_code
    if table or request.task not in ("binary", "multiclass") or "lightgbm" not in spaces or baseline is None:
        return None
    space = spaces["lightgbm"]
    params = {f"lightgbm.{k}": v for k, v in CODE_TREE.items() if k in space and _inside(space[k], v)}
    return "lightgbm", params, dict(baseline[2]), CODE_TREE_NAME


def _inside(spec: Any, value: Any) -> bool:
    s = as_dict(spec)
    if s["type"] == "categorical":
        return value in s["choices"]
    return isinstance(value, (int, float)) and s["low"] <= value <= s["high"]


def default_params(family: str, space: dict[str, Any]) -> dict[str, Any]:
    """The family's defaults, where they lie inside the searched space (queued as `family.param`)."""
    defaults = FAMILIES.get(family).defaults
    return {f"{family}.{k}": defaults[k] for k, spec in space.items() if k in defaults and _inside(spec, defaults[k])}
