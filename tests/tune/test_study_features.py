"""NSGA-II Pareto fronts, warm start from earlier runs, per-fold pruners, an ensemble refit end to end."""
import json

import numpy as np
import optuna
import pytest

from cgtrain.core.prepared import prepare
from cgtrain.flows.refit import refit_and_test
from cgtrain.flows.supervised import train as train_run
from cgtrain.models.ensemble import EnsembleChoice
from cgtrain.serve.predictor import load_predictor
from cgtrain.tune import study as studies
from helpers.requests import parsed_request as make_request


def test_nsga2_returns_a_pareto_front_of_metric_vs_latency(tmp_path, bugs_jsonl):
    req = make_request(bugs_jsonl, hpo={"sampler": "nsga2", "n_trials": 5, "objectives": ["metric", "latency_ms"]})
    result = train_run(req, tmp_path / "run", say=lambda m: None)
    front = json.loads((tmp_path / "run/pareto_front.json").read_text())
    assert front and all({"trial", "family", "cv_metric", "latency_ms"} <= set(p) for p in front)
    for p in front:  # no member is dominated by another
        assert not any(q["cv_metric"] >= p["cv_metric"] and q["latency_ms"] <= p["latency_ms"] and q != p
                       and (q["cv_metric"] > p["cv_metric"] or q["latency_ms"] < p["latency_ms"]) for q in front)
    assert result.metrics["best"]["trial"] == max(front, key=lambda p: (p["cv_metric"], -p["trial"]))["trial"]
    assert "latency_ms" in result.leaderboard.columns


def test_multi_objective_requests_name_what_to_change():
    from cgtrain.request import RequestError

    with pytest.raises(RequestError, match="sampler 'cmaes' cannot search several objectives"):
        make_request("x.jsonl", hpo={"sampler": "cmaes", "objectives": ["metric", "model_kb"]})
    with pytest.raises(RequestError, match="pruner 'median' needs a single objective"):
        make_request("x.jsonl", hpo={"sampler": "nsga2", "pruner": "median", "objectives": ["metric", "model_kb"]})


def test_warm_start_enqueues_the_best_params_of_earlier_runs_of_the_same_name(tmp_path, bugs_jsonl):
    first = make_request(bugs_jsonl, candidates=[{"family": "logreg"}], hpo={"sampler": "random", "n_trials": 2})
    train_run(first, tmp_path / "runs/a", say=lambda m: None)
    old = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'runs/a/study.db'}")
    best = studies.best_trial(old)
    said = []
    second = make_request(bugs_jsonl, candidates=[{"family": "logreg"}],
                          hpo={"sampler": "random", "n_trials": 1, "warm_start": True}, seed=1)
    train_run(second, tmp_path / "runs/b", say=said.append)
    new = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'runs/b/study.db'}")
    assert new.trials[0].params == best.params
    assert new.trials[0].user_attrs["warm_start_from"].endswith("runs/a")
    assert any(s.startswith("warm start:") for s in said)


@pytest.mark.parametrize("pruner", ["median", "percentile", "successive_halving", "hyperband"])
def test_every_pruner_stops_a_bad_trial_between_cv_folds(pruner):
    req = make_request("x.jsonl", candidates=[{"family": "logreg"}], hpo={"pruner": pruner, "sampler": "random"})
    study = optuna.create_study(study_name=f"pruning-{pruner}", direction="maximize",  # a fixed name: fixed
                                pruner=studies.PRUNERS.get(pruner)(),              # hyperband brackets
                                sampler=optuna.samplers.RandomSampler(seed=0))
    folds_run = []

    def evaluate(family, params, trial):  # per-fold reports, as the pipeline's evaluator makes them
        scores = []
        for k in range(5):
            scores.append(0.9 if trial.number < 6 else 0.1)
            folds_run.append((trial.number, k))
            trial.report(scores[-1], k)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return studies.TrialResult(family, params, scores, 0.0)

    objective = studies.make_objective(studies.candidate_spaces(req), {}, None, evaluate)
    study.optimize(objective, n_trials=8)
    bad = [t for t in study.trials if t.number >= 6]
    stopped = [t for t in bad if t.state == optuna.trial.TrialState.PRUNED
               and len([k for n, k in folds_run if n == t.number]) < 5]  # stopped before the last fold
    # Hyperband's last bracket never prunes: a trial drawn into it runs every fold
    assert len(stopped) == len(bad) if pruner != "hyperband" else stopped


def test_a_kept_ensemble_is_refit_saved_as_skops_and_predicts(tmp_path, bugs_jsonl):
    req = make_request(bugs_jsonl, candidates=[{"family": "logreg"}, {"family": "textcnn", "params": {
        "epochs": 1, "embed_dim": 16, "width": 16, "max_len": 64, "batch_size": 64}}], hpo={"sampler": "grid", "n_trials": 2, "ensemble": "voting"},
        features={"max_features": 2000}, )
    req = req.model_copy(update={"candidates": [c.model_copy(update={"space": {}}) for c in req.candidates]})
    run = tmp_path / "run"
    train_run(req, run, say=lambda m: None)
    assert (run / "oof/trial_00000.npz").is_file() and (run / "oof/trial_00001.npz").is_file()
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{run / 'study.db'}")
    prepared = prepare(req, run, say=lambda m: None)
    choice = EnsembleChoice("voting", [0, 1], [0.5, 0.5], [0.5, 0.5, 0.5])
    metrics = refit_and_test(req, run, prepared, studies.best_trial(study), lambda m: None,
                                      ensemble=(study, choice))
    manifest = json.loads((run / "model.json").read_text())
    assert manifest["family"] == "ensemble" and metrics["best"]["family"] == "ensemble"
    assert sorted(m["family"] for m in manifest["params"]["members"]) == ["logreg", "textcnn"]
    predictor = load_predictor(run_dir=run)
    rows = predictor.predict([{"id": "a", "code": "def f(x):\n    return x + 1\n"},
                              {"id": "b", "code": "def g(xs):\n    return xs[len(xs)]\n"}])
    assert [r["id"] for r in rows] == ["a", "b"] and all(0 <= r["probability"] <= 1 for r in rows)
    preds = [json.loads(line) for line in (run / "test_predictions.jsonl").read_text().splitlines()]
    assert len(preds) == metrics["n_test"] and np.allclose([sum(p["proba"]) for p in preds], 1.0)
