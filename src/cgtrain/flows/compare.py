"""A/B comparisons behind `cgtrain compare` and `cgtrain repeat`.

`run_compare` scores two models (run directories or registered `NAME@alias`) on the same
labelled rows (a data file, or the held-out rows both runs share) and returns McNemar,
a paired bootstrap CI of the metric difference, DeLong's test of ROC AUC and, on
request, Dietterich's 5x2cv t-test of the two training procedures (clones of the two
fitted pipelines, refitted on the data file). `run_seeds` trains one request over
several seeds and summarises each test metric with its mean and 95% CI.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cgtrain.evaluate.metrics import compute, score
from cgtrain.evaluate.significance import delong_test, mean_ci, paired_5x2cv
from cgtrain.fsutil import atomic_write_json
from cgtrain import rundir
from cgtrain.core.prepared import full_proba
from cgtrain.data.loading import DatasetError
from cgtrain.data.loading import load_dataset
from cgtrain.evaluate.metrics import METRICS
from cgtrain.evaluate.significance import mcnemar_test
from cgtrain.flows.supervised import train as train_run
from cgtrain.registry.model_registry import load_registered
from cgtrain.registry.promotion import PREDICTIONS_FILE
from cgtrain.registry.promotion import Predictions
from cgtrain.registry.promotion import compare
from cgtrain.registry.promotion import pair
from cgtrain.registry.promotion import read_predictions
from cgtrain.request import DatasetConfig
from cgtrain.request import load_request
from cgtrain.request import parse_request


def load_side(spec: str, tracking_uri: str | None):
    """(predictor, run_dir or None) for a run directory or a registered model spec."""
    path = Path(spec)
    if path.is_dir():
        from cgtrain.serve.predictor import load_predictor

        return load_predictor(run_dir=path), path

    return load_registered(spec, tracking_uri=tracking_uri), None


def labelled_rows(path: Path, code_column: str, label_column: str, group_column: str | None, classes: list):
    """(ids, codes, y as class indices, groups or None) of a labelled data file, validated like training data."""

    task = "binary" if len(classes) == 2 else "multiclass"
    with tempfile.TemporaryDirectory() as tmp:
        for id_column in ("id", None):  # files without an id column: rows are numbered
            cfg = DatasetConfig(path=str(path), code_column=code_column, label_column=label_column,
                                id_column=id_column, group_column=group_column, classes=list(classes))
            try:
                ds = load_dataset(cfg, task, Path(tmp) / rundir.QUARANTINE, seed=0)
                break
            except DatasetError as exc:
                if id_column is None or "id" not in str(exc):
                    raise
    frame = ds.frame
    groups = frame["group"].to_numpy() if group_column else None
    return frame["id"].astype(str).to_numpy(), frame["code"].tolist(), frame["label"].to_numpy(dtype=int), groups


def run_compare(a: str, b: str, data: Path | None, metric: str, code_column: str, label_column: str,
                group_column: str | None, cv5x2: bool, tracking_uri: str | None) -> dict[str, Any]:

    if metric not in METRICS:
        raise ValueError(f"--metric {metric!r} is unknown; choose one of: {', '.join(METRICS.names())}")
    (pred_a, dir_a), (pred_b, dir_b) = load_side(a, tracking_uri), load_side(b, tracking_uri)
    if [str(c) for c in pred_a.classes] != [str(c) for c in pred_b.classes]:
        raise ValueError(f"the models predict different classes ({pred_a.classes} vs {pred_b.classes})")
    groups = codes = None
    if data is None:
        if dir_a is None or dir_b is None:
            raise ValueError("without --data both A and B must be run directories (their held-out rows are paired); "
                             "give --data FILE to compare registered models")
        y, pa, pb = pair(read_predictions(dir_a / PREDICTIONS_FILE), read_predictions(dir_b / PREDICTIONS_FILE))
        ids, rows = np.arange(len(y)).astype(str), "held-out test rows shared by both runs"
    else:
        ids, codes, y, groups = labelled_rows(data, code_column, label_column, group_column, pred_a.classes)
        pa = np.asarray(pred_a.model.predict_proba(codes), dtype=float)
        pb = np.asarray(pred_b.model.predict_proba(codes), dtype=float)
        rows = str(data)
    evidence = compare(Predictions(ids, y, pa), Predictions(ids, y, pb), metric)
    stat, p, exact, only_a, only_b = mcnemar_test(y, pa, pb)
    result: dict[str, Any] = {
        "a": a, "b": b, "n": int(len(y)), "rows": rows, "metrics_a": compute(y, pa), "metrics_b": compute(y, pb),
        "bootstrap": {k: getattr(evidence, k) for k in ("metric", "improvement", "ci_low", "ci_high", "confidence",
                                                        "n_resamples", "seed")},
        "mcnemar": {"statistic": stat, "p": p, "exact": exact, "only_a_right": only_a, "only_b_right": only_b}}
    if pa.shape[1] == 2 and len(np.unique(y)) == 2:
        result["delong"] = delong_test(y, pa[:, 1], pb[:, 1]).as_dict()
    if cv5x2:
        if codes is None:
            raise ValueError("--5x2cv refits both procedures and needs --data FILE with labelled rows")
        result["five_by_two"] = paired_5x2cv(pred_a.model, pred_b.model, codes, y, _scorer(metric, pa.shape[1]),
                                             metric, groups=groups).as_dict()
    return result


def _scorer(metric: str, n_classes: int) -> Callable:
    return lambda model, X, y: score(metric, y, full_proba(model, X, n_classes))


def run_seeds(request_path: Path, overrides: list[str], seeds: int, run_dir: Path,
              say: Callable[[str], None] = print) -> dict[str, Any]:
    """Train the request with seeds seed..seed+N-1 (each in run_dir/seed_S; finished ones are reused)."""

    base = load_request(request_path, overrides)
    per_seed = []
    for k in range(seeds):
        seed = base.seed + k
        sub = Path(run_dir) / f"seed_{seed}"
        done = sub / rundir.METRICS
        if done.is_file() and (sub / rundir.RUN).is_file():
            say(f"seed {seed}: finished run kept ({sub})")
            metrics = json.loads(done.read_text(encoding="utf-8"))
        else:
            say(f"seed {seed}: training -> {sub}")
            request = parse_request({**base.model_dump(mode="json"), "seed": seed}, str(request_path))
            metrics = train_run(request, sub, resume=(sub / rundir.STUDY_DB).exists(), say=say).metrics
        per_seed.append({"seed": seed, "run_dir": str(sub), "test": metrics["test"]})
    names = list(per_seed[0]["test"])
    summary = {"request": str(request_path), "overrides": overrides, "seeds": per_seed,
               "metrics": {n: {**mean_ci([s["test"][n] for s in per_seed]),
                               "values": [s["test"][n] for s in per_seed]} for n in names}}
    atomic_write_json(Path(run_dir) / "seeds.json", summary)
    return summary
