"""What the `cgtrain` commands print: results tables on stdout (stderr when stdout carries --json),
progress and messages on stderr, a plain line per finished trial where stderr is not a terminal."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cgtrain import rundir

out = Console()
err = Console(stderr=True)
VERBOSE = {"on": False}  # `cgtrain -v`: a line per trial even on a terminal, and the libraries' log messages


def human_and_say(as_json: bool, quiet: bool):
    """(console for the results tables, say): tables on stdout, or stderr when stdout carries --json;
    progress and messages always on stderr; silent with -q."""
    human = err if as_json else out
    return human, (lambda m: None) if quiet else (lambda m: err.print(m, highlight=False, markup=False))


def print_summary(result, as_json: bool, quiet: bool, tracked=None) -> None:
    """The last word: the JSON object with --json, the model path with -q (print_results said it otherwise)."""
    m = result.metrics
    if as_json:
        record = {"run_dir": str(result.run_dir), "model": str(result.run_dir / rundir.MODEL_FILE),
                  "best": m.get("best"), "test": m.get("test"), "cv": m.get("cv"),
                  "n_train": m.get("n_train"), "n_test": m.get("n_test"), "warnings": m.get("warnings", []),
                  "tracked": None if tracked is None else {"run_id": tracked.run_id, "model": tracked.model_name,
                                                           "version": tracked.model_version}}
        sys.stdout.write(json.dumps(record) + "\n")
    elif quiet:
        sys.stdout.write(f"{result.run_dir / rundir.MODEL_FILE}\n")


@contextmanager
def study_progress(console: Console | None = None, quiet: bool = False):
    if quiet:
        yield None
        return
    columns = [TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TextColumn("best {task.fields[best]}"),
               TimeElapsedColumn()]
    console = console or out
    lines = VERBOSE["on"] or not console.is_terminal  # CI logs: a plain line per finished trial, as it finishes
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        task, said = bar.add_task("study", total=None, best="-"), {"done": 0}

        def update(done: int, total: int, best: float | None) -> None:
            shown = "-" if best is None else f"{best:.4f}"
            bar.update(task, completed=done, total=total or None, best=shown)
            if lines and done > said["done"]:
                said["done"] = done
                console.print(f"trials {done}{f'/{total}' if total else ''} finished, best {shown}", highlight=False,
                              markup=False)

        yield update


def print_results(result, console: Console | None = None) -> None:
    console = console or out
    board = result.leaderboard
    metric_col = next((c for c in board.columns if c.endswith("_mean")), None)
    if metric_col is None:  # a budget that ended before any trial: the default model was refit
        import pandas as pd

        board = pd.DataFrame(columns=["trial", "family", "params", "cv_mean", "cv_std", "fit_seconds", "state"])
        metric_col = "cv_mean"
    table = Table("trial", "family", "params", metric_col.removesuffix("_mean") + " (CV)", "fit s", "state",
                  title="leaderboard (top 10)")
    for row in board.head(10).itertuples(index=False):
        d = row._asdict()
        mean, std = d[metric_col], d[metric_col.replace("_mean", "_std")]
        cv = fmt(mean) + (f" ± {fmt(std)}" if "-" not in (fmt(mean), fmt(std)) else "")  # none after one fold
        table.add_row(str(d["trial"]), d["family"], _short(d["params"]), cv, fmt(d["fit_seconds"], ".1f"),
                      d["state"])
    console.print(table)
    m = result.metrics
    console.print(test_table(m))
    console.print(f"model: {result.run_dir / rundir.MODEL_FILE}  ({m['best']['family']}, trial {m['best']['trial']})")


def test_table(m: dict) -> Table:
    """The held-out test metrics of a run's metrics.json next to its baseline's."""
    base_key = next((k for k in ("baseline_majority", "baseline_mean", "baseline_random") if k in m), None)
    base = m.get(base_key) or {}
    table = Table("metric", "test", *([base_key.replace("baseline_", "") + " baseline"] if base_key else []),
                  title=f"held-out test ({m.get('n_test')} rows)")
    for name, value in (m.get("test") or {}).items():
        table.add_row(name, fmt(value), *([fmt(base.get(name))] if base_key else []))
    return table


def fmt(value, spec: str = ".4f") -> str:
    """The number, or '-' where there is none (None or NaN: a trial pruned after its first fold has no spread)."""
    return "-" if value is None or value != value else format(value, spec)


def _short(params: str, width: int = 60) -> str:
    return params if len(params) <= width else params[: width - 1] + "…"
