"""scikit-learn and LightGBM families over the feature matrix (code features and/or table columns).

random_forest and lightgbm learn classification and regression (a regressor variant
with the same search space); ridge is regression only.
"""
from __future__ import annotations

from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.svm import LinearSVC

from cgtrain.models.base import Family, register_family


def _logreg(p, seed, class_weight):
    return LogisticRegression(C=p["C"], solver=p["solver"], max_iter=p["max_iter"],
                              class_weight=p.get("class_weight") or class_weight, random_state=seed)


def _logreg_multiclass(p, seed, class_weight):
    # liblinear is binary-only in scikit-learn >= 1.8; lbfgs (or saga) fits the multinomial model
    return LogisticRegression(C=p["C"], solver="saga" if p["solver"] == "saga" else "lbfgs", max_iter=p["max_iter"],
                              class_weight=p.get("class_weight") or class_weight, random_state=seed)


def _select(p, model):
    """Chi-squared selection of the `select_k` best columns before a tree model (wide sparse n-grams)."""
    if not p.get("select_k"):
        return model
    from sklearn.pipeline import Pipeline

    from cgtrain.features.selection import Chi2Select

    return Pipeline([("select", Chi2Select(k=int(p["select_k"]))), ("model", model)])


def _linear_svm(p, seed, class_weight):
    svm = LinearSVC(C=p["C"], class_weight=class_weight, max_iter=p["max_iter"], random_state=seed)
    # Calibrated so the family gives probabilities like the others (ROC/PR-AUC, thresholds).
    return CalibratedClassifierCV(svm, method="sigmoid", cv=3)


def _random_forest(p, seed, class_weight):
    return _select(p, RandomForestClassifier(
        n_estimators=p["n_estimators"], max_depth=p["max_depth"], min_samples_leaf=p["min_samples_leaf"],
        max_features=p["max_features"], class_weight=class_weight, random_state=seed, n_jobs=p.get("n_jobs") or -1))


def _random_forest_regressor(p, seed, class_weight=None):
    # One job: threads add the trees' predictions in a varying order, so a parallel predict
    # differs in the last bits from run to run, and equal requests would give unequal metrics.
    return RandomForestRegressor(
        n_estimators=p["n_estimators"], max_depth=p["max_depth"], min_samples_leaf=p["min_samples_leaf"],
        max_features=p["max_features"], random_state=seed, n_jobs=1)


def _lightgbm_kwargs(p, seed):
    return dict(n_estimators=p["n_estimators"], learning_rate=p["learning_rate"], num_leaves=p["num_leaves"],
                min_child_samples=p["min_child_samples"], colsample_bytree=p["colsample_bytree"],
                reg_lambda=p["reg_lambda"], random_state=seed, deterministic=True, force_col_wise=True,
                n_jobs=p["n_jobs"], verbose=-1, **({"max_bin": int(p["max_bin"])} if p.get("max_bin") else {}))


def _lightgbm(p, seed, class_weight):
    return _select(p, LGBMClassifier(class_weight=class_weight, **_lightgbm_kwargs(p, seed)))


def _lightgbm_regressor(p, seed, class_weight=None):
    return LGBMRegressor(**_lightgbm_kwargs(p, seed))


def _ridge(p, seed, class_weight=None):
    return Ridge(alpha=p["alpha"], random_state=seed)


register_family(Family(
    name="logreg", prior_cost_s=0.1, build=_logreg, variants={"multiclass": _logreg_multiclass},
    description="L2 logistic regression (liblinear; lbfgs multinomial for multiclass)",
    default_space={"C": {"type": "float", "low": 1e-1, "high": 1e2, "log": True},
                   "class_weight": {"type": "categorical", "choices": [None, "balanced"]}},
    defaults={"C": 1.0, "max_iter": 2000, "solver": "liblinear", "class_weight": None}))

register_family(Family(
    name="linear_svm", prior_cost_s=0.3, build=_linear_svm, description="linear SVM, sigmoid-calibrated",
    # Above C ~ 1 liblinear rarely converges on sparse n-grams and only gets slower.
    default_space={"C": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
    defaults={"C": 0.1, "max_iter": 2000}))

register_family(Family(
    name="random_forest", prior_cost_s=3.0, build=_random_forest, description="random forest (classifier or regressor)",
    tasks=frozenset({"binary", "multiclass", "regression"}), variants={"regression": _random_forest_regressor},
    default_space={
        "n_estimators": {"type": "int", "low": 100, "high": 400, "step": 100},
        "max_depth": {"type": "categorical", "choices": [None, 20, 60]},
        "min_samples_leaf": {"type": "int", "low": 1, "high": 5},
        "max_features": {"type": "categorical", "choices": ["sqrt", "log2"]},
    },
    defaults={"n_estimators": 200, "max_depth": None, "min_samples_leaf": 1, "max_features": "sqrt"},
    extra_params=frozenset({"select_k", "n_jobs"})))

register_family(Family(
    name="lightgbm", prior_cost_s=2.0, build=_lightgbm, description="LightGBM gradient-boosted trees (classifier or regressor)",
    tasks=frozenset({"binary", "multiclass", "regression"}), variants={"regression": _lightgbm_regressor},
    default_space={
        "n_estimators": {"type": "int", "low": 100, "high": 400, "step": 50},
        "learning_rate": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
        "num_leaves": {"type": "int", "low": 15, "high": 63, "log": True},
        "min_child_samples": {"type": "int", "low": 5, "high": 50, "log": True},
        # Sparse n-gram matrices are wide: sampling columns keeps each tree cheap.
        "colsample_bytree": {"type": "float", "low": 0.1, "high": 0.5},
        "reg_lambda": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
    },
    defaults={"n_estimators": 200, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20,
              "colsample_bytree": 0.3, "reg_lambda": 1.0, "n_jobs": 2},
    # max_bin: histogram bins per column (TF-IDF n-gram columns hold few distinct values: 15 lose nothing there)
    extra_params=frozenset({"select_k", "max_bin"})))

register_family(Family(
    name="ridge", prior_cost_s=0.1, build=_ridge, description="L2-regularised linear regression", tasks=frozenset({"regression"}),
    default_space={"alpha": {"type": "float", "low": 1e-3, "high": 1e3, "log": True}},
    defaults={"alpha": 1.0}))
