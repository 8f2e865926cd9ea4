"""Small data and requests for the study / AutoML tests."""
from pathlib import Path

import pytest

@pytest.fixture(scope="session")
def bugs_jsonl(tmp_path_factory) -> Path:
    from cgtrain.data.synth_bugs import write_dataset

    path = tmp_path_factory.mktemp("tune-data") / "bugs.jsonl"
    write_dataset(path, seed=0, max_functions=200)
    return path
