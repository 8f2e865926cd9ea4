"""`train_model`: the training loop on a model and data in `nproc` DDP ranks (tests, benchmarks, recipes).

Apart from train/distributed.py because it calls the loop, which imports distributed.py's hooks.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch

from cgtrain.engine import checkpoint as ckpt
from cgtrain.engine.distributed import launch
from cgtrain.engine.loop import train


def train_model(model: torch.nn.Module, data, cfg, nproc: int, backend: str = "gloo",
                checkpoint_dir: str | None = None, resume: bool = False, val_fn: Callable | None = None):
    """`loop.train` in `nproc` ranks (checkpoints in `checkpoint_dir`, written by rank 0); loads the
    trained weights into `model` and returns rank 0's FitResult. `val_fn` must be a module-level function."""
    result, state = launch(_train_rank, (model, data, cfg, checkpoint_dir, resume, val_fn), nproc, backend)
    model.load_state_dict(state)
    return result


def _train_rank(model, data, cfg, checkpoint_dir, resume, val_fn):
    model = copy.deepcopy(model)  # spawned ranks receive tensors in shared memory: each rank needs its own
    store = ckpt.DirStore(checkpoint_dir) if checkpoint_dir is not None else None
    result = train(model, data, cfg, val_fn=val_fn, store=store, resume=resume)
    return result, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
