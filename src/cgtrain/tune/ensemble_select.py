"""Between the study and the refit: is an ensemble of the top trials better than the best one?

Reads the top-k full-fidelity trials' out-of-fold predictions (`oof/`), scores voting and/or
stacking by the same CV folds (see `cgtrain.models.ensemble`), and keeps the best ensemble
only when its CV mean beats the best single trial's and its refit fits the time budget.
The decision and every score go to `ensemble.json` in the run directory.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from sklearn.base import clone

from cgtrain.core.fit import fit_family, make_featurizer, refit_params
from cgtrain.fsutil import atomic_write_json
from cgtrain.models import FAMILIES
from cgtrain.models.ensemble import EnsembleChoice, EnsembleModel, beats, select
from cgtrain.request import TrainingRequest
from cgtrain.tune import study as studies
from cgtrain.tune.budget import run_started
from cgtrain.tune.reserve import PostStudy
from cgtrain.tune.hooks import ENSEMBLE, load_oof, oof_path, save_oof

RECORD = "ensemble.json"


def choose_ensemble(request: TrainingRequest, run_dir: Path, prepared, study: optuna.Study,
                    say: Callable[[str], None], started: float | None = None) -> EnsembleChoice | None:
    """The ensemble to refit, or None (the best single trial) — with the reason in ensemble.json."""
    metric = request.validation.metric
    best, ranked, members, y_folds, found = _scored(request, run_dir, prepared, study)
    record: dict[str, Any] = {"method": request.hpo.ensemble, "metric": metric, "kept": False}
    if len(members) < 2:
        return _decide(run_dir, record, None, f"fewer than 2 finished trials with out-of-fold predictions "
                                              f"({len(members)})", say)
    record.update({"best_single": {"trial": best.number, "family": best.user_attrs.get("family"),
                                   "cv_mean": best.values[0], "folds": best.user_attrs.get("fold_scores")},
                   "candidates": [{"method": c.method, "trials": c.trials, "weights": c.weights,
                                   "cv_mean": c.cv_mean, "folds": c.fold_scores} for c in found]})
    if not found:
        return _decide(run_dir, record, None, "no ensemble could be scored", say)
    top = found[0]
    if not beats(top.cv_mean, best.values[0], metric):
        return _decide(run_dir, record, None, f"dropped: {top.method} CV {metric} {top.cv_mean:.4f} does not beat "
                                              f"the best single trial's {best.values[0]:.4f}", say)
    top = _prune_zero_weights(top)
    budget = getattr(request.hpo, "budget_s", None)
    if budget is not None and started is not None:
        left = budget - (time.time() - run_started(started))
        post = PostStudy(prepared, final_fit=getattr(request.validation, "final_fit", "train") == "all")
        post.learn(study.get_trials(deepcopy=False))
        top, why = _within_budget(top, best, ranked, members, y_folds, metric, request, prepared, post, budget, left)
        if top is None:
            return _decide(run_dir, record, None, why, say)
    record["chosen"] = {"method": top.method, "trials": top.trials, "weights": top.weights, "cv_mean": top.cv_mean}
    return _decide(run_dir, record, top, f"kept: {top.method} of trials {top.trials}, CV {metric} "
                                         f"{top.cv_mean:.4f} > best single {best.values[0]:.4f}", say)


def _scored(request: TrainingRequest, run_dir: Path, prepared, study: optuna.Study):
    """(best trial, the trials that may be members, their OOF predictions, each fold's labels, the ensembles
    found on them, best first: none with fewer than 2 members)."""
    ranked = studies.ranked_trials(study)
    best = ranked[0] if ranked else None  # the ensemble must beat the best trial of any family
    # Members read the pipeline's token docs: a family that reads raw code (its own tokenizer) cannot be one,
    # else it would be refit and served on token docs though it was scored on code in CV.
    ranked = [t for t in ranked if _reads_tokens(t.user_attrs.get("family"))]
    mode = _token_mode(request, ranked[0]) if ranked else None  # members read the best trial's token docs
    ranked = [t for t in ranked if _token_mode(request, t) == mode]
    members = {t.number: load_oof(run_dir, t.number) for t in diverse_top(ranked, request.hpo.ensemble_size)}
    members = {n: o for n, o in members.items() if o is not None and len(o) == len(prepared.folds)}
    y_folds = [prepared.y[va] for _, va in prepared.folds]
    if len(members) < 2:
        return best, ranked, members, y_folds, []
    found = select(members, y_folds, request.validation.metric, request.hpo.ensemble, prepared.n_classes,
                   regression=request.task == "regression", seed=request.seed)
    return best, ranked, members, y_folds, found


def ensemble_may_win(request: TrainingRequest, run_dir: Path, prepared, study: optuna.Study,
                     memo: dict | None = None) -> bool:
    """Whether an ensemble of the trials so far beats the best single trial on CV, as `choose_ensemble` will
    judge it after the study (the same members and scores; no record written); `memo` keeps the answer per set
    of likely members. The AutoML reserve plans the members' refits only then: planned always, a 30 s budget on
    a 3k-row code set kept 11 s for a four-member refit and ended at 19 s, the ensemble dropped and the single
    refit done in 0.5 s."""
    memo = {} if memo is None else memo
    key = tuple(t.number for t in diverse_top(studies.ranked_trials(study), request.hpo.ensemble_size))
    if key not in memo:
        best, _, _, _, found = _scored(request, run_dir, prepared, study)
        memo[key] = bool(found) and best is not None and beats(found[0].cv_mean, best.values[0],
                                                                request.validation.metric)
    return memo[key]


def _within_budget(top: EnsembleChoice, best, ranked, oofs: dict, y_folds, metric: str, request, prepared,
                   post: PostStudy, budget: float, left: float) -> tuple[EnsembleChoice | None, str]:
    """The ensemble, or one of fewer members, whose refit fits the time left together with the final fit on all rows
    that the reserve planned; else (None, why). An ensemble that only fits by skipping the final fit is kept only when
    the best single trial could not have had it either: the final fit adds the test rows' groups to what the model
    saw, and a skipped one ends the run early (Juliet 300 s: 5 members where the reserve planned 3, final fit skipped,
    run ended at 281-289 s)."""
    by_number = {t.number: t for t in ranked}
    order = sorted(top.trials, key=lambda n: ranked.index(by_number[n]))
    candidates = [top]
    for k in range(len(order) - 1, 1, -1):  # drop the lowest-ranked members one at a time, re-blended on their OOF
        found = select({n: oofs[n] for n in order[:k]}, y_folds, metric, top.method, prepared.n_classes,
                       regression=request.task == "regression", seed=request.seed)
        if found and beats(found[0].cv_mean, best.values[0], metric):
            candidates.append(_prune_zero_weights(found[0]))
    needs = []  # (seconds, final fit planned) per candidate
    for c in candidates:
        needs.append((post.refit_seconds([by_number[n] for n in c.trials], budget), post.final_planned))
        if needs[-1][0] <= left and (needs[-1][1] or not post.final_fit):
            return c, ""
    single = post.refit_seconds([best], budget)
    if post.final_planned and single <= left:
        return None, (f"dropped: refitting its {len(top.trials)} members and the final fit on all rows need "
                      f"~{needs[0][0]:.0f}s, the budget has {left:.0f}s left (the best single trial and the final "
                      f"fit need ~{single:.0f}s)")
    for c in candidates:  # no final fit either way: the ensemble's refit alone must fit
        if (n := post.refit_seconds([by_number[m] for m in c.trials], final_fit=False)) <= left:
            return c, ""
    return None, f"dropped: refitting {len(candidates[-1].trials)} members needs ~{n:.0f}s, the budget has {left:.0f}s left"


def _reads_tokens(family: str | None) -> bool:
    return family not in FAMILIES or FAMILIES.get(family).input != "code"


def _token_mode(request: TrainingRequest, trial) -> tuple[bool, bool, bool]:
    from cgtrain.features.settings import feature_settings, token_mode

    return token_mode(feature_settings(request.features, studies.trial_features(trial)))


def diverse_top(ranked: list[optuna.trial.FrozenTrial], k: int) -> list[optuna.trial.FrozenTrial]:
    """k trials, best first: the best of each family, then the next best overall (diverse members blend better)."""
    firsts, seen = [], set()
    for t in ranked:
        if t.user_attrs.get("family") not in seen:
            seen.add(t.user_attrs.get("family"))
            firsts.append(t)
    rest = [t for t in ranked if t not in firsts]
    return sorted((firsts + rest)[:k], key=ranked.index)


def _prune_zero_weights(choice: EnsembleChoice) -> EnsembleChoice:
    if choice.method != "voting":
        return choice
    keep = [i for i, w in enumerate(choice.weights) if w > 0]
    return EnsembleChoice(choice.method, [choice.trials[i] for i in keep], [choice.weights[i] for i in keep],
                          choice.fold_scores, choice.meta, choice.oof)


def _decide(run_dir: Path, record: dict, choice: EnsembleChoice | None, reason: str, say) -> EnsembleChoice | None:
    record.update({"kept": choice is not None, "reason": reason})
    if choice is not None and choice.oof is not None:  # a threshold chosen later reads the ensemble's own OOF
        save_oof(run_dir, ENSEMBLE, choice.oof)
    else:
        oof_path(run_dir, ENSEMBLE).unlink(missing_ok=True)
    atomic_write_json(Path(run_dir) / RECORD, record)
    say(f"ensemble: {reason}")
    return choice


def refit_ensemble(request: TrainingRequest, choice: EnsembleChoice, trials: list[optuna.trial.FrozenTrial],
                   X_train, y_train) -> tuple[EnsembleModel, dict]:
    """Refit each member on all training rows (as the single-model refit does) and assemble them. `trials`: the
    study's, read beforehand (a forked final fit must not touch the study's database connection)."""
    from sklearn.pipeline import Pipeline

    trials = {t.number: t for t in trials}
    inputs = [FAMILIES.get(trials[n].user_attrs["family"]).input for n in choice.trials]
    keys = {json.dumps(studies.trial_features(trials[n]), sort_keys=True) for n, inp in zip(choice.trials, inputs)
            if inp == "features"}
    shared = len(keys) <= 1  # one featurisation: fitted once, shared; else each member brings its own
    settings = json.loads(next(iter(keys))) if keys else None
    featurizer = make_featurizer(request, settings) if "features" in inputs and shared else None
    started = time.perf_counter()
    X_feat = featurizer.fit_transform(X_train, y_train) if featurizer is not None else None
    seconds = {"features": round(time.perf_counter() - started, 2)}  # where a refit's time goes (metrics.json)
    fitted, described, own, by_key = [], [], {}, {}
    for i, (n, inp) in enumerate(zip(choice.trials, inputs)):
        started = time.perf_counter()
        t = trials[n]
        family = t.user_attrs["family"]
        params = refit_params(json.loads(t.user_attrs["params"]), t.user_attrs.get("best_epochs"))
        if inp == "features" and not shared:  # each distinct featurisation is fitted once, for its members
            key = json.dumps(studies.trial_features(t), sort_keys=True)
            if key not in by_key:
                feat = make_featurizer(request, studies.trial_features(t))
                by_key[key] = (feat, feat.fit_transform(X_train, y_train))
            feat, Xi = by_key[key]
            fitted.append(Pipeline([("features", feat), ("model", fit_family(request, family, params, Xi, y_train))]))
            own[i] = "tokens"
        else:
            fitted.append(fit_family(request, family, params, X_feat if inp == "features" else X_train, y_train))
        described.append({"trial": n, "family": family, "params": params,
                          **({"features": studies.trial_features(t)} if "features" in t.user_attrs else {})})
        seconds[f"trial {n}"] = round(time.perf_counter() - started, 2)
    inputs = [own.get(i, inp) for i, inp in enumerate(inputs)]
    model = EnsembleModel(members=[clone(m) for m in fitted], inputs=inputs, featurizer=featurizer, method=choice.method,
                          weights=list(choice.weights), meta=choice.meta,
                          task="regression" if request.task == "regression" else request.task)
    model.assemble(featurizer, fitted, y_train)
    return model, {"method": choice.method, "weights": list(choice.weights), "members": described,
                   "refit_seconds": seconds}
