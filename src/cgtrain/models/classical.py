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



def build_logreg(p, seed, class_weight):
    return LogisticRegression(C=p["C"], solver=p["solver"], max_iter=p["max_iter"],
                              class_weight=p.get("class_weight") or class_weight, random_state=seed)


def build_logreg_multiclass(p, seed, class_weight):
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


def build_linear_svm(p, seed, class_weight):
    svm = LinearSVC(C=p["C"], class_weight=class_weight, max_iter=p["max_iter"], random_state=seed)
    # Calibrated so the family gives probabilities like the others (ROC/PR-AUC, thresholds).
    return CalibratedClassifierCV(svm, method="sigmoid", cv=3)


def build_random_forest(p, seed, class_weight):
    return _select(p, RandomForestClassifier(
        n_estimators=p["n_estimators"], max_depth=p["max_depth"], min_samples_leaf=p["min_samples_leaf"],
        max_features=p["max_features"], class_weight=class_weight, random_state=seed, n_jobs=p.get("n_jobs") or -1))


def build_random_forest_regressor(p, seed, class_weight=None):
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


def build_lightgbm(p, seed, class_weight):
    return _select(p, LGBMClassifier(class_weight=class_weight, **_lightgbm_kwargs(p, seed)))


def build_lightgbm_regressor(p, seed, class_weight=None):
    return LGBMRegressor(**_lightgbm_kwargs(p, seed))


def build_ridge(p, seed, class_weight=None):
    return Ridge(alpha=p["alpha"], random_state=seed)
