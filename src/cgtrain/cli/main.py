"""The `cgtrain` command. Errors a user can fix print one clear line each, no traceback."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from cgtrain.cli.errors import user_errors
from cgtrain.cli.output import (VERBOSE, err, fmt, human_and_say, out, print_results, print_summary, study_progress,
                                 test_table)
from cgtrain.cli.models import models_app
from cgtrain.cli.pretrain import register as register_pretrain_command
from cgtrain.cli.qa import profiling
from cgtrain.cli.qa import register as register_qa_commands
from cgtrain.cli.service import register as register_service_commands
from cgtrain import rundir

app = typer.Typer(add_completion=True, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Train, tune, test and use models that find flaws in source code.")
data_app = typer.Typer(no_args_is_help=True, help="Make and inspect datasets.")
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        from cgtrain import __version__

        sys.stdout.write(f"cgtrain {__version__}\n")
        raise typer.Exit()


# Commands that need an extra as a whole (a family's extra is checked with the request that names it).
COMMAND_EXTRAS = {"serve": ("service", ("fastapi", "uvicorn", "sqlalchemy")),
                  "worker": ("service", ("sqlalchemy",)), "token": ("service", ("sqlalchemy",)),
                  "pretrain": ("hf", ("torch", "transformers", "tokenizers")), "models": ("mlflow", ("mlflow",))}


@app.callback(context_settings={"help_option_names": ["-h", "--help"]})
def _main(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit"),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="more on stderr: a line per finished trial, "
                                                                      "the libraries' log messages (Optuna, cgtrain)")
          ) -> None:
    """Train, tune, test and use models that find flaws in source code."""
    if ctx.invoked_subcommand in COMMAND_EXTRAS and "--help" not in sys.argv and "-h" not in sys.argv:
        from cgtrain.extras import require

        extra, modules = COMMAND_EXTRAS[ctx.invoked_subcommand]
        with user_errors():  # a core install: one line with the pip command, exit 2
            require(f"cgtrain {ctx.invoked_subcommand}", modules, extra)
    if verbose:
        import logging

        VERBOSE["on"] = True
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
app.add_typer(models_app, name="models")

EXIT_INVALID_REQUEST = 2
EXIT_FAILED = 1
JSON_HELP = "print one JSON object (run dir, model, metrics, best trial) on stdout; progress goes to stderr"
QUIET_HELP = "no progress or tables; only the model path (or, with --json, the JSON object) and errors"


def resume_command(command: str, request: Path, overrides: list[str] | None, run_dir: Path) -> str:
    """The command line that continues an interrupted run (said on Ctrl-C, disk full)."""
    import shlex

    return shlex.join(["cgtrain", command, str(request), *(overrides or []), "--run-dir", str(run_dir), "--resume"])


@app.command()
def validate(request: Path = typer.Argument(..., help="request file (YAML or JSON)"),
             overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides")) -> None:
    """Check a training request; print the request as it would run."""
    from cgtrain.data.check import check_dataset
    from cgtrain.request import load_request, request_to_yaml

    with user_errors():
        req = load_request(request, overrides or [])
        check_dataset(req.dataset)  # a missing dataset is reported here as train would
    out.print(f"[green]valid[/]: {request}")
    out.print(request_to_yaml(req), markup=False, highlight=False)


@app.command()
def schema(output: Optional[Path] = typer.Option(None, "--out", help="write to this file")) -> None:
    """Print the JSON Schema of training requests (generated from the model)."""
    from cgtrain.fsutil import atomic_write_text
    from cgtrain.request import request_json_schema

    text = json.dumps(request_json_schema(), indent=2)
    if output:
        atomic_write_text(output, text + "\n")
    else:
        sys.stdout.write(text + "\n")


@app.command()
def families(as_json: bool = typer.Option(False, "--json", help="print the families as one JSON list")) -> None:
    """List the model families, whether each is installed, and their default search spaces."""
    from cgtrain.models import FAMILIES

    if as_json:
        sys.stdout.write(json.dumps([
            {"name": n, "input": f.input, "tasks": sorted(f.tasks), "available": not f.missing(), "extra": f.extra or None,
             "missing": f.missing(), "default_space": f.default_space, "defaults": f.defaults,
             "description": f.description} for n, f in ((n, FAMILIES.get(n)) for n in FAMILIES.names())]) + "\n")
        return
    table = Table("family", "input", "tasks", "available", "default search space", "description")
    for name in FAMILIES.names():
        fam = FAMILIES.get(name)
        available = "yes" if not fam.missing() else f"no: pip install 'cgtrain[{fam.extra}]'"
        table.add_row(name, fam.input, ", ".join(sorted(fam.tasks)), escape(available), json.dumps(fam.default_space),
                      fam.description)
    out.print(table)


@app.command()
def train(request: Path = typer.Argument(..., help="request file (YAML or JSON)"),
          overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides"),
          run_dir: Path = typer.Option(..., "--run-dir", help="where the run's records and model go"),
          resume: bool = typer.Option(False, "--resume", help="continue an interrupted run, keeping its trials"),
          force: bool = typer.Option(False, "--force", help="with --resume of a finished run: redo its refit and "
                                                            "test (the model is replaced)"),
          tracking_uri: Optional[str] = typer.Option(
              None, "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)"),
          no_track: bool = typer.Option(False, "--no-track", help="do not log to MLflow or register the model"),
          profile: bool = typer.Option(False, "--profile", help="write a PyTorch profiler trace "
                                                                "(profile_trace.json, for Perfetto) to the run dir"),
          device: Optional[str] = typer.Option(None, "--device", help="neural families: auto | cpu | cuda | "
                                                                      "cuda:N (sets train.device)"),
          as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
          quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
          ) -> None:
    """Run a training request: study, refit, test; write everything to --run-dir."""
    from cgtrain.flows.supervised import train as train_run
    from cgtrain.request import RequestError, load_request

    human, say = human_and_say(as_json, quiet)
    with user_errors(resume_hint=resume_command("train", request, overrides, run_dir)):
        if device is not None:
            from cgtrain.engine.distributed import check_device

            try:
                check_device(device)
            except ValueError as exc:
                raise RequestError([f"--device: {exc}"], str(request)) from None
        req = load_request(request, [*(overrides or []), *([f"train.device={device}"] if device else [])])
        with study_progress(err, quiet) as progress, profiling(run_dir, profile):
            result = train_run(req, run_dir, resume=resume, say=say, progress=progress, force=force)
    if not quiet:
        print_results(result, human)
    tracked = None
    if not no_track:
        from cgtrain.track import try_log_run

        tracked = try_log_run(result.run_dir, tracking_uri, req.name, request_path=request, say=say)
        if tracked is not None:
            from cgtrain.qa.champion import after_tracking

            after_tracking(result.run_dir, tracking_uri, say=say)
    print_summary(result, as_json, quiet, tracked)


@app.command()
def metrics(run_dir: Path = typer.Argument(..., help="a finished run directory"),
            as_json: bool = typer.Option(False, "--json", help="print metrics.json (strict JSON) on stdout")) -> None:
    """A finished run's held-out test metrics next to the baseline, and its best CV trial."""
    from cgtrain.errors import RunDirError

    with user_errors():
        path = Path(run_dir) / rundir.METRICS
        if not path.is_file():
            raise RunDirError(f"{run_dir}: no {rundir.METRICS} (not a finished run); train into it first or "
                              f"pass the run directory that `cgtrain train --run-dir` wrote")
        m = rundir.read_json(path)
    if as_json:
        sys.stdout.write(json.dumps(m) + "\n")
        return
    best = m.get("best", {})
    out.print(f"best trial {best.get('trial')} ({best.get('family')}), CV {m.get('cv', {}).get('metric', '')} "
              f"{fmt(m.get('cv', {}).get('mean'))}", highlight=False, markup=False)
    out.print(test_table(m))


@app.command()
def automl(data: Path = typer.Argument(..., help="dataset: JSONL/CSV/Parquet file or a directory of sources"),
           overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides of the request"),
           budget: float = typer.Option(300.0, "--budget", min=1, help="wall-clock seconds for the whole run "
                                                                       "(data, search, ensemble, refit, test)"),
           metric: Optional[str] = typer.Option(None, "--metric", help="validation metric (default: the task's)"),
           task: Optional[str] = typer.Option(None, "--task", help="binary | multiclass | regression "
                                                                   "(default: inferred from the labels)"),
           families: Optional[str] = typer.Option(None, "--families", help="comma-separated families "
                                                                           "(default: every one that fits)"),
           run_dir: Path = typer.Option(..., "--run-dir", help="where the run's records and model go"),
           seed: int = typer.Option(0, "--seed"),
           label: str = typer.Option("label", "--label", help="the target column (never a feature); class "
                                                              "labels of any type come back as found on predict"),
           qa: bool = typer.Option(False, "--qa", help="also run QA + report after the budgeted run (not counted)"),
           track: bool = typer.Option(False, "--track", help="log to MLflow afterwards (not counted in the budget)"),
           resume: bool = typer.Option(False, "--resume", help="continue an interrupted run, keeping its trials"),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
           quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
           ) -> None:
    """AutoML: search every family within a time budget; the best model or ensemble goes to --run-dir."""
    from cgtrain.tune.budget import counting_from_process_start

    with counting_from_process_start():  # the budget covers the whole process: start-up and loading included
        _automl(data, overrides, budget, metric, task, seed, qa, label, families, track, run_dir, resume, as_json,
                quiet)


def _automl(data, overrides, budget, metric, task, seed, qa, label, families, track, run_dir, resume, as_json,
            quiet) -> None:
    from cgtrain.flows.supervised import train as train_run
    from cgtrain.flows.automl_request import build_request

    human, say = human_and_say(as_json, quiet)
    with user_errors(resume_hint="the same `cgtrain automl ...` command plus --resume"):
        req = build_request(data, budget, metric=metric, task=task, seed=seed, qa=qa, overrides=overrides or [],
                            label=None if label == "label" else label,
                            families=[f.strip() for f in families.split(",") if f.strip()] if families else None)
        say(f"automl: task {req.task}, metric {req.validation.metric}, families "
            f"{', '.join(c.family for c in req.candidates)}")
        with study_progress(err, quiet) as progress:
            result = train_run(req, run_dir, resume=resume, say=say, progress=progress)
    if not quiet:
        print_results(result, human)
    tracked = None
    if track:
        from cgtrain.track import try_log_run

        tracked = try_log_run(result.run_dir, None, req.name, request_path=Path(run_dir) / rundir.REQUEST, say=say)
    print_summary(result, as_json, quiet, tracked)


def _open_predictor(run: Path | None, model: str | None, tracking_uri: str | None, trust: tuple[str, ...], raw: bool):
    """The audited model behind --run DIR, --model FILE or --model NAME@alias."""
    import dataclasses

    from cgtrain.serve.predictor import load_predictor

    if model is not None and not (Path(model).exists() or model.endswith(".skops")):
        from cgtrain.registry.model_registry import load_registered

        predictor = load_registered(model, tracking_uri=tracking_uri, trust=trust)
    else:
        predictor = load_predictor(run_dir=run, model_path=Path(model) if model else None, trust=trust)
    return dataclasses.replace(predictor, raw=True) if raw else predictor


@app.command()
def predict(source: Path = typer.Argument(..., help="a source file, a directory of them, a JSONL of functions, "
                                                    "or - for standard input (JSONL or source)"),
            run: Optional[Path] = typer.Option(None, "--run", help="run directory holding the model"),
            model: Optional[str] = typer.Option(None, "--model", help="a model file (.skops), or a registered "
                                                                      "model: NAME@champion, NAME/VERSION"),
            tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow store for --model NAME"),
            output: Optional[Path] = typer.Option(None, "--out", help="write JSONL here instead of stdout"),
            trust: Optional[list[str]] = typer.Option(None, "--trust", help="an exact type name outside the "
                                                      "allowlist that you vouch for (repeatable; each is logged)"),
            raw: bool = typer.Option(False, "--raw", help="the model's uncalibrated probability and argmax label "
                                                          "(default: QA's calibration and threshold, as reported)")
            ) -> None:
    """Probability and label per function (value / anomaly score / cluster id per table row), as JSONL."""
    from cgtrain.fsutil import atomic_write_text
    from cgtrain.serve.predictor import check_output

    if (run is None) == (model is None):
        err.print("error: give exactly one of --run DIR or --model FILE", highlight=False)
        raise typer.Exit(EXIT_INVALID_REQUEST)
    with user_errors():
        if output is not None:  # never over a run's own files, the model or the input
            check_output(output, run_dir=run, model=Path(model) if model else None, source=source)
        for name in trust or ():  # the escape hatch is never silent
            err.print(f"warning: --trust {name}: loading this type on your word, outside cgtrain's allowlist",
                      markup=False, highlight=False)
        predictor = _open_predictor(run, model, tracking_uri, tuple(trust or ()), raw)
        items = predictor.read(source)  # "-": standard input
        rows = list(predictor.predict(items))
        lines = [json.dumps(r, sort_keys=False) for r in rows]
        text = "\n".join(lines) + ("\n" if lines else "")
        if output:
            atomic_write_text(output, text)
    not_scored = [r for r in rows if "error" in r]
    for r in not_scored[:20]:  # the lines are in the output too; say why here
        err.print(f"not scored: {r['id']}: {r['error']}", markup=False, highlight=False, soft_wrap=True)
    if len(not_scored) > 20:
        err.print(f"not scored: {len(not_scored) - 20} more (lines with \"error\" in the output)", highlight=False)
    if output:
        err.print(f"{len(lines) - len(not_scored)} predictions, {len(not_scored)} not scored -> {output}",
                  highlight=False)
    else:
        sys.stdout.write(text)
    if rows and len(not_scored) == len(rows):  # nothing scored: a wrong file or column, not a few bad rows
        err.print(f"error: none of the {len(rows)} item(s) of {source} could be scored (first: {not_scored[0]['id']}:"
                  f" {not_scored[0]['error']}); give the input the model was trained on", markup=False,
                  highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID_REQUEST)


@data_app.command("synth-bugs")
def synth_bugs(output: Path = typer.Option(..., "--out", help="JSONL file to write"),
               seed: int = typer.Option(0, "--seed"),
               max_functions: int = typer.Option(5000, "--max-functions", min=1, help="clean functions to take"),
               source: Optional[list[Path]] = typer.Option(None, "--source", help="directory of Python source; "
                                                                                  "repeat for more (default: the "
                                                                                  "standard library)")
               ) -> None:
    """Make a labelled bug-detection set: real functions and copies with one injected bug."""
    from cgtrain.data.synth_bugs import write_dataset

    try:
        stats = write_dataset(output, seed=seed, max_functions=max_functions, source_dir=list(source or []))
    except ValueError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED)
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_kind.items()))
    out.print(f"wrote {stats.n_functions + stats.n_buggy} rows to {output}: {stats.n_functions} clean, "
              f"{stats.n_buggy} buggy ({kinds}); {stats.n_files_read} files read, "
              f"{stats.n_files_skipped} skipped", highlight=False)


@data_app.command("sklearn")
def sklearn_dataset(name: str = typer.Argument(..., help="a dataset bundled with scikit-learn: "
                                                         "diabetes, breast_cancer, iris, wine, digits"),
                    output: Path = typer.Option(..., "--out", help="file to write (.csv, .parquet or .jsonl)")
                    ) -> None:
    """Write a dataset bundled with scikit-learn (no download) as a table; prints the request columns."""
    from cgtrain.data.bundled import write_sklearn_dataset

    with user_errors():
        info = write_sklearn_dataset(name, output)
    out.print(f"wrote {info.rows} rows to {output}: task {info.task}, label column 'label', "
              f"{len(info.numeric_columns)} numeric columns", highlight=False)


register_qa_commands(app)  # report, explain, compare, repeat (cli_qa.py)
register_service_commands(app)  # serve, worker, token create (cli_service.py)
register_pretrain_command(app)  # pretrain (cli_pretrain.py)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
