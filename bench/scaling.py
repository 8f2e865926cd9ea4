"""Scaling figures: parallel trials, DDP step time, and a data-scale curve (issue 17).

    python bench/scaling.py workers [--trials 8] [--rows 600]   # trials/hour, 1 vs 2 workers on one study
    python bench/scaling.py ddp [--rows 4000]                     # DDP step time, 1 vs 2 ranks (gloo, CPU)
    python bench/scaling.py data --sizes 25000 50000              # one request on N Juliet functions

Each prints one JSON line per measurement. `workers` times the study from the first trial's start
to the last trial's end (worker start-up and data preparation excluded: `wall_s` includes them).
`ddp` times the training loop inside rank 0 (3 epochs, one thread per rank), so process
start-up and rendezvous are left out (`with_launch_s` includes them). `data` runs `cgtrain train` (logreg, one trial,
2 folds, no QA) on `dataset.sample=N` functions and reads the child's peak RSS with wait4.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JULIET = Path("/work/shared/datasets/juliet_c_functions.jsonl.gz")


def bench_workers(trials: int, rows: int) -> None:
    import optuna

    from cgtrain.flows.supervised import train as train_run
    from cgtrain.data.synth_bugs import write_dataset
    from cgtrain.request import parse_request
    from cgtrain.tune import parallel

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bugs.jsonl"
        write_dataset(data, seed=0, max_functions=rows)
        for workers in (1, 2):
            req = parse_request({
                "name": "scaling", "dataset": {"path": str(data), "language": "python"},
                "candidates": [{"family": "logreg"}], "features": {"max_features": 20000},
                "hpo": {"sampler": "random", "n_trials": trials, "workers": workers,
                        "storage": f"journal:{Path(tmp) / f'w{workers}' / parallel.JOURNAL_FILE}"},
                "validation": {"folds": 3}, "qa": {"enabled": False}})
            start = time.perf_counter()
            train_run(req, Path(tmp) / f"w{workers}", say=lambda _m: None)
            wall = time.perf_counter() - start
            study = optuna.load_study(study_name="cgtrain", storage=parallel.open_storage(
                req.hpo.storage))
            done = [t for t in study.trials if t.datetime_complete is not None and "family" in t.user_attrs]
            span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
            print(json.dumps({"bench": "workers", "workers": workers, "trials": len(done), "rows": rows,
                              "study_s": round(span, 2), "trials_per_hour": round(3600 * len(done) / span),
                              "wall_s": round(wall, 2)}), flush=True)


def _ddp_data(rows: int):
    import numpy as np
    import scipy.sparse as sp

    from cgtrain.engine import SparseData

    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.random((rows, 2000)) * (rng.random((rows, 2000)) < 0.02))
    s = np.asarray(X.sum(1)).ravel()
    return SparseData(X, (s > np.median(s)).astype(int))


def _ddp_rank(rows: int, epochs: int) -> tuple[float, int]:
    """In each rank: (seconds inside the training loop, optimizer steps); one thread per rank."""
    import torch

    from cgtrain.models.neural import SparseMLP
    from cgtrain.engine import TrainConfig
    from cgtrain.engine.loop import train

    torch.set_num_threads(1)
    data = _ddp_data(rows)
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=1e-3, patience=None, device="cpu")
    start = time.perf_counter()
    result = train(SparseMLP(2000, 2, 256, 2, 0.0), data, cfg)
    return time.perf_counter() - start, result.optimizer_steps


def bench_ddp(rows: int) -> None:
    from cgtrain.engine.distributed import launch

    for nproc in (1, 2):
        start = time.perf_counter()
        seconds, steps = launch(_ddp_rank, (rows, 3), nproc, "gloo")
        print(json.dumps({"bench": "ddp", "nproc": nproc, "rows": rows, "global_batch": 64, "steps": steps,
                          "step_ms": round(1000 * seconds / steps, 2), "loop_s": round(seconds, 2),
                          "with_launch_s": round(time.perf_counter() - start, 2)}), flush=True)


def bench_data(sizes: list[int]) -> None:
    request = {
        "name": "juliet-scale", "task": "binary", "seed": 0,
        "dataset": {"path": str(JULIET), "format": "jsonl", "group_column": "family", "language": "c",
                    "label_conflicts": "drop"},
        "features": {"kind": "tfidf", "ngram_max": 2, "min_df": 3, "split_names": False},
        "candidates": [{"family": "logreg", "params": {"C": 1.0}}],
        "hpo": {"sampler": "random", "n_trials": 1},
        "validation": {"folds": 2, "test_fraction": 0.2, "metric": "f1"}, "qa": {"enabled": False}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "request.json"
        path.write_text(json.dumps(request))
        for n in sizes:
            cmd = [sys.executable, "-m", "cgtrain", "train", str(path), f"dataset.sample={n}",
                   "--run-dir", str(Path(tmp) / f"run{n}"), "--no-track"]
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            rc = os.waitstatus_to_exitcode(status)
            record = {"bench": "data", "functions": n, "wall_s": round(wall, 1), "peak_rss_mib": usage.ru_maxrss // 1024,
                      "rc": rc}
            metrics = Path(tmp) / f"run{n}" / "metrics.json"
            if metrics.is_file():
                m = json.loads(metrics.read_text())
                record.update({"rows_train": m.get("n_train"), "test_f1": round(m["test"]["f1"], 4)})
            else:
                record["error"] = proc.stderr.read().decode()[-500:]
            print(json.dumps(record), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    w = sub.add_parser("workers")
    w.add_argument("--trials", type=int, default=8)
    w.add_argument("--rows", type=int, default=600)
    d = sub.add_parser("ddp")
    d.add_argument("--rows", type=int, default=4000)
    s = sub.add_parser("data")
    s.add_argument("--sizes", type=int, nargs="+", default=[25000, 50000, 100000, 193000])
    args = ap.parse_args()
    if args.what == "workers":
        bench_workers(args.trials, args.rows)
    elif args.what == "ddp":
        bench_ddp(args.rows)
    else:
        bench_data(args.sizes)


if __name__ == "__main__":
    main()
