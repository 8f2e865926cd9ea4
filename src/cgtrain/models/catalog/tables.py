"""Families of the core install over the feature matrix: scikit-learn and LightGBM, linear text
models, anomaly detectors and clusterers (builders in classical, linear and unsupervised)."""
from __future__ import annotations

from cgtrain.models.base import Family, Lazy, register_family


register_family(Family(
    name="logreg", prior_cost_s=0.1, build=Lazy("cgtrain.models.classical:build_logreg"),
    variants={"multiclass": Lazy("cgtrain.models.classical:build_logreg_multiclass")},
    description="L2 logistic regression (liblinear; lbfgs multinomial for multiclass)",
    default_space={"C": {"type": "float", "low": 1e-1, "high": 1e2, "log": True},
                   "class_weight": {"type": "categorical", "choices": [None, "balanced"]}},
    defaults={"C": 1.0, "max_iter": 2000, "solver": "liblinear", "class_weight": None}))

register_family(Family(
    name="linear_svm", prior_cost_s=0.3, build=Lazy("cgtrain.models.classical:build_linear_svm"),
    description="linear SVM, sigmoid-calibrated",
    # Above C ~ 1 liblinear rarely converges on sparse n-grams and only gets slower.
    default_space={"C": {"type": "float", "low": 1e-3, "high": 1.0, "log": True}},
    defaults={"C": 0.1, "max_iter": 2000}))

register_family(Family(
    name="random_forest", prior_cost_s=3.0, build=Lazy("cgtrain.models.classical:build_random_forest"),
    description="random forest (classifier or regressor)",
    tasks=frozenset({"binary", "multiclass", "regression"}),
    variants={"regression": Lazy("cgtrain.models.classical:build_random_forest_regressor")},
    default_space={
        "n_estimators": {"type": "int", "low": 100, "high": 400, "step": 100},
        "max_depth": {"type": "categorical", "choices": [None, 20, 60]},
        "min_samples_leaf": {"type": "int", "low": 1, "high": 5},
        "max_features": {"type": "categorical", "choices": ["sqrt", "log2"]},
    },
    defaults={"n_estimators": 200, "max_depth": None, "min_samples_leaf": 1, "max_features": "sqrt"},
    extra_params=frozenset({"select_k", "n_jobs"})))

register_family(Family(
    name="lightgbm", prior_cost_s=2.0, build=Lazy("cgtrain.models.classical:build_lightgbm"),
    description="LightGBM gradient-boosted trees (classifier or regressor)",
    tasks=frozenset({"binary", "multiclass", "regression"}),
    variants={"regression": Lazy("cgtrain.models.classical:build_lightgbm_regressor")},
    default_space={
        "n_estimators": {"type": "int", "low": 100, "high": 400, "step": 50},
        "learning_rate": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
        "num_leaves": {"type": "int", "low": 15, "high": 127, "log": True},
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
    name="ridge", prior_cost_s=0.1, build=Lazy("cgtrain.models.classical:build_ridge"),
    description="L2-regularised linear regression", tasks=frozenset({"regression"}),
    default_space={"alpha": {"type": "float", "low": 1e-3, "high": 1e3, "log": True}},
    defaults={"alpha": 1.0}))

register_family(Family(
    name="sgd", prior_cost_s=0.05, build=Lazy("cgtrain.models.linear:build_sgd"),
    description="linear model by SGD: hinge / log-loss / modified Huber, L2 or elastic-net",
    default_space={
        "loss": {"type": "categorical", "choices": ["hinge", "modified_huber", "log_loss"]},
        "penalty": {"type": "categorical", "choices": ["l2", "elasticnet"]},
        "alpha": {"type": "float", "low": 1e-7, "high": 1e-3, "log": True},
        "l1_ratio": {"type": "float", "low": 0.01, "high": 0.5, "log": True},
        "class_weight": {"type": "categorical", "choices": [None, "balanced"]},
    },
    defaults={"loss": "modified_huber", "penalty": "l2", "alpha": 1e-5, "l1_ratio": 0.15, "max_iter": 30,
              "tol": 1e-4, "class_weight": "balanced", "average": False}))

register_family(Family(
    name="complement_nb", prior_cost_s=0.01, build=Lazy("cgtrain.models.linear:build_complement_nb"),
    description="complement naive Bayes (non-negative text features)",
    default_space={"alpha": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
                   "norm": {"type": "categorical", "choices": [False, True]}},
    defaults={"alpha": 0.1, "norm": False}))

# --- unsupervised ------------------------------------------------------------------------------
_ANOMALY, _CLUSTERING = frozenset({"anomaly"}), frozenset({"clustering"})

register_family(Family(
    name="isolation_forest", tasks=_ANOMALY, description="IsolationForest anomaly scores",
    build=Lazy("cgtrain.models.unsupervised:build_isolation_forest"),
    default_space={"n_estimators": {"type": "int", "low": 100, "high": 400, "step": 100},
                   "max_features": {"type": "float", "low": 0.3, "high": 1.0}},
    defaults={"n_estimators": 200, "max_features": 1.0, "max_samples": "auto", "contamination": 0.1}))

register_family(Family(
    name="autoencoder", tasks=_ANOMALY, description="MLP autoencoder (torch), reconstruction-error scores",
    requires=("torch",), extra="torch", build=Lazy("cgtrain.models.unsupervised:build_autoencoder"),
    default_space={"hidden": {"type": "categorical", "choices": [16, 32, 64]},
                   "code": {"type": "categorical", "choices": [4, 8, 16]},
                   "lr": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True}},
    defaults={"svd_components": 64, "hidden": 32, "code": 8, "epochs": 50, "batch_size": 64, "lr": 1e-3,
              "weight_decay": 1e-5, "contamination": 0.1}))

register_family(Family(
    name="kmeans", tasks=_CLUSTERING, description="k-means clusters",
    build=Lazy("cgtrain.models.unsupervised:build_kmeans"),
    default_space={"n_clusters": {"type": "int", "low": 2, "high": 12}},
    defaults={"n_clusters": 8, "n_init": 3}))

register_family(Family(
    name="hdbscan", tasks=_CLUSTERING, description="HDBSCAN density clusters (noise = -1)",
    build=Lazy("cgtrain.models.unsupervised:build_hdbscan"),
    default_space={"min_cluster_size": {"type": "int", "low": 3, "high": 30, "log": True}},
    defaults={"min_cluster_size": 5, "min_samples": None, "cluster_selection_epsilon": 0.0,
              "svd_components": 32}))
