"""A run's first steps and its records: check the run directory, record the request, load and split the data."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import yaml

from cgtrain import rundir
from cgtrain.core.prepared import Prepared, dataset_record, prepare
from cgtrain.data.loading import current_fingerprint
from cgtrain.errors import RunDirError
from cgtrain.fsutil import atomic_write_json, atomic_write_text
from cgtrain.request import RequestError, TrainingRequest, parse_request, request_to_yaml


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    leaderboard: pd.DataFrame
    metrics: dict[str, Any]


def check_run_dir(run_dir: Path, request: TrainingRequest, resume: bool, force: bool = False) -> None:
    saved = run_dir / rundir.REQUEST
    if resume:
        if not saved.is_file():
            raise RunDirError(f"--resume: {run_dir} holds no run (no request.yaml); drop --resume to start one")
        if rundir.RunDir(run_dir).finished() and not force:
            raise RunDirError(f"--resume: {run_dir} holds a finished run (run.json); add --force to redo its refit "
                              f"and test (the model is replaced), or start a new --run-dir")
        before = _as_current(yaml.safe_load(saved.read_text(encoding="utf-8")))
        now = request.model_dump(mode="json")
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            raise RunDirError(f"--resume: the request differs from the one in {saved} in: {', '.join(changed)}; "
                              f"resume with the same request, or start a new --run-dir")
    elif rundir.RunDir(run_dir).has_study():
        raise RunDirError(f"{run_dir} already holds a run; add --resume to continue it, or choose another --run-dir")


def _as_current(saved: Any) -> Any:
    """A stored request with the fields added since it was written at their defaults, so a run
    started by an older cgtrain resumes (the same request then compares equal)."""
    try:
        return parse_request(saved).model_dump(mode="json")
    except (RequestError, TypeError, ValueError):
        return saved if isinstance(saved, dict) else {}


def check_fingerprint(run_dir: Path, request: TrainingRequest) -> None:
    """--resume on changed data would mix trials scored on the old data with a refit on the new: refuse."""
    before = rundir.RunDir(run_dir).dataset().get("fingerprint")  # none: interrupted before the data was recorded
    now = current_fingerprint(request.dataset)
    if before and now != before:
        raise RunDirError(f"--resume: the dataset {request.dataset.path} changed since the run started (fingerprint "
                          f"then {before}, now {now}); restore the data, or start a new --run-dir")


def open_run(request: TrainingRequest, run_dir: str | Path, resume: bool, say: Callable[[str], None],
             force: bool = False) -> tuple[Path, float, Prepared]:
    """Every task's first steps: check the run dir, record the request, load and split the data."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, request, resume, force)
    if resume:
        check_fingerprint(run_dir, request)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / rundir.REQUEST, request_to_yaml(request))
    started = time.time()
    prepared = prepare(request, run_dir, say)
    atomic_write_json(run_dir / rundir.DATASET, dataset_record(request, prepared))
    return run_dir, started, prepared


def load_run_request(run_dir: Path) -> dict:
    path = Path(run_dir) / rundir.REQUEST
    if not path.is_file():
        raise RequestError([f"no request.yaml in {run_dir}"], str(run_dir))
    return yaml.safe_load(path.read_text(encoding="utf-8"))
