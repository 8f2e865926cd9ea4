"""Tiny data and requests for the parallel-trial and DDP tests (fixtures only: no imports between test dirs)."""
from pathlib import Path

import pytest

from helpers.requests import parsed_request


@pytest.fixture(scope="session")
def tiny_bugs(tmp_path_factory) -> Path:
    from cgtrain.data.synth_bugs import write_dataset

    path = tmp_path_factory.mktemp("dist-data") / "bugs.jsonl"
    write_dataset(path, seed=0, max_functions=200)
    return path


@pytest.fixture
def study_request(tiny_bugs):
    """request(**hpo) -> a logreg study request on the tiny data."""
    def make(name: str = "dist", **hpo):
        return parsed_request(tiny_bugs, "distributed", name=name, hpo=hpo)
    return make
