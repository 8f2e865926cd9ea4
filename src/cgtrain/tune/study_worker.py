"""One worker of a shared study: prepare the data, run trials until the study holds n_trials.

Started by the lead (`tune/parallel.py`, `python -m cgtrain.tune.study_worker ...`) or by hand on
another machine (`cgtrain worker --study postgresql://... --run-dir DIR`). The request and the
data fingerprint come from the study itself; the data must be readable at the request's path.
Out-of-fold predictions go to `--run-dir` (the lead's ensembles use those it can read).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import optuna

from cgtrain.errors import RunDirError
from cgtrain.request import TrainingRequest
from cgtrain.tune import parallel
from cgtrain.tune import study as studies
from cgtrain.quiet import optuna_quiet


def load_request(storage, name: str | None) -> tuple[str, TrainingRequest]:
    """The study's name and the request the lead recorded in it."""
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if not names:
        raise RunDirError("no study in the storage yet; start the run with `cgtrain train` (hpo.workers / "
                          "hpo.storage) first")
    if name is None:
        if len(names) != 1:
            raise RunDirError(f"the storage holds {len(names)} studies ({', '.join(names) or 'none'}); "
                              f"name one with --study-name")
        name = names[0]
    if name not in names:
        raise RunDirError(f"no study {name!r} in the storage (it has: {', '.join(names) or 'none'}); "
                          f"start the run with `cgtrain train` first")
    attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    if "request" not in attrs:
        raise RunDirError(f"study {name!r} was not started by a parallel `cgtrain train` (no request in it)")
    return name, TrainingRequest.model_validate(attrs["request"])


def work(uri: str, run_dir: Path, name: str | None = None, worker: int = 0, started: float | None = None,
         say: Callable[[str], None] = lambda _m: None) -> int:
    """Run trials of the shared study at `uri`; returns the number of trials this worker ran."""
    with optuna_quiet(optuna.logging.ERROR):
        study, objective, target, deadline = setup(uri, run_dir, name, worker, started, say)
        return parallel.run_trials(study, objective, target, deadline, stop=parallel.stop_on_sigterm())


def setup(uri: str, run_dir: Path, name: str | None = None, worker: int = 0, started: float | None = None,
          say: Callable[[str], None] = lambda _m: None):
    """(study, objective, target, deadline) of a worker: the study opened, the data prepared and checked."""
    from cgtrain.core.folds import FoldCache
    from cgtrain.tune.evaluator import make_evaluator
    from cgtrain.core.prepared import prepare
    from cgtrain.tune.budget import Budget
    from cgtrain.tune.hooks import TrialHooks
    from cgtrain.tune.space import grid_configs

    if uri.startswith("journal:") and not Path(uri[len("journal:"):].removeprefix("//")).is_file():
        raise RunDirError(f"--study {uri}: no study journal there; start the run with `cgtrain train` first")
    try:
        storage = parallel.open_storage(uri)
    except ValueError as exc:
        raise RunDirError(str(exc)) from None
    name, request = load_request(storage, name)
    spaces, fixed = studies.candidate_spaces(request), studies.fixed_params(request)
    grid = grid_configs(spaces) if request.hpo.sampler == "grid" else None
    study = parallel.open_shared_study(storage, request.model_copy(update={"hpo": request.hpo.model_copy(
        update={"study_name": name})}), grid, worker=worker + 1, create=False)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cgtrain-worker-") as scratch:  # quarantine files stay the lead's
        prepared = prepare(request, Path(scratch), say)
    pinned = study.user_attrs.get("dataset_fingerprint")
    if pinned != prepared.dataset.fingerprint:
        raise RunDirError(f"the data at {request.dataset.path} (fingerprint {prepared.dataset.fingerprint}) is "
                          f"not the data the study was started on ({pinned}); use the same file")
    started = started if started is not None else time.time()
    budget = Budget.of(request, started)
    hooks = TrialHooks(run_dir, request.seed, store_oof=True, measure_costs=len(studies.objectives(request)) > 1,
                       limit_s=budget.trial_limit if budget else None)
    objective = studies.make_objective(spaces, fixed, grid, make_evaluator(request, prepared, FoldCache(request,
                                                                                                          prepared),
                                                                           hooks),
                                       studies.objectives(request), feature_space=request.features.space)
    deadline = parallel.deadline_of(request, started)
    if budget is not None:  # the study's share of the budget
        deadline = min(deadline or float("inf"), time.time() + budget.study_left())
    return study, objective, parallel.target_trials(request, grid), deadline


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cgtrain.tune.study_worker", description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True, help="journal:PATH or postgresql://user@host/db")
    ap.add_argument("--run-dir", required=True, type=Path)
    ap.add_argument("--study-name", default=None)
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--started", type=float, default=None)
    args = ap.parse_args(argv)
    try:
        work(args.study, args.run_dir, args.study_name, args.worker, args.started)
    except RunDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
