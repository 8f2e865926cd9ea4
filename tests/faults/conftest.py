"""Fixtures of the fault tests: tiny data sets and a fast request (logreg only, few trials)."""
import pytest
from faults_kit import tiny_rows, write_jsonl, write_request


@pytest.fixture()
def tiny(tmp_path):
    """(request path, data path) of 24 rows in 12 groups."""
    data = write_jsonl(tmp_path / "data.jsonl", tiny_rows(12))
    return write_request(tmp_path, data), data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run directory (in-process), shared by a module's tests that only read it."""
    from faults_kit import invoke

    base = tmp_path_factory.mktemp("trained")
    req = write_request(base, write_jsonl(base / "data.jsonl", tiny_rows(12)), hpo={"n_trials": 1})
    result = invoke("train", req, "--run-dir", base / "run", "--no-track")
    assert result.exit_code == 0, result.output
    return base / "run"
