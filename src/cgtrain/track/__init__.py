"""Experiment tracking: the MLflow store (store.py), logging a run (mlflow_tracking.py), the environment snapshot
(environment.py) and registered versions as MLflow pyfunc models (pyfunc.py). MLflow is the `[mlflow]` extra:
`try_log_run` is importable without it."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from cgtrain.extras import installed

if TYPE_CHECKING:
    from cgtrain.track.mlflow_tracking import TrackedRun


def try_log_run(run_dir: Path, tracking_uri: str | None, model_name: str, *, request_path: Path | None = None,
                say: Callable[[str], None] = print) -> TrackedRun | None:
    """`log_run` for the CLI, the API and the service: says what happened; on failure says why and returns
    None. Without MLflow (a core install) it says tracking is off and how to turn it on."""
    if not installed("mlflow"):
        say(f"tracking off: MLflow is not installed (pip install 'cgtrain[mlflow]'); {run_dir} holds every record")
        return None
    from cgtrain.track.mlflow_tracking import TrackingError, log_run

    try:
        tracked = log_run(run_dir, tracking_uri, model_name, request_path=request_path)
    except TrackingError as exc:
        say(f"tracking failed (the run directory {run_dir} is complete and usable): {exc}")
        return None
    for problem in tracked.problems:
        say(f"tracking note: {problem}")
    verb = "already logged as" if tracked.already_logged else "logged as"
    say(f"{verb} MLflow run {tracked.run_id} ({len(tracked.trial_run_ids)} trials) in {tracked.tracking_uri}; "
        f"model {tracked.model_name} version {tracked.model_version} @{tracked.alias}")
    return tracked
