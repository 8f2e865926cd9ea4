"""Where and how the loop computes: device choice, mixed precision, deterministic algorithms."""
from __future__ import annotations

import contextlib
import os

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def amp_dtype(cfg, device: torch.device) -> torch.dtype:
    if cfg.amp_dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.bfloat16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp_dtype]


def autocast(cfg, device: torch.device):
    if not cfg.amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype(cfg, device))


def make_scaler(cfg, device: torch.device) -> torch.amp.GradScaler | None:
    """Loss scaling only where it is needed: fp16 autocast on CUDA."""
    if cfg.amp and device.type == "cuda" and amp_dtype(cfg, device) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


@contextlib.contextmanager
def deterministic_mode(on: bool, device: torch.device):
    """torch.use_deterministic_algorithms for the run's duration; the caller's setting comes back."""
    before = torch.are_deterministic_algorithms_enabled()
    if on:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
