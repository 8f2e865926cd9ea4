"""After the study: refit the winner (a trial or an ensemble), test it once, save the model and its records."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cgtrain import rundir
from cgtrain.artifacts.files import save_model
from cgtrain.core.fit import fit_family, input_tokenizer, make_featurizer, refit_params
from cgtrain.core.threads import fork_needs_one_thread, forked_fit
from cgtrain.core.heldout import checked_metrics, write_test_predictions
from cgtrain.core.prepared import Prepared, docs_for, model_inputs, outputs, raw_codes
from cgtrain.evaluate.metrics import compute, majority_baseline, mean_baseline
from cgtrain.fsutil import atomic_write_json
from cgtrain.models import FAMILIES
from cgtrain.request import TrainingRequest
from cgtrain.tune import ensemble_select as ensembles
from cgtrain.tune import study as studies
from cgtrain.tune.deadline import ChildFailed, DeadlineExceeded, call_within
from cgtrain.tune.reserve import FINAL_OVERRUN_SHARE, FINAL_TRY_SHARE, final_fit_need, tail_seconds


@dataclass
class Fitted:
    steps: list  # pipeline steps before the model
    model: Any
    input_of: Callable  # rows -> the model's input
    described: Any = None  # an ensemble's description (its members), else None


def _fitter(request: TrainingRequest, p: Prepared, best, ensemble) -> Callable[[np.ndarray], Fitted]:
    """rows -> the winner fitted on those rows (with its own featurisation)."""
    family = best.user_attrs["family"]
    params = refit_params(json.loads(best.user_attrs["params"]), best.user_attrs.get("best_epochs"))
    settings = studies.trial_features(best)  # the trial's featurisation (token docs with or without name split)
    inputs = model_inputs(p, None, docs_for(request, p, settings))
    trials = ensemble[0].get_trials(deepcopy=False) if ensemble is not None else None  # read here, never in a fork

    def fit_on(rows) -> Fitted:
        steps, y = [("tokens", input_tokenizer(request, settings))], p.y[rows]
        if ensemble is not None:  # each member has its own featurizer inside the ensemble model
            model, described = ensembles.refit_ensemble(request, ensemble[1], trials, inputs(rows), y)
            return Fitted(steps, model, inputs, described)
        kind = FAMILIES.get(family).input
        if kind == "code":  # the model tokenizes raw code itself: no CodeTokenizer step
            codes = raw_codes(p)
            code_of = lambda r: [codes[i] for i in r]  # noqa: E731
            return Fitted([("code", "passthrough")], fit_family(request, family, params, code_of(rows), y), code_of)
        if kind == "features":
            featurizer = make_featurizer(request, settings)
            X = featurizer.fit_transform(inputs(rows), y)
            return Fitted([*steps, ("features", featurizer)], fit_family(request, family, params, X, y),
                          lambda r: featurizer.transform(inputs(r)))
        return Fitted(steps, fit_family(request, family, params, inputs(rows), y), inputs)

    return fit_on


def _final_fit(request, p: Prepared, fit_on, fitted: Fitted, fit_s: float, say,
               time_left: Callable[[], float] | None, in_process: bool = False) -> tuple[Fitted, int]:
    """validation.final_fit: all -> once more on training + test rows. Under a budget it runs with a deadline: the
    time left plus FINAL_OVERRUN_SHARE of the budget (the promise is +-5%), less the model's writing. A fit that
    does not finish by then is ended and the model fitted on the training rows is kept, so a run whose estimate
    was off still ends at its budget, neither minutes early nor late. It is not tried when the estimate says it
    needs more than 1 / FINAL_TRY_SHARE times that time. `in_process` (torch families: forking after the
    accelerator started is unsafe) stops it between training steps instead of ending a forked child."""
    all_rows = np.sort(np.concatenate([p.split.train, p.split.test]))
    n_train = len(p.split.train)
    if request.validation.final_fit != "all" or not len(p.split.test):
        return fitted, n_train
    if time_left is None:
        say(f"refit: once more on all {len(all_rows)} rows (training + test) for the saved model")
        return fit_on(all_rows), len(all_rows)
    need = final_fit_need(fit_s, n_train, len(all_rows))  # from the refit it just timed: linear in rows, + 5%
    budget_s = getattr(request.hpo, "budget_s", None) or 0.0
    allowed = time_left() + FINAL_OVERRUN_SHARE * budget_s - tail_seconds(len(all_rows))
    if allowed < FINAL_TRY_SHARE * need:
        say(f"refit on all rows skipped: ~{need:.0f}s needed, the budget has {time_left():.0f}s left")
        return fitted, n_train
    say(f"refit: once more on all {len(all_rows)} rows (training + test) for the saved model"
        + (f" (~{need:.0f}s needed, {allowed:.0f}s allowed: kept only if it finishes)" if need > allowed else ""))
    narrow = fork_needs_one_thread()  # read before the fork: OpenMP hangs in a child of a multi-threaded parent

    def fit_all() -> tuple[list, Any]:
        if in_process:
            return _portable(fit_on(all_rows))
        with forked_fit(narrow):
            return _portable(fit_on(all_rows))

    try:  # a forked fit sends back the pipeline's steps and the model (its input function stays here)
        steps, model = call_within(fit_all, allowed, in_process)
    except DeadlineExceeded:
        say(f"refit on all rows stopped at the budget ({allowed:.0f}s): the model fitted on the training rows is kept")
        return fitted, n_train
    except ChildFailed as exc:
        say(f"refit on all rows failed ({exc}): the model fitted on the training rows is kept")
        return fitted, n_train
    return Fitted(steps, model, fitted.input_of, fitted.described), len(all_rows)


def _portable(fitted: Fitted) -> tuple[list, Any]:
    return fitted.steps, fitted.model


def _in_process(best, ensemble) -> bool:
    """Whether the winner (or a member) is a torch family: its final fit stops between steps, never forked."""
    trials = ensemble[1].trials if ensemble is not None else [best.number]
    by_number = {t.number: t for t in ensemble[0].get_trials(deepcopy=False)} if ensemble is not None else \
        {best.number: best}
    return any(FAMILIES.get(f).epoch_validation for n in trials
               if (f := by_number[n].user_attrs.get("family")) in FAMILIES)


def _save(request: TrainingRequest, run_dir: Path, p: Prepared, fitted: Fitted, family: str, params, trial: int):
    from sklearn.pipeline import Pipeline

    model = fitted.model
    checksum = save_model(Pipeline([*fitted.steps, ("model", model)]), run_dir / rundir.MODEL_FILE)
    saves_hf = family in FAMILIES and FAMILIES.get(family).saves_hf_dir  # also a directory transformers loads
    if saves_hf:
        model.save_pretrained(run_dir / rundir.HF_DIR)
    manifest = rundir.ModelManifest(
        file=rundir.MODEL_FILE, sha256=checksum, family=family, params=params,
        classes=[c if isinstance(c, (int, str, bool)) else str(c) for c in p.dataset.classes],
        task=request.task, language=request.dataset.language, trial=trial,
        hf_dir=rundir.HF_DIR if saves_hf else None)
    atomic_write_json(run_dir / rundir.MODEL_JSON, manifest.as_dict())


def refit_and_test(request, run_dir: Path, p: Prepared, best, say, ensemble=None,
                   time_left: Callable[[], float] | None = None, timings: dict | None = None) -> dict[str, Any]:
    """Refit the best trial (or, given `ensemble=(study, choice)`, the chosen ensemble) and test it once.
    `time_left` (a budget's seconds left): the final fit on all rows is skipped when it would not fit;
    `timings` gets the seconds of each step (the refit, an ensemble's featurizer and members, test, final fit)."""
    family = best.user_attrs["family"]
    params = refit_params(json.loads(best.user_attrs["params"]), best.user_attrs.get("best_epochs"))
    say(f"refit: trial {best.number} ({family}) on {len(p.split.train)} training rows" if ensemble is None else
        f"refit: {ensemble[1].method} ensemble of trials {ensemble[1].trials} on {len(p.split.train)} training rows")
    fit_on = _fitter(request, p, best, ensemble)
    fit_start = time.perf_counter()
    fitted = fit_on(p.split.train)
    fit_s = time.perf_counter() - fit_start
    if ensemble is not None:
        family, params = "ensemble", dict(fitted.described)
        seconds_of_refit = params.pop("refit_seconds", None)
    proba = outputs(fitted.model, fitted.input_of(p.split.test), p)
    test = compute(p.y[p.split.test], proba)
    write_test_predictions(run_dir, p, proba)
    seconds = {"refit": round(fit_s, 2), "test": round(time.perf_counter() - fit_start - fit_s, 2),
               **({"ensemble_refit": seconds_of_refit} if ensemble is not None else {})}
    started = time.perf_counter()
    fitted, model_rows = _final_fit(request, p, fit_on, fitted, fit_s, say, time_left, _in_process(best, ensemble))
    seconds["final_fit"] = round(time.perf_counter() - started, 2) if model_rows > len(p.split.train) else None
    started = time.perf_counter()
    _save(request, run_dir, p, fitted, family, params, best.number)
    seconds["save"] = round(time.perf_counter() - started, 2)
    folds = best.user_attrs["fold_scores"] if ensemble is None else ensemble[1].fold_scores
    if timings is not None:  # where the steps after the study spent their time (run.json: metrics.json stays
        timings.update(seconds)  # byte-identical across runs of one request and seed)
    metrics = checked_metrics(_metrics_record(request, p, test, folds, best.number, family, params, model_rows), say)
    atomic_write_json(run_dir / rundir.METRICS, metrics)
    return metrics


def _metrics_record(request, p: Prepared, test: dict, folds: list, trial: int, family: str, params,
                    model_rows: int) -> dict[str, Any]:
    y_train, y_test = p.y[p.split.train], p.y[p.split.test]
    return {
        "test": test,
        "cv": {"metric": request.validation.metric, "mean": float(np.mean(folds)) if folds else None,
               "std": float(np.std(folds)) if folds else None, "folds": folds},
        **({"baseline_mean": mean_baseline(y_train, y_test)} if p.regression else
           {"baseline_majority": majority_baseline(y_train, y_test)}),
        "best": {"trial": trial, "family": family, "params": params},
        "n_train": len(p.split.train), "n_test": len(p.split.test), "model_rows": model_rows,
    }
