"""TabularFeaturizer (fitted on training rows only, safe to store), regression and unsupervised metrics."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn import metrics as skm
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from cgtrain.data.splits import group_kfold
from cgtrain.evaluate.metrics import (METRICS, anomaly_metrics, clustering_metrics, compute, mean_baseline,
                                      precision_at_k, score)
from cgtrain.features.featurizer import CodeFeaturizer
from cgtrain.features.tabular import CodeColumnTokenizer, TabularFeaturizer
from cgtrain.artifacts.files import load_model, save_model


def frame(ages, cities):
    return pd.DataFrame({"age": ages, "city": pd.Series(cities, dtype=object)})


def test_imputation_and_scaling_are_learned_from_the_training_rows_only():
    train = frame([10.0, np.nan, 30.0, 50.0], ["a", "a", None, "b"])
    feat = TabularFeaturizer(("age",), ("city",))
    X = feat.fit_transform(train)
    assert sp.isspmatrix_csr(X) and X.dtype == np.float32
    assert list(feat.get_feature_names_out()) == ["num:age", "cat:city_(missing)", "cat:city_a", "cat:city_b"]
    # median of the training rows (30) fills the gap; a missing city is a level of its own
    dense = X.toarray()
    assert dense[1, 0] == pytest.approx(dense[2, 0]) and dense[2, 1:].tolist() == [1.0, 0.0, 0.0]
    test = feat.transform(frame([1000.0, np.nan], ["zzz", "b"])).toarray()  # unseen category: all zeros
    assert test[0, 1:].tolist() == [0.0, 0.0, 0.0] and test[1, 1:].tolist() == [0.0, 0.0, 1.0]
    assert test[1, 0] == pytest.approx(dense[2, 0])  # imputed with the training median, not the test's


def test_code_and_table_features_side_by_side_round_trip_through_skops(tmp_path):
    data = pd.DataFrame({"code": ["def f(a): return a + 1", "x = y * 2", "print(x)", "return a - 1"],
                         "age": [1.0, 2.0, np.nan, 4.0], "city": ["a", "b", "a", None]})
    tokens = CodeColumnTokenizer("python")
    feat = TabularFeaturizer(("age",), ("city",), CodeFeaturizer(min_df=1))
    X = feat.fit_transform(tokens.transform(data))
    assert X.shape[1] > 3 and any(n.startswith("tok:") for n in feat.get_feature_names_out())
    pipe = Pipeline([("tokens", tokens), ("features", feat), ("model", Ridge().fit(X, [1.0, 2.0, 3.0, 4.0]))])
    save_model(pipe, tmp_path / "m.skops")
    loaded = load_model(tmp_path / "m.skops", None)
    np.testing.assert_allclose(loaded.predict(data), pipe.predict(data))


def test_regression_metrics_match_sklearn_and_say_their_direction():
    y, pred = np.array([3.0, -0.5, 2.0, 7.0]), np.array([2.5, 0.0, 2.0, 8.0])
    out = compute(y, pred)
    assert out["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert out["mae"] == pytest.approx(skm.mean_absolute_error(y, pred)) and out["r2"] == pytest.approx(
        skm.r2_score(y, pred))
    assert score("rmse", y, pred) == out["rmse"]
    assert not METRICS.get("rmse").greater_is_better and not METRICS.get("mae").greater_is_better
    assert METRICS.get("r2").greater_is_better and METRICS.get("silhouette").greater_is_better
    base = mean_baseline([1.0, 3.0], [2.0, 4.0])
    assert base["rmse"] == pytest.approx(np.sqrt((0 + 4) / 2)) and base["mae"] == pytest.approx(1.0)


def test_precision_at_k_is_the_share_of_anomalies_among_the_top_k_scores():
    y = np.array([0, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.05])
    assert precision_at_k(y, s) == 0.5  # k = 2 anomalies: rows 0 (normal) and 1 (anomaly)
    assert precision_at_k(y, s, 1) == 0.0 and precision_at_k(y, s, 4) == 0.5
    out = anomaly_metrics(s, np.array([0, 1, 0, 1, 0, -1]))  # -1: unlabelled, left out
    assert out["precision_at_k"] == 0.5 and out["roc_auc"] == pytest.approx(skm.roc_auc_score(y[:5], s[:5]))
    assert anomaly_metrics(s) == {}


def test_clustering_metrics_use_labels_when_there_are_some():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    clusters = np.repeat([0, 1], 20)
    out = clustering_metrics(X, clusters, np.repeat([1, 0], 20))
    assert out["silhouette"] > 0.9 and out["adjusted_rand"] == 1.0 and out["n_clusters"] == 2
    assert "adjusted_rand" not in clustering_metrics(X, clusters, np.full(40, -1))
    assert np.isnan(clustering_metrics(X, np.zeros(40, dtype=int))["silhouette"])  # one cluster


def test_regression_folds_keep_groups_apart_without_stratifying():
    y = np.linspace(0, 1, 40)
    groups = np.repeat(np.arange(10), 4)
    folds = group_kfold(y, groups, 5, seed=0)
    assert len(folds) == 5
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
