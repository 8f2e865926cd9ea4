"""AutoML on code text: the anytime baseline first, featurisation searched and cached, linear families."""
import json
import time

import optuna
import pandas as pd

from cgtrain.flows.supervised import train as train_run
from cgtrain.flows.automl_request import build_request
from cgtrain.artifacts.files import load_model

BUDGET = 25.0


def test_code_automl_starts_from_the_named_baseline_and_searches_features(tmp_path, bugs_jsonl):
    req = build_request(bugs_jsonl, BUDGET, metric="f1", families=["logreg", "sgd", "complement_nb"],
                        overrides=["dataset.language=python"])
    assert set(req.features.space) >= {"ngram_max", "split_names", "kind", "min_df", "metrics"}
    start = time.time()
    train_run(req, tmp_path / "run", say=lambda m: None)
    assert time.time() - start <= BUDGET * 1.05
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'run/study.db'}")
    first = study.trials[0]
    assert first.user_attrs["family"] == "logreg" and first.user_attrs["baseline"].startswith("baseline")
    assert json.loads(first.user_attrs["params"]) == {"C": 10.0, "class_weight": "balanced", "solver": "lbfgs"}
    assert json.loads(first.user_attrs["features"])["split_names"] is False
    assert json.loads(first.user_attrs["features"])["name_flow"] is True  # what happens to each local name
    assert first.user_attrs["fidelity"] == 1.0
    second = study.trials[1]
    assert second.user_attrs["features"] == first.user_attrs["features"]
    if first.state == optuna.trial.TrialState.COMPLETE:  # (a machine busy enough stops it at its time limit)
        # the probes that follow reuse the baseline's featurisation: built once, cached
        assert "feat_seconds" in first.user_attrs and "feat_seconds" not in second.user_attrs
    assert second.user_attrs["family"] in ("sgd", "complement_nb")  # the cheap linear probes come next
    board = pd.read_csv(tmp_path / "run/leaderboard.csv")
    assert "baseline: tfidf + logreg" in board["name"].fillna("").tolist() and "features" in board.columns
    metrics = json.loads((tmp_path / "run/metrics.json").read_text())
    assert req.validation.final_fit == "all" and metrics["model_rows"] == metrics["n_train"] + metrics["n_test"]
    model_info = json.loads((tmp_path / "run/model.json").read_text())
    model = load_model(tmp_path / "run/model.skops", model_info["sha256"])
    proba = model.predict_proba(["def f(xs):\n    return xs[len(xs)]\n"])
    assert proba.shape == (1, 2)


def test_the_baseline_trial_may_run_longer_than_an_ordinary_trial():
    from cgtrain.tune.budget import Budget

    class Trial:
        def __init__(self, number, attrs):
            self.number, self.user_attrs = number, attrs

    budget = Budget(100.0, time.time(), 25.0, 10.0)
    assert budget.trial_limit(Trial(0, {"baseline": "baseline: tfidf + logreg"})) > 50
    assert budget.trial_limit(Trial(1, {})) == 25.0


def test_code_automl_reads_large_data_with_two_folds_and_cheap_tree_and_linear_settings(tmp_path):
    from cgtrain.flows.automl_request import LARGE_CODE_FOLDS, LARGE_CODE_ROWS, TREE_MAX_BIN, TREE_SELECT_K

    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "code": f"int f{i % 7}(int x) {{ return x + {i}; }}",
                                        "label": i % 2, "family": f"g{i % 50}"}) + "\n"
                            for i in range(LARGE_CODE_ROWS)))
    req = build_request(path, 300, metric="f1", families=["logreg", "lightgbm"])
    assert req.validation.folds == LARGE_CODE_FOLDS  # FLAML holds out on large data; 2 folds halve a tree trial
    params = {c.family: c.params for c in req.candidates}
    assert params["logreg"]["solver"] == "lbfgs"
    assert params["lightgbm"]["select_k"] == TREE_SELECT_K and params["lightgbm"]["max_bin"] == TREE_MAX_BIN
    small = tmp_path / "small.jsonl"
    small.write_text("".join(path.read_text().splitlines(keepends=True)[:500]))
    assert build_request(small, 300, metric="f1", families=["logreg"]).validation.folds == 3


def test_the_tree_default_on_code_is_lightgbm_at_full_fidelity_on_the_baselines_features_but_name_flow():
    from types import SimpleNamespace

    from cgtrain.tune.automl import CODE_TREE, CODE_TREE_NAME, code_tree_trial

    spaces = {"lightgbm": {"n_estimators": {"type": "int", "low": 100, "high": 400, "step": 50},
                           "num_leaves": {"type": "int", "low": 15, "high": 127, "log": True}}}
    code = SimpleNamespace(dataset=SimpleNamespace(table=None), use_code=True)
    req = SimpleNamespace(task="binary")
    baseline = ("logreg", {}, {"ngram_max": 3}, "baseline: tfidf + logreg")
    family, params, features, name = code_tree_trial(req, code, spaces, baseline)
    assert (family, name, features) == ("lightgbm", CODE_TREE_NAME, {"ngram_max": 3})
    assert params == {"lightgbm.n_estimators": CODE_TREE["n_estimators"], "lightgbm.num_leaves": 127}
    narrow = {"lightgbm": {**spaces["lightgbm"], "num_leaves": {"type": "int", "low": 15, "high": 63}}}
    assert code_tree_trial(req, code, narrow, baseline)[1] == {"lightgbm.n_estimators": CODE_TREE["n_estimators"]}
    table = SimpleNamespace(dataset=SimpleNamespace(table=object()), use_code=False)
    assert code_tree_trial(req, table, spaces, baseline) is None  # tables start from LightGBM defaults already
    assert code_tree_trial(SimpleNamespace(task="regression"), code, spaces, baseline) is None
    # the linear baseline reads name-flow terms, the tree default does not (they cost LightGBM F1 on unseen families)
    flow = ("logreg", {}, {"ngram_max": 3, "ordinal_names": True, "name_flow": True}, "baseline: tfidf + logreg")
    assert code_tree_trial(req, code, spaces, flow)[2] == {"ngram_max": 3, "ordinal_names": True, "name_flow": False}
