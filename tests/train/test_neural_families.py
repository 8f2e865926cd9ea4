"""The torch families: estimator contract, vocabulary, registration, pruning in a real study."""
import pickle

import numpy as np
import optuna
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone

from cgtrain.models.base import FAMILIES
from cgtrain.models.neural import NETS, NeuralClassifier
from cgtrain.tune.space import suggest

torch.set_num_threads(1)
SMALL = {"embed_dim": 16, "width": 16, "heads": 2, "depth": 1, "epochs": 3, "batch_size": 8, "lr": 5e-3,
         "device": "cpu"}


def make_docs(n, seed, bug_token="strcpy"):
    rng = np.random.default_rng(seed)
    words = ["if", "(", ")", "{", "}", "x", "y", "=", "+", "len", "buf", ";", "return", "<num>"]
    docs, y = [], []
    for i in range(n):
        toks = list(rng.choice(words, size=int(rng.integers(3, 30))))
        if i % 2:
            toks.insert(int(rng.integers(0, len(toks))), bug_token)
        docs.append(" ".join(toks))
        y.append("bug" if i % 2 else "ok")
    return docs, np.array(y)


X_TRAIN, Y_TRAIN = make_docs(64, 0)
X_VAL, Y_VAL = make_docs(24, 1)


@pytest.mark.parametrize("net", ["textcnn", "bigru", "transformer"])
def test_token_families_fit_predict_and_clone(net):
    model = NeuralClassifier(net, **SMALL)
    fitted = model.fit(X_TRAIN, Y_TRAIN, X_val=X_VAL, y_val=Y_VAL)
    assert fitted is model and list(model.classes_) == ["bug", "ok"]
    proba = model.predict_proba(X_VAL)
    assert proba.shape == (24, 2) and np.allclose(proba.sum(1), 1.0)
    assert set(model.predict(X_VAL)) <= {"bug", "ok"}
    assert len(model.history_["history"]) == 3 and model.history_["best_epoch"] >= 0
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "weights_")
    # docs made only of unseen tokens, and an empty doc, still get probabilities
    odd = model.predict_proba(["never seen tokens here", ""])
    assert odd.shape == (2, 2) and np.isfinite(odd).all()


def test_vocabulary_comes_from_the_training_docs_only():
    train_docs = ["a b c", "a b", "c c d"] * 4
    y = [0, 1, 0] * 4
    model = NeuralClassifier("textcnn", **{**SMALL, "epochs": 1}).fit(
        train_docs, y, X_val=["zzz_only_in_validation a"], y_val=[1])
    assert set(model.vocab_) == {"<pad>", "<unk>", "a", "b", "c", "d"}
    limited = NeuralClassifier("textcnn", **{**SMALL, "epochs": 1, "max_vocab": 4}).fit(train_docs, y)
    assert limited.vocab_ == ["<pad>", "<unk>", "c", "a"]


def test_textcnn_learns_a_simple_bug_pattern():
    model = NeuralClassifier("textcnn", **{**SMALL, "epochs": 12, "lr": 2e-2}).fit(X_TRAIN, Y_TRAIN)
    assert (model.predict(X_VAL) == Y_VAL).mean() >= 0.9


def test_mlp_on_sparse_features():
    X = sp.random(60, 40, density=0.2, format="csr", random_state=0)
    y = np.asarray(X[:, 0].toarray().ravel() > 0, dtype=int)
    model = NeuralClassifier("mlp", **{**SMALL, "epochs": 5, "lr": 2e-2}).fit(X, y, X_val=X, y_val=y)
    assert model.predict_proba(X).shape == (60, 2) and model.n_features_in_ == 40
    assert model.history_["history"][-1]["train_loss"] < model.history_["history"][0]["train_loss"]


def test_pickle_keeps_plain_state_and_predicts_the_same():
    model = NeuralClassifier("bigru", **SMALL).fit(X_TRAIN, Y_TRAIN)
    expected = model.predict_proba(X_VAL)
    restored = pickle.loads(pickle.dumps(model))
    assert "_module" not in restored.__dict__ and hasattr(model, "_module")
    assert np.allclose(restored.predict_proba(X_VAL), expected, atol=1e-6)


def test_checkpointed_fit_resumes_to_the_same_model(tmp_path):
    model = NeuralClassifier("textcnn", **SMALL).fit(X_TRAIN, Y_TRAIN, checkpoint_dir=tmp_path)
    again = NeuralClassifier("textcnn", **SMALL).fit(X_TRAIN, Y_TRAIN, checkpoint_dir=tmp_path, resume=True)
    assert all(np.array_equal(model.weights_[k], again.weights_[k]) for k in model.weights_)


def test_fit_leaves_the_callers_torch_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    NeuralClassifier("textcnn", **{**SMALL, "epochs": 1}).fit(X_TRAIN[:16], Y_TRAIN[:16])
    assert torch.equal(torch.rand(3), expected)


def test_families_are_registered_with_their_spaces_as_data():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for name in NETS:
        family = FAMILIES.get(name)
        assert family.input == ("features" if name == "mlp" else "tokens")
        assert set(family.default_space) <= set(family.defaults)
        trial = study.ask()
        params = suggest(trial, name, family.default_space)
        estimator = family.make(params, seed=7, class_weight="balanced")
        assert estimator.net == name and estimator.random_state == 7 and estimator.class_weight == "balanced"
        assert clone(estimator).get_params() == estimator.get_params()


def test_a_median_pruner_stops_a_bad_trial_through_on_epoch():
    epochs_run = {}

    def objective(trial):
        lr = 3e-2 if trial.number == 0 else 1e-7  # the second trial learns nothing
        seen = epochs_run.setdefault(trial.number, [])

        def on_epoch(epoch, metric):
            seen.append(epoch)
            trial.report(metric, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        model = NeuralClassifier("textcnn", **{**SMALL, "epochs": 5, "lr": lr, "patience": None,
                                              "schedule": "constant", "val_metric": "roc_auc"})
        model.fit(X_TRAIN, Y_TRAIN, X_val=X_VAL, y_val=Y_VAL, on_epoch=on_epoch)
        return model.history_["best_metric"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1))
    study.optimize(objective, n_trials=2)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    assert epochs_run[0] == [0, 1, 2, 3, 4] and len(epochs_run[1]) < 5


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="net must be one of"):
        NeuralClassifier("lstm").fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match="at least 2 classes"):
        NeuralClassifier("textcnn", **SMALL).fit(X_TRAIN[:3], ["a"] * 3)
    with pytest.raises(ValueError, match="multiple of heads"):
        NeuralClassifier("transformer", **{**SMALL, "embed_dim": 10, "heads": 4}).fit(X_TRAIN, Y_TRAIN)
