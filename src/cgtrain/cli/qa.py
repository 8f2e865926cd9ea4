"""`cgtrain report | explain | compare | repeat`: QA of trained runs without training them again.

Mounted on the main app by `register(app)`; heavy imports stay inside the commands.
"""
from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from cgtrain import rundir

out = Console()
err = Console(stderr=True)
EXIT_FAILED, EXIT_USAGE = 1, 2


@contextmanager
def qa_errors() -> Iterator[None]:
    """The CLI's one handler (cli_errors.user_errors); missing files and bad values here are user errors too."""
    from cgtrain.cli.errors import user_errors

    with user_errors(also=(FileNotFoundError, ValueError)):
        yield


def _run_dir(path: Path) -> Path:
    if not (path / rundir.MODEL_JSON).is_file():
        raise FileNotFoundError(f"{path} is not a finished run directory (no model.json); pass the --run-dir of "
                                f"a `cgtrain train`")
    return path


def _run_request(run_dir: Path):
    from cgtrain.core.runs import load_run_request
    from cgtrain.request import parse_request

    return parse_request(load_run_request(run_dir), str(run_dir / rundir.REQUEST))


# --- report ------------------------------------------------------------------------------------------
def report(run: Path = typer.Argument(..., help="run directory"),
           qa: bool = typer.Option(False, "--qa", help="recompute qa.json (calibration, audit, explanations) first"),
           tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="compare with the registered "
                                                      "champion in this MLflow store (default: the run's own)")
           ) -> None:
    """Rebuild report.html of a finished run from its records, without training."""
    from cgtrain.qa import checks as qas
    from cgtrain.report import build_report

    with qa_errors():
        run_dir = _run_dir(run)
        if qa or not (run_dir / qas.QA_FILE).is_file():
            qas.run_qa(_run_request(run_dir), run_dir, None, say=lambda m: err.print(m, highlight=False, markup=False))
        if (run_dir / rundir.TRACKING).is_file():
            _champion(run_dir, tracking_uri)
        path = build_report(run_dir)
    out.print(f"report: {path}", highlight=False)


def _champion(run_dir: Path, tracking_uri: str | None) -> None:
    from cgtrain.qa.champion import champion_section

    try:
        champion_section(run_dir, tracking_uri)
    except Exception as exc:  # noqa: BLE001 - an unreachable store leaves the report without this section
        err.print(f"note: no champion comparison ({type(exc).__name__}: {exc})", highlight=False)


# --- explain -------------------------------------------------------------------------------------------
def explain(run: Path = typer.Option(..., "--run", help="run directory"),
            example: str = typer.Option(..., "--example", help="row id (held-out rows are in test_predictions.jsonl)"),
            top: int = typer.Option(12, "--top", min=1, help="tokens to highlight")) -> None:
    """Print one function with its most attributed tokens highlighted (red: toward flawed, blue: toward clean)."""
    from cgtrain.qa.explain import explain as attribute
    from cgtrain.qa.explain import lexemes
    from cgtrain.registry.promotion import held_out_codes
    from cgtrain.serve.predictor import load_predictor

    with qa_errors():
        run_dir = _run_dir(run)
        language = (rundir.RunDir(run_dir).manifest() or rundir.ModelManifest("", "")).language
        stored = _stored_example(run_dir, example)
        if stored is not None:  # explained during QA already
            row, code, p, method = stored, stored["code"], stored["p_flawed"], _stored_method(run_dir)
        else:
            codes = held_out_codes(run_dir, [example], 1)
            if not codes:
                raise ValueError(f"no row with id {example!r} in the run's dataset; ids are the dataset's id "
                                 f"column (see {run_dir / rundir.TEST_PREDICTIONS})")
            pipeline = load_predictor(run_dir=run_dir).model
            att = attribute(pipeline, codes, [0], language)
            row, code, method = att.rows[0], codes[0], att.method
            p = float(np.asarray(pipeline.predict_proba(codes))[0, -1])
    out.print(f"[bold]{example}[/]  P(flawed) = {p:.4f}  ({method})", highlight=False)
    out.print(highlight_code(code, lexemes(code, language), row["tokens"], row["token_attr"], top))
    table = Table("feature / token", "value", "attribution (toward flawed > 0)", title="top attributions")
    for f in row["top_features"][:top]:
        table.add_row(f["name"], f"{f['value']:.4f}", f"{f['attribution']:+.5f}")
    out.print(table)


def _stored_example(run_dir: Path, example: str) -> dict | None:
    from cgtrain.qa.checks import EXPLANATIONS_FILE

    path = run_dir / EXPLANATIONS_FILE
    if not path.is_file():
        return None
    found = [e for e in json.loads(path.read_text(encoding="utf-8")).get("examples", []) if e["id"] == example]
    return found[0] if found else None


def _stored_method(run_dir: Path) -> str:
    from cgtrain.qa.checks import EXPLANATIONS_FILE

    return json.loads((run_dir / EXPLANATIONS_FILE).read_text(encoding="utf-8")).get("method", "")


def highlight_code(code: str, spans, tokens: list[str], attr: list[float], top: int) -> Text:
    attr_arr = np.asarray(attr, dtype=float)
    text = Text(code) if spans else Text(" ".join(tokens))
    if not len(attr_arr):
        return text
    if spans:
        k, units = 0, []
        for start, end, toks in spans:
            units.append((start, end, float(attr_arr[k:k + len(toks)].sum())))
            k += len(toks)
    else:
        units, pos = [], 0
        for tok, a in zip(tokens, attr_arr):
            units.append((pos, pos + len(tok), float(a)))
            pos += len(tok) + 1
    for start, end, a in sorted(units, key=lambda u: -abs(u[2]))[:top]:
        if a != 0:
            text.stylize("bold white on red3" if a > 0 else "bold white on dodger_blue3", start, end)
    return text


# --- compare --------------------------------------------------------------------------------------------
def compare(a: str = typer.Argument(..., help="run directory, or a registered model NAME@alias / NAME/VERSION"),
            b: str = typer.Argument(..., help="the other model (B - A is reported)"),
            data: Optional[Path] = typer.Option(None, "--data", help="labelled JSONL/CSV/Parquet to score both on "
                                                "(default: the held-out rows both runs share)"),
            metric: str = typer.Option("f1", "--metric", help="metric for the bootstrap CI and 5x2cv"),
            code_column: str = typer.Option("code", "--code-column"),
            label_column: str = typer.Option("label", "--label-column"),
            group_column: Optional[str] = typer.Option(None, "--group-column", help="groups kept together (5x2cv)"),
            cv5x2: bool = typer.Option(False, "--5x2cv", help="also refit both procedures: Dietterich's 5x2cv t-test"),
            tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri"),
            output: Optional[Path] = typer.Option(None, "--out", help="write the statistics as JSON here")) -> None:
    """A/B test two models on the same rows: McNemar, paired bootstrap CI, DeLong (ROC AUC)[, 5x2cv]."""
    from cgtrain.flows.compare import run_compare

    with qa_errors():
        result = run_compare(a, b, data, metric, code_column, label_column, group_column, cv5x2, tracking_uri)
    print_compare(result)
    if output:
        from cgtrain.fsutil import atomic_write_json

        atomic_write_json(output, result)
        err.print(f"statistics -> {output}")


def print_compare(r: dict) -> None:
    t = Table("", "A", "B", "B - A", title=f"{r['a']} vs {r['b']} on {r['n']} rows ({r['rows']})")
    for name in r["metrics_a"]:
        t.add_row(name, f"{r['metrics_a'][name]:.4f}", f"{r['metrics_b'][name]:.4f}",
                  f"{r['metrics_b'][name] - r['metrics_a'][name]:+.4f}")
    out.print(t)
    bs, mc = r["bootstrap"], r["mcnemar"]
    out.print(f"{bs['metric']}: B - A = {bs['improvement']:+.4f}, {bs['confidence']:.0%} paired bootstrap CI "
              f"[{bs['ci_low']:+.4f}, {bs['ci_high']:+.4f}] ({bs['n_resamples']} resamples)", highlight=False)
    out.print(f"McNemar ({'exact' if mc['exact'] else 'chi2'}): statistic {mc['statistic']:.4f}, p = {mc['p']:.4g} "
              f"(only A right {mc['only_a_right']}, only B right {mc['only_b_right']})", highlight=False)
    if r.get("delong"):
        d = r["delong"]
        out.print(f"DeLong ROC AUC: A {d['auc_a']:.4f}, B {d['auc_b']:.4f}, difference {d['difference']:+.4f} "
                  f"[{d['ci_low']:+.4f}, {d['ci_high']:+.4f}], z {d['z']:.3f}, p = {d['p']:.4g}", highlight=False)
    if r.get("five_by_two"):
        f = r["five_by_two"]
        out.print(f"5x2cv paired t-test ({f['metric']}): mean A {f['mean_a']:.4f}, mean B {f['mean_b']:.4f}, "
                  f"t = {f['t']:.3f}, p = {f['p']:.4g} (A - B per fold: "
                  f"{' '.join(f'{v:+.3f}' for rep in f['differences'] for v in rep)})", highlight=False)


def repeat(request: Path = typer.Argument(..., help="request file"),
           overrides: Optional[list[str]] = typer.Argument(None, help="dotted key=value overrides"),
           seeds: int = typer.Option(3, "--seeds", min=2, help="how many seeds (seed, seed+1, ...)"),
           run_dir: Path = typer.Option(..., "--run-dir", help="one sub-directory per seed goes here")) -> None:
    """Train a request once per seed; report each test metric's mean and 95% CI over the seeds."""
    from cgtrain.flows.compare import run_seeds

    with qa_errors():
        summary = run_seeds(request, overrides or [], seeds, run_dir, say=lambda m: err.print(m, highlight=False, markup=False))
    table = Table("metric", "mean", "95% CI", "std", "per seed", title=f"{seeds} seeds ({run_dir / 'seeds.json'})")
    for name, s in summary["metrics"].items():
        table.add_row(name, f"{s['mean']:.4f}", f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]", f"{s['std']:.4f}",
                      " ".join(f"{v:.3f}" for v in s["values"]))
    out.print(table)


@contextmanager
def profiling(run_dir: Path, enabled: bool) -> Iterator[None]:
    """`--profile`: a PyTorch profiler trace of the run (Chrome trace JSON; open in Perfetto or chrome://tracing)."""
    if not enabled:
        yield
        return
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=False, profile_memory=True) as prof:
        yield
    path = Path(run_dir) / "profile_trace.json"
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        pass
    prof.export_chrome_trace(tmp.name)
    Path(tmp.name).replace(path)
    err.print(f"profiler trace: {path} (open in https://ui.perfetto.dev or chrome://tracing)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("explain")(explain)
    app.command("compare")(compare)
    app.command("repeat")(repeat)
