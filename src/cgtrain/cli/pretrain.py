"""`cgtrain pretrain`: pre-train a code encoder on source code from disk (see cgtrain.pretrain)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

out = Console()
err = Console(stderr=True)


def pretrain(
    output: Path = typer.Option(..., "--out", help="encoder directory to write (AutoModel/AutoTokenizer load it)"),
    source: Optional[list[Path]] = typer.Option(None, "--source", help="directory of source code, or a .jsonl(.gz) "
                                                "dataset whose rows' `code` is read; repeat for more "
                                                "(default: the standard library and site-packages)"),
    ext: str = typer.Option("py", "--ext", help="comma-separated file extensions to read (py: one document per "
                                                "function, normalised; others: blocks of lines)"),
    steps: int = typer.Option(1000, "--steps", min=1, help="optimizer steps the schedule plans for"),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", min=1, help="stop after this many seconds "
                                                "(weights so far are saved; --resume goes on)"),
    max_files: int = typer.Option(2000, "--max-files", min=1, help="a seeded sample of at most this many files"),
    size: str = typer.Option("small", "--size", help="tiny (2x128) | small (4x256) | base (6x384)"),
    objective: str = typer.Option("electra", "--objective", help="electra (replaced-token detection) | mlm"),
    vocab_size: int = typer.Option(8000, "--vocab-size", min=300),
    seq_len: int = typer.Option(256, "--seq-len", min=16, max=512),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = typer.Option(5e-4, "--lr"),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=1, help="steps between checkpoints "
                                         "(a GPU takes many steps a second: checkpoint less often there)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    amp: bool = typer.Option(False, "--amp", help="autocast (bf16 on CPU, fp16 on CUDA)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out (after a kill, or a "
                                                        "--time-budget stop); its saved settings are used"),
) -> None:
    """Pre-train a small transformer encoder on unlabelled code (tokenizer + ELECTRA/MLM) into --out."""
    from cgtrain.pretrain import PretrainError, PretrainSettings
    from cgtrain.pretrain import pretrain as run_pretrain

    _check_choices(size, objective)
    settings = PretrainSettings(
        sources=tuple(str(s) for s in source or ()), extensions=tuple(e.strip() for e in ext.split(",") if e.strip()),
        max_files=max_files, objective=objective, size=size, vocab_size=vocab_size, seq_len=seq_len, steps=steps,
        batch_size=batch_size, lr=lr, amp=amp, seed=seed, device=device, checkpoint_every=checkpoint_every)
    try:
        result = run_pretrain(settings, output, resume=resume, time_budget_s=time_budget,
                              say=lambda m: out.print(m, highlight=False, markup=False))
    except PretrainError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    r = result.report
    out.print(f"encoder -> {output}: {r['steps_done']}/{r['steps_planned']} steps, loss "
              f"{r['loss_first_10pct']:.4f} -> {r['loss_last_10pct']:.4f} (held-out {r['held_out_loss']:.4f}), "
              f"{r['tokens_per_s']} tokens/s; report {output / 'pretrain_report.md'}", highlight=False, markup=False)


def _check_choices(size: str, objective: str) -> None:
    """One line per bad choice, exit code 2."""
    from cgtrain.pretrain.objective import OBJECTIVES, SIZES

    problems = []
    if size not in SIZES:
        problems.append(f"--size: {size!r} is not one of {', '.join(SIZES)}")
    if objective not in OBJECTIVES:
        problems.append(f"--objective: {objective!r} is not one of {', '.join(OBJECTIVES)}")
    for p in problems:
        err.print(p, markup=False, highlight=False)
    if problems:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
