"""Parallel trials on one shared Optuna study: N worker processes here, more on other machines.

The storage is chosen by URI (DESIGN habit 6), never SQLite for several processes:

- `journal:PATH` - Optuna's JournalStorage on a file (appends under a `flock` that dies with its
  holder, `tune/journal.py`): local worker processes; the default when `hpo.workers > 1` is
  `run_dir/study.journal`;
- `postgresql://user@host/db` - Optuna's RDBStorage with heartbeats: workers on several machines
  join with `cgtrain worker --study URI --run-dir DIR`.

The lead process (`cgtrain train`) opens the study, records the request and the data fingerprint
in it, re-queues trials a killed run left RUNNING (`--resume`), starts `hpo.workers` processes
(`python -m cgtrain.study_worker`, each preparing the data itself, from the shared token cache)
and supervises them: a worker killed mid-trial (kill -9, OOM killer) has its trial failed, marked
stale and queued again with the same parameters, and a new worker takes its place. On PostgreSQL,
a remote worker's death is found by the storage's heartbeat (`study.GRACE_S`).

Counting is exact: a trial is *admitted* only if fewer than n_trials non-stale trials numbered
below it are finished or running (trial numbers are handed out in order by the storage, so every
worker sees the same answer for a given trial). A trial that loses that race is marked stale and
pruned at once; it is neither counted nor shown. So a study ends with exactly n_trials counted
trials, whatever the number of workers, kills and restarts.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import optuna

from cgtrain.errors import RunDirError
from cgtrain.fsutil import atomic_write_json
from cgtrain.request import TrainingRequest
from cgtrain.tune import study as studies
from cgtrain.tune import journal, warm
from cgtrain import rundir

JOURNAL_FILE = rundir.JOURNAL
POLL_S = 0.25  # how often the lead looks at its workers, and an idle worker at the study
MAX_RESTARTS = 3  # per worker slot: a worker that keeps dying is a bug, not bad luck
RUNNING = optuna.trial.TrialState.RUNNING
WAITING = optuna.trial.TrialState.WAITING


class SurplusTrial(optuna.TrialPruned):
    """Another worker's trial took the last slot: this one is marked stale and not run."""


# --- storage by URI ----------------------------------------------------------------------
def is_shared(request: TrainingRequest) -> bool:
    """True when the study is shared by worker processes (else: the one-process SQLite study)."""
    return request.hpo.workers > 1 or request.hpo.storage is not None or request.hpo.executor != "local"


def storage_uri(request: TrainingRequest, run_dir: Path) -> str:
    return request.hpo.storage or f"journal:{Path(run_dir).resolve() / JOURNAL_FILE}"


def study_name(request: TrainingRequest) -> str:
    return request.hpo.study_name or studies.STUDY_NAME


def postgres_url(uri: str) -> str:
    """SQLAlchemy URL with the installed psycopg 3 driver."""
    if uri.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + uri.split("://", 1)[1]
    return uri


def open_storage(uri: str) -> optuna.storages.BaseStorage:
    """The study storage a URI names; ValueError (one line) for anything else."""
    if uri.startswith("journal:"):
        return journal.open_journal(uri[len("journal:"):].removeprefix("//"))
    if uri.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        with warnings.catch_warnings():  # heartbeats are flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                postgres_url(uri), engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=studies.HEARTBEAT_S, grace_period=studies.GRACE_S,
                heartbeat_stale_trial_callback=studies.retry_stale_trial)
    if uri.startswith("sqlite"):
        raise ValueError(f"--study {uri}: SQLite cannot be shared by several worker processes; "
                         f"use journal:PATH or postgresql://user@host/db")
    raise ValueError(f"--study {uri!r} is not a study URI; use journal:PATH or postgresql://user@host/db")


def open_shared_study(storage, request: TrainingRequest, grid: list | None, worker: int = 0,
                      create: bool = True) -> optuna.Study:
    """The shared study, with this process's sampler (seeded per worker: no two propose alike)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = studies.SAMPLERS.get(request.hpo.sampler)(request.seed + worker, grid or [])
        kwargs = dict(study_name=study_name(request), storage=storage, sampler=sampler,
                      pruner=studies.PRUNERS.get(request.hpo.pruner)())
        if not create:
            return optuna.load_study(**kwargs)
        return optuna.create_study(**kwargs, directions=studies.directions(request), load_if_exists=True)


def target_trials(request: TrainingRequest, grid: list | None) -> int:
    return min(request.hpo.n_trials, len(grid)) if grid is not None else request.hpo.n_trials


# --- slots: exact counting across workers --------------------------------------------
def slot_counts(study: optuna.Study) -> tuple[int, int, int]:
    """(counted finished trials, running trials, waiting trials), stale ones left out."""
    trials = study.get_trials(deepcopy=False)
    stale = studies.stale_numbers(study)
    live = [t for t in trials if t.number not in stale]
    return (sum(t.state in studies.FINISHED for t in live), sum(t.state == RUNNING for t in live),
            sum(t.state == WAITING for t in live))


def admitted(study: optuna.Study, number: int, target: int) -> bool:
    """Fewer than `target` live trials numbered below `number` are finished or running."""
    stale = studies.stale_numbers(study)
    ahead = sum(1 for t in study.get_trials(deepcopy=False)
                if t.number < number and t.number not in stale and (t.state in studies.FINISHED or t.state == RUNNING))
    return ahead < target


def guarded(objective: Callable, target: int, attrs: dict | None = None) -> Callable:
    """The objective, run only by an admitted trial; each trial records the process that runs it."""
    host, pid = socket.gethostname(), os.getpid()

    def run(trial: optuna.Trial):
        trial.set_user_attr("worker", {"host": host, "pid": pid})
        for key, value in (attrs or {}).items():
            trial.set_user_attr(key, value)
        if not admitted(trial.study, trial.number, target):
            trial.set_user_attr("stale", True)
            raise SurplusTrial()
        return objective(trial)

    return run


def requeue(study: optuna.Study, trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials whose process died: failed, marked stale and queued again with the same parameters."""
    n = 0
    for t in trials:
        try:
            study._storage.set_trial_user_attr(t._trial_id, "stale", True)
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
            continue  # it finished (or a heartbeat check failed it) meanwhile
        studies.retry_stale_trial(study, t)
        n += 1
    return n


def trials_of(study: optuna.Study, pid: int, host: str | None = None) -> list[optuna.trial.FrozenTrial]:
    host = host or socket.gethostname()
    return [t for t in study.get_trials(deepcopy=False, states=(RUNNING,))
            if t.user_attrs.get("worker") == {"host": host, "pid": pid}]


def run_trials(study: optuna.Study, objective: Callable, target: int, deadline: float | None = None,
               stop: Callable[[], bool] | None = None, callbacks: list | None = None,
               max_trials: int | None = None, attrs: dict | None = None) -> int:
    """A worker's loop: one trial at a time until `target` counted trials exist (or the deadline, or
    `max_trials` run here). Returns the trials this worker ran."""
    ran, run = 0, guarded(objective, target, attrs)
    while max_trials is None or ran < max_trials:
        counted, running, waiting = slot_counts(study)
        if counted >= target or (deadline is not None and time.time() >= deadline) or (stop and stop()):
            return ran
        if counted + running >= target and not waiting:  # all slots taken: wait for a finish or a retry
            time.sleep(POLL_S)
            continue
        study.optimize(run, n_trials=1, catch=(Exception,), callbacks=callbacks)
        ran += 1
    return ran


# --- the lead: start, supervise, restart ---------------------------------------------------
def worker_command(uri: str, run_dir: Path, name: str, worker: int, started: float,
                   ray: dict | None = None) -> list[str]:
    """A local worker process; with `ray` ({"address", "tasks"}): the Ray driver that runs trials as tasks."""
    common = ["--study", uri, "--run-dir", str(run_dir), "--study-name", name, "--started", repr(started)]
    if ray is not None:
        return [sys.executable, "-m", "cgtrain.tune.ray_trials", *common, "--tasks", str(ray["tasks"]),
                *(["--address", ray["address"]] if ray.get("address") else [])]
    return [sys.executable, "-m", "cgtrain.tune.study_worker", *common, "--worker", str(worker)]


def start_worker(uri: str, run_dir: Path, name: str, worker: int, started: float,
                 ray: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    log = worker_log(run_dir, worker)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as err:  # a file, not a pipe: a chatty worker never blocks on a full pipe
        return subprocess.Popen(worker_command(uri, run_dir, name, worker, started, ray), env=env,
                                stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_die_with_lead)


def worker_log(run_dir: Path, worker: int) -> Path:
    return Path(run_dir) / "workers" / f"worker-{worker}.log"


def _log_tail(run_dir: Path, worker: int) -> str:
    try:
        return worker_log(run_dir, worker).read_text(encoding="utf-8", errors="replace")[-4000:]
    except OSError:
        return ""


def _die_with_lead() -> None:
    """A worker whose lead was killed stops too (else `--resume` would find its trials RUNNING, live)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def prepare_study(request: TrainingRequest, run_dir: Path, fingerprint: str, grid: list | None,
                  say: Callable[[str], None]) -> tuple[str, optuna.Study]:
    """The lead's study: created (or reopened on --resume), the request and data pinned in it."""
    uri = storage_uri(request, run_dir)
    try:
        study = open_shared_study(open_storage(uri), request, grid)
    except ValueError as exc:
        raise RunDirError(str(exc)) from None
    recorded, now = study.user_attrs.get("request"), request.model_dump(mode="json")
    if recorded is not None and recorded != now:
        changed = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
        raise RunDirError(f"the study {study.study_name} in {uri.split('@')[-1]} was started by another request "
                          f"(it differs in: {', '.join(changed)}); set another hpo.study_name, or use the same request")
    study.set_user_attr("request", now)
    studies.pin_fingerprint(study, fingerprint, f"the study {study.study_name} in {uri.split('@')[-1]}",
                            "set another hpo.study_name")
    return uri, study


def supervise(study: optuna.Study, uri: str, run_dir: Path, n_workers: int, target: int, started: float,
              say: Callable[[str], None], progress: Callable | None = None, ray: dict | None = None) -> None:
    """Run n_workers worker processes until the study holds `target` counted trials; replace dead ones.
    With `ray`: one process, the Ray driver (it retries the trials of Ray workers that die)."""
    procs = {i: start_worker(uri, run_dir, study.study_name, i, started, ray) for i in range(n_workers)}
    restarts = {i: 0 for i in procs}
    last = -1
    try:
        while procs:
            for i, proc in list(procs.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del procs[i]
                err = _log_tail(run_dir, i)
                lost = requeue(study, trials_of(study, proc.pid))
                if rc == 0:
                    continue
                if rc == 2 and not lost:  # a user error (bad data, storage): the same for every worker
                    raise RunDirError((err.strip().splitlines() or [f"worker {i} exited with code 2"])[-1]
                                      .removeprefix("error: "))
                say(f"worker {i} (pid {proc.pid}) died (exit {rc}); {lost} trial(s) queued again")
                restarts[i] += 1
                if restarts[i] > MAX_RESTARTS:
                    raise RuntimeError(f"worker {i} died {restarts[i]} times; last error: {err.strip()[-2000:]}")
                if slot_counts(study)[0] < target:
                    procs[i] = start_worker(uri, run_dir, study.study_name, i, started, ray)
            counted = slot_counts(study)[0]
            if progress and counted != last:
                last = counted
                progress(counted, target, studies.best_value(study))
            time.sleep(POLL_S)
    except BaseException:  # Ctrl-C or an error: stop the workers; their trials are queued again
        for proc in procs.values():
            proc.kill()
        for proc in procs.values():
            proc.wait()
            requeue(study, trials_of(study, proc.pid))
        raise


def run_shared_study(request: TrainingRequest, run_dir: Path, fingerprint: str, grid: list | None,
                     say: Callable[[str], None], progress: Callable | None, started: float) -> optuna.Study:
    """The lead's part of a parallel study; returns the study (in the lead's own storage handle)."""
    uri, study = prepare_study(request, run_dir, fingerprint, grid, say)
    if uri.startswith("journal:"):  # local workers only: every RUNNING trial at start was left by a killed run
        requeued = studies.requeue_stale(study)
        if requeued:
            say(f"resume: {requeued} interrupted trial(s) queued again with the same parameters")
    target = target_trials(request, grid)
    done = slot_counts(study)[0]
    if done:
        say(f"resume: {done} finished trial(s) kept, {max(0, target - done)} to run")
    if done < target and request.hpo.warm_start and not done:  # best params of earlier runs of this name first
        warm.enqueue_previous_best(study, run_dir, request, studies.candidate_spaces(request), say)
    if done < target:
        how = "Ray task(s) at a time" if request.hpo.executor == "ray" else "worker process(es)"
        say(f"{request.hpo.workers} {how} on study {study.study_name} ({uri.split('@')[-1]})")
        if request.hpo.executor == "ray":  # trials as Ray tasks, submitted by one driver process
            supervise(study, uri, run_dir, 1, target, started, say, progress,
                      ray={"address": request.hpo.ray_address, "tasks": request.hpo.workers})
        else:
            supervise(study, uri, run_dir, request.hpo.workers, target, started, say, progress)
    goals = studies.objectives(request)
    if len(goals) > 1:  # metric vs latency / size: the trade-offs, not one winner
        atomic_write_json(Path(run_dir) / rundir.PARETO, studies.pareto_front(study, goals))
    return study


def deadline_of(request: TrainingRequest, started: float) -> float | None:
    """When workers stop starting trials: hpo.timeout_s after the run began (hpo.budget_s: see Budget)."""
    return started + request.hpo.timeout_s if request.hpo.timeout_s else None


def stop_on_sigterm() -> Callable[[], bool]:
    """A worker asked to stop (SIGTERM) finishes its trial, then exits."""
    flag = {"stop": False}
    signal.signal(signal.SIGTERM, lambda *_: flag.__setitem__("stop", True))
    return lambda: flag["stop"]
