"""`pretrain(settings)`: corpus -> tokenizer -> self-supervised training on the loop -> encoder dir.

The output directory is what `AutoModel.from_pretrained` / `AutoTokenizer.from_pretrained` load
(config.json, model.safetensors, tokenizer.json, tokenizer_config.json) and what `hf_finetune` /
`hf_embed` take as `params: {model_path: DIR}`; beside them `pretrain_report.json` / `.md` (steps,
tokens/s, loss curve, corpus) and `pretrain_state/` (the loop's checkpoint, for `resume`).
A run resumed after `kill -9` ends with the same weights and loss curve as one never stopped
(bit for bit on CPU with the same thread count): tokenizer and settings are read back from the
directory, the corpus is rebuilt deterministically and the loop restores its checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cgtrain import interrupts
from cgtrain.fsutil import atomic_write_json, atomic_write_text
from cgtrain.models.hf.codetok import PAD_ID, load_code_tokenizer, train_code_tokenizer
from cgtrain.models.hf.tokens import EncodedData
from cgtrain.pretrain import corpus as corp
from cgtrain.pretrain.objective import Pretrainer, build, count_parameters, steps_for
from cgtrain.engine.checkpoint import DirStore
from cgtrain.engine.device import resolve_device
from cgtrain.engine.loop import Hooks, TrainConfig, train
from cgtrain.errors import PretrainError  # noqa: F401 (re-exported)
from cgtrain.quiet import hf_offline

STATE_DIR, SETTINGS_FILE = "pretrain_state", "pretrain_settings.json"
REPORT_JSON, REPORT_MD = "pretrain_report.json", "pretrain_report.md"
RTD_HEAD_FILE = "cgtrain_rtd_head.safetensors"  # ELECTRA's "is this token replaced?" head (ElectraDiscriminatorPredictions)




@dataclass(frozen=True)
class PretrainSettings:
    sources: tuple[str, ...] = ()        # empty: the standard library and site-packages
    extensions: tuple[str, ...] = ("py",)
    max_files: int | None = 2000
    objective: str = "electra"           # "electra" | "mlm"
    size: str = "small"                  # see objective.SIZES
    vocab_size: int = 8000
    seq_len: int = 256
    max_positions: int = 512             # fine-tuning may use longer rows than pre-training
    steps: int = 1000                    # the schedule's horizon (whole epochs over a sample of the corpus)
    batch_size: int = 32
    micro_batch_size: int | None = None
    lr: float = 5e-4
    warmup_frac: float = 0.06
    weight_decay: float = 0.01
    amp: bool = False
    checkpoint_every: int = 50
    held_out_fraction: float = 0.02
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        for name in ("steps", "batch_size", "vocab_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise PretrainError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        if not 16 <= self.seq_len <= self.max_positions:
            raise PretrainError(f"--seq-len: must be in 16..{self.max_positions}, got {self.seq_len}")
        if self.vocab_size < 300:
            raise PretrainError(f"--vocab-size: must be >= 300 (256 bytes + specials), got {self.vocab_size}")


@dataclass
class PretrainResult:
    out_dir: Path
    report: dict[str, Any] = field(default_factory=dict)


class _Stop(Exception):
    """Raised from the step hook at a test's interruption point (as if the process died: nothing is saved)."""


class _BudgetStop(_Stop, interrupts.StopTraining):
    """Raised from the step hook when the time budget is reached: the loop checkpoints this step first."""


def pretrain(settings: PretrainSettings, out_dir: str | Path, *, resume: bool = False,
             time_budget_s: float | None = None, say: Callable[[str], None] = lambda m: None,
             log_every: int = 25, _interrupt_at: int | None = None) -> PretrainResult:
    """Pre-train an encoder into `out_dir` (see the module docstring). `time_budget_s` stops early with
    the weights reached (the schedule is not shortened: a later `resume` goes on to `steps`)."""
    settings.check()
    out = Path(out_dir)
    settings = _settings_for(out, settings, resume)
    started = time.monotonic()
    tokenizer, seqs, corpus_info = _prepare(settings, out, resume, say)
    train_seqs, held = corp.split_held_out(seqs, settings.held_out_fraction, settings.seed)
    train_seqs, epochs = _sample_for_steps(train_seqs, settings)
    data = EncodedData(train_seqs, None, PAD_ID)
    total = steps_for(data.n, settings.batch_size, epochs)
    device = resolve_device(settings.device)
    cfg = TrainConfig(epochs=epochs, batch_size=settings.batch_size, micro_batch_size=settings.micro_batch_size,
                      lr=settings.lr, weight_decay=settings.weight_decay, schedule="warmup_cosine",
                      warmup_frac=settings.warmup_frac, patience=None, amp=settings.amp,
                      checkpoint_every=settings.checkpoint_every, seed=settings.seed, device=settings.device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # weights, masks, replacements: from the seed alone
        torch.manual_seed(settings.seed)
        module = build(settings.objective, settings.size, len(tokenizer), settings.max_positions, total)
        say(f"pre-training {settings.objective} ({settings.size}, {count_parameters(module.encoder_to_save()):,} "
            f"encoder parameters) on {data.n:,} sequences, {total} steps of {settings.batch_size}, device {device}")
        clock = _Clock(module, total, log_every, say, time_budget_s, started, _interrupt_at)
        result, stopped = _train(module, data, cfg, out, resume, clock)
    module.eval()
    _save_encoder(module, tokenizer, out)
    report = _report(settings, module, result, clock, corpus_info, data, held, total, stopped, device)
    atomic_write_json(out / REPORT_JSON, report)
    atomic_write_text(out / REPORT_MD, _markdown(report))
    return PretrainResult(out, report)


# --- setup ----------------------------------------------------------------------------------
def _settings_for(out: Path, settings: PretrainSettings, resume: bool) -> PretrainSettings:
    saved = out / SETTINGS_FILE
    if resume:
        if not saved.is_file():
            raise PretrainError(f"--resume: {out} holds no pre-training run ({SETTINGS_FILE} missing); "
                                f"drop --resume to start one")
        stored = json.loads(saved.read_text(encoding="utf-8"))
        stored = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items()}
        return PretrainSettings(**{**stored, "device": settings.device})  # the device may change
    if out.exists() and (out / STATE_DIR).exists():
        raise PretrainError(f"--out: {out} already holds a pre-training run; add --resume to continue it or "
                            f"choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(saved, dataclasses.asdict(settings))
    return settings


def _prepare(settings: PretrainSettings, out: Path, resume: bool, say):
    roots = [Path(s) for s in settings.sources] or corp.default_sources()
    saved = out / STATE_DIR / corp.CORPUS_FILE
    if resume and saved.is_file():  # the corpus the run started with, even if the sources changed since
        corpus = corp.load(saved)
    else:
        try:
            corpus = corp.collect(roots, max_files=settings.max_files, seed=settings.seed,
                                  extensions=settings.extensions)
        except ValueError as exc:
            raise PretrainError(str(exc)) from None
        corp.save(corpus, saved)
    say(f"corpus: {len(corpus.documents):,} documents from {corpus.n_files:,} files "
        f"({corpus.n_files_skipped} skipped), {corpus.n_chars / 1e6:.1f} M characters")
    if resume and (out / "tokenizer.json").is_file():
        tokenizer = load_code_tokenizer(out)
    else:
        t0 = time.monotonic()
        tokenizer = train_code_tokenizer(corpus.documents, settings.vocab_size, settings.max_positions)
        tokenizer.save_pretrained(str(out))
        say(f"tokenizer: byte-level BPE, {len(tokenizer):,} tokens, trained in {time.monotonic() - t0:.1f} s")
    seqs = corp.to_sequences(tokenizer, corpus.documents, settings.seq_len)
    if len(seqs) < 2:
        raise PretrainError(f"--source: the corpus gives {len(seqs)} sequence(s) of >= {corp.MIN_PIECE_TOKENS} "
                            f"tokens; give more code")
    info = {"sources": corpus.sources, "files": corpus.n_files, "files_skipped": corpus.n_files_skipped,
            "documents": len(corpus.documents), "characters": corpus.n_chars, "sequences": len(seqs),
            "tokens": int(sum(len(s) for s in seqs))}
    return tokenizer, seqs, info


def _sample_for_steps(seqs: list[torch.Tensor], s: PretrainSettings) -> tuple[list[torch.Tensor], int]:
    """Whole epochs whose step count is close to s.steps: a seeded sample when the corpus is larger,
    several epochs when it is smaller."""
    needed = s.steps * s.batch_size
    if len(seqs) >= needed:
        keep = np.sort(np.random.default_rng(s.seed + 1).choice(len(seqs), size=needed, replace=False))
        return [seqs[i] for i in keep], 1
    return seqs, max(1, round(needed / len(seqs)))


def _train(module, data, cfg, out: Path, resume: bool, clock: "_Clock"):
    try:
        result = train(module, data, cfg, store=DirStore(out / STATE_DIR), resume=resume,
                       hooks=Hooks(after_step=clock.after_step))
        return result, None
    except _Stop as exc:
        return None, str(exc)
    except ValueError as exc:
        if "checkpoint was written for other" in str(exc):
            raise PretrainError(f"--resume: {out / STATE_DIR} holds a run with other settings or corpus; "
                                f"use a new --out or the same sources and settings") from None
        raise


class _Clock:
    """The loop's after-step hook: loss curve, progress lines, throughput, the time budget."""

    def __init__(self, module: Pretrainer, total: int, log_every: int, say, budget_s, started, interrupt_at):
        self.module, self.total, self.log_every, self.say = module, total, log_every, say
        self.budget_s, self.started, self.interrupt_at = budget_s, started, interrupt_at
        self.t0: float | None = None
        self.tokens0 = 0.0
        self.steps_here = 0
        self.last_step = -1

    def after_step(self, step: int, stepped: bool) -> None:
        loss = self.module.end_step(step)
        if self.t0 is None:  # the first step of this process: measure throughput from here
            self.t0, self.tokens0 = time.monotonic(), float(self.module.tokens_seen)
        self.steps_here += 1
        self.last_step = step
        if (step + 1) % self.log_every == 0 or step + 1 == self.total:
            self.say(f"step {step + 1}/{self.total}  loss {loss:.4f}  {self.tokens_per_s():,.0f} tokens/s")
        if self.interrupt_at is not None and step + 1 >= self.interrupt_at:
            raise _Stop(f"interrupted after step {step + 1}")
        if self.budget_s is not None and time.monotonic() - self.started >= self.budget_s:
            raise _BudgetStop(f"time budget of {self.budget_s:g} s reached after step {step + 1}")

    def tokens_per_s(self) -> float:
        if self.t0 is None:
            return float("nan")
        seconds = time.monotonic() - self.t0
        return (float(self.module.tokens_seen) - self.tokens0) / seconds if seconds > 0 else float("nan")

    def seconds(self) -> float:
        return time.monotonic() - self.t0 if self.t0 is not None else 0.0


# --- outputs ----------------------------------------------------------------------------------
def _save_encoder(module: Pretrainer, tokenizer, out: Path) -> None:
    """The bare encoder (config.json + model.safetensors: what AutoModel loads without leftovers) and,
    for ELECTRA, the replaced-token-detection head (RTD_HEAD_FILE) into `out`, each file replaced
    atomically."""
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix=".encoder.", dir=out))
    try:
        with hf_offline():  # no loading bars, no hub
            module.bare_encoder().save_pretrained(str(tmp), safe_serialization=True)
        head = module.token_head()
        if head is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
                      str(tmp / RTD_HEAD_FILE))
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)  # safetensors writes owner-only files
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def held_out_loss(module: Pretrainer, held: list[torch.Tensor], batch_size: int = 32, seed: int = 0) -> float:
    """The objective's mean loss on held-out sequences, with a fixed masking seed."""
    if not held:
        return float("nan")
    data = EncodedData(held, None, PAD_ID)
    device = next(module.parameters()).device
    total, n = 0.0, 0
    saved_acc, saved_tokens = list(module._acc), module.tokens_seen.clone()
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(seed)
        for i in range(0, data.n, batch_size):
            (ids, mask), _ = data.collate(np.arange(i, min(i + batch_size, data.n)), device)
            logits = module(ids, mask)
            total += float(torch.nn.functional.softplus(logits[:, 1]).sum())
            n += ids.shape[0]
    module._acc, module.tokens_seen = saved_acc, saved_tokens
    return total / n


def _report(settings, module, result, clock, corpus_info, data, held, total, stopped, device) -> dict[str, Any]:
    curve = module.loss_curve.cpu().numpy()
    done = int(np.isfinite(curve).sum())
    points = _curve_points(curve)
    tenth = max(1, done // 10)
    finite = curve[np.isfinite(curve)]
    return {
        "objective": settings.objective, "size": settings.size, "settings": dataclasses.asdict(settings),
        "encoder_parameters": count_parameters(module.encoder_to_save()),
        "total_parameters": count_parameters(module), "device": str(device), "torch_threads": torch.get_num_threads(),
        "corpus": corpus_info, "train_sequences": data.n, "held_out_sequences": len(held),
        "steps_planned": total, "steps_done": done, "stopped": stopped,
        "optimizer_steps": result.optimizer_steps if result is not None else None,
        "fallbacks": result.fallbacks if result is not None else None,
        "tokens_seen": int(float(module.tokens_seen)),
        "seconds_this_process": round(clock.seconds(), 2), "steps_this_process": clock.steps_here,
        "tokens_per_s": round(clock.tokens_per_s(), 1) if clock.steps_here else None,
        "loss_first_10pct": float(finite[:tenth].mean()) if finite.size else None,
        "loss_last_10pct": float(finite[-tenth:].mean()) if finite.size else None,
        "held_out_loss": held_out_loss(module, held, seed=settings.seed),
        "loss_curve": points,
    }


def _curve_points(curve: np.ndarray, max_points: int = 200) -> list[list[float]]:
    """(step, mean loss over the steps since the previous point), at most max_points."""
    idx = np.flatnonzero(np.isfinite(curve))
    if idx.size == 0:
        return []
    width = max(1, math.ceil(idx.size / max_points))
    return [[int(idx[i + len(c) - 1]) + 1, round(float(np.mean(c)), 5)]
            for i in range(0, idx.size, width) for c in [curve[idx[i:i + width]]]]


def _markdown(r: dict[str, Any]) -> str:
    c = r["corpus"]
    lines = [f"# Pre-training report ({r['objective']}, {r['size']})", "",
             f"- encoder parameters: {r['encoder_parameters']:,} (all modules: {r['total_parameters']:,})",
             f"- corpus: {c['documents']:,} documents from {c['files']:,} files; {c['sequences']:,} sequences, "
             f"{c['tokens']:,} tokens ({r['train_sequences']:,} train, {r['held_out_sequences']} held out)",
             f"- steps: {r['steps_done']} of {r['steps_planned']} planned"
             + (f" ({r['stopped']})" if r["stopped"] else ""),
             f"- tokens seen: {r['tokens_seen']:,}; throughput {r['tokens_per_s']} tokens/s on {r['device']} "
             f"({r['torch_threads']} threads), {r['seconds_this_process']} s in the last process",
             f"- loss: first 10% of steps {r['loss_first_10pct']}, last 10% {r['loss_last_10pct']}; "
             f"held-out {r['held_out_loss']:.4f}", "", "## Loss curve", "", "| step | loss |", "|---:|---:|"]
    pts = r["loss_curve"]
    show = pts if len(pts) <= 25 else [pts[int(i)] for i in np.linspace(0, len(pts) - 1, 25)]
    lines += [f"| {s} | {v:.4f} |" for s, v in show]
    return "\n".join(lines) + "\n"
