"""Family `bug_locator`: twins and bug tokens found from the rows, joint training lowers the loss,
token scores per row, plain-data state, and the encoder `cgtrain pretrain` wrote as its base."""
import os
import pickle

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from helpers.bugs import SOURCES, twin_rows
from cgtrain.data.synth_bugs import bug_location  # noqa: E402
from cgtrain.models import FAMILIES  # noqa: E402
from cgtrain.models.locator import BugLocator, LocatorNet, LocatorObjective, find_twins  # noqa: E402

def make_rows(n_per_source: int = 10) -> tuple[list[str], np.ndarray]:
    return twin_rows(n_per_source, SOURCES[:2])


SHORT = dict(max_length=64, epochs=2, batch_size=8, lr=1e-3, patience=None, device="cpu", warmup_frac=0.0)


@pytest.fixture(scope="module")
def rows():
    return make_rows()


@pytest.fixture(scope="module")
def fitted(rows):
    codes, y = rows
    return BugLocator(**SHORT).fit(codes, y)


def test_twins_are_found_from_the_rows_alone(rows):
    codes, y = rows
    twins = find_twins(codes, y)
    assert twins == {i + 1: i for i in range(0, len(codes), 2)}
    line, start, end = bug_location(codes[0], codes[1])
    assert codes[1].split("\n")[line - 1] != codes[0].split("\n")[line - 1] and end > start


def test_unit_loss_is_the_sum_of_its_parts():
    torch.manual_seed(0)
    from transformers import BertConfig, BertModel

    enc = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32), add_pooling_layer=False)
    obj = LocatorObjective(LocatorNet(enc, dropout=0.0), loc_weight=1.0, pair_weight=1.0).eval()
    ids = torch.tensor([[2, 7, 8, 9, 3], [2, 7, 8, 10, 3]])
    mask = torch.ones_like(ids)
    labels = torch.tensor([0, 1])
    bug = torch.tensor([[False] * 5, [False, False, False, True, False]])
    pair = obj(ids, mask, labels, bug, torch.tensor([0, 0]), 1)
    single = obj(ids, mask, labels, bug, torch.tensor([0, 1]), 2)
    as_loss = torch.nn.functional.softplus
    func, point = obj.net(ids, mask)
    logp = torch.log_softmax(point, 1)
    ce = torch.nn.functional.cross_entropy(func, labels, reduction="none")
    expect = ce + torch.stack([-logp[0, 0], -logp[1, 3]])
    rank = torch.nn.functional.softplus(-((func[1, 1] - func[1, 0]) - (func[0, 1] - func[0, 0])))
    assert torch.allclose(as_loss(single[:, 1]), expect, rtol=1e-4)
    assert torch.allclose(as_loss(pair[:, 1]), expect.sum() + rank, rtol=1e-4)


def test_joint_training_lowers_the_loss_and_scores_tokens(fitted, rows):
    codes, y = rows
    h = fitted.history_
    assert h["pairs"] == len(codes) // 2 and h["located"] == len(codes) // 2
    losses = [e["train_loss"] for e in h["history"]]
    assert losses[-1] < losses[0]
    proba = fitted.predict_proba(codes)
    assert proba.shape == (len(codes), 2) and np.allclose(proba.sum(1), 1)
    (tokens, scores), = fitted.token_scores(codes[1:2])
    assert len(tokens) == len(scores) and "".join("".join(tokens).split()) == "".join(codes[1].split())
    assert 0 < scores.sum() <= 1.0 + 1e-6


def test_state_is_plain_data_and_survives_pickling(fitted, rows):
    codes, _ = rows
    state = fitted.__getstate__()
    assert "_module" not in state and "_live" not in state
    assert all(isinstance(v, np.ndarray) for v in fitted.weights_.values())
    again = pickle.loads(pickle.dumps(fitted))
    assert np.allclose(again.predict_proba(codes[:4]), fitted.predict_proba(codes[:4]), atol=1e-6)


def test_family_takes_the_pretrained_encoder(encoder_dir, rows):
    codes, y = rows
    model = FAMILIES.get("bug_locator").make({"model_path": str(encoder_dir), **SHORT, "epochs": 1}, seed=0)
    model.fit(codes[:16], y[:16])
    assert model.predict_proba(codes[:4]).shape == (4, 2) and model.history_["pairs"] == 8


def test_explain_uses_the_pointer(fitted, rows):
    from sklearn.pipeline import Pipeline

    from cgtrain.qa.explain import explain

    codes, _ = rows
    att = explain(Pipeline([("code", "passthrough"), ("model", fitted)]), codes[:4], [1])
    assert att.method == "bug-pointer" and len(att.rows) == 1
    row = att.rows[0]
    assert len(row["tokens"]) == len(row["token_attr"]) and row["top_features"][0]["attribution"] == max(row["token_attr"])
