"""The CV objective of one trial: k folds of one family's fit, with fidelity, time limits and pruning."""
from __future__ import annotations

import time

import optuna

from cgtrain import interrupts
from cgtrain.core.fit import fit_family
from cgtrain.core.folds import FoldCache
from cgtrain.core.prepared import Prepared, outputs
from cgtrain.evaluate.metrics import score
from cgtrain.models import FAMILIES
from cgtrain.request import TrainingRequest
from cgtrain.tune import study as studies
from cgtrain.tune.hooks import TrialHooks


def make_evaluator(request: TrainingRequest, prepared: Prepared, cache: FoldCache, hooks: TrialHooks | None = None):
    """k-fold CV of one trial; `hooks` store out-of-fold predictions, apply fidelity and time limits."""
    metric = request.validation.metric
    hooks = hooks or TrialHooks(store_oof=False)

    def evaluate(family: str, params: dict, trial: optuna.Trial) -> studies.TrialResult:
        start, scores, epochs = time.perf_counter(), [], []
        settings, kind = studies.trial_features(trial), FAMILIES.get(family).input
        interruptible = FAMILIES.get(family).epoch_validation  # stops between epochs; others in a forked child
        hooks.start(trial)
        built = 0.0  # seconds spent building fold features this trial (not cached by an earlier one)
        try:
            for k in range(len(prepared.folds)):
                interrupts.check()  # a deferred Ctrl-C ends the trial here, before the next fold
                if kind == "features" and not cache.has(k, settings):  # building features cannot be stopped
                    hooks.check_time(trial, k, cache.feature_cost(settings))
                    t0, counted = time.perf_counter(), cache.count_seconds
                    cache.fold(k, kind, settings)
                    built += time.perf_counter() - t0
                    trial.set_user_attr("feat_seconds", round(built, 3))
                    if cache.count_seconds > counted:  # counted the dataset's n-grams: once per token mode
                        trial.set_user_attr("count_seconds", round(cache.count_seconds - counted, 3))
                X_tr, y_tr, X_va, y_va = cache.fold(k, kind, settings)
                X_tr, y_tr = hooks.before_fold(trial, k, X_tr, y_tr)

                def fit_predict(X_tr=X_tr, y_tr=y_tr, X_va=X_va, y_va=y_va, k=k):
                    t0 = time.perf_counter()  # the fit alone: a refit fits, it does not predict a validation fold
                    m = fit_family(request, family, params, X_tr, y_tr, val=(X_va, y_va),
                                   on_epoch=hooks.on_epoch(trial, epoch_reporter(trial, k, params)))
                    fit_s = time.perf_counter() - t0
                    return m, outputs(m, X_va, prepared), fit_s

                model, proba, fit_s = hooks.run_fold(trial, k, fit_predict, interruptible)
                scores.append(score(metric, y_va, proba))
                hooks.after_fold(trial, k, model, X_va, proba, fit_s)
                if model is not None and FAMILIES.get(family).epoch_validation:  # reported per epoch; keep the epoch
                    epochs.append(int(model.history_["best_epoch"]) + 1)
                else:
                    trial.report(scores[-1], k)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
        except BaseException:
            hooks.forget(trial)
            raise
        if epochs:
            trial.set_user_attr("best_epochs", epochs)
        hooks.trial_done(trial)
        return studies.TrialResult(family, params, scores, time.perf_counter() - start)

    return evaluate


def _epochs(params: dict) -> int:
    return int(params.get("epochs", 10))


def epoch_reporter(trial: optuna.Trial, fold: int, params: dict):
    """Per-epoch validation metric -> the trial, so a pruner can stop a bad neural trial early."""
    def on_epoch(epoch: int, value: float) -> None:
        interrupts.check()  # a deferred Ctrl-C ends the trial after this epoch
        if value == value:  # NaN when there is no validation set
            trial.report(value, fold * _epochs(params) + epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

    return on_epoch
