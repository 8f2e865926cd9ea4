"""Real tables: labels of any type, boolean / high-cardinality / date-time / text columns, --label, a budget
that always ends with a model."""
import json

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.sparse as sp

from cgtrain.flows.automl_request import build_request, column_kind, infer_dataset
from cgtrain.data.loading import load_dataset
from cgtrain.data.mixed_table import mixed_table
from cgtrain.data.table import numeric_value
from cgtrain.features.tabular import MAX_ONEHOT, TabularFeaturizer
from cgtrain.artifacts.files import load_model, save_model
from cgtrain.request import DatasetConfig, RequestError, load_request


def labels_of(tmp_path, values, task="binary", **kw):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"x": i, "y": v}) for i, v in enumerate(values)))
    cfg = DatasetConfig(path=str(path), code_column=None, label_column="y", numeric_columns=["x"],
                        id_column=None, group_column=None, **kw)
    return load_dataset(cfg, task, tmp_path / "q.jsonl")


@pytest.mark.parametrize("values, classes", [
    (["cash", "credit card", "cash"], ("cash", "credit card")),
    (["yes", "no", "no"], ("no", "yes")),
    ([True, False, True], (False, True)),
    (["True", "False", "false"], (False, True)),
    ([1, 0, "true", "false"], (0, 1)),  # 0/1 and true/false mixed: one class each
    ([7, 3, 3], (3, 7)),
])
def test_binary_labels_are_taken_as_found(tmp_path, values, classes):
    ds = labels_of(tmp_path, values)
    assert ds.classes == classes and ds.n_bad == 0
    assert [ds.classes[i] for i in ds.frame["label"]] == [
        next(c for c in classes if str(c).lower() == str(v).lower() or
             {"1": "true", "0": "false"}.get(str(v).lower()) == str(c).lower() or
             {"true": "1", "false": "0"}.get(str(v).lower()) == str(c).lower()) for v in values]


def test_multiclass_numbers_sort_as_numbers_and_a_third_binary_label_is_quarantined(tmp_path):
    assert labels_of(tmp_path, [10, 2, 1, 2], "multiclass").classes == (1, 2, 10)
    ds = labels_of(tmp_path, ["a", "b", "a", "c"] + ["a", "b"] * 48, max_bad_fraction=0.05)
    assert ds.classes == ("a", "b") and ds.bad_reasons == {"unknown_label": 1}


def test_one_stray_word_among_numeric_labels_is_a_bad_row_not_a_third_class(tmp_path):
    """0 / 1 labels with one `maybe` (a hand-edited export) make a binary task with that row quarantined, not a
    three-class task whose third class has one row; words that are classes stay classes."""
    frame = pd.DataFrame({"x": np.arange(300) % 7, "label": [0, 1, 1] * 100})
    frame["label"] = frame["label"].astype(object)
    frame.loc[5, "label"] = "maybe"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    req = build_request(path, 30, overrides=["hpo.warm_start=false"])
    assert req.task == "binary"
    ds = load_dataset(req.dataset.model_copy(update={"max_bad_fraction": 0.05}), req.task, tmp_path / "q.jsonl")
    assert ds.classes == (0, 1) and ds.n_bad == 1 and ds.bad_reasons == {"unknown_label": 1}
    frame.loc[:50, "label"] = "maybe"
    frame.to_csv(path, index=False)
    assert build_request(path, 30, overrides=["hpo.warm_start=false"]).task == "multiclass"


def test_yaml_classes_no_yes_stay_strings(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("task: binary\ndataset: {path: d.csv, classes: [no, yes], code_column: null, "
                    "numeric_columns: [x]}\nhpo: {warm_start: true}\n")
    req = load_request(path, ["dataset.categorical_columns=[on]"])
    assert req.dataset.classes == ["no", "yes"] and req.dataset.categorical_columns == ["on"]
    assert req.hpo.warm_start is True


def test_booleans_in_a_numeric_column_are_numbers_not_quarantined():
    assert numeric_value("flag", True) == (1.0, None) and numeric_value("flag", "False") == (0.0, None)
    assert numeric_value("flag", "abc")[1][0] == "non_numeric"


def test_column_kinds_are_inferred_and_the_label_is_never_a_feature(tmp_path):
    frame = mixed_table(300, seed=1, target="method")
    frame["ticket"] = [f"T-{i}" for i in range(len(frame))]  # an identifier: not a feature
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    ds = infer_dataset(path, "method")
    assert ds["label_column"] == "method" and ds["id_column"] == "id"
    assert set(ds["categorical_columns"]) == {"member", "newsletter", "channel", "city", "merchant"}
    assert ds["datetime_columns"] == ["signup", "paid_at"] and ds["text_columns"] == ["comment"]
    assert set(ds["numeric_columns"]) == {"age", "income", "basket", "returning"}
    feats = {c for k in ("numeric", "categorical", "datetime", "text") for c in ds[f"{k}_columns"]}
    assert "method" not in feats and "ticket" not in feats
    assert column_kind(pd.Series(["True", "False", None])) == "categorical"
    assert column_kind(pd.Series([True, False, True])) == "categorical"
    # the label given as an override is the label too (it used to stay among the features: leakage)
    req = build_request(path, 30, overrides=["dataset.label_column=member"])
    assert req.dataset.label_column == "member" and "member" not in req.dataset.categorical_columns
    assert "method" in req.dataset.categorical_columns
    with pytest.raises(RequestError) as info:
        build_request(path, 30, label="methd")
    assert "--label: column 'methd'" in info.value.problems[0] and "did you mean 'method'" in info.value.problems[0]


def test_high_cardinality_dates_and_text_stay_narrow_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({
        "x": rng.normal(size=n),
        "shop": [f"s{i}" for i in rng.integers(0, 2000, n)],  # ~500 levels in 600 rows
        "kind": rng.choice(["a", "b", None], n),
        "when": pd.Series(pd.date_range("2020-01-01", periods=n, freq="7h")).dt.strftime("%Y-%m-%d %H:%M:%S"),
        "note": rng.choice(["great fast service", "slow and broken", "ok order today"], n),
    })
    y = rng.integers(0, 2, n)
    feat = TabularFeaturizer(("x",), ("shop", "kind"), datetime=("when",), text=("note",))
    X = feat.fit_transform(frame, y)
    names = list(feat.get_feature_names_out())
    assert sp.isspmatrix_csr(X) and X.shape[1] == len(names) and X.shape[1] < 60
    assert sum(n.startswith("cat:shop") for n in names) <= MAX_ONEHOT + 2  # top levels + frequency + target
    assert "date:when_hour" in names and any(n.startswith("text:note:") for n in names)
    hours = X[:, names.index("date:when_hour")].toarray().ravel()
    assert len(np.unique(hours)) > 1
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    pipe = Pipeline([("features", feat), ("model", LogisticRegression().fit(X, y))])
    save_model(pipe, tmp_path / "m.skops")
    loaded = load_model(tmp_path / "m.skops", None)
    unseen = frame.head(5).assign(shop="never-seen", when="not a date")
    np.testing.assert_allclose(loaded.predict_proba(unseen), pipe.predict_proba(unseen))


def test_string_labels_train_and_come_back_on_predict_even_when_no_trial_fits_the_budget(tmp_path):
    from cgtrain.flows.supervised import train as train_run
    from cgtrain.serve.predictor import load_predictor

    frame = mixed_table(400, seed=2, target="method")
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    req = build_request(path, 30, label="method", families=["logreg", "lightgbm"],
                        overrides=["hpo.warm_start=false", "hpo.ensemble=none"])
    # a budget that ends before any trial can start still ends with a model: LightGBM's defaults
    req = req.model_copy(update={"hpo": req.hpo.model_copy(update={"budget_s": 0.01})})
    result = train_run(req, tmp_path / "run", say=lambda m: None)
    assert result.metrics["best"]["family"] == "lightgbm" and result.metrics["cv"]["mean"] is None
    pred = load_predictor(tmp_path / "run")
    rows = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in frame.head(20).to_dict("records")]
    out = list(pred.predict(rows))
    assert {o["label"] for o in out} <= {"cash", "credit card"} and all("error" not in o for o in out)


def test_cli_label_option_names_a_missing_target_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from cgtrain.cli import app

    path = tmp_path / "m.csv"
    mixed_table(60, seed=3, target="tier").to_csv(path, index=False)
    out = CliRunner().invoke(app, ["automl", str(path), "--label", "tierr", "--budget", "5",
                                   "--run-dir", str(tmp_path / "run")])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "--label: column 'tierr'" in out.output and "did you mean 'tier'" in out.output


def test_a_table_without_a_usable_feature_column_is_one_line_naming_the_columns(tmp_path):
    """Every column constant: automl used to report 'invalid request: dataset: code_column is null and no
    numeric_columns or categorical_columns are listed', about a request the user never wrote."""
    from typer.testing import CliRunner

    from cgtrain.cli import app

    path = tmp_path / "c.csv"
    pd.DataFrame({"a": [1.0] * 40, "b": ["x"] * 40, "label": [0, 1] * 20}).to_csv(path, index=False)
    out = CliRunner().invoke(app, ["automl", str(path), "--budget", "5", "--run-dir", str(tmp_path / "run")])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "no column to learn 'label' from: a, b are empty, constant or an identifier" in out.output
    assert not (tmp_path / "run" / "model.skops").exists()


def test_automl_on_a_table_searches_table_spaces_and_starts_from_lightgbm_as_shipped(tmp_path):
    """On a table, tree families search spaces for few columns (every column per LightGBM tree may be drawn;
    the code-text space drew 10-50%), the anytime baseline is LightGBM's own defaults, and a small table
    gets 5 CV folds (3 for a tiny one)."""
    from types import SimpleNamespace

    from cgtrain.tune.defaults import baseline_trial
    from cgtrain.tune.study import candidate_spaces

    rng = np.random.default_rng(0)

    def table(n):
        path = tmp_path / f"t{n}.csv"
        pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "label": rng.integers(0, 2, n)}).to_csv(
            path, index=False)
        return path

    req = build_request(table(600), 30, families=["lightgbm", "random_forest", "logreg"])
    spaces = candidate_spaces(req)
    assert spaces["lightgbm"]["colsample_bytree"].high == 1.0 and 1.0 in spaces["random_forest"]["max_features"].choices
    assert req.validation.folds == 5 and build_request(table(60), 30).validation.folds == 3
    assert build_request(table(6000), 30).validation.folds == 3
    prepared = SimpleNamespace(dataset=SimpleNamespace(table=object()), use_code=False)
    family, params, _features, name = baseline_trial(req, prepared, spaces, {})
    assert family == "lightgbm" and name == "baseline: lightgbm defaults"
    assert params["lightgbm.colsample_bytree"] == 1.0 and params["lightgbm.n_estimators"] == 100


def test_the_printed_leaderboard_takes_a_trial_pruned_after_one_fold(tmp_path):
    """A budget that ends a trial after its first fold leaves a CV mean with no spread and no fit seconds (a
    1500-column table at 10 s): the leaderboard prints it with '-' instead of ending the run in a traceback."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from cgtrain.cli.output import print_results

    board = pd.DataFrame([{"trial": 1, "state": "complete", "family": "sgd", "params": "{}", "cv_f1_mean": 0.48,
                           "cv_f1_std": 0.07, "fit_seconds": 0.7},
                          {"trial": 0, "state": "pruned", "family": "lightgbm", "params": "{}", "cv_f1_mean": 0.47,
                           "cv_f1_std": None, "fit_seconds": float("nan")}])
    board["cv_f1_std"] = pd.Series([0.07, None], dtype=object)  # as the study's board has it (None, not NaN)
    metrics = {"test": {"f1": 0.63}, "n_test": 100, "best": {"family": "sgd", "trial": 1}}
    console = Console(file=io.StringIO(), width=200)
    print_results(SimpleNamespace(leaderboard=board, metrics=metrics, run_dir=tmp_path), console)
    text = console.file.getvalue()
    assert "0.4800 ± 0.0700" in text and "0.4700 " in text and "pruned" in text and "nan" not in text
