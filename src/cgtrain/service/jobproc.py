"""One job, in its own process forked by its worker (which imported the library once).

It runs the job the way `cgtrain train` does:
`train_run` over the job's run directory (with `resume=True` when an earlier attempt left a
run there: its finished trials are kept), then MLflow logging and registration. After every trial
it records progress in the job row; a cancel request stops the study there. Every write names
the worker's lease, so a process whose worker lost the job changes nothing.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from cgtrain import rundir

EXIT_LEASE_LOST = 4


class JobCancelled(BaseException):  # BaseException: passes through the study's `catch=(Exception,)`
    pass


class LeaseLost(BaseException):
    pass


def _watch_parent(parent: int) -> None:
    """Exit when the parent is gone (PR_SET_PDEATHSIG covers Linux; this covers the rest)."""
    while True:
        if os.getppid() != parent:
            os._exit(137)
        time.sleep(0.5)


def forked_main(assignment: dict) -> None:
    """Entry point of a job process forked by its worker."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the worker
    except OSError:
        pass
    if os.getppid() != assignment["worker_pid"]:  # the worker died before the line above
        os._exit(137)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the worker's handlers
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(assignment["worker_pid"],), daemon=True).start()
    if assignment.get("memory_mb"):
        import resource

        limit = int(assignment["memory_mb"]) << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    code = run(assignment)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the job's records are written; skip seconds of interpreter teardown


def run(a: dict) -> int:
    from cgtrain.service import db, store
    from cgtrain.service.joblog import JobLog

    engine = db.make_engine(a["db"])
    lease = store.Lease(**a["lease"])
    row = store.get_job(engine, lease.job_id)
    run_dir = Path(lease.run_dir)
    log = JobLog(run_dir, lease.job_id, lease.attempt, a["worker"], "job")
    resume = (run_dir / rundir.REQUEST).is_file()
    log.event("started", resume=resume)
    try:
        metrics, model = _train(engine, lease, row, run_dir, resume, log, a)
    except JobCancelled as stop:
        log.event("cancelled", detail=str(stop))
        store.finish(engine, lease, "cancelled", error=f"cancelled by the caller {stop}")
        return 0
    except LeaseLost:
        log.event("lease_lost")
        return EXIT_LEASE_LOST
    except Exception as exc:  # noqa: BLE001 - the job fails with one line; the trace goes to its log
        line = _one_line(exc)
        log.event("failed", error=line, traceback=traceback.format_exc())
        store.finish(engine, lease, "failed", error=line)
        return 0
    ok = store.finish(engine, lease, "succeeded", metrics=metrics, model=model, error=None)
    log.event("succeeded" if ok else "lease_lost", model=model)
    return 0 if ok else EXIT_LEASE_LOST


def _train(engine, lease, row: dict, run_dir: Path, resume: bool, log, a: dict) -> tuple[dict, dict | None]:
    from cgtrain.flows.supervised import train as train_run
    from cgtrain.request import parse_request
    from cgtrain.service import store

    req = parse_request(json.loads(row["request"]), f"job {lease.job_id}")
    metric = req.validation.metric

    def progress(done: int, total: int, best: float | None) -> None:  # an Optuna callback: a trial ended
        state = store.set_progress(engine, lease, {"trials_done": done, "trials_total": total, "best": best,
                                                   "metric": metric})
        log.event("trial", trials_done=done, trials_total=total, best=best)
        if state is None:
            raise LeaseLost()
        if state["cancel"]:
            raise JobCancelled(f"after {done} of {total} trials")

    result = train_run(req, run_dir, resume=resume, say=log.say, progress=progress)
    metrics = json.loads((result.run_dir / rundir.METRICS).read_text(encoding="utf-8"))
    model = _track(run_dir, row["tenant"], req.name, log, a) if a.get("track") else None
    return metrics, model


def _track(run_dir: Path, tenant: str, name: str, log, a: dict) -> dict | None:
    """What `cgtrain train` does after training: log to MLflow, register, compare with the champion.
    The registered name is TENANT.NAME so tenants sharing a store never share a model."""
    from cgtrain.qa.champion import after_tracking
    from cgtrain.track import try_log_run

    tracked = try_log_run(run_dir, a.get("tracking_uri"), f"{tenant}.{name}", request_path=run_dir / rundir.REQUEST,
                          say=log.say)
    if tracked is None:
        return None
    after_tracking(run_dir, a.get("tracking_uri"), say=log.say)
    return {"name": tracked.model_name, "request_name": name, "version": tracked.model_version,
            "alias": tracked.alias, "mlflow_run_id": tracked.run_id}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:2000]
