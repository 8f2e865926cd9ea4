"""Per-example losses, class weights and the weighted sum that gradient accumulation divides.

Conventions (the same as `torch.nn.functional.cross_entropy(weight=...)`):

* per-example cross-entropy  l_i = -log p_i,y_i
* per-example focal loss     l_i = -(1 - p_i,y_i)^gamma * log p_i,y_i   (Lin et al., 2017)
* with class weights w, a batch's loss is the weighted mean  sum_i w_yi l_i / sum_i w_yi,
  so focal loss with gamma=0 equals weighted cross-entropy exactly.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("ce", "focal")


def class_weights(y: np.ndarray, n_classes: int, mode: str | None) -> torch.Tensor | None:
    """'balanced': w_c = n / (k * n_c), scikit-learn's formula; None: no weights.

    A class absent from `y` gets weight 0 (it contributes nothing anyway).
    """
    if mode is None:
        return None
    if mode != "balanced":
        raise ValueError(f"class_weight must be None or 'balanced', got {mode!r}")
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.divide(len(y), n_classes * counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.tensor(weights, dtype=torch.float32)


def per_example_loss(logits: torch.Tensor, y: torch.Tensor, kind: str = "ce",
                     gamma: float = 2.0) -> torch.Tensor:
    """Unweighted loss of each example, shape (n,); computed in float32."""
    ce = F.cross_entropy(logits.float(), y, reduction="none")
    if kind == "ce":
        return ce
    if kind == "focal":
        p_true = torch.exp(-ce)
        return (1.0 - p_true).pow(gamma) * ce
    raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")


def weighted_sum(per_example: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """sum_i w_yi l_i (plain sum without weights)."""
    if weights is None:
        return per_example.sum()
    return (per_example * weights[y]).sum()


def normaliser(y: torch.Tensor, weights: torch.Tensor | None) -> float:
    """The denominator of a batch's weighted mean: sum_i w_yi, or the batch size.

    Gradient accumulation divides every micro-batch's weighted sum by the
    normaliser of the whole effective batch, so the summed gradients equal
    those of one big batch however it is split.
    """
    if weights is None:
        return float(y.numel())
    return float(weights[y].sum())


def batch_loss(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None,
               kind: str = "ce", gamma: float = 2.0) -> torch.Tensor:
    """The weighted mean loss of one (whole) batch."""
    return weighted_sum(per_example_loss(logits, y, kind, gamma), y, weights) / normaliser(y, weights)
