"""Experiment tracking (MLflow, explicit client) and the environment snapshot of a run."""
from cgtrain.track.environment import write_environment  # noqa: F401
from cgtrain.track.mlflow_tracking import (  # noqa: F401
    TrackedRun,
    TrackingError,
    log_run,
    resolve_tracking_uri,
    tracking_client,
    try_log_run,
)
