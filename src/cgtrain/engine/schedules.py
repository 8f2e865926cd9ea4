"""Optimizers and learning-rate schedules; schedules are pure functions of the step,
so there is nothing to checkpoint but the step.

`lr_factor(name, step, total_steps, warmup_frac)` is the multiplier of the base
learning rate at optimizer step `step` (0-based). "plateau" is the only
schedule driven by the validation metric; its state is three JSON numbers
(see `plateau_update`), kept in the loop's progress record.
"""
from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "warmup_cosine", "one_cycle", "plateau")
OPTIMIZERS = ("adamw", "sgd")


def make_optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float,
                   momentum: float = 0.9) -> torch.optim.Optimizer:
    """AdamW, or SGD with (Nesterov) momentum, over the trainable parameters. A model with an
    `optimizer_groups(weight_decay)` method gives its own parameter groups (e.g. layer-wise LR
    decay: each group's `lr_scale` multiplies the scheduled LR, see `set_lr`)."""
    groups = model.optimizer_groups(weight_decay) if hasattr(model, "optimizer_groups") else None
    params = groups or [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        try:  # the fused kernel updates every tensor in one pass: ~2x faster steps for large nets on CPU
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
        except (RuntimeError, ValueError):  # a device or dtype the fused kernel lacks
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Linear warm-up from ~0 to 1 over `warmup` steps, then cosine decay to 0 at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def one_cycle(step: int, total: int, pct_start: float = 0.3, div: float = 25.0,
              final_div: float = 1e4) -> float:
    """Smith's one-cycle policy (torch's OneCycleLR shape, cosine annealing, lr only):
    1/div -> 1 over the first pct_start of the steps, then 1 -> 1/(div*final_div)."""
    up = max(1, int(pct_start * total))
    start, peak, end = 1.0 / div, 1.0, 1.0 / (div * final_div)
    if step < up:
        return _cos_between(start, peak, step / up)
    return _cos_between(peak, end, min(1.0, (step - up) / max(1, total - up)))


def _cos_between(a: float, b: float, t: float) -> float:
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * t))


def lr_factor(name: str, step: int, total: int, warmup_frac: float = 0.1) -> float:
    """The step's multiplier of the base learning rate (plateau's scale applied separately)."""
    if name in ("constant", "plateau"):
        return 1.0
    if name == "warmup_cosine":
        return warmup_cosine(step, total, int(round(warmup_frac * total)))
    if name == "one_cycle":
        return one_cycle(step, total, pct_start=max(warmup_frac, 0.05))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")


def plateau_update(best: float | None, bad_epochs: int, scale: float, metric: float,
                   greater_is_better: bool, factor: float = 0.5,
                   patience: int = 1) -> tuple[float | None, int, float]:
    """Reduce-on-plateau: after more than `patience` epochs without improvement,
    scale *= factor. Returns the new (best, bad_epochs, scale)."""
    if improved(metric, best, greater_is_better):
        return metric, 0, scale
    bad_epochs += 1
    if bad_epochs > patience:
        return best, 0, scale * factor
    return best, bad_epochs, scale


def improved(metric: float, best: float | None, greater_is_better: bool) -> bool:
    """Is `metric` better than `best`? NaN never improves; anything beats None or NaN."""
    if metric is None or math.isnan(metric):
        return False
    if best is None or math.isnan(best):
        return True
    return metric > best if greater_is_better else metric < best
