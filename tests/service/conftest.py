"""Real uvicorn servers and workers (`python -m cgtrain serve|worker`) on 127.0.0.1, over SQLite and,
when one is reachable, a fresh PostgreSQL database per test module (dropped afterwards)."""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from helpers.cli import cgtrain_cmd
from helpers.services import SERVICE_MLFLOW_URI as MLFLOW_URI  # noqa: F401 (the store the Stack logs to)
from helpers.services import postgres_database, service_env as env

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {"max_body_kb": 64, "max_upload_mb": 1, "max_active_jobs": 2, "rate_per_minute": 5}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




class Stack:
    """One database + data root; servers and workers started and stopped by the tests."""

    def __init__(self, db_uri: str, base: Path):
        self.db_uri, self.base = db_uri, base
        self.data_root, self.runs_dir = base / "data", base / "runs"
        self.data_root.mkdir()
        self.server: subprocess.Popen | None = None
        self.url = ""
        self.server_args: tuple = ()
        self.workers: list[subprocess.Popen] = []
        self.tokens: dict[str, str] = {}

    # --- processes ---------------------------------------------------------------------
    def serve(self, workers: int = 0, track: bool = False) -> str:
        """(Re)start the API server unless one with the same arguments is up; returns its URL."""
        args = ("--workers", workers, *(("--tracking-uri", MLFLOW_URI) if track else ("--no-track",)),
                *[x for k, v in sorted(LIMITS.items()) for x in (f"--{k.replace('_', '-')}", v)])
        if self.server is not None and self.server.poll() is None and args == self.server_args:
            return self.url
        self.stop_server()
        port = free_port()
        log = open(self.base / f"server-{port}.log", "w")
        self.server = subprocess.Popen(
            cgtrain_cmd("serve", "--host", "127.0.0.1", "--port", port, "--db", self.db_uri, "--data-root",
                        self.data_root, "--runs-dir", self.runs_dir, "--lease-s", 2, "--poll-s", 0.2, *args),
            env=env(), cwd=self.base, stdout=log, stderr=subprocess.STDOUT)
        self.url, self.server_args = f"http://127.0.0.1:{port}", args
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise AssertionError(f"server exited: {(self.base / f'server-{port}.log').read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self.url
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not answer /healthz in 60 s")

    def stop_server(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def start_worker(self) -> subprocess.Popen:
        log = open(self.base / f"worker-{len(self.workers)}.log", "w")
        proc = subprocess.Popen(cgtrain_cmd("worker", "--db", self.db_uri, "--lease-s", 2, "--poll-s", 0.2,
                                            "--no-track"), env=env(), cwd=self.base, stdout=log,
                                stderr=subprocess.STDOUT)
        self.workers.append(proc)
        return proc

    def close(self) -> None:
        self.stop_server()
        for w in self.workers:
            if w.poll() is None:
                w.terminate()
                try:
                    w.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    w.kill()
                    w.wait()

    # --- HTTP ----------------------------------------------------------------------------
    def token(self, tenant: str) -> str:
        if tenant not in self.tokens:
            from cgtrain.service import db, store

            self.tokens[tenant] = store.create_token(db.make_engine(self.db_uri), tenant)
        return self.tokens[tenant]

    def call(self, method: str, path: str, tenant: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if tenant is not None:
            headers["Authorization"] = f"Bearer {self.token(tenant)}"
        return requests.request(method, self.url + path, headers=headers, timeout=kwargs.pop("timeout", 30), **kwargs)

    def submit(self, tenant: str, request: dict, **body) -> requests.Response:
        return self.call("POST", "/v1/jobs", tenant, json={"request": request, **body})

    def wait(self, job_id: int, tenant: str, until, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.call("GET", f"/v1/jobs/{job_id}", tenant).json()
            if until(job):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not get there in {timeout} s: {json.dumps(job)[:2000]}")

    def done(self, job_id: int, tenant: str, timeout: float = 120) -> dict:
        return self.wait(job_id, tenant, lambda j: j["state"] in ("succeeded", "failed", "cancelled"), timeout)


@pytest.fixture(scope="session")
def datasets(tmp_path_factory) -> Path:
    """small.jsonl (250 functions + their buggy twins) and tiny.jsonl (its first 200 rows), made once."""
    from cgtrain.data.synth_bugs import write_dataset

    directory = tmp_path_factory.mktemp("svc-data")
    write_dataset(directory / "small.jsonl", seed=0, max_functions=250)
    lines = (directory / "small.jsonl").read_text().splitlines(keepends=True)
    (directory / "tiny.jsonl").write_text("".join(lines[:200]))
    return directory


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(request, tmp_path_factory, datasets):
    base = tmp_path_factory.mktemp(f"svc-{request.param}")
    admin = None
    if request.param == "sqlite":
        uri = f"sqlite:///{base / 'jobs.db'}"
    else:
        admin, name, uri = postgres_database()
    s = Stack(uri, base)
    for name in ("tiny.jsonl", "small.jsonl"):
        shutil.copyfile(datasets / name, s.data_root / name)
    try:
        yield s
    finally:
        s.close()
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
