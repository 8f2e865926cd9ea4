"""Data-parallel training (torch DDP) for the one training loop, and device selection.

`launch(fn, args, nproc, backend)` starts `nproc` processes on this machine through
torch's elastic launcher (what `torchrun --standalone` runs) and returns rank 0's result.
Inside a rank, `loop.train` notices the process group and:

- every rank builds the same epoch plan (same seed) and takes its share of each effective
  batch (`shard`: indices[rank::world]); each rank's loss is divided by the *whole* effective
  batch's normaliser and multiplied by the world size, so DDP's gradient average equals the
  one-process gradient: the same global batch gives the same loss curve (up to float summation
  order), whatever nproc;
- gradient accumulation: every micro-batch but the last runs under `no_sync`, so each rank
  joins exactly one all-reduce per optimizer step, even with uneven or empty shards (an empty
  shard contributes a zero-weighted example);
- the reported loss is all-reduced, so non-finite checks, fallbacks, early stopping and the
  history are the same on every rank; validation runs on every rank (same data, same answer);
- checkpoints: only rank 0 writes the file (`RankStore`); other ranks keep the same state in
  memory for roll-backs and read rank 0's file on resume.

Not covered: out-of-memory halving under DDP (one rank's OOM would desynchronise the ranks:
it is raised), dropout masks drawn per shard (a DDP run with dropout is deterministic and
resumes bit-identically, but is not bitwise the one-process run).
"""
from __future__ import annotations

import contextlib
import os
import uuid
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from cgtrain.engine import checkpoint as ckpt


# --- inside a rank ----------------------------------------------------------------------
def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def rank_device(device: torch.device) -> torch.device:
    """Under NCCL each local rank gets its own CUDA device; otherwise the device asked for."""
    if active() and device.type == "cuda" and dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module | None:
    """The DDP wrapper that runs forward passes (None outside a process group)."""
    if not active():
        return None
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def shard(indices: np.ndarray) -> np.ndarray:
    """This rank's share of an effective batch."""
    return indices[rank()::world()] if active() else indices


def loss_scale() -> float:
    """DDP averages gradients over ranks; each rank's loss is already a share of the global mean."""
    return float(world())


def micro_contexts(net: torch.nn.Module | None, n_chunks: int):
    """One context per micro-batch: `no_sync` for all but the last (one all-reduce per step)."""
    for i in range(n_chunks):
        if net is not None and i < n_chunks - 1:
            yield net.no_sync()
        else:
            yield contextlib.nullcontext()


def reduce_loss(total: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """The effective batch's loss summed over ranks (each holds its share)."""
    if total is None:
        total = torch.zeros((), device=device)
    if active():
        total = total.detach().clone().float()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


class RankStore:
    """Checkpoints under DDP: rank 0 writes `inner`; every rank keeps the last state in memory."""

    def __init__(self, inner):
        self.inner, self.memory = inner, ckpt.MemoryStore()

    def save(self, state: Any) -> None:
        self.memory.save(state)
        if rank() == 0:
            self.inner.save(state)

    def load(self) -> Any | None:
        saved = self.memory.load()
        return saved if saved is not None else self.inner.load()

    def discard_partial_writes(self) -> None:
        if rank() == 0:
            self.inner.discard_partial_writes()
        if active():
            dist.barrier()  # nobody reads the directory while rank 0 cleans it


def rank_store(store):
    return RankStore(store) if active() else store


# --- devices ------------------------------------------------------------------------------
def loader_options(device: torch.device) -> dict[str, Any]:
    """DataLoader settings: pinned memory and worker processes only where CUDA is used."""
    if device.type != "cuda":
        return {"pin_memory": False, "num_workers": 0}
    return {"pin_memory": True, "num_workers": min(4, max(1, (os.cpu_count() or 2) // 2)),
            "persistent_workers": True}


def check_device(name: str) -> str:
    """`auto | cpu | cuda | cuda:N`; ValueError (one line) for a device this machine lacks."""
    if name in ("auto", "cpu"):
        return name
    if not name.startswith("cuda"):
        raise ValueError(f"device {name!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: no CUDA device on this machine; use --device cpu (or auto)")
    index = int(name.split(":")[1]) if ":" in name else 0
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


# --- the launcher --------------------------------------------------------------------------
def launch(fn: Callable, args: tuple, nproc: int, backend: str = "gloo") -> Any:
    """Run fn(*args) in `nproc` ranks on this machine (torch elastic launch); rank 0's return value.

    `fn` must be a module-level function (ranks are spawned processes)."""
    if nproc == 1:
        return fn(*args)
    if backend == "nccl" and torch.cuda.device_count() < nproc:
        raise ValueError(f"train.distributed: backend nccl needs {nproc} CUDA devices, this machine has "
                         f"{torch.cuda.device_count()}; use backend: gloo or fewer processes")
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0,
                          monitor_interval=0.1, start_method="spawn")
    results = elastic_launch(config, _rank_main)(fn, args, backend)
    return results[0]


def _rank_main(fn: Callable, args: tuple, backend: str) -> Any:
    threads = os.environ.get("CGTRAIN_RANK_THREADS")
    torch.set_num_threads(int(threads) if threads else 1)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    try:
        out = fn(*args)
        return out if dist.get_rank() == 0 else None
    finally:
        dist.destroy_process_group()


# --- estimators (neural / HF families) ----------------------------------------------------
def fit_estimator(estimator, X, y, fit_kwargs: dict[str, Any], nproc: int, backend: str = "gloo"):
    """Fit a loop-based estimator with DDP in `nproc` ranks; returns the fitted estimator (rank 0's).

    A per-epoch callback (`on_epoch`, Optuna pruning) cannot cross processes: the epochs' metrics
    are replayed to it after training (so a pruned trial is still marked pruned)."""
    on_epoch = fit_kwargs.pop("on_epoch", None)
    fitted = launch(_fit_rank, (estimator, X, y, fit_kwargs), nproc, backend)
    if on_epoch is not None:
        for record in fitted.history_["history"]:
            on_epoch(int(record["epoch"]), float(record["val_metric"]))
    return fitted


def fit_with(section, estimator, X, y, fit_kwargs: dict[str, Any]):
    """A family's fit under the request's `train` section: its device, and DDP for the loop-based
    (neural, HF) families when `train.distributed` is set; other families fit as before."""
    params = estimator.get_params()
    if "device" in params:
        estimator.set_params(device=check_device(section.device))
    dist_cfg = section.distributed
    if dist_cfg is None or dist_cfg.nproc == 1 or "val_metric" not in params:
        return estimator.fit(X, y, **fit_kwargs)
    return fit_estimator(estimator, X, y, dict(fit_kwargs), dist_cfg.nproc, dist_cfg.backend)


def _fit_rank(estimator, X, y, fit_kwargs):
    return estimator.fit(X, y, **fit_kwargs)

