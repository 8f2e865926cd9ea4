"""External services for the tests that need one: a fresh PostgreSQL database, or a skip with the reason."""
from __future__ import annotations

import os
import tempfile
import uuid

import pytest

from helpers.cli import env as cli_env
from helpers.requests import request_dict

PG_BASE = os.environ.get("CGTRAIN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_database():
    """(admin connection, database name, URI) of a fresh database on the local server, or a skip with the reason."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("PostgreSQL suite: psycopg is not installed")
    name = f"cgtrain_svc_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL suite: no server at {PG_BASE} ({' '.join(str(exc).split())[:200]})")
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_BASE.rsplit("/", 1)[0]
    return admin, name, f"{base}/{name}"


# The service suites log to a store of their own.
SERVICE_MLFLOW_URI = f"sqlite:///{tempfile.mkdtemp(prefix='cgtrain-svc-mlflow-')}/mlflow.db"


def service_env() -> dict:
    """The environment of a `cgtrain serve|worker` process under test (one thread, unbuffered)."""
    return cli_env(MLFLOW_TRACKING_URI=SERVICE_MLFLOW_URI, OMP_NUM_THREADS="1")


def tiny_request(dataset_path: str, n_trials: int = 2, **hpo) -> dict:
    return request_dict(dataset_path, "service", hpo={"n_trials": n_trials, **hpo})
