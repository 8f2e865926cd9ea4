"""The training loop: `train(model, data, cfg, ...)`, readable top to bottom.

One call trains one model on one in-memory dataset (`data.SequenceData` or
`data.SparseData`). Each iteration of the main loop is either one optimizer
step over an effective batch or the end of an epoch. Everything the loop
knows lives in a `Run` (live handles) whose `Progress` is plain JSON, so a
checkpoint holds the whole state: model, optimizer, AMP scaler, every RNG,
the epoch plan and the position inside it. A run resumed from any checkpoint
ends with the same weights (bit for bit on CPU) and the same history as one
never interrupted.

The pieces that must be right in every loop live once, in small tested
functions: accumulation and its normaliser (`losses.normaliser`,
`data.micro_batches`), loss scaling (`accumulate_gradients`), non-finite
checks and clipping (`stability.clip_and_check`), checkpoint state
(`snapshot` / `restore`, `checkpoint.capture_rng`).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from cgtrain import interrupts
from cgtrain.engine import checkpoint as ckpt
from cgtrain.engine.checkpoint import run_fingerprint
from cgtrain.engine import distributed as ddp
from cgtrain.engine.data import curriculum_pool, micro_batches, plan_epoch, total_batches
from cgtrain.engine.device import autocast, deterministic_mode, make_scaler, resolve_device  # noqa: F401
from cgtrain.engine.data import plan_from_tensors, plan_to_tensors
from cgtrain.engine.losses import class_weights, normaliser, per_example_loss, weighted_sum
from cgtrain.engine.schedules import improved, lr_factor, make_optimizer, plateau_update, set_lr
from cgtrain.engine.stability import (FALLBACKS, TrainingDiverged, check_memory_cap, clip_and_check,
                                     fallback_config, fallback_record, halve_micro_batch, is_oom,
                                     params_finite, release_memory)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32                 # the effective batch (examples per optimizer step)
    micro_batch_size: int | None = None  # None: batch_size (no accumulation)
    optimizer: str = "adamw"             # "adamw" | "sgd" (with momentum, Nesterov)
    lr: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.9
    schedule: str = "warmup_cosine"      # see schedules.SCHEDULES
    warmup_frac: float = 0.1
    plateau_factor: float = 0.5
    plateau_patience: int = 1
    max_grad_norm: float | None = 1.0
    loss: str = "ce"                     # "ce" | "focal"
    focal_gamma: float = 2.0
    class_weight: str | None = None      # None | "balanced"
    patience: int | None = 3             # early stopping (epochs without improvement); needs val_fn
    bucket: bool = True                  # length-bucketed batches
    curriculum: bool = False             # easy -> hard pacing
    curriculum_start: float = 0.3
    curriculum_epochs: int = 3
    amp: bool = False                    # autocast: bf16 on CPU; fp16 + GradScaler on CUDA (amp_dtype)
    amp_dtype: str = "auto"              # "auto" | "bf16" | "fp16"
    checkpoint_every: int = 0            # steps between checkpoints (0: at epoch ends only)
    max_bad_steps: int = 3               # non-finite steps before rolling back to a fallback
    fallbacks: tuple[dict[str, Any], ...] = FALLBACKS
    max_batch_tokens: int | None = None  # memory cap: a bigger micro-batch counts as out of memory
    seed: int = 0
    device: str = "auto"                 # "auto" | "cpu" | "cuda" | "cuda:1" ...
    deterministic: bool = False


@dataclass
class Progress:
    """Where the run stands; plain JSON, saved in every checkpoint."""
    epoch: int = 0
    batch: int = 0            # position in the epoch plan
    step: int = 0             # effective batches attempted (the schedule's clock)
    optimizer_steps: int = 0
    micro_batch: int = 0
    attempt: int = 0          # 0: the original config, n: fallback n
    bad_steps: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    best_metric: float | None = None
    best_epoch: int = -1
    epochs_since_best: int = 0
    plateau_best: float | None = None
    plateau_bad: int = 0
    lr_scale: float = 1.0
    lr: float = 0.0
    amp_skips: int = 0
    stopped_early: bool = False
    done: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)    # one record per epoch
    events: list[dict[str, Any]] = field(default_factory=list)     # non-finite steps (not taken)
    fallbacks: list[dict[str, Any]] = field(default_factory=list)  # roll-backs to a fallback config
    memory: list[dict[str, Any]] = field(default_factory=list)     # out-of-memory halvings


@dataclass(frozen=True)
class Hooks:
    """Test and instrumentation hooks; none changes the numbers of a run."""
    poison: Callable[[int, int], bool] | None = None        # (step, attempt) -> make this step's loss NaN
    after_step: Callable[[int, bool], None] | None = None   # (step, optimizer step taken)


@dataclass
class Run:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    gen: torch.Generator                 # the data order
    base_cfg: TrainConfig
    cfg: TrainConfig                     # base_cfg with the current fallback applied
    device: torch.device
    progress: Progress
    weights: torch.Tensor | None         # class weights, on device
    weights_cpu: torch.Tensor | None
    scaler: torch.amp.GradScaler | None = None
    plan: list[np.ndarray] | None = None
    best: dict[str, torch.Tensor] | None = None
    net: torch.nn.Module | None = None   # the DDP wrapper that runs forward passes (None: one process)


@dataclass(frozen=True)
class FitResult:
    history: list[dict[str, Any]]
    events: list[dict[str, Any]]
    fallbacks: list[dict[str, Any]]
    memory: list[dict[str, Any]]
    best_epoch: int
    best_metric: float | None
    stopped_early: bool
    optimizer_steps: int
    steps: int
    micro_batch: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def train(model: torch.nn.Module, data, cfg: TrainConfig, *, val_fn: Callable[[torch.nn.Module], float] | None = None,
          greater_is_better: bool = True, on_epoch: Callable[[int, float], None] | None = None,
          store=None, resume: bool = False, difficulty: np.ndarray | None = None,
          hooks: Hooks = Hooks()) -> FitResult:
    """Train `model` in place; returns the history. With `val_fn` (model -> metric) the best
    epoch's weights are kept and early stopping applies. `store` (checkpoint.DirStore or
    MemoryStore) receives checkpoints; `resume` continues from the one it holds.
    `on_epoch(epoch, val_metric)` runs after each epoch's checkpoint and may raise (pruning)."""
    device = ddp.rank_device(resolve_device(cfg.device))  # under DDP (nccl): this rank's GPU
    store = ddp.rank_store(store if store is not None else ckpt.MemoryStore())  # under DDP: rank 0 writes
    run = start_run(model, data, cfg, device)
    fingerprint = _resume_or_start(run, store, run_fingerprint(model, data, cfg), resume)
    difficulty = data.lengths if difficulty is None else np.asarray(difficulty)
    total = total_batches(data.n, cfg.batch_size, cfg.epochs,
                          cfg.curriculum_start if cfg.curriculum else None, cfg.curriculum_epochs)
    with deterministic_mode(cfg.deterministic, device):
        model.train()
        while not _finished(run.progress, cfg):
            p = run.progress
            if hasattr(model, "set_epoch"):  # per-epoch model state (gradual unfreezing), also after a resume
                model.set_epoch(p.epoch)
            if run.plan is None:
                pool = (curriculum_pool(difficulty, p.epoch, cfg.curriculum_start, cfg.curriculum_epochs)
                        if cfg.curriculum else None)
                run.plan = plan_epoch(data.lengths, cfg.batch_size, run.gen, pool, cfg.bucket)
            interrupts.check_time()  # a trial's time limit holds inside an epoch, not only between epochs
            if p.batch < len(run.plan):
                _one_step(run, data, total, store, fingerprint, hooks)
            else:
                _end_epoch(run, val_fn, greater_is_better, on_epoch, store, fingerprint)
        p = run.progress
        if run.best is not None and not p.done:
            run.model.load_state_dict(run.best)
        p.done = True
        save_if_good(run, store, fingerprint)
    return FitResult(p.history, p.events, p.fallbacks, p.memory, p.best_epoch, p.best_metric,
                     p.stopped_early, p.optimizer_steps, p.step, p.micro_batch)


def _finished(p: Progress, cfg: TrainConfig) -> bool:
    return p.epoch >= cfg.epochs or p.stopped_early or p.done


def _resume_or_start(run: Run, store, fingerprint: str, resume: bool) -> str:
    store.discard_partial_writes()
    saved = store.load() if resume else None
    if saved is not None:
        if saved["fingerprint"] != fingerprint:
            raise ValueError("the checkpoint was written for other data, model or settings; "
                             "use a new checkpoint directory or resume=False")
        restore(run, saved)
    else:
        store.save(snapshot(run, fingerprint))  # the first "last good" state
    return fingerprint


def _one_step(run: Run, data, total: int, store, fingerprint: str, hooks: Hooks) -> None:
    """One optimizer step over an effective batch; too many bad steps roll back to the last good state."""
    p, cfg = run.progress, run.cfg
    p.lr = cfg.lr * p.lr_scale * lr_factor(cfg.schedule, p.step, total, cfg.warmup_frac)
    set_lr(run.optimizer, p.lr)
    poison = bool(hooks.poison and hooks.poison(p.step, p.attempt))
    loss, stepped, reason = optimizer_step(run, data, run.plan[p.batch], poison)
    p.step, p.batch = p.step + 1, p.batch + 1
    if stepped:
        p.optimizer_steps += 1
        p.loss_sum, p.loss_count = p.loss_sum + loss, p.loss_count + 1
    elif reason == "amp_overflow":  # GradScaler lowers its scale; not a divergence
        p.amp_skips += 1
    else:
        p.events.append({"step": p.step - 1, "epoch": p.epoch, "kind": reason, "loss": loss, "attempt": p.attempt})
        p.bad_steps += 1
        if p.bad_steps >= cfg.max_bad_steps:
            roll_back(run, store, reason)
            return
    if hooks.after_step:
        try:
            hooks.after_step(p.step - 1, stepped)
        except interrupts.StopTraining:
            save_if_good(run, store, fingerprint)  # a requested stop keeps this step: a resume goes on from it
            raise
    if cfg.checkpoint_every and p.step % cfg.checkpoint_every == 0:
        save_if_good(run, store, fingerprint)


def _end_epoch(run: Run, val_fn, greater_is_better: bool, on_epoch, store, fingerprint: str) -> None:
    """Validate, keep the best, early-stop, step a plateau schedule, checkpoint, report."""
    p, cfg = run.progress, run.cfg
    metric = validate(run.model, val_fn)
    p.history.append({"epoch": p.epoch, "examples": sum(len(b) for b in run.plan), "lr": p.lr,
                      "train_loss": p.loss_sum / p.loss_count if p.loss_count else float("nan"),
                      "val_metric": metric})
    if val_fn is not None:
        track_best(run, metric, greater_is_better)
    if cfg.schedule == "plateau":  # on the validation metric, else on the training loss
        watched, greater = ((metric, greater_is_better) if val_fn is not None
                            else (p.history[-1]["train_loss"], False))
        p.plateau_best, p.plateau_bad, p.lr_scale = plateau_update(
            p.plateau_best, p.plateau_bad, p.lr_scale, watched, greater, cfg.plateau_factor, cfg.plateau_patience)
    p.epoch, p.batch, p.loss_sum, p.loss_count, run.plan = p.epoch + 1, 0, 0.0, 0, None
    save_if_good(run, store, fingerprint)
    if on_epoch is not None:
        on_epoch(p.epoch - 1, metric)


# --- one step ------------------------------------------------------------------------
def optimizer_step(run: Run, data, indices: np.ndarray, poison: bool = False) -> tuple[float, bool, str]:
    """Gradients of one effective batch (halving the micro-batch on OOM), then one optimizer
    step unless the loss or the gradient is non-finite. Returns (loss, stepped, reason)."""
    p = run.progress
    while True:
        try:
            loss = accumulate_gradients(run, data, indices, poison)
            break
        except Exception as exc:
            if not is_oom(exc):
                raise
            run.optimizer.zero_grad(set_to_none=True)
            release_memory(run.device)
            old, p.micro_batch = p.micro_batch, halve_micro_batch(p.micro_batch)
            p.memory.append({"step": p.step, "error": type(exc).__name__, "micro_batch_before": old,
                             "micro_batch": p.micro_batch,
                             "accumulation": math.ceil(run.cfg.batch_size / p.micro_batch),
                             "effective_batch": run.cfg.batch_size})
    if not math.isfinite(loss):
        run.optimizer.zero_grad(set_to_none=True)
        return loss, False, "nonfinite_loss"
    if run.scaler is not None:
        run.scaler.unscale_(run.optimizer)
    norm = clip_and_check(run.model.parameters(), run.cfg.max_grad_norm)
    if not math.isfinite(norm):
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is not None:
            run.scaler.update()
            return loss, False, "amp_overflow"
        return loss, False, "nonfinite_grad"
    if run.scaler is not None:
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss, True, "ok"


def accumulate_gradients(run: Run, data, indices: np.ndarray, poison: bool = False) -> float:
    """Backward over the micro-batches of one effective batch; returns its (weighted mean) loss.

    Every micro-batch's weighted loss sum is divided by the normaliser of the
    whole effective batch, so the accumulated gradient does not depend on how
    the batch is cut (see losses.normaliser). With a GradScaler the loss is
    scaled before backward; `clip_and_check` sees unscaled gradients."""
    cfg = run.cfg
    denom = normaliser(data.y[indices], run.weights_cpu)
    mine, share = ddp.shard(indices), ddp.loss_scale()  # under DDP: this rank's rows; see train/distributed.py
    if len(mine) == 0:  # an empty shard still joins the step's all-reduce, with a zero-weighted row
        mine, share = indices[:1], 0.0
    chunks = list(micro_batches(mine, run.progress.micro_batch))
    total = None  # the loss stays a tensor until the end: one host sync per effective batch
    for chunk, sync in zip(chunks, ddp.micro_contexts(run.net, len(chunks))):
        check_memory_cap(data.padded_tokens(chunk), cfg.max_batch_tokens)
        inputs, y = data.collate(chunk, run.device)
        with sync:  # DDP: no gradient all-reduce before the last micro-batch
            with autocast(cfg, run.device):
                logits = (run.net if run.net is not None else run.model)(*inputs)
            loss = weighted_sum(per_example_loss(logits, y, cfg.loss, cfg.focal_gamma), y, run.weights) / denom
            if poison:
                loss, poison = loss * float("nan"), False
            scaled = loss * share if run.net is not None else loss
            (run.scaler.scale(scaled) if run.scaler is not None else scaled).backward()
        part = loss.detach() if share else loss.detach() * 0.0
        total = part if total is None else total + part
    return float(ddp.reduce_loss(total, run.device) if run.net is not None else total)


# --- epoch end ---------------------------------------------------------------------------
def validate(model: torch.nn.Module, val_fn) -> float:
    if val_fn is None:
        return float("nan")
    model.eval()
    try:
        with torch.inference_mode():
            return float(val_fn(model))
    finally:
        model.train()


def track_best(run: Run, metric: float, greater_is_better: bool) -> None:
    p, patience = run.progress, run.cfg.patience
    if improved(metric, p.best_metric, greater_is_better) or run.best is None:
        p.best_metric, p.best_epoch, p.epochs_since_best = metric, p.epoch, 0
        run.best = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    else:
        p.epochs_since_best += 1
        p.stopped_early = bool(patience) and p.epochs_since_best >= patience


# --- state: start, snapshot, restore, roll back ----------------------------------------
def start_run(model: torch.nn.Module, data, cfg: TrainConfig, device: torch.device) -> Run:
    model.to(device)
    n_classes = int(data.y.max()) + 1 if data.n else 1
    weights = class_weights(data.y.numpy(), n_classes, cfg.class_weight)
    micro = min(cfg.micro_batch_size or cfg.batch_size, cfg.batch_size)
    return Run(model=model, optimizer=make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum), gen=torch.Generator().manual_seed(cfg.seed),
               base_cfg=cfg, cfg=cfg, device=device, progress=Progress(micro_batch=micro),
               weights=None if weights is None else weights.to(device), weights_cpu=weights,
               scaler=make_scaler(cfg, device), net=ddp.wrap(model, device))


def snapshot(run: Run, fingerprint: str) -> dict[str, Any]:
    return {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else None,
            "best": run.best, "plan": plan_to_tensors(run.plan), "rng": ckpt.capture_rng(run.gen),
            "progress": dataclasses.asdict(run.progress), "fingerprint": fingerprint}


def restore(run: Run, saved: dict[str, Any]) -> None:
    run.progress = Progress(**saved["progress"])
    run.cfg = fallback_config(run.base_cfg, run.progress.attempt, run.base_cfg.fallbacks)
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scaler = make_scaler(run.cfg, run.device)
    if run.scaler is not None and saved["scaler"] is not None:
        run.scaler.load_state_dict(saved["scaler"])
    run.best = saved["best"]
    run.plan = plan_from_tensors(saved["plan"])
    ckpt.restore_rng(saved["rng"], run.gen)


def save_if_good(run: Run, store, fingerprint: str) -> bool:
    """Checkpoint unless a parameter went non-finite (then the last good checkpoint stays)."""
    if not params_finite(run.model.parameters()):
        run.progress.events.append({"step": run.progress.step, "epoch": run.progress.epoch,
                                    "kind": "nonfinite_params", "attempt": run.progress.attempt})
        return False
    store.save(snapshot(run, fingerprint))
    return True


def roll_back(run: Run, store, reason: str) -> None:
    """Back to the last good checkpoint, on with the next fallback config; logs survive."""
    old = run.progress
    attempt = old.attempt + 1
    if attempt > len(run.base_cfg.fallbacks):
        raise TrainingDiverged(f"training diverged: {reason} at step {old.step - 1}, "
                               f"{len(old.fallbacks)} fallback config(s) used up", old.fallbacks, old.events)
    restore(run, store.load())
    new = run.progress
    run.cfg = fallback_config(run.base_cfg, attempt, run.base_cfg.fallbacks)
    run.scaler = make_scaler(run.cfg, run.device)
    new.attempt, new.bad_steps, new.micro_batch = attempt, 0, old.micro_batch
    new.events, new.memory, new.amp_skips = old.events, old.memory, old.amp_skips
    new.fallbacks = old.fallbacks + [fallback_record(run.cfg, attempt, old.step - 1, new.step, reason)]


# --- small helpers ---------------------------------------------------------------------
