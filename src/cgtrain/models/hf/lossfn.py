"""A loss of the model's own making, through the training loop's cross-entropy.

`cgtrain.engine.loop` minimises the mean over a batch of cross-entropy(logits_i, y_i).
Objectives that are not a classification of the example (masked-token prediction,
replaced-token detection, a pointer to a bug plus a pairwise ranking) compute their
per-example loss L_i >= 0 themselves and return the two-class logits
[0, softplus^-1(L_i)] for the target y_i = 0: their cross-entropy is exactly
softplus(softplus^-1(L_i)) = L_i, gradient included (d CE / d L_i = 1). So
accumulation, clipping, AMP, fallbacks, OOM halving and exact resume all come from
the one loop.
"""
from __future__ import annotations

import torch


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(min=1e-6)
    return x + torch.log(-torch.expm1(-x))


def loss_as_logits(per_example: torch.Tensor) -> torch.Tensor:
    """Logits whose cross-entropy against class 0 equals `per_example` (see the module docstring)."""
    z = inverse_softplus(per_example.float())
    return torch.stack([torch.zeros_like(z), z], dim=1)
