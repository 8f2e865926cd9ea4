"""cgtrain AutoML vs FLAML at equal wall-clock budgets, same machine, same split (a benchmark, not a test).

    python bench/automl_vs_flaml.py --budget 60                 # the whole suite, ~2 x 60 s per dataset
    python bench/automl_vs_flaml.py --budget 30 --only wine,iris
    python bench/automl_vs_flaml.py --budget 60 --tables        # tables only (no code datasets)

For every dataset both systems get the same budget of wall-clock seconds and the same
rows: cgtrain's leakage-safe split (grouped, de-duplicated) decides the held-out test
rows, FLAML trains on exactly cgtrain's training rows and both are scored on the same
test rows with cgtrain's metric functions.

- cgtrain: `cgtrain automl` (every family that fits, cost-aware search, ensembles), run as a
  subprocess as a user runs it: its budget and wall clock count from the process start and cover
  start-up, loading, tokenizing, the search, the ensemble, the refit and the test.
- FLAML: `AutoML.fit(time_budget=...)` given what cgtrain's data step produces: for code
  datasets the same TF-IDF + code-metric features cgtrain fits (on the training rows
  only), for tables the same columns. Its time budget is what is left of the same
  budget after that preparation; FLAML's final retrain happens after its budget, so
  the wall time of each side is printed too. Its learners are its defaults, with the
  full `flaml[automl]` extra installed (XGBoost included; `import xgboost` must work).
  A table reaches FLAML as a practitioner would hand it over: numbers as floats,
  categorical / boolean / text columns as strings, date-time columns parsed to datetime64
  (FLAML's own transformer expands them).

Tables: scikit-learn's bundled sets, two small classification sets made with
`make_classification`, tables statsmodels ships on disk (`fair`: affairs yes/no with
occupations as categories; `anes96`: the 1996 vote, Clinton / Dole; `randhie`: doctor
visits, 20k-row regression) and `cgtrain.data.mixed_table` (60k rows for the binary
string label "cash" / "credit card", 45k for regression, 20k for a 3-class string label:
numbers with gaps, booleans as True/False and yes/no, categoricals up to ~3000 levels,
ISO dates and timestamps, a free-text column). Nothing is fetched at run time.

Winner: higher score (lower for rmse / mae); a tie within 0.005 (1% relative for errors).
Both sides use one thread per model (n_jobs=1): on a small shared machine OpenMP threads
waiting on each other cost far more than they gain.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

JULIET = Path("/work/shared/datasets/juliet_c_functions.jsonl.gz")
TIE_ABS, TIE_REL = 0.005, 0.01


@dataclass
class Case:
    name: str
    path: Path
    task: str
    metric: str
    overrides: list[str] = field(default_factory=list)
    label: str = "label"


@dataclass
class Row:
    dataset: str
    task: str
    metric: str
    budget_s: float
    flaml: float | None = None
    cgtrain: float | None = None
    flaml_wall_s: float | None = None
    cgtrain_wall_s: float | None = None
    flaml_best: str = ""
    cgtrain_best: str = ""
    winner: str = ""
    error: str = ""


# --- the suite ------------------------------------------------------------------------------
def pybugs(work: Path, rows: int) -> Case:
    path = ROOT / "data/pybugs.jsonl"
    if not path.is_file():
        subprocess.run([sys.executable, "-m", "cgtrain", "data", "synth-bugs", "--out", str(path), "--seed", "0",
                        "--max-functions", "5000"], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src")})
    return Case("pybugs", path, "binary", "f1", ["dataset.language=python", f"dataset.sample={rows}",
                                                 "dataset.segment_columns=[]"])


def juliet(work: Path, rows: int, seed: int = 0) -> Case | None:
    """A sample of whole Juliet test-case families (a family never straddles train and test)."""
    if not JULIET.is_file():
        return None
    out = work / "juliet_sample.jsonl"
    if not out.is_file():
        by_family: dict[str, list[str]] = {}
        with gzip.open(JULIET, "rt", encoding="utf-8") as fh:
            for line in fh:
                by_family.setdefault(json.loads(line)["family"], []).append(line)
        names = sorted(by_family)
        np.random.default_rng(seed).shuffle(names)
        picked: list[str] = []
        for name in names:
            if len(picked) >= rows:
                break
            picked.extend(by_family[name])
        out.write_text("".join(picked), encoding="utf-8")
    return Case("juliet", out, "binary", "f1", ["dataset.language=c", "dataset.group_column=family"])


def bundled(work: Path, name: str) -> Case:
    from cgtrain.data.bundled import write_sklearn_dataset

    path = work / f"{name}.csv"
    info = write_sklearn_dataset(name, path)
    metric = "rmse" if info.task == "regression" else "f1"
    return Case(name, path, info.task, metric)


def imbalanced(work: Path, minority: float, seed: int) -> Case:
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=3000, n_features=20, n_informative=6, n_redundant=4,
                               weights=[1 - minority], flip_y=0.02, class_sep=0.8, random_state=seed)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame.insert(0, "id", [f"r{i}" for i in range(len(frame))])
    frame["label"] = y
    path = work / f"imbalanced_{int(minority * 100)}.csv"
    frame.to_csv(path, index=False)
    return Case(f"imbalanced_{int(minority * 100)}pct", path, "binary", "f1")


def mixed(work: Path, target: str, rows: int) -> Case:
    """cgtrain.data.mixed_table: every column kind real tables have (see its docstring)."""
    from cgtrain.data.mixed_table import mixed_table

    path = work / f"mixed_{target}_{rows}.csv"
    if not path.is_file():
        mixed_table(rows, seed=0, target=target).to_csv(path, index=False)
    task, metric = {"method": ("binary", "f1"), "tier": ("multiclass", "f1"), "amount": ("regression", "rmse")}[target]
    return Case(f"mixed_{target}_{rows // 1000}k", path, task, metric, label=target)


def statsmodels_table(work: Path, name: str) -> Case:
    """A table statsmodels ships inside its wheel (read from disk), given real-world column types."""
    from statsmodels import datasets

    frame = getattr(datasets, name).load_pandas().data.copy()
    if name == "fair":  # affairs > 0 -> "yes" / "no"; occupations are codes, i.e. categories
        frame["affair"] = np.where(frame.pop("affairs") > 0, "yes", "no")
        for col in ("occupation", "occupation_husb"):
            frame[col] = "occ_" + frame[col].astype(int).astype(str)
        case = Case("sm_fair", work / "sm_fair.csv", "binary", "f1", label="affair")
    elif name == "anes96":  # vote: 0 Clinton, 1 Dole; party id and education are categories
        frame["vote"] = np.where(frame["vote"] > 0, "Dole", "Clinton")
        frame["PID"] = "pid_" + frame["PID"].astype(int).astype(str)
        frame["educ"] = "educ_" + frame["educ"].astype(int).astype(str)
        case = Case("sm_anes96", work / "sm_anes96.csv", "binary", "f1", label="vote")
    else:  # randhie: doctor visits, a count (regression)
        case = Case("sm_randhie", work / "sm_randhie.csv", "regression", "rmse", label="mdvis")
    frame.to_csv(case.path, index=False)
    return case


def suite(work: Path, code_rows: int, tables_only: bool = False) -> list[Case]:
    cases = [] if tables_only else [pybugs(work, code_rows), juliet(work, code_rows)]
    cases += [bundled(work, n) for n in ("breast_cancer", "wine", "digits", "iris", "diabetes")]
    cases += [imbalanced(work, 0.10, 1), imbalanced(work, 0.05, 2)]
    cases += [statsmodels_table(work, n) for n in ("fair", "anes96", "randhie")]
    cases += [mixed(work, "method", 60_000), mixed(work, "amount", 45_000), mixed(work, "tier", 20_000)]
    return [c for c in cases if c is not None]


# --- the two sides ------------------------------------------------------------------------------
def run_cgtrain(case: Case, budget: float, run_dir: Path):
    """`cgtrain automl` as a user runs it (a subprocess): its wall clock counts from the process start."""
    from cgtrain.flows.automl_request import build_request

    # No warm start from earlier bench runs: FLAML starts cold too.
    overrides = [*case.overrides, "hpo.warm_start=false"]
    req = build_request(case.path, budget, metric=case.metric, task=case.task, label=case.label, overrides=overrides)
    cmd = [sys.executable, "-m", "cgtrain", "automl", str(case.path), "--budget", str(budget), "--metric", case.metric,
           "--task", case.task, "--label", case.label, "--run-dir", str(run_dir), *overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - start
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip() and not line.startswith(("┏", "┃", "┡", "│", "└", "┗", "┌", "╷", "╵", "━")):
            print(f"    cgtrain | {line}", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cgtrain automl exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-500:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = metrics["best"]
    label = best["family"] if best["family"] != "ensemble" else \
        f"ensemble({best['params']['method']}: {'+'.join(m['family'] for m in best['params']['members'])})"
    return req, metrics["test"][case.metric], wall, label


def flaml_automl():
    import xgboost  # noqa: F401 - the full flaml[automl] extra: FLAML's XGBoost learners must be there

    # FLAML 2.7 takes ray's ConcurrencyLimiter whenever `ray` imports, and ray >= 2.x refuses FLAML's own
    # searcher (RuntimeError). ray is not one of our dependencies; FLAML without it uses its own limiter.
    sys.modules.setdefault("ray", None)  # type: ignore[arg-type]
    from flaml.automl import AutoML

    return AutoML


def flaml_table(table, ds, idx):
    """Table rows as a practitioner hands them to FLAML: floats, strings (categorical, boolean, text) and
    parsed date-times; FLAML's own transformer does the rest."""
    import pandas as pd

    frame = table.iloc[np.asarray(idx)].reset_index(drop=True)
    out = {c: frame[c].astype(float) for c in ds.numeric_columns}
    out.update({c: frame[c].astype(object) for c in (*ds.categorical_columns, *ds.text_columns)})
    out.update({c: pd.to_datetime(frame[c], errors="coerce", utc=True, format="ISO8601").dt.tz_localize(None)
                for c in ds.datetime_columns})
    return pd.DataFrame(out)


FLAML_METRIC = {("binary", "f1"): "f1", ("multiclass", "f1"): "macro_f1", ("regression", "rmse"): "rmse",
                ("regression", "mae"): "mae", ("regression", "r2"): "r2", ("binary", "roc_auc"): "roc_auc",
                ("binary", "accuracy"): "accuracy", ("multiclass", "accuracy"): "accuracy"}


def run_flaml(case: Case, req, budget: float, work: Path, seed: int):
    from cgtrain.core.fit import make_featurizer
    from cgtrain.core.prepared import model_inputs, prepare
    from cgtrain.evaluate.metrics import compute

    AutoML = flaml_automl()
    start = time.time()
    p = prepare(req, work / f"flaml-{case.name}", say=lambda m: None)  # cgtrain's split, same rows
    train_X, test_X = model_inputs(p, p.split.train), model_inputs(p, p.split.test)
    featurizer = make_featurizer(req)
    if req.dataset.code_column is not None:  # code: the TF-IDF + metrics features cgtrain fits
        train_X, test_X = featurizer.fit_transform(train_X), featurizer.transform(test_X)
    else:  # tables: the same columns, as FLAML takes them
        train_X = flaml_table(p.dataset.table, req.dataset, p.split.train)
        test_X = flaml_table(p.dataset.table, req.dataset, p.split.test)
    y_train = p.y[p.split.train]
    regression = case.task == "regression"
    left = budget - (time.time() - start)
    automl = AutoML()
    automl.fit(train_X, y_train, task="regression" if regression else "classification",
               metric=FLAML_METRIC[(case.task, case.metric)], time_budget=max(1.0, left), seed=seed, n_jobs=1,
               verbose=0)  # estimator_list "auto": lgbm, rf, xgboost, extra_tree, xgb_limitdepth, (lrl1, sgd)
    if regression:
        out = np.asarray(automl.predict(test_X), dtype=float)
    else:
        proba = np.asarray(automl.predict_proba(test_X), dtype=float)
        out = np.zeros((proba.shape[0], p.n_classes))
        out[:, np.asarray(automl.classes_, dtype=int)] = proba
    wall = time.time() - start
    return compute(p.y[p.split.test], out, (case.metric,))[case.metric], wall, str(automl.best_estimator)


def winner(row: Row) -> str:
    if row.error:
        return "error"
    a, b = row.cgtrain, row.flaml
    lower_better = row.metric in ("rmse", "mae")
    tol = TIE_REL * abs(b) if lower_better else TIE_ABS
    if abs(a - b) <= tol:
        return "tie"
    return "cgtrain" if (a < b) == lower_better else "flaml"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds per system per dataset")
    ap.add_argument("--only", default="", help="comma-separated dataset names")
    ap.add_argument("--code-rows", type=int, default=4000, help="rows of each code dataset")
    ap.add_argument("--work", type=Path, default=ROOT / "runs/bench-automl")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tables", action="store_true", help="table datasets only (no code datasets)")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cases = [c for c in suite(args.work, args.code_rows, args.tables) if not args.only or c.name in args.only.split(",")]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows: list[Row] = []
    for case in cases:
        row = Row(case.name, case.task, case.metric, args.budget)
        print(f"== {case.name} ({case.task}, {case.metric}, {args.budget:.0f}s each)", flush=True)
        try:
            req, row.cgtrain, row.cgtrain_wall_s, row.cgtrain_best = run_cgtrain(
                case, args.budget, args.work / f"{stamp}-{case.name}")
            row.flaml, row.flaml_wall_s, row.flaml_best = run_flaml(case, req, args.budget, args.work, args.seed)
        except Exception as exc:  # a failure is a result too
            row.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        row.winner = winner(row)
        rows.append(row)
        print(f"   -> {fmt(row)}", flush=True)
    print_table(rows)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    (args.work / f"results-{stamp}.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


def fmt(row: Row) -> str:
    if row.error:
        return f"{row.dataset}: error: {row.error}"
    return (f"{row.dataset}: flaml {row.flaml:.4f} ({row.flaml_best}, {row.flaml_wall_s:.0f}s) | cgtrain "
            f"{row.cgtrain:.4f} ({row.cgtrain_best}, {row.cgtrain_wall_s:.0f}s) | {row.winner}")


def print_table(rows: list[Row]) -> None:
    print("\n| dataset | task | metric | budget s | FLAML | cgtrain | winner | FLAML wall s | cgtrain wall s | "
          "FLAML model | cgtrain model |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = "-" if r.flaml is None else f"{r.flaml:.4f}"
        c = "-" if r.cgtrain is None else f"{r.cgtrain:.4f}"
        fw = "-" if r.flaml_wall_s is None else f"{r.flaml_wall_s:.0f}"
        cw = "-" if r.cgtrain_wall_s is None else f"{r.cgtrain_wall_s:.0f}"
        print(f"| {r.dataset} | {r.task} | {r.metric} | {r.budget_s:.0f} | {f} | {c} | {r.winner} | {fw} | {cw} | "
              f"{r.flaml_best} | {r.cgtrain_best or r.error[:60]} |")
    good = sum(r.winner in ("cgtrain", "tie") for r in rows)
    failures = sum(r.winner == "error" for r in rows)
    print(f"\ncgtrain wins or ties on {good}/{len(rows)} datasets ({100 * good / max(len(rows), 1):.0f}%), "
          f"{failures} failure(s)")


if __name__ == "__main__":
    sys.exit(main())
