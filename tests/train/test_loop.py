"""The training loop and its small pieces: losses, schedules, data plans, accumulation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from cgtrain.engine.data import (SequenceData, Vocab, accumulation_steps, curriculum_pool, curriculum_size,
                                encode_docs, micro_batches, plan_epoch, plan_from_tensors, plan_to_tensors,
                                total_batches)
from cgtrain.engine.loop import Hooks, TrainConfig, train
from cgtrain.engine.losses import batch_loss, class_weights, normaliser, per_example_loss, weighted_sum
from cgtrain.engine.schedules import improved, lr_factor, one_cycle, plateau_update, warmup_cosine

torch.set_num_threads(1)


class BagModel(torch.nn.Module):
    def __init__(self, vocab_size=20, n_classes=2, dim=8, dropout=0.0):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, dim, padding_idx=0)
        self.drop = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(dim, n_classes)

    def forward(self, ids):
        mask = (ids != 0).unsqueeze(-1).float()
        return self.out(self.drop((self.embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1)))


def tiny_data(n=48, seed=0):
    """Label 1 iff token 3 occurs; lengths 2..9."""
    g = torch.Generator().manual_seed(seed)
    seqs, y = [], []
    for i in range(n):
        length = 2 + i % 8
        ids = torch.randint(4, 20, (length,), generator=g)
        if i % 2:
            ids[i % length] = 3
        seqs.append(ids)
        y.append(i % 2)
    return SequenceData(seqs, np.array(y))


def fit(cfg, data=None, dropout=0.0, **kw):
    torch.manual_seed(cfg.seed)
    model = BagModel(dropout=dropout)
    result = train(model, data or tiny_data(), cfg, **kw)
    return model, result


# --- losses ----------------------------------------------------------------------------
def test_focal_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    gamma, w = 2.0, torch.tensor([1.0, 3.0])
    expected_terms = []
    for row, label in zip(logits.tolist(), y.tolist()):
        p = math.exp(row[label]) / sum(math.exp(v) for v in row)
        expected_terms.append(w[label].item() * -((1 - p) ** gamma) * math.log(p))
    expected = sum(expected_terms) / (1.0 + 3.0 + 3.0)
    got = batch_loss(logits, y, w, kind="focal", gamma=gamma)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # gamma = 0: focal is (weighted) cross-entropy, torch's convention included
    assert batch_loss(logits, y, w, "focal", 0.0).item() == pytest.approx(
        F.cross_entropy(logits, y, weight=w).item(), rel=1e-6)
    assert per_example_loss(logits, y, "ce").tolist() == pytest.approx(
        F.cross_entropy(logits, y, reduction="none").tolist())


def test_class_weights_balanced_formula():
    y = np.array([0, 0, 0, 1, 2, 2])
    w = class_weights(y, 3, "balanced")
    assert w.tolist() == pytest.approx([6 / (3 * 3), 6 / (3 * 1), 6 / (3 * 2)])
    assert w.tolist() == pytest.approx(compute_class_weight("balanced", classes=np.arange(3), y=y).tolist())
    assert class_weights(y, 3, None) is None
    with pytest.raises(ValueError):
        class_weights(y, 3, "heavy")


def test_accumulated_gradient_equals_full_batch_gradient():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    x, y, w = torch.randn(10, 4), torch.tensor([0, 1, 2, 2, 1, 0, 0, 0, 1, 2]), torch.tensor([0.5, 1.0, 2.0])
    batch_loss(lin(x), y, w, "focal", 1.5).backward()
    full = [p.grad.clone() for p in lin.parameters()]
    lin.zero_grad()
    denom = normaliser(y, w)
    for chunk in micro_batches(np.arange(10), 3):
        yc = y[chunk]
        (weighted_sum(per_example_loss(lin(x[chunk]), yc, "focal", 1.5), yc, w) / denom).backward()
    for a, b in zip(full, (p.grad for p in lin.parameters())):
        assert torch.allclose(a, b, atol=1e-6)
    assert accumulation_steps(10, 3) == 4


# --- schedules -------------------------------------------------------------------------
def test_schedules():
    assert [warmup_cosine(s, 10, 2) for s in (0, 1)] == [0.5, 1.0]
    assert warmup_cosine(2, 10, 2) == pytest.approx(1.0)
    assert warmup_cosine(6, 10, 2) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 2) == pytest.approx(0.0)
    assert one_cycle(0, 100) == pytest.approx(1 / 25)
    assert one_cycle(30, 100) == pytest.approx(1.0)
    assert one_cycle(100, 100) == pytest.approx(1 / 25e4)
    assert lr_factor("constant", 5, 10) == lr_factor("plateau", 5, 10) == 1.0
    with pytest.raises(ValueError):
        lr_factor("exponential", 0, 10)


def test_plateau_and_improvement():
    state = (None, 0, 1.0)
    for metric in (0.5, 0.6, 0.6, 0.6, 0.55):
        state = plateau_update(*state, metric, greater_is_better=True, factor=0.5, patience=1)
    assert state == (0.6, 1, 0.5)  # reduced once after 2 epochs without improvement
    assert improved(0.1, float("nan"), True) and not improved(float("nan"), 0.1, True)
    assert improved(0.1, 0.2, greater_is_better=False)


# --- data ----------------------------------------------------------------------------
def test_vocab_from_training_docs_unknowns_and_truncation():
    vocab = Vocab.build(["if ( a ) {", "if ( b )", "a a"], min_freq=2)
    assert vocab.itos[:2] == ["<pad>", "<unk>"]
    assert vocab.itos[2:] == ["a", "(", ")", "if"]  # by count, then by token
    ids = vocab.encode("if ( zzz ) { a a a", max_len=5)
    assert ids.tolist() == [vocab.stoi["if"], vocab.stoi["("], 1, vocab.stoi[")"], 1]
    assert vocab.encode("", 5).tolist() == [1]
    assert len(Vocab.build(["a b c d e"], max_size=4)) == 4
    with pytest.raises(TypeError):
        encode_docs(vocab, "a single string", 5)


def test_plan_covers_every_example_once_and_buckets_by_length():
    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    plain = plan_epoch(lengths, 32, torch.Generator().manual_seed(0), bucket=False)
    bucketed = plan_epoch(lengths, 32, torch.Generator().manual_seed(0), bucket=True, window_batches=10)
    for plan in (plain, bucketed):
        assert sorted(np.concatenate(plan).tolist()) == list(range(1000))
        assert len(plan) == math.ceil(1000 / 32)

    def padding(plan):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in plan)

    assert padding(bucketed) < 0.3 * padding(plain)
    again = plan_epoch(lengths, 32, torch.Generator().manual_seed(0), bucket=True, window_batches=10)
    assert all(np.array_equal(a, b) for a, b in zip(bucketed, again))
    restored = plan_from_tensors(plan_to_tensors(bucketed))
    assert all(np.array_equal(a, b) for a, b in zip(bucketed, restored))


def test_curriculum_widens_from_easy_to_all():
    difficulty = np.array([5, 1, 9, 3, 7, 2, 8, 4, 6, 0])
    pools = [curriculum_pool(difficulty, e, 0.3, 2) for e in range(4)]
    assert [len(p) for p in pools] == [3, 7, 10, 10]
    assert sorted(difficulty[pools[0]].tolist()) == [0, 1, 2]
    assert set(pools[0]) <= set(pools[1]) <= set(pools[2])
    assert total_batches(10, 2, 4, 0.3, 2) == sum(math.ceil(curriculum_size(10, e, 0.3, 2) / 2) for e in range(4)) == 16
    assert total_batches(10, 2, 4) == 20


# --- the loop ---------------------------------------------------------------------------
BASE = TrainConfig(epochs=6, batch_size=8, lr=0.05, schedule="constant", patience=None, bucket=False)


def test_training_learns_and_records_history():
    model, result = fit(BASE)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    assert result.optimizer_steps == result.steps == 6 * 6
    assert result.events == result.fallbacks == result.memory == []


def test_micro_batches_give_the_same_training_as_the_full_batch():
    for extra in ({"class_weight": "balanced", "loss": "focal"}, {}):
        cfg = TrainConfig(**{**BASE.__dict__, **extra})
        full, _ = fit(cfg)
        accumulated, result = fit(TrainConfig(**{**cfg.__dict__, "micro_batch_size": 3}))
        assert result.micro_batch == 3
        for a, b in zip(full.state_dict().values(), accumulated.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-5)


def test_early_stopping_keeps_the_best_epoch():
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.6, 0.9])
    snapshots = []

    def val_fn(model):
        snapshots.append(model.out.weight.detach().clone())
        return next(scores)

    cfg = TrainConfig(**{**BASE.__dict__, "patience": 2})
    model, result = fit(cfg, val_fn=val_fn)
    assert result.stopped_early and result.best_epoch == 1 and len(result.history) == 4
    assert torch.equal(model.out.weight, snapshots[1])


@pytest.mark.parametrize("options", [
    {"optimizer": "sgd", "schedule": "one_cycle", "lr": 0.5},
    {"schedule": "warmup_cosine", "bucket": True, "curriculum": True, "curriculum_epochs": 3},
    {"schedule": "plateau", "amp": True},  # bf16 autocast on CPU
])
def test_optimizers_schedules_curriculum_and_amp_train(options):
    model, result = fit(TrainConfig(**{**BASE.__dict__, **options}), dropout=0.1)
    losses = [h["train_loss"] for h in result.history]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    if options.get("curriculum"):
        assert [h["examples"] for h in result.history][:4] == [15, 26, 37, 48]


def test_curriculum_uses_a_given_difficulty():
    class Recording(SequenceData):
        seen: list = []

        def collate(self, idx, device):
            self.seen.extend(idx.tolist())
            return super().collate(idx, device)

    base = tiny_data()
    data = Recording(base.seqs, base.y.numpy())
    cfg = TrainConfig(**{**BASE.__dict__, "epochs": 1, "curriculum": True, "curriculum_start": 0.25})
    fit(cfg, data=data, difficulty=-np.arange(data.n))  # the last examples count as the easiest
    assert sorted(data.seen) == list(range(36, 48))


def test_deterministic_flag_is_scoped_to_the_run():
    before = torch.are_deterministic_algorithms_enabled()
    seen = []
    fit(TrainConfig(**{**BASE.__dict__, "epochs": 1, "deterministic": True}),
        hooks=Hooks(after_step=lambda s, ok: seen.append(torch.are_deterministic_algorithms_enabled())))
    assert all(seen) and torch.are_deterministic_algorithms_enabled() == before


def test_a_time_limit_stops_training_inside_an_epoch():
    """A trial's time limit holds at the next optimizer step, not only at the end of an epoch (an epoch of a
    big encoder on a busy CPU can take minutes); outside the block the loop runs on."""
    import time

    from cgtrain import interrupts

    steps = []
    slow = Hooks(after_step=lambda step, stepped: (steps.append(step), time.sleep(0.1)))
    cfg = TrainConfig(epochs=3, batch_size=4, lr=0.05, seed=0)  # 12 steps per epoch
    _, result = fit(cfg)  # warm; and without a limit every step runs
    assert result.optimizer_steps == 36
    with pytest.raises(interrupts.TimeLimitReached), interrupts.time_limit(0.5):
        fit(cfg, hooks=slow)
    assert 2 <= len(steps) < 12  # stopped within the first epoch
    _, result = fit(cfg)  # no limit left behind
    assert result.optimizer_steps == 36
