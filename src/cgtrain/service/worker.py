"""A worker: claims jobs with a lease, runs each in a child process, heartbeats while it runs.

The worker imports the training library once, then forks one process per job (the prefork
model of Celery or gunicorn): a job starts in milliseconds instead of seconds of imports, and a
job that crashes or is killed never takes the worker down. Each job process dies with its
worker (PR_SET_PDEATHSIG, plus a parent watch), so a worker killed with `kill -9` leaves no
trainer behind: its lease expires and the next worker resumes the job from its run directory.
"""
from __future__ import annotations

import importlib
import json
import multiprocessing
import multiprocessing.util
import os
import signal
import socket
import time
from dataclasses import dataclass

from cgtrain.service import db, jobproc, store
from cgtrain.service.joblog import JobLog

REAP_EVERY_S = 2.0  # how often a worker ends jobs whose workers died too often or were cancelled
PRELOAD = ["cgtrain.service.jobproc", "cgtrain.flows.supervised", "cgtrain.request", "cgtrain.service.store"]


@dataclass(frozen=True)
class WorkerConfig:
    db_uri: str
    lease_s: float = 30.0
    poll_s: float = 0.5
    max_attempts: int = 5
    track: bool = True
    tracking_uri: str | None = None
    memory_mb: int | None = None  # address-space limit of each job process
    max_jobs: int | None = None  # exit after this many (tests, benchmarks)
    idle_exit_s: float | None = None  # exit after this long without a job


class Worker:
    def __init__(self, config: WorkerConfig):
        self.config = config
        self.engine = db.make_engine(config.db_uri)
        db.migrate(self.engine)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = False
        self.ctx = multiprocessing.get_context("fork")
        # a forked job must not touch the worker's pooled connections (SQLAlchemy's advice for fork)
        multiprocessing.util.register_after_fork(self.engine, lambda engine: engine.dispose(close=False))

    def say(self, event: str, **fields) -> None:
        print(json.dumps({"ts": round(time.time(), 3), "worker": self.name, "event": event, **fields}), flush=True)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for module in PRELOAD:  # once, here: every job process starts with them imported
            importlib.import_module(module)
        self.say("started", db=self.engine.dialect.name)
        done, idle_since, last_reap = 0, time.monotonic(), 0.0
        while not self.stopping:
            if time.monotonic() - last_reap > REAP_EVERY_S:
                store.reap(self.engine, self.config.max_attempts)
                last_reap = time.monotonic()
            lease = store.claim(self.engine, self.name, self.config.lease_s)
            if lease is None:
                if self.config.idle_exit_s is not None and time.monotonic() - idle_since > self.config.idle_exit_s:
                    break
                time.sleep(self.config.poll_s)
                continue
            self.supervise(lease)
            done, idle_since = done + 1, time.monotonic()
            if self.config.max_jobs is not None and done >= self.config.max_jobs:
                break
        self.say("stopped", jobs=done)
        return 0

    def _stop(self, _signum, _frame) -> None:
        self.stopping = True

    def supervise(self, lease: store.Lease) -> None:
        cfg = self.config
        log = JobLog(lease.run_dir, lease.job_id, lease.attempt, self.name, "worker")
        log.event("claimed", lease_s=cfg.lease_s)
        self.say("claimed", job=lease.job_id, attempt=lease.attempt)
        row = store.get_job(self.engine, lease.job_id)
        deadline = (row["started_at"] or time.time()) + row["time_limit_s"]
        assignment = {"db": cfg.db_uri, "worker": self.name, "worker_pid": os.getpid(), "track": cfg.track, "tracking_uri": cfg.tracking_uri,
                      "memory_mb": cfg.memory_mb,
                      "lease": {"job_id": lease.job_id, "token": lease.token, "attempt": lease.attempt,
                                "run_dir": lease.run_dir}}
        child = self.ctx.Process(target=jobproc.forked_main, args=(assignment,), name=f"job-{lease.job_id}")
        child.start()
        beat_every, last_beat = max(0.2, cfg.lease_s / 3), time.monotonic()
        while child.is_alive():
            child.join(timeout=0.2)
            if not child.is_alive():
                break
            if self.stopping:  # give the job back; the next claim resumes it from its run dir
                self._end(child)
                store.release(self.engine, lease)
                log.event("released", reason="worker stopping")
                return
            if time.time() > deadline:
                self._end(child)
                store.finish(self.engine, lease, "failed",
                             error=f"time limit of {row['time_limit_s']:g} s exceeded; the job was stopped")
                log.event("failed", error="time limit exceeded")
                return
            if time.monotonic() - last_beat >= beat_every:
                last_beat = time.monotonic()
                if not store.heartbeat(self.engine, lease, cfg.lease_s):
                    if self._ended_by_child(lease):  # it wrote its end and is exiting
                        child.join(timeout=5)
                        break
                    self._end(child)
                    log.event("lease_lost")
                    return
        self._end(child)
        self._after_exit(lease, child, log)

    def _ended_by_child(self, lease: store.Lease) -> bool:
        row = store.get_job(self.engine, lease.job_id)
        return row["state"] in store.TERMINAL and row["lease_owner"] is None and row["attempts"] == lease.attempt

    def _after_exit(self, lease, child, log) -> None:
        row = store.get_job(self.engine, lease.job_id)
        if row["state"] == "running" and row["lease_owner"] == lease.token:  # the child ended without a word
            code = child.exitcode
            why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            error = f"job process ended without a result ({why}); see job.log.jsonl"
            store.finish(self.engine, lease, "failed", error=error)
            log.event("failed", error=error)
        self.say("finished", job=lease.job_id, exit=child.exitcode,
                 state=store.get_job(self.engine, lease.job_id)["state"])

    @staticmethod
    def _end(child) -> None:
        if child.is_alive():
            child.kill()
        child.join()


def run_worker(config: WorkerConfig) -> int:
    return Worker(config).run()
