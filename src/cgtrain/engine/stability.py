"""Keeping a run alive: non-finite detection, fallback configs, out-of-memory halving.

* `clip_and_check` measures (and clips) the gradient norm once; a non-finite
  norm means no optimizer step (the caller zeroes the gradients).
* After K non-finite steps the loop rolls back to its last good checkpoint and
  goes on with the next fallback (`FALLBACKS`, data: lower LR, tighter
  clipping, AMP off); when they run out it raises `TrainingDiverged`.
* An out-of-memory error (CUDA, CPU allocator, or the configured
  `max_batch_tokens` cap) halves the micro-batch and doubles accumulation, so
  the effective batch, and the gradient, stay the same.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

import torch
from torch.nn.utils import clip_grad_norm_, get_total_norm

# Attempt n (1-based) runs with FALLBACKS[n-1] applied to the original config.
FALLBACKS: tuple[dict[str, Any], ...] = (
    {"lr_scale": 0.3, "max_grad_norm": 0.5, "amp": False},
    {"lr_scale": 0.1, "max_grad_norm": 0.1, "amp": False},
)


class TrainingDiverged(RuntimeError):
    """Loss or gradients kept going non-finite and every fallback config was used up."""

    reason = "diverged"

    def __init__(self, message: str, fallbacks: list[dict[str, Any]] | None = None,
                 events: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.fallbacks = list(fallbacks or [])
        self.events = list(events or [])


class SimulatedOOM(torch.OutOfMemoryError):
    """A micro-batch over the configured memory cap (max_batch_tokens)."""


# --- non-finite values -------------------------------------------------------------
def is_finite(value: float) -> bool:
    return math.isfinite(value)


def clip_and_check(params: Iterable[torch.Tensor], max_grad_norm: float | None) -> float:
    """The total gradient norm (inf/nan if any gradient is), clipping to max_grad_norm.

    A non-finite norm leaves the gradients unusable; the caller takes no step
    and zeroes them."""
    if max_grad_norm is not None:
        return float(clip_grad_norm_(params, max_grad_norm))
    grads = [p.grad for p in params if p.grad is not None]
    return float(get_total_norm(grads)) if grads else 0.0


def params_finite(params: Iterable[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in params)


# --- fallback configs ----------------------------------------------------------------
def fallback_config(base: Any, attempt: int, fallbacks: tuple[dict[str, Any], ...] = FALLBACKS) -> Any:
    """The config of attempt `attempt` (0 = the original): fallback n applied to the original.

    `base` is a dataclass with fields lr, max_grad_norm and amp.
    """
    if attempt == 0:
        return base
    fb = fallbacks[attempt - 1]
    clip = fb.get("max_grad_norm")
    if clip is not None and base.max_grad_norm is not None:
        clip = min(clip, base.max_grad_norm)
    return dataclasses.replace(base, lr=base.lr * fb.get("lr_scale", 1.0),
                               max_grad_norm=clip if clip is not None else base.max_grad_norm,
                               amp=base.amp and fb.get("amp", True))


def fallback_record(cfg: Any, attempt: int, step: int, rolled_back_to: int, reason: str) -> dict[str, Any]:
    return {"attempt": attempt, "at_step": step, "rolled_back_to_step": rolled_back_to, "reason": reason,
            "lr": cfg.lr, "max_grad_norm": cfg.max_grad_norm, "amp": cfg.amp}


# --- out of memory -------------------------------------------------------------------
def is_oom(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError (and SimulatedOOM), or the CPU allocator's failure."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(exc)


def check_memory_cap(tokens: int, max_batch_tokens: int | None) -> None:
    """Raise SimulatedOOM when a micro-batch's padded tokens exceed the cap."""
    if max_batch_tokens is not None and tokens > max_batch_tokens:
        raise SimulatedOOM(f"micro-batch of {tokens} padded tokens exceeds max_batch_tokens={max_batch_tokens}")


def halve_micro_batch(micro_batch: int) -> int:
    """The next micro-batch size after an OOM; at 1 there is nothing left to halve."""
    if micro_batch <= 1:
        raise MemoryError("out of memory with a micro-batch of 1 example; "
                          "lower max_len or the model size, or raise max_batch_tokens")
    return (micro_batch + 1) // 2


def release_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
