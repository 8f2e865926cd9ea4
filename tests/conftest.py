"""Fixtures shared across test directories."""
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory):
    """directory -> URI of a migrated empty MLflow store there. The store is migrated once per
    session (MLflow's schema migrations take seconds) and copied for each caller."""
    from cgtrain.track.store import tracking_client

    template = tmp_path_factory.getbasetemp() / "mlflow-template" / "mlflow.db"

    def make(directory: Path) -> str:
        if not template.exists():
            template.parent.mkdir(parents=True, exist_ok=True)
            tracking_client(f"sqlite:///{template}")
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, directory / "mlflow.db")
        return f"sqlite:///{directory / 'mlflow.db'}"

    return make


@pytest.fixture
def one_thread():
    """Bit-identity across processes needs the same reduction order: one intra-op torch thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
