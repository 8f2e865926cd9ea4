"""Ensembles of the top trials: kept only when their CV score beats the best single trial."""
import json
from types import SimpleNamespace

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from sklearn.linear_model import LogisticRegression

from cgtrain.evaluate.metrics import score
from cgtrain.models.ensemble import EnsembleModel, beats, greedy_weights
from cgtrain.artifacts.files import load_model, save_model
from cgtrain.tune.ensemble_select import choose_ensemble, ensemble_may_win
from cgtrain.tune.hooks import save_oof
from helpers.requests import parsed_request as make_request

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 2, 300)
FOLDS = [(np.arange(300)[np.arange(300) % 3 != k], np.arange(300)[np.arange(300) % 3 == k]) for k in range(3)]


def _proba(p1):
    return np.column_stack([1 - p1, p1])


def _study(run_dir, members, y=Y, seconds=None):
    """An in-memory study whose trials' OOF predictions are `members` (trial -> probas over all rows); `seconds`:
    trial -> its folds' fit seconds (default 0.01)."""
    from cgtrain.evaluate.metrics import score

    study = optuna.create_study(direction="maximize")
    for number, proba in members.items():
        folds = [proba[va] for _, va in FOLDS]
        scores = [score("f1", y[va], f) for (_, va), f in zip(FOLDS, folds)]
        study.add_trial(optuna.trial.create_trial(
            params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, value=float(np.mean(scores)),
            user_attrs={"family": f"fam{number}", "params": "{}", "fold_scores": scores,
                        "fold_seconds": [(seconds or {}).get(number, 0.01)] * 3}))
        save_oof(run_dir, number, folds)
    return study


def _prepared(y=Y):
    return SimpleNamespace(folds=FOLDS, y=y, n_classes=2)


def test_complementary_members_make_an_ensemble_that_is_kept(tmp_path):
    # each member sees the label on a different half of the rows and guesses elsewhere
    half = np.arange(300) % 2 == 0
    a = np.where(half, Y * 0.9 + 0.05, 0.45 + 0.1 * RNG.random(300))
    b = np.where(~half, Y * 0.9 + 0.05, 0.45 + 0.1 * RNG.random(300))
    study = _study(tmp_path, {0: _proba(a), 1: _proba(b)})
    req = make_request(tmp_path / "x.jsonl", hpo={"ensemble": "auto"})
    choice = choose_ensemble(req, tmp_path, _prepared(), study, say=lambda m: None)
    record = json.loads((tmp_path / "ensemble.json").read_text())
    assert choice is not None and record["kept"] is True
    assert choice.cv_mean > record["best_single"]["cv_mean"] and sorted(choice.trials) == [0, 1]
    # its own cross-fitted out-of-fold predictions are kept (a served threshold is chosen on them), and they
    # are the predictions its CV score was computed on
    from cgtrain.evaluate.metrics import score
    from cgtrain.tune.hooks import load_oof

    oof = load_oof(tmp_path, "ensemble")
    assert [len(p) for p in oof] == [len(va) for _, va in FOLDS]
    assert np.isclose(np.mean([score("f1", Y[va], p) for (_, va), p in zip(FOLDS, oof)]),
                      record["chosen"]["cv_mean"])


def test_the_reserve_asks_whether_an_ensemble_wins_as_the_ensemble_step_will_judge_it(tmp_path):
    """AutoML keeps time for an ensemble's refits only while one beats the best trial (a 30 s budget on a 3k-row code
    set kept 11 s for four members and ended at 19 s with the ensemble dropped): the same answer as choose_ensemble,
    asked once per set of likely members, nothing written."""
    half = np.arange(300) % 2 == 0
    a = np.where(half, Y * 0.9 + 0.05, 0.45 + 0.1 * RNG.random(300))
    b = np.where(~half, Y * 0.9 + 0.05, 0.45 + 0.1 * RNG.random(300))
    req = make_request(tmp_path / "x.jsonl", hpo={"ensemble": "auto"})
    wins, loses = tmp_path / "wins", tmp_path / "loses"
    memo: dict = {}
    assert ensemble_may_win(req, wins, _prepared(), _study(wins, {0: _proba(a), 1: _proba(b)}), memo) is True
    assert list(memo.values()) == [True] and not (wins / "ensemble.json").exists()
    perfect, noise = _proba(Y * 0.98 + 0.01), _proba(RNG.random(300))
    study = _study(loses, {0: perfect, 1: noise})
    assert ensemble_may_win(req, loses, _prepared(), study) is False
    assert choose_ensemble(req, loses, _prepared(), study, say=lambda m: None) is None


def test_an_ensemble_that_does_not_beat_the_best_single_trial_is_dropped(tmp_path):
    perfect = _proba(Y * 0.98 + 0.01)
    noise = _proba(RNG.random(300))
    study = _study(tmp_path, {0: perfect, 1: noise, 2: _proba(RNG.random(300))})
    req = make_request(tmp_path / "x.jsonl", hpo={"ensemble": "stacking"})
    choice = choose_ensemble(req, tmp_path, _prepared(), study, say=lambda m: None)
    record = json.loads((tmp_path / "ensemble.json").read_text())
    assert choice is None and record["kept"] is False and record["reason"].startswith("dropped")
    assert not (tmp_path / "oof" / "ensemble.npz").exists()
    assert not beats(record["candidates"][0]["cv_mean"], record["best_single"]["cv_mean"], "f1")


def test_greedy_weights_prefer_the_better_member():
    good, bad = _proba(Y * 0.8 + 0.1), _proba(RNG.random(300))
    w = greedy_weights([bad, good], Y, "f1")
    assert w[1] > w[0] and abs(w.sum() - 1) < 1e-9


def test_greedy_weights_for_a_label_metric_judge_the_probabilities():
    """F1 at p = 0.5 cannot tell a member that is barely right from one that is surely right (the decision threshold
    is chosen later, on the blend): for a metric of labels the blend is chosen on log loss."""
    timid, sure = _proba(np.where(Y == 1, 0.51, 0.49)), _proba(np.where(Y == 1, 0.99, 0.01))
    assert score("f1", Y, timid) == score("f1", Y, sure) == 1.0
    assert list(greedy_weights([timid, sure], Y, "f1")) == [0.0, 1.0]
    assert list(greedy_weights([timid, sure], Y, "accuracy")) == [0.0, 1.0]


def test_an_ensemble_model_saves_as_skops_and_predicts_the_blend(tmp_path):
    X = RNG.normal(size=(200, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    m2 = LogisticRegression(C=0.1).fit(X, y)


    model = EnsembleModel(members=[LogisticRegression(), LogisticRegression(C=0.1)], inputs=["raw", "raw"],
                          featurizer=None, method="voting", weights=[0.25, 0.75])
    model.assemble(None, [LogisticRegression().fit(X, y), m2], y)
    expected = 0.25 * model.estimators_[0].predict_proba(X) + 0.75 * m2.predict_proba(X)
    checksum = save_model(model, tmp_path / "m.skops")
    loaded = load_model(tmp_path / "m.skops", checksum)
    assert np.allclose(loaded.predict_proba(X), expected) and (loaded.predict(X) == expected.argmax(1)).all()
    fitted = EnsembleModel(members=[LogisticRegression()], inputs=["raw"], method="voting", weights=[1.0]).fit(X, y)
    assert (fitted.predict(X) == LogisticRegression().fit(X, y).predict(X)).all()


def test_families_that_read_raw_code_are_never_ensemble_members():
    """A member is refit and served on the pipeline's token docs: a family with its own tokenizer (it was scored
    on raw code in CV) cannot be one."""
    from cgtrain.tune.ensemble_select import _reads_tokens

    assert _reads_tokens("logreg") and _reads_tokens("textcnn")
    assert not _reads_tokens("bug_spotter") and not _reads_tokens("hf_finetune")


def test_an_ensemble_gives_up_its_slowest_members_before_the_final_fit_on_all_rows(tmp_path, monkeypatch):
    # three complementary members; the third is slow: refitting all three and the final fit on all rows do not fit
    # the time left, two members and the final fit do -> the two-member blend is kept, the final fit stays planned
    import time

    from cgtrain.tune import ensemble_select

    thirds = np.arange(300) % 5
    knows = [thirds < 2, (thirds >= 2) & (thirds < 4), thirds == 4]  # 40%, 40%, 20% of the rows
    probas = {i: _proba(np.where(k, Y * 0.9 + 0.05, 0.45 + 0.1 * RNG.random(300))) for i, k in enumerate(knows)}
    study = _study(tmp_path, probas, seconds={0: 1.0, 1: 1.0, 2: 10.0})
    prepared = SimpleNamespace(folds=FOLDS, y=Y, n_classes=2,
                               split=SimpleNamespace(train=np.arange(300), test=np.arange(300, 375)))
    req = make_request(tmp_path / "x.jsonl", hpo={"ensemble": "voting", "budget_s": 200.0},
                       validation={"folds": 3, "test_fraction": 0.25, "final_fit": "all"})
    monkeypatch.setattr(ensemble_select, "run_started", lambda started: started)
    choice = choose_ensemble(req, tmp_path, prepared, study, say=lambda m: None, started=time.time() - 180)
    record = json.loads((tmp_path / "ensemble.json").read_text())
    assert choice is not None and sorted(choice.trials) == [0, 1], record
    assert choice.cv_mean > record["best_single"]["cv_mean"]
    # the third member made so slow that the final fit of all three is not planned at all (it would take more than
    # its share of the budget): with time for their refit alone, the two members and their final fit still win
    study = _study(tmp_path, probas, seconds={0: 1.0, 1: 1.0, 2: 20.0})
    choice = choose_ensemble(req, tmp_path, prepared, study, say=lambda m: None, started=time.time() - 150)
    assert choice is not None and sorted(choice.trials) == [0, 1]
    study = _study(tmp_path, probas, seconds={0: 1.0, 1: 1.0, 2: 10.0})
    # with no time for even two members and the final fit, the best single trial keeps its final fit
    choice = choose_ensemble(req, tmp_path, prepared, study, say=lambda m: None, started=time.time() - 194)
    record = json.loads((tmp_path / "ensemble.json").read_text())
    assert choice is None and "final fit" in record["reason"], record["reason"]
