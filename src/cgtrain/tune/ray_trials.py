"""`hpo.executor: ray`: trials of a shared study as Ray tasks (one CPU each).

The lead (`tune/parallel.py`) starts this driver as its one worker process. The driver joins the
Ray cluster at `hpo.ray_address` (a local one, `hpo.workers` CPUs, when it is null) and keeps up
to `hpo.workers` tasks in flight; each task runs one admitted trial of the study (the same exact
counting as local workers). A Ray worker process prepares the data once and keeps it for the
next task it runs. When a Ray worker dies mid-trial (kill -9, OOM), Ray reports the task lost;
the driver fails that trial, marks it stale and queues it again with the same parameters, and
submits a new task. The study storage must be reachable from every Ray node (PostgreSQL across
machines; a journal file on one machine or a shared file system).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

from cgtrain.errors import RunDirError
from cgtrain.tune import parallel

_SETUP: dict[tuple, tuple] = {}  # per Ray worker process: (uri, name) -> (study, objective, target, deadline)


def trial_task(uri: str, run_dir: str, name: str, started: float, token: str) -> int:
    """One trial of the study (0 when every slot was taken meanwhile)."""
    from cgtrain.tune.study_worker import setup

    key = (uri, name)
    if key not in _SETUP:
        _SETUP[key] = setup(uri, Path(run_dir), name, worker=1 + os.getpid() % 100000, started=started)
    study, objective, target, deadline = _SETUP[key]
    return parallel.run_trials(study, objective, target, deadline, max_trials=1, attrs={"ray_task": token})


def drive(uri: str, run_dir: Path, name: str, started: float, tasks: int, address: str | None) -> int:
    """Submit trial tasks until the study holds n_trials counted trials; returns trials lost and retried."""
    import ray
    import optuna

    from cgtrain.tune.study_worker import load_request

    storage = parallel.open_storage(uri)
    name, request = load_request(storage, name)
    study = optuna.load_study(study_name=name, storage=storage)
    target = request.hpo.n_trials
    deadline = parallel.deadline_of(request, started)
    src = str(Path(__file__).resolve().parents[1])
    ray.init(address=address, num_cpus=None if address else tasks, include_dashboard=False, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": src, "OMP_NUM_THREADS": "1"}})
    remote = ray.remote(num_cpus=1, max_retries=0)(trial_task)
    pending: dict = {}  # ObjectRef -> token
    lost = 0
    try:
        while True:
            counted, running, waiting = parallel.slot_counts(study)
            late = deadline is not None and time.time() >= deadline
            if (counted >= target or late) and not pending:
                return lost
            while not late and len(pending) < tasks and counted + len(pending) < target:
                token = uuid.uuid4().hex
                pending[remote.remote(uri, str(run_dir), name, started, token)] = token
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=parallel.POLL_S * 4)
            for ref in ready:
                token = pending.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.RayError as exc:  # its worker died (kill -9, OOM, node lost), or the task raised
                    dead = [t for t in study.get_trials(deepcopy=False, states=(parallel.RUNNING,))
                            if t.user_attrs.get("ray_task") == token]
                    lost += parallel.requeue(study, dead)
                    if isinstance(exc, ray.exceptions.RayTaskError):
                        raise  # the task's own error (data, storage): the lead restarts the driver or reports it
                    print(f"a Ray task failed ({type(exc).__name__}); {len(dead)} trial(s) queued again",
                          file=sys.stderr)
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cgtrain.tune.ray_trials", description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True)
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--study-name", default=None)
    ap.add_argument("--started", type=float, default=None)
    ap.add_argument("--tasks", type=int, default=1)
    ap.add_argument("--address", default=None)
    args = ap.parse_args(argv)
    try:
        drive(args.study, args.run_dir, args.study_name, args.started or time.time(), args.tasks, args.address)
    except RunDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
