"""The supervised recipe: request -> data -> study (CV, budget, pruning) -> ensemble -> refit -> test -> QA.

    request -> dataset (+ quarantine, fingerprint) -> leakage-safe splits ->
    Optuna study over k-fold CV -> best trial refit on all training data ->
    one evaluation on the held-out test split -> model + records in the run dir.

See docs/ARCHITECTURE.md for the layers this recipe calls.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna

from cgtrain import interrupts, rundir
from cgtrain.core.folds import FoldCache
from cgtrain.core.runs import RunResult, open_run
from cgtrain.errors import RunDirError
from cgtrain.flows.refit import refit_and_test
from cgtrain.fsutil import atomic_write_json
from cgtrain.request import TrainingRequest
from cgtrain.rundir_lock import run_dir_lock
from cgtrain.tune import automl, parallel, warm
from cgtrain.tune import ensemble_select as ensembles
from cgtrain.tune import study as studies
from cgtrain.tune.budget import Budget, run_started
from cgtrain.tune.evaluator import make_evaluator
from cgtrain.tune.hooks import TrialHooks
from cgtrain.tune.space import grid_configs
from cgtrain.qa.decision import tune_threshold, wants_threshold
from cgtrain.quiet import optuna_quiet


def train(request: TrainingRequest, run_dir: str | Path, resume: bool = False,
          say: Callable[[str], None] = print, progress: Callable[[int, int, float | None], None] | None = None,
          force: bool = False) -> RunResult:
    """The whole run, holding the run directory's lock (a second process is refused at once)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a directory; choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir, say):
        if request.task in ("anomaly", "clustering"):  # no target to fit: the unsupervised flow
            from cgtrain.flows.unsupervised import train_unsupervised

            return train_unsupervised(request, run_dir, resume=resume, say=say, progress=progress, force=force)
        return _train(request, run_dir, resume, say, progress, force)


def _train(request: TrainingRequest, run_dir: Path, resume: bool, say: Callable[[str], None],
           progress: Callable[[int, int, float | None], None] | None, force: bool) -> RunResult:
    run_dir, started, prepared = open_run(request, run_dir, resume, say, force)
    started = run_started(started)  # `cgtrain automl`: the budget and run.json count from the process start
    study = run_study(request, run_dir, prepared, say, progress, started=started)
    board = studies.leaderboard(study, request.validation.metric)
    board.to_csv(run_dir / rundir.LEADERBOARD, index=False)
    best, ensemble = best_or_default(request, study, say), None
    steps: dict = {}
    # voting / stacking of the top trials, kept only if CV says it is better (none: no trial finished)
    if request.hpo.ensemble != "none" and best.number >= 0:
        chosen = time.time()
        ensemble = ensembles.choose_ensemble(request, run_dir, prepared, study, say, started)
        steps["ensemble"] = round(time.time() - chosen, 2)  # what tune.reserve plans for it, measured
    budget_s = getattr(request.hpo, "budget_s", None)
    after_study = time.time() - started
    metrics = refit_and_test(request, run_dir, prepared, best, say, ensemble=(study, ensemble) if ensemble else None,
                             time_left=(lambda: budget_s - (time.time() - started)) if budget_s else None,
                             timings=steps)
    if wants_threshold(request, prepared):  # AutoML on binary F1: the served threshold is chosen out of fold
        metrics = tune_threshold(request, run_dir, prepared, say)
    atomic_write_json(run_dir / rundir.RUN, {"status": "finished", "seconds": round(time.time() - started, 1),
                                             "trials": len(board), "refit_started_s": round(after_study, 1),
                                             "after_study_s": steps})
    # calibration, audit, explanations, resources, report.html (classification); never fails the run
    if request.qa.enabled and not prepared.regression:
        from cgtrain.qa.checks import try_run_qa

        try_run_qa(request, run_dir, prepared, say)
    return RunResult(run_dir, board, metrics)


@dataclass(frozen=True)
class DefaultTrial:
    """Stands in for a trial when a budget ended before any finished: a family's defaults, never cross-validated."""

    user_attrs: dict[str, Any]
    number: int = -1


def best_or_default(request: TrainingRequest, study: optuna.Study, say: Callable[[str], None]):
    """The best trial; when none completed (a budget too short for the data), the default model of the
    fastest strong family (LightGBM where it is a candidate), so a budget always ends with a model."""
    try:
        return studies.best_trial(study)
    except RuntimeError:
        names = [c.family for c in request.candidates]
        family = "lightgbm" if "lightgbm" in names else names[0]
        say(f"no trial finished inside the budget: refitting {family} with its default params (not cross-validated)")
        params = studies.fixed_params(request).get(family, {})
        return DefaultTrial({"family": family, "params": json.dumps(params), "fold_scores": [], "default": True})


def run_study(request, run_dir, prepared, say, progress, started: float | None = None) -> optuna.Study:
    """The study, Optuna's per-trial log lines off for its duration."""
    with optuna_quiet():
        return _run_study(request, run_dir, prepared, say, progress, started)


def _grid_within(study: optuna.Study, objective, budget, remaining: int, callbacks: list) -> None:
    """A grid under a budget: its configurations in order, one at a time, while the study's share of the budget
    lasts. AutoML's controller picks trials of its own, which a grid sampler cannot take (Optuna's GridSampler
    failed the run with KeyError 'grid_id' on the first of them)."""
    for _ in range(remaining):
        if budget.study_left() <= 0:
            break
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)


def _run_study(request, run_dir, prepared, say, progress, started: float | None = None) -> optuna.Study:
    spaces, fixed = studies.candidate_spaces(request), studies.fixed_params(request)
    grid = grid_configs(spaces) if request.hpo.sampler == "grid" else None
    if parallel.is_shared(request):  # hpo.workers / hpo.storage / hpo.executor: worker processes share the study
        return parallel.run_shared_study(request, run_dir, prepared.dataset.fingerprint, grid, say, progress,
                                         started or time.time())
    study = studies.open_study(f"sqlite:///{run_dir / rundir.STUDY_DB}", request, grid)
    studies.pin_fingerprint(study, prepared.dataset.fingerprint, "--resume: the study's trials",
                            "start a new --run-dir")
    requeued = studies.requeue_stale(study)
    if requeued:
        say(f"resume: {requeued} interrupted trial(s) queued again with the same parameters")
    done = studies.counted_trials(study)
    target = min(request.hpo.n_trials, len(grid)) if grid is not None else request.hpo.n_trials
    remaining = max(0, target - done)
    if done:
        say(f"resume: {done} finished trial(s) kept, {remaining} to run")
    cache = FoldCache(request, prepared)
    budget = Budget.of(request, started)
    hooks = TrialHooks(run_dir, request.seed, store_oof=True, measure_costs=len(studies.objectives(request)) > 1,
                       limit_s=budget.trial_limit if budget else None)
    objective = studies.make_objective(spaces, fixed, grid, make_evaluator(request, prepared, cache, hooks),
                                       studies.objectives(request), feature_space=request.features.space)

    def report(study_: optuna.Study, _trial) -> None:
        if progress:  # a budgeted run (automl) ends on time, not at a count: no total
            progress(studies.counted_trials(study_), 0 if budget else target, studies.best_value(study_))

    if remaining and request.hpo.warm_start and not done:  # best params of earlier runs of this name first
        warm.enqueue_previous_best(study, run_dir, request, spaces, say)
    first_new = len(study.get_trials(deepcopy=False))
    try:
        with interrupts.deferred():  # Ctrl-C stops at a fold / epoch / trial boundary, not inside a commit
            if remaining and budget is not None and grid is not None:
                _grid_within(study, objective, budget, remaining, [report, _interrupt_point])
            elif remaining and budget is not None:  # cost-aware AutoML within a wall-clock budget
                automl.optimize(study, objective, request, prepared, budget, remaining, say,
                                callbacks=[report, _interrupt_point], run_dir=run_dir)
            elif remaining:
                study.optimize(objective, n_trials=remaining, timeout=request.hpo.timeout_s,
                               catch=(Exception,), callbacks=[report, _interrupt_point])
    except KeyboardInterrupt:
        requeue_interrupted(study, first_new)
        raise
    goals = studies.objectives(request)
    if len(goals) > 1:  # metric vs latency / size: the trade-offs, not one winner
        atomic_write_json(run_dir / rundir.PARETO, studies.pareto_front(study, goals))
    return study


def _interrupt_point(_study: optuna.Study, _trial) -> None:
    interrupts.check()  # between trials


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a Ctrl-C'd trial (with its traceback, then its value); the CLI says "interrupted" instead."""

    after_interrupt = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.after_interrupt = True
            return False
        if self.after_interrupt and "failed with value" in record.getMessage():
            self.after_interrupt = False
            return False
        return True


logging.getLogger("optuna.study._optimize").addFilter(_NoInterruptTraceback())


def requeue_interrupted(study: optuna.Study, first_new: int) -> int:
    """After Ctrl-C: the trial that was running (failed by the interrupt, or still RUNNING) is queued again
    with its parameters and not counted, so a --resume ends with exactly n_trials finished trials."""
    backend = getattr(study._storage, "_backend", study._storage)
    try:
        if hasattr(backend, "scoped_session"):  # the interrupted write's session may still hold the database lock
            backend.scoped_session.remove()
        stale = studies.stale_numbers(study)
        trials = study.get_trials(deepcopy=False)
        cut = [t for t in trials[first_new:] if t.number not in stale and "error" not in t.user_attrs
               and t.state == optuna.trial.TrialState.FAIL]
        for t in cut[-1:]:  # one trial runs at a time: the last one without an error of its own
            studies.retry_stale_trial(study, t)
        return len(cut[-1:]) + studies.requeue_stale(study)
    except Exception:  # noqa: BLE001 - a trial left RUNNING is re-queued by --resume all the same
        return 0
