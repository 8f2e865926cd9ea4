"""Requests for regression / anomaly / clustering and table columns: defaults and clear errors."""
import pytest

from cgtrain.models import FAMILIES
from cgtrain.request import RequestError, parse_request

TABLE = {"path": "t.csv", "code_column": None, "numeric_columns": ["x", "y"], "categorical_columns": ["c"]}


def problems(data) -> list[str]:
    with pytest.raises(RequestError) as info:
        parse_request(data)
    return info.value.problems


def test_each_task_gets_its_own_default_metric_and_candidates():
    reg = parse_request({"task": "regression", "dataset": TABLE})
    assert reg.validation.metric == "rmse" and [c.family for c in reg.candidates] == ["ridge", "random_forest",
                                                                                      "lightgbm"]
    assert parse_request({"task": "anomaly", "dataset": TABLE}).validation.metric == "precision_at_k"
    clu = parse_request({"task": "clustering", "dataset": {**TABLE, "label_column": None}})
    assert clu.validation.metric == "silhouette" and clu.candidates[0].family == "kmeans"
    assert parse_request({"dataset": {"path": "d.jsonl"}}).validation.metric == "f1"  # unchanged default
    assert parse_request({"task": "regression", "dataset": TABLE,
                          "validation": {"folds": 3}}).validation.metric == "rmse"


def test_a_classification_metric_for_regression_suggests_rmse():
    [line] = problems({"task": "regression", "dataset": TABLE, "validation": {"metric": "f1"}})
    assert "validation.metric 'f1' does not apply to task: regression" in line and "rmse" in line


def test_a_family_that_cannot_learn_the_task_is_named_with_the_ones_that_can():
    [line] = problems({"task": "regression", "dataset": TABLE, "candidates": [{"family": "logreg"}]})
    assert "candidates.0.family: 'logreg' does not support task: regression" in line
    assert "ridge" in line and "lightgbm" in line
    [line] = problems({"task": "binary", "dataset": TABLE, "candidates": [{"family": "isolation_forest"}]})
    assert "supports anomaly" in line


def test_table_column_mistakes_are_explained():
    [line] = problems({"dataset": {"path": "t.csv", "code_column": None}})
    assert "no numeric_columns or categorical_columns" in line
    [line] = problems({"dataset": {**TABLE, "categorical_columns": ["x"]}})
    assert "'x' is listed twice" in line
    [line] = problems({"dataset": {**TABLE, "label_column": "x"}})
    assert "label_column 'x' is also a feature column" in line
    [line] = problems({"dataset": TABLE, "candidates": [{"family": "textcnn"}]})
    assert "reads code tokens only" in line
    [line] = problems({"task": "binary", "dataset": {**TABLE, "label_column": None}})
    assert "label_column is null" in line and "anomaly" in line


def test_families_declare_their_tasks():
    assert FAMILIES.get("lightgbm").supports("regression") and FAMILIES.get("lightgbm").supports("binary")
    assert not FAMILIES.get("logreg").supports("regression") and FAMILIES.get("ridge").tasks == {"regression"}
    assert type(FAMILIES.get("random_forest").make({}, 0, task="regression")).__name__ == "RandomForestRegressor"
    assert type(FAMILIES.get("random_forest").make({}, 0, task="binary")).__name__ == "RandomForestClassifier"
    with pytest.raises(ValueError, match="does not support task 'regression'"):
        FAMILIES.get("logreg").make({}, 0, task="regression")
    for name in ("isolation_forest", "autoencoder", "kmeans", "hdbscan"):
        assert FAMILIES.get(name).tasks in ({"anomaly"}, {"clustering"})


def test_the_shipped_task_examples_are_valid():
    from cgtrain.request import load_request

    diabetes = load_request("examples/tabular-diabetes.yaml")
    assert diabetes.task == "regression" and diabetes.dataset.code_column is None
    assert load_request("examples/anomaly.yaml").validation.metric == "precision_at_k"


def test_a_plain_table_keeps_repeated_feature_vectors_in_its_evaluation_unless_asked(tmp_path):
    """A table whose rows often share feature values (a panel, few levels): the test split and the CV
    validation folds keep ~their share of rows by default; `validation.dedup: rows` drops the repeats."""
    import numpy as np
    import pandas as pd

    from cgtrain.core.prepared import prepare
    from cgtrain.request import TrainingRequest

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.integers(0, 3, 600), "c": rng.choice(["a", "b"], 600)})
    frame["label"] = frame["x"] * 2.0 + rng.normal(size=600)
    frame.to_csv(tmp_path / "t.csv", index=False)

    def prepared(**validation):
        req = TrainingRequest.model_validate({
            "task": "regression", "validation": {"folds": 3, "test_fraction": 0.2, **validation},
            "dataset": {"path": str(tmp_path / "t.csv"), "code_column": None, "numeric_columns": ["x"],
                        "categorical_columns": ["c"]}})
        return prepare(req, tmp_path, say=lambda m: None)

    kept = prepared()
    assert 100 <= len(kept.split.test) <= 140 and kept.split.dropped_exact == 0
    assert kept.dropped_val_duplicates == 0 and sum(len(va) for _, va in kept.folds) == len(kept.split.train)
    from cgtrain.errors import SplitError

    with pytest.raises(SplitError, match="validation.dedup=none"):  # 6 distinct feature vectors, all in training
        prepared(dedup="rows")
