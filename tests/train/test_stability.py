"""Non-finite steps, fallback configs, divergence, out-of-memory halving."""
import math

import numpy as np
import pytest
import torch

from cgtrain.engine.data import SequenceData
from cgtrain.engine.loop import Hooks, TrainConfig, train
from cgtrain.engine.stability import (FALLBACKS, SimulatedOOM, TrainingDiverged, check_memory_cap, clip_and_check,
                                     fallback_config, halve_micro_batch, is_oom)

torch.set_num_threads(1)


class BagModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(20, 8, padding_idx=0)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, ids):
        mask = (ids != 0).unsqueeze(-1).float()
        return self.out((self.embed(ids) * mask).sum(1) / mask.sum(1).clamp(min=1))


def tiny_data(n=40, length=10):
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(2, 20, (length,), generator=g) for _ in range(n)]
    y = np.array([i % 2 for i in range(n)])
    for i in range(1, n, 2):
        seqs[i][0] = 1
    return SequenceData(seqs, y)


CFG = TrainConfig(epochs=3, batch_size=8, lr=0.05, schedule="constant", patience=None, bucket=False)


def run(cfg=CFG, **kw):
    torch.manual_seed(0)
    model = BagModel()
    return model, train(model, tiny_data(), cfg, **kw)


def finite(model):
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_loss_is_detected_at_its_step_and_no_step_is_taken():
    stepped = {}
    model, result = run(TrainConfig(**{**CFG.__dict__, "max_bad_steps": 5}),
                        hooks=Hooks(poison=lambda step, attempt: step == 7,
                                    after_step=lambda step, ok: stepped.__setitem__(step, ok)))
    assert [(e["step"], e["kind"]) for e in result.events] == [(7, "nonfinite_loss")]
    assert stepped[7] is False and all(ok for s, ok in stepped.items() if s != 7)
    assert result.optimizer_steps == result.steps - 1 == 3 * 5 - 1
    assert result.fallbacks == [] and finite(model)


def test_after_k_bad_steps_it_rolls_back_and_records_the_fallback():
    cfg = TrainConfig(**{**CFG.__dict__, "max_bad_steps": 2, "checkpoint_every": 4})
    poisoned = {5, 6}  # attempt 0 only: the fallback config gets past them
    model, result = run(cfg, hooks=Hooks(poison=lambda step, attempt: attempt == 0 and step in poisoned))
    assert [e["step"] for e in result.events] == [5, 6]
    (fb,) = result.fallbacks  # the last good checkpoint: the end of epoch 0 (5 steps of 8 examples)
    assert fb["attempt"] == 1 and fb["at_step"] == 6 and fb["rolled_back_to_step"] == 5
    assert fb["lr"] == pytest.approx(CFG.lr * FALLBACKS[0]["lr_scale"])
    assert fb["max_grad_norm"] == FALLBACKS[0]["max_grad_norm"] and fb["amp"] is False
    assert len(result.history) == 3 and finite(model)
    assert result.steps == 15 and result.optimizer_steps == 15  # steps 5..14 replayed after the roll-back


def test_fallbacks_exhausted_raise_training_diverged():
    cfg = TrainConfig(**{**CFG.__dict__, "max_bad_steps": 1})
    with pytest.raises(TrainingDiverged) as info:
        run(cfg, hooks=Hooks(poison=lambda step, attempt: step >= 2))
    assert info.value.reason == "diverged"
    assert [f["attempt"] for f in info.value.fallbacks] == [1, 2]
    assert len(info.value.events) == 3


def test_simulated_oom_halves_the_micro_batch_and_keeps_the_effective_batch():
    reference, plain = run()
    cfg = TrainConfig(**{**CFG.__dict__, "max_batch_tokens": 50})  # 8 x 10 tokens does not fit, 4 x 10 does
    model, result = run(cfg)
    assert result.memory == [{"step": 0, "error": "SimulatedOOM", "micro_batch_before": 8, "micro_batch": 4,
                              "accumulation": 2, "effective_batch": 8}]
    assert result.micro_batch == 4 and result.optimizer_steps == plain.optimizer_steps == 15
    for a, b in zip(reference.state_dict().values(), model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5)  # same effective batch: same training
    tight = TrainConfig(**{**CFG.__dict__, "max_batch_tokens": 25})
    assert run(tight)[1].micro_batch == 2
    with pytest.raises(MemoryError):
        run(TrainConfig(**{**CFG.__dict__, "max_batch_tokens": 5}))


def test_small_pieces():
    a = torch.nn.Parameter(torch.ones(3))
    a.grad = torch.tensor([3.0, 4.0, 0.0])
    assert clip_and_check([a], 1.0) == pytest.approx(5.0)
    assert torch.allclose(a.grad, torch.tensor([0.6, 0.8, 0.0]), atol=1e-5)
    a.grad = torch.tensor([float("inf"), 1.0, 0.0])
    assert not math.isfinite(clip_and_check([a], 1.0))
    a.grad = torch.tensor([float("nan"), 1.0, 0.0])
    assert not math.isfinite(clip_and_check([a], None))
    a.grad = torch.tensor([3.0, 4.0, 0.0])
    assert clip_and_check([a], None) == pytest.approx(5.0) and a.grad[1] == 4.0
    with pytest.raises(SimulatedOOM):
        check_memory_cap(11, 10)
    check_memory_cap(10, 10)
    check_memory_cap(10**9, None)
    assert is_oom(SimulatedOOM("x")) and is_oom(torch.OutOfMemoryError("x")) and not is_oom(ValueError())
    assert [halve_micro_batch(m) for m in (8, 5, 2)] == [4, 3, 1]
    cfg = TrainConfig(lr=1e-3, max_grad_norm=2.0, amp=True)
    assert fallback_config(cfg, 0) is cfg
    second = fallback_config(cfg, 2)
    assert (second.lr, second.max_grad_norm, second.amp) == (pytest.approx(1e-4), 0.1, False)
