"""AutoML within a wall-clock budget: cheap families first, the whole run inside budget + 5%."""
import json
import time

import optuna

from cgtrain.flows.supervised import train as train_run
from cgtrain.flows.automl_request import build_request
from cgtrain.tune.automl import CODE_TREE_NAME, fidelity_levels, start_params

BUDGET = 15.0


def test_budgeted_run_holds_its_budget_and_probes_cheap_families_first(tmp_path, bugs_jsonl):
    req = build_request(bugs_jsonl, BUDGET, metric="f1", families=["logreg", "linear_svm", "lightgbm", "textcnn"],
                        overrides=["dataset.language=python", "features.max_features=3000"])
    assert req.hpo.budget_s == BUDGET and req.hpo.ensemble == "auto" and req.task == "binary"
    start = time.time()
    result = train_run(req, tmp_path / "run", say=lambda m: None)
    elapsed = time.time() - start
    assert elapsed <= BUDGET * 1.05, f"{elapsed:.1f}s for a {BUDGET}s budget"
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'run/study.db'}")
    families = [t.user_attrs.get("family") for t in study.trials]
    named = [t.user_attrs.get("baseline") for t in study.trials]
    # the anytime defaults first (on code: the linear baseline, then LightGBM when it fits), then probes cheapest first
    assert families[0] == "logreg" and named[0].startswith("baseline")
    if families[1:2] == ["lightgbm"]:
        assert named[1] == CODE_TREE_NAME and study.trials[1].user_attrs["fidelity"] == 1.0
    probes = [f for f, n in zip(families, named) if n is None]
    assert "textcnn" not in probes[:2]  # the dearest family never goes first (linear_svm's probe may not fit)
    assert study.user_attrs["automl"]["budget_s"] == BUDGET
    assert (tmp_path / "run/model.skops").is_file() and result.metrics["test"]["f1"] >= 0
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    for t in done:  # each fold's fit alone (forked or in-process) beside the fold's time, for the reserve's plan
        fits, folds = t.user_attrs["fold_fit_seconds"], t.user_attrs["fold_seconds"]
        assert len(fits) == len(folds) and all(0 < f <= s for f, s in zip(fits, folds))
    full = [t for t in done if t.user_attrs.get("fidelity") == 1.0]
    if len(full) >= 2:  # the ensemble step weighs two or more full-fidelity trials (fewer on a busy machine)
        assert json.loads((tmp_path / "run/ensemble.json").read_text())["method"] == "auto"


def test_fidelity_levels_grow_to_all_rows_and_start_cheap():
    assert fidelity_levels(500) == [1.0]
    levels = fidelity_levels(20_000)
    assert levels[0] == 0.05 and levels[-1] == 1.0 and all(a < b for a, b in zip(levels, levels[1:]))
    space = {"n_estimators": {"type": "int", "low": 100, "high": 400, "step": 50},
             "learning_rate": {"type": "float", "low": 0.03, "high": 0.3, "log": True}}
    assert start_params("lightgbm", space) == {"lightgbm.n_estimators": 100, "lightgbm.learning_rate": 0.1}


def test_a_family_whose_trial_on_all_rows_cannot_fit_the_time_left_is_dropped():
    """Only full-fidelity trials can become the final model: low-fidelity trials of a family that could never
    run on all rows in the time left are wasted budget (Juliet, 300 s: neural probes took 280 s)."""
    from cgtrain.tune.automl import Controller, FamilyState

    ctl, said = Controller.__new__(Controller), []
    ctl.say = said.append
    levels = [0.05, 0.15, 0.45, 1.0]
    slow, quick, done = FamilyState("mlp", levels, 200.0), FamilyState("lightgbm", levels, 50.0), \
        FamilyState("logreg", levels, 10.0, level=3)
    slow.costs, quick.costs, done.costs = [(0.05, 20.0)], [(0.05, 1.0)], [(1.0, 300.0)]  # on all rows: 400, 20, 300 s
    ctl.states = {"mlp": slow, "lightgbm": quick, "logreg": done}
    ctl._drop_out_of_reach(100.0)
    assert slow.skipped.startswith("a trial on all rows (~400s)") and said == [f"automl: stop mlp: {slow.skipped}"]
    assert not quick.skipped and not done.skipped  # at full fidelity already: its own trials are the candidates


def test_a_trials_fixed_cost_is_not_read_as_a_slow_machine():
    """wine / iris (150-180 rows, 5 folds): sgd's prior of 0.03 s took 0.7 s, all of it the trial's own overhead;
    read as a 23x slower machine, random forest (prior 1.7 s) was estimated at 37 s and skipped from a 60 s budget."""
    from cgtrain.tune.automl import Controller, FamilyState

    ctl = Controller.__new__(Controller)
    levels = [1.0]
    sgd, logreg, forest = FamilyState("sgd", levels, 0.03), FamilyState("logreg", levels, 0.1), \
        FamilyState("random_forest", levels, 1.7)
    sgd.costs, logreg.costs = [(1.0, 0.7)], [(1.0, 0.8)]
    ctl.states = {"sgd": sgd, "logreg": logreg, "random_forest": forest}
    assert ctl.overhead() == 0.7 and ctl.slowdown() == 1.0
    assert abs(ctl.unmeasured_cost(forest, 1.0) - 2.4) < 1e-9
    # where a measured family's own work dominates, its slowdown still counts (a busy machine slows them all)
    lightgbm = FamilyState("lightgbm", levels, 10.0)
    lightgbm.costs = [(1.0, 30.7)]
    ctl.states["lightgbm"] = lightgbm
    assert abs(ctl.slowdown() - 3.0) < 1e-9 and abs(ctl.unmeasured_cost(forest, 1.0) - (0.7 + 5.1)) < 1e-9


def test_a_dear_familys_own_work_is_not_read_as_every_trials_fixed_cost():
    """A mixed 3-class table (20k rows, 2 folds): the LightGBM baseline, prior 32 s, ran first and took 13 s. As the
    fastest trial, all of it was read as fixed cost: sgd (prior 0.8 s) was estimated at 14 s and skipped from the
    26 s left. Its work is its own: sgd's first trial is its prior."""
    from cgtrain.tune.automl import Controller, FamilyState

    ctl = Controller.__new__(Controller)
    levels = [1.0]
    lightgbm, sgd = FamilyState("lightgbm", levels, 32.0), FamilyState("sgd", levels, 0.8)
    lightgbm.costs = [(1.0, 13.0)]
    ctl.states = {"sgd": sgd, "lightgbm": lightgbm}
    assert ctl.overhead() == 0.0 and ctl.slowdown() == 1.0
    assert abs(ctl.unmeasured_cost(sgd, 1.0) - 0.8) < 1e-9
    lightgbm.costs = [(1.0, 96.0)]  # the same on a 3x slower machine: read as such, not as fixed cost
    assert ctl.overhead() == 0.0 and abs(ctl.slowdown() - 3.0) < 1e-9
