"""The MLflow store: where it is (URI resolution), and one quiet client on it for tracking and the registry.

Tracking and the registry both reach MLflow through here; neither imports the other for it.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

from cgtrain.errors import RegistryError

DEFAULT_DIR = "mlruns"
DEFAULT_DB = "mlflow.db"


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else the embedded SQLite store under ./mlruns."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{(Path.cwd() / DEFAULT_DIR / DEFAULT_DB).resolve()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):  # relative: pin it to the cwd now
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def artifact_root(uri: str) -> str | None:
    """`artifacts/` beside an SQLite database (a file: URI); None lets a server choose."""
    db = sqlite_path(uri)
    return (db.parent / "artifacts").resolve().as_uri() if db is not None else None


def tracking_client(tracking_uri: str | None = None, create: bool = True):
    """An explicit MlflowClient on the tracking store, with the model registry on the same store.
    `create=False`: an embedded store that does not exist yet is an error, not a new empty store."""
    uri = resolve_tracking_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not create and not db.is_file():
        raise RegistryError(f"no MLflow store at {db}; train a model first (cgtrain train logs to it), or point "
                            f"--tracking-uri / MLFLOW_TRACKING_URI at the store")
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    with quiet_mlflow():
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # creates/migrates an embedded store once, quietly
    return client


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow and alembic announce schema creation at INFO and draw download progress bars;
    keep the CLI output ours."""
    import mlflow  # noqa: F401  (its import sets its loggers up; adjust them after that)

    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    bar = os.environ.get(_PROGRESS_BAR)
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if bar is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = bar


_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


