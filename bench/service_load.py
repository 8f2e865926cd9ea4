"""Load test of the job service on loopback: N tiny jobs from 4 tenants, 2 workers, one killed mid-run.

    .venv/bin/python bench/service_load.py [--jobs 200] [--tenants 4] [--max-wall-s 900] [--db URI]

Starts `cgtrain serve --workers 0` on 127.0.0.1 and two `cgtrain worker` processes over a fresh
SQLite database (or --db), submits the jobs from one client thread per tenant, kills one worker
with SIGKILL while it runs a job, and waits (bounded) for every job to end. Prints:
lost (submitted, not succeeded), run twice (a job with two `succeeded` records or more finished
trials than requested), cross-tenant reads (another tenant's job, artifact or list entry
readable), p50/p95 submit latency and jobs/minute. A "tiny job" is a real training request:
logreg, 1 trial, 2-fold CV, no QA, on 200 rows. Everything it starts is stopped before it exits.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cgtrain(*args) -> list[str]:
    return [sys.executable, "-m", "cgtrain", *map(str, args)]


def tiny_request() -> dict:
    return {"name": "load", "seed": 0, "dataset": {"path": "tiny.jsonl", "language": "python"},
            "features": {"max_features": 2000}, "candidates": [{"family": "logreg"}],
            "hpo": {"n_trials": 1}, "validation": {"folds": 2, "test_fraction": 0.25}, "qa": {"enabled": False}}


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--tenants", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-wall-s", type=float, default=900, help="stop waiting after this (then reports what ran)")
    ap.add_argument("--kill-after", type=int, default=10, help="kill a worker once this many jobs succeeded")
    ap.add_argument("--db", default=None, help="database URI (default: a fresh SQLite file)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what it started (the finally below)

    base = Path(tempfile.mkdtemp(prefix="cgtrain-service-load-"))
    data_root, runs_dir = base / "data", base / "runs"
    data_root.mkdir()
    db_uri = args.db or f"sqlite:///{base / 'jobs.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    sys.path.insert(0, str(ROOT / "src"))
    from cgtrain.data.synth_bugs import write_dataset
    from cgtrain.service import db, store

    write_dataset(data_root / "all.jsonl", seed=0, max_functions=100)
    (data_root / "tiny.jsonl").write_text("".join((data_root / "all.jsonl").read_text().splitlines(True)[:200]))
    engine = db.make_engine(db_uri)
    db.migrate(engine)
    tenants = [f"tenant{i}" for i in range(args.tenants)]
    tokens = {t: store.create_token(engine, t) for t in tenants}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    logs = base / "logs"
    logs.mkdir()
    try:
        procs.append(subprocess.Popen(
            cgtrain("serve", "--host", "127.0.0.1", "--port", port, "--db", db_uri, "--data-root", data_root,
                    "--runs-dir", runs_dir, "--workers", 0, "--no-track", "--max-active-jobs", 100_000,
                    "--rate-per-minute", 100_000), env=env, cwd=base,
            stdout=open(logs / "server.log", "w"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        warm = requests.post(url + "/v1/jobs", json={"request": {**tiny_request(), "warm_up": 1}}, timeout=300,
                             headers={"Authorization": f"Bearer {tokens[tenants[0]]}"})  # untimed: imports
        assert warm.status_code == 422, warm.text
        workers = [subprocess.Popen(cgtrain("worker", "--db", db_uri, "--no-track", "--lease-s", 3, "--poll-s", 0.2),
                                    env=env, cwd=base, stdout=open(logs / f"worker{i}.log", "w"),
                                    stderr=subprocess.STDOUT) for i in range(args.workers)]
        procs += workers
        report = run_load(args, url, tokens, engine, workers, store)
        report["db"] = engine.dialect.name
        report["run_dirs"] = str(runs_dir)
        check_runs(report, engine, store)
        print(json.dumps(report, indent=2))
        return 0 if report["lost"] == 0 and report["run_twice"] == 0 and report["cross_tenant_reads"] == 0 else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_load(args, url, tokens, engine, workers, store) -> dict:
    per_tenant = {t: args.jobs // len(tokens) + (1 if i < args.jobs % len(tokens) else 0)
                  for i, t in enumerate(tokens)}
    submitted: dict[int, str] = {}
    latencies: list[float] = []
    refused: list[str] = []
    lock = threading.Lock()

    def client(tenant: str) -> None:
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {tokens[tenant]}"
            for _ in range(per_tenant[tenant]):
                t0 = time.perf_counter()
                r = s.post(url + "/v1/jobs", json={"request": tiny_request()}, timeout=60)
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if r.status_code == 201:
                        submitted[r.json()["id"]] = tenant
                    else:
                        refused.append(f"{r.status_code} {r.text[:200]}")

    started = time.time()
    threads = [threading.Thread(target=client, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    submit_s = time.time() - started

    killed, deadline = None, time.monotonic() + args.max_wall_s
    while time.monotonic() < deadline:
        states = job_states(engine, submitted)
        done = sum(s in store.TERMINAL for s in states.values())
        if killed is None and sum(s == "succeeded" for s in states.values()) >= args.kill_after:
            killed = kill_busy_worker(engine, workers)
        if done == len(submitted):
            break
        time.sleep(0.5)
    finished = time.time()
    states = job_states(engine, submitted)
    succeeded = sum(s == "succeeded" for s in states.values())
    end_times = [r["finished_at"] for r in (store.get_job(engine, i) for i in submitted) if r["finished_at"]]
    span = (max(end_times) if end_times else finished) - started
    report = {
        "jobs_requested": args.jobs, "jobs_submitted": len(submitted), "submit_refused": len(refused),
        "succeeded": succeeded, "states": {s: list(states.values()).count(s) for s in sorted(set(states.values()))},
        "unfinished_at_deadline": sum(s not in store.TERMINAL for s in states.values()),
        "lost": sum(s != "succeeded" for s in states.values()) + (args.jobs - len(submitted)),
        "killed_worker": killed,
        "submit_latency_ms": {"p50": round(1000 * percentile(latencies, 0.5), 1),
                              "p95": round(1000 * percentile(latencies, 0.95), 1)},
        "submit_phase_s": round(submit_s, 1), "wall_s": round(span, 1),
        "jobs_per_minute": round(60 * succeeded / span, 1) if span > 0 else None,
        "workers": args.workers, "cpu_count": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
    }
    report["cross_tenant_reads"] = cross_tenant_reads(url, tokens, submitted)
    return report


def job_states(engine, submitted) -> dict[int, str]:
    from sqlalchemy import select

    from cgtrain.service.db import jobs

    with engine.connect() as conn:
        return dict(conn.execute(select(jobs.c.id, jobs.c.state).where(jobs.c.id.in_(list(submitted)))).all())


def kill_busy_worker(engine, workers) -> dict | None:
    """SIGKILL the first worker holding a running job's lease (the worker name is host:pid)."""
    from sqlalchemy import select

    from cgtrain.service.db import jobs

    for _ in range(200):
        with engine.connect() as conn:
            owners = conn.execute(select(jobs.c.id, jobs.c.lease_owner).where(jobs.c.state == "running")).all()
        for job_id, owner in owners:
            pid = int(owner.split(":")[1]) if owner else None
            victim = next((w for w in workers if w.pid == pid and w.poll() is None), None)
            if victim is not None:
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                return {"pid": pid, "job": job_id}
        time.sleep(0.05)
    return None


def cross_tenant_reads(url, tokens, submitted) -> int:
    """Every job asked for by every other tenant (job and an artifact), and every tenant's list."""
    bad = 0
    with requests.Session() as s:
        for tenant, token in tokens.items():
            h = {"Authorization": f"Bearer {token}"}
            offset = 0
            while offset is not None:
                page = s.get(url + f"/v1/jobs?limit=500&offset={offset}", headers=h, timeout=30).json()
                bad += sum(submitted.get(j["id"], tenant) != tenant for j in page["jobs"])
                offset = page["next_offset"]
            for job_id, owner in submitted.items():
                if owner == tenant:
                    continue
                for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/artifacts/metrics.json"):
                    if s.get(url + path, headers=h, timeout=30).status_code != 404:
                        bad += 1
    return bad


def check_runs(report: dict, engine, store) -> None:
    """Run twice: a job whose log has two `succeeded` records, or more finished trials than asked."""
    from sqlalchemy import select

    from cgtrain.service.db import jobs

    twice, resumed = 0, 0
    with engine.connect() as conn:
        rows = conn.execute(select(jobs.c.id, jobs.c.run_dir, jobs.c.attempts)).all()
    for job_id, run_dir, attempts in rows:
        log_path = Path(run_dir) / "job.log.jsonl"
        events = [json.loads(x) for x in log_path.read_text().splitlines()] if log_path.is_file() else []
        trials = 0
        if (Path(run_dir) / "study.db").is_file():
            with sqlite3.connect(Path(run_dir) / "study.db") as con:
                trials = con.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
        if sum(e["event"] == "succeeded" for e in events) > 1 or trials > 1:
            twice += 1
        resumed += attempts > 1
    report["run_twice"] = twice
    report["jobs_resumed_after_kill"] = resumed


if __name__ == "__main__":
    sys.exit(main())
