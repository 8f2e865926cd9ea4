"""Cost-aware AutoML inside a wall-clock budget (the FLAML recipe, on an Optuna study).

1. Probe: every candidate family once, cheapest first (by a prior cost per 1000 rows), at the lowest fidelity (a
   stratified sample of each fold's training rows) with its default params. A family whose probe would eat half of
   what is left is skipped.
2. Search: each next trial goes to a family drawn with probability ~ 1 / its *estimated
   cost for improvement* (ECI, Wang et al. 2021, FLAML): time spent since its last
   improvement, or, for a family behind the leader, the time its improvement rate needs
   to catch up (a family that stopped improving gets dearer with every trial). The family is fixed by queueing
   `{"family": name}`; the sampler (TPE by default) picks the rest of the parameters from the study's history.
3. Fidelity grows per family (x3 rows per step) after two trials at a level, after one when the family leads, or at
   once when the next level is cheap; the family's best params so far open the new level.
   Only full-fidelity trials are eligible as the final model or ensemble member.
4. Budget: a trial starts only when its estimated cost fits what the study has left (the budget minus a reserve for
   ensemble + refit + test + final fit, re-estimated after every trial from the run's own measurements: tune.reserve;
   an ensemble's refits only while one of the trials so far beats the best on CV); a trial in flight is stopped
   at its time limit (between folds, at every step of a training loop, and inside a fit: tune.deadline).
   A family is dropped once a trial of it on all rows could not fit what is left (a neural family is
   not even probed then): low-fidelity trials alone never become the final model.

Trial counts depend on wall time, so a budgeted run is not repeatable trial-for-trial.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna

from cgtrain.models import FAMILIES
from cgtrain.request import TrainingRequest
from cgtrain.tune import study as studies
from cgtrain.tune.budget import Budget
from cgtrain.tune.reserve import PostStudy
from cgtrain.tune.space import as_dict
from cgtrain.tune.defaults import (BASELINE_FEATURES, BASELINE_LOGREG, CODE_TREE, CODE_TREE_NAME,  # noqa: F401
                                    baseline_trial, code_tree_trial, default_params)

MIN_ROWS = 1000  # rows per fold at the lowest fidelity
GROWTH = 3.0  # rows multiply by this per fidelity level
TRIALS_PER_LEVEL = 2
CHEAP_SHARE = 0.05  # a level whose trials cost under this share of the budget is entered at once (and started at)
PROBE_SHARE = 0.5  # skip a family whose first trial would use more than this share of the time left
PROBE_BUDGET_SHARE = 0.15  # ... or more than this share of the whole budget
EXPLORE = 0.4  # share of search trials whose featurisation the sampler picks (the rest reuse the best one's)
CODE_TREE_COST = 1.6  # seconds per 1000 fold training rows (200 trees, 63 leaves, 8k columns, a busy core)
CODE_TREE_SHARE = 0.6  # ... queued only when that estimate is under this share of what the study has left
MAX_FAILURES = 2
REACH_SLACK = 1.5  # a family below full fidelity is dropped when its full-fidelity trial needs this x the time left
COST_PARAMS = ("n_estimators", "num_leaves", "width", "depth", "epochs", "embed_dim")
TRIAL_OVERHEAD_S = 0.3  # sampling + storage writes per trial
OVERHEAD_WORK_SHARE = 0.1  # a trial whose prior work is under this share of its time measures the fixed cost
ENSEMBLE_RESERVE_MEMBERS = 3  # refits planned for an ensemble (greedy voting rarely keeps more)


@dataclass
class FamilyState:
    name: str
    levels: list[float]
    prior_s: float  # estimated seconds of one trial at full fidelity before any measurement
    level: int = 0
    at_level: int = 0  # trials finished at the current level
    spent_s: float = 0.0  # K0
    best: float | None = None  # best loss (lower is better) at any fidelity
    best_at_s: float = 0.0  # K1: spent when the best was found
    prev_best: float | None = None
    prev_best_at_s: float = 0.0  # K2
    failures: int = 0
    costs: list[tuple[float, float]] = field(default_factory=list)  # (fidelity, seconds)
    skipped: str = ""
    stalled: int = 0  # trials since the family's best last improved

    @property
    def fidelity(self) -> float:
        return self.levels[self.level]

    def cost(self, fidelity: float | None = None) -> float:
        """Estimated seconds of one trial at `fidelity` (rows scale linearly)."""
        f = self.fidelity if fidelity is None else fidelity
        if not self.costs:
            return self.prior_s * f
        return float(max(s * f / max(fi, 1e-9) for fi, s in self.costs))  # the dearest so far: budgets hold

    def eci(self, leader: float | None) -> float:
        """Estimated cost for improvement; lower goes first."""
        own = max(self.spent_s - self.best_at_s, self.best_at_s - self.prev_best_at_s, self.cost())
        if self.best is None or leader is None or self.best <= leader:
            return own
        gain = (self.prev_best - self.best) if self.prev_best is not None else 0.0
        rate = gain / max(self.best_at_s - self.prev_best_at_s, 1e-9) if gain > 0 else 0.0
        if rate > 0:
            return max(own, (self.best - leader) / rate)
        return max(own, 2 * self.spent_s, self.cost() * (1 + self.stalled))  # behind and not improving


def fidelity_levels(fold_rows: int) -> list[float]:
    levels, f = [], min(1.0, MIN_ROWS / max(fold_rows, 1))
    while f < 1.0:
        levels.append(round(f, 4))
        f *= GROWTH
    return levels + [1.0]


def family_states(request: TrainingRequest, prepared) -> dict[str, FamilyState]:
    fold_rows = int(np.median([len(tr) for tr, _ in prepared.folds]))
    k = len(prepared.folds)
    states = {}
    budget_s = getattr(request.hpo, "budget_s", None) or float("inf")
    for cand in request.candidates:
        prior = FAMILIES.get(cand.family).prior_cost_s * fold_rows / 1000 * k  # declared by the family
        state = FamilyState(cand.family, fidelity_levels(fold_rows), prior)
        while state.level + 1 < len(state.levels) and state.cost(state.levels[state.level + 1]) <= CHEAP_SHARE * budget_s:
            state.level += 1  # cheap at more rows: low fidelities would only add noise
        states[cand.family] = state
    return dict(sorted(states.items(), key=lambda kv: kv[1].prior_s))  # cheap first


def start_params(family: str, space: dict[str, Any]) -> dict[str, Any]:
    """The family's low-cost start (FLAML): the low end of size parameters (trees, leaves, width,
    depth, epochs), the family's defaults for the rest, where they lie inside the searched space."""
    defaults, out = FAMILIES.get(family).defaults, {}
    for name, spec in space.items():
        s, v = as_dict(spec), defaults.get(name, "__none__")
        if name in COST_PARAMS and s["type"] == "int":
            out[f"{family}.{name}"] = s["low"]
            continue
        if v == "__none__":
            continue
        if s["type"] == "categorical":
            ok = v in s["choices"]
        else:
            ok = isinstance(v, (int, float)) and s["low"] <= v <= s["high"] and \
                (s["type"] == "float" or s.get("log") or (v - s["low"]) % s.get("step", 1) == 0)
        if ok:
            out[f"{family}.{name}"] = v
    return out


class Controller:
    """Chooses each next trial's family and fidelity; learns costs and gains from finished trials."""

    def __init__(self, request: TrainingRequest, prepared, budget: Budget, say: Callable[[str], None],
                 run_dir: Path | None = None):
        self.request, self.prepared, self.budget, self.say = request, prepared, budget, say
        self.run_dir = run_dir  # where the trials' OOF predictions are (None: an ensemble is always planned)
        self.may_win: dict[tuple[int, ...], bool] = {}  # likely members -> an ensemble of them beats the best
        self.states = family_states(request, prepared)
        self.spaces = studies.candidate_spaces(request)
        self.sign = 1.0 if studies.greater_is_better(request.validation.metric) else -1.0
        self.post = PostStudy(prepared, getattr(request.validation, "final_fit", "train") == "all")
        self.members: list[optuna.trial.FrozenTrial] = []  # the likely final model (or ensemble members)
        self.probed: set[str] = set()  # families given a scaling probe
        self.feat_new_s = 0.0  # building a new featurisation's fold features in a trial (the dearest so far)
        self.multi = len(self.states) > 1
        self.rng = np.random.default_rng(request.seed)
        self.feature_space = dict(request.features.space or {})
        self.best_loss: float | None = None
        self.best_features: dict[str, Any] | None = None  # the featurisation of the best trial so far
        self.baseline = baseline_trial(request, prepared, self.spaces, self.feature_space)
        if self.baseline is not None and self.baseline[2]:
            self.best_features = dict(self.baseline[2])  # probes reuse the baseline's features until a better trial
        self.tree_default = code_tree_trial(request, prepared, self.spaces, self.baseline)
        self.count_s = 0.0  # the n-gram count pass of a token mode (paid again by a trial exploring another mode)

    def loss(self, value: float) -> float:
        return -self.sign * value

    def leader(self) -> float | None:
        bests = [s.best for s in self.states.values() if s.best is not None]
        return min(bests) if bests else None

    def live(self) -> list[FamilyState]:
        return [s for s in self.states.values() if not s.skipped]

    def next_trial(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(params to queue, user attrs) of the next trial, or None when nothing fits the budget."""
        left = self.budget.study_left()
        if self.baseline is not None:  # anytime: the known-strong default first, at full fidelity
            family, params, features, name = self.baseline
            self.baseline = None
            queued = {**({"family": family} if self.multi else {}), **params, **_prefixed(features)}
            return queued, {"fidelity": 1.0, "baseline": name}
        if self.tree_default is not None:  # anytime, second: a tree model at full fidelity, when it fits
            family, params, features, name = self.tree_default
            self.tree_default = None
            cost = self._tree_cost() + self._feature_cost(reuse=True)  # stopped at its limit if slower
            if cost <= CODE_TREE_SHARE * max(left, 0.0):
                queued = {**({"family": family} if self.multi else {}), **params, **_prefixed(features)}
                return queued, {"fidelity": 1.0, "baseline": name}
            self.say(f"automl: no {name} trial: ~{cost:.0f}s estimated, {left:.0f}s left")
        probe = self.post.scaling_probe(self.members, left, self.probed)
        if probe is not None:  # the same trial on fewer rows: how its family's fit time grows with rows
            self.probed.add(str(probe[0].user_attrs.get("family")))
            return dict(probe[0].params), {"fidelity": probe[1], "scaling_probe": probe[0].number}
        self._drop_out_of_reach(left)
        for s in self.live():
            if not s.costs and s.failures == 0:  # probe, cheapest first
                cost = self.unmeasured_cost(s, s.fidelity) + self._feature_cost(reuse=True)
                full = self.unmeasured_cost(s, 1.0)
                if cost > PROBE_SHARE * max(left, 0.0) or cost > PROBE_BUDGET_SHARE * self.budget.total_s:
                    s.skipped = f"its first trial (~{cost:.0f}s) is too costly for the {left:.0f}s left"
                elif FAMILIES.get(s.name).epoch_validation and full > left:  # a net's prior is measured, not rough
                    s.skipped = f"a trial on all rows (~{full:.0f}s) cannot fit the {left:.0f}s left"
                if s.skipped:
                    self.say(f"automl: skip {s.name}: {s.skipped}")
                    continue
                return self._queue(s, start_params(s.name, self.spaces[s.name]), explore=False)
        fits = [s for s in self.live() if s.cost() + self._feature_cost(reuse=True) <= left]
        if not fits:
            return None
        leader = self.leader()
        # FLAML: a family is drawn with probability ~ 1/ECI, so a cheap family cannot starve a better one
        weights = np.array([1.0 / max(st.eci(leader), 1e-3) for st in fits])
        s = fits[int(self.rng.choice(len(fits), p=weights / weights.sum()))]
        explore = bool(self.feature_space) and self.rng.random() < EXPLORE and \
            s.cost() + self._feature_cost(reuse=False) <= left
        return self._queue(s, {}, explore=explore)

    def _drop_out_of_reach(self, left: float) -> None:
        """Leave out a measured family whose trial on all rows (linear in rows: pessimistic) would take more
        than REACH_SLACK x the time left: only full-fidelity trials can become the final model."""
        for s in self.live():
            if s.costs and s.fidelity < 1.0 and s.cost(1.0) > REACH_SLACK * max(left, 0.0):
                s.skipped = f"a trial on all rows (~{s.cost(1.0):.0f}s) cannot fit the {left:.0f}s left"
                self.say(f"automl: stop {s.name}: {s.skipped}")

    def _tree_cost(self) -> float:
        fold_rows = float(np.median([len(tr) for tr, _ in self.prepared.folds]))
        return CODE_TREE_COST * fold_rows / 1000 * len(self.prepared.folds)

    def overhead(self) -> float:
        """Seconds any trial costs whatever its family (folds, storage, scoring): the fastest trial that its family's
        prior says is mostly that (its prior work under OVERHEAD_WORK_SHARE of its time: wine, sgd's 0.03 s prior
        took 0.7 s), else 0. A dear family's trial is its own work, whichever ran first (a mixed 3-class table: the
        13 s LightGBM baseline, prior 32 s, read as fixed cost, priced sgd, logreg and linear SVM at 14-15 s, all
        skipped from the 26 s left, and the run ended 16 s early)."""
        fixed = [sec for s in self.states.values() for f, sec in s.costs if s.prior_s * f <= OVERHEAD_WORK_SHARE * sec]
        return min(fixed, default=0.0)

    def slowdown(self) -> float:
        """How much dearer than their prior the measured families' fits ran on this machine and data (the largest
        ratio: a busy machine slows every family; unmeasured ones are probed only if they fit even so). The fixed
        cost of a trial is taken out first, and a family whose prior is below it says nothing: a 0.03 s prior
        that took 0.7 s on a 150-row table is the trial's overhead, not a 23x slower machine."""
        floor = self.overhead()
        ratios = [(s.cost(1.0) - floor) / s.prior_s for s in self.states.values() if s.costs and s.prior_s >= floor]
        return max([1.0, *ratios])

    def unmeasured_cost(self, s: FamilyState, fidelity: float) -> float:
        """A family's first trial at `fidelity`, before any of its own: the overhead plus its prior, slowed."""
        return self.overhead() + s.cost(fidelity) * self.slowdown()

    def _feature_cost(self, reuse: bool) -> float:
        """Seconds a trial spends building fold features: none when it reuses the cached best featurisation."""
        if reuse and (self.best_features is not None or not self.feature_space):
            return 0.0
        return self.feat_new_s + self.count_s

    def _queue(self, s: FamilyState, params: dict[str, Any], explore: bool = False):
        fixed = {"family": s.name} if self.multi else {}
        features = _prefixed(self.best_features) if self.feature_space and self.best_features and not explore else {}
        return {**fixed, **params, **features}, {"fidelity": s.fidelity}

    def update(self, trial: optuna.trial.FrozenTrial) -> None:
        if "baseline" in trial.user_attrs:  # a resumed study: its baseline is queued or done already
            if self.baseline is not None and trial.user_attrs["baseline"] == self.baseline[3]:
                self.baseline = None
            if self.tree_default is not None and trial.user_attrs["baseline"] == self.tree_default[3]:
                self.tree_default = None
        s = self.states.get(trial.user_attrs.get("family", ""))
        if s is None:
            return
        seconds = trial_seconds(trial)
        fidelity = float(trial.user_attrs.get("fidelity", 1.0))
        s.spent_s += seconds
        if trial.state == optuna.trial.TrialState.FAIL:
            s.failures += 1
            if s.failures >= MAX_FAILURES or s.best is None:  # a failed probe: the family cannot learn this data
                s.skipped = f"failed {s.failures} times: {trial.user_attrs.get('error', '')[:120]}"
                self.say(f"automl: drop {s.name}: {s.skipped}")
            return
        timed_out = "timed_out" in trial.user_attrs
        folds_done = len(trial.user_attrs.get("fold_seconds", [])) or len(trial.intermediate_values)
        if "scaling_probe" in trial.user_attrs:
            self.probed.add(s.name)  # (its rows-to-seconds point goes to tune.reserve, not to the linear costs)
        elif timed_out or trial.state == optuna.trial.TrialState.COMPLETE:
            whole = seconds if not timed_out else seconds * len(self.prepared.folds) / max(folds_done, 1)
            s.costs.append((fidelity, whole))
        if "feat_seconds" in trial.user_attrs:  # a new featurisation (the one-off n-gram count pass aside)
            self.count_s = max(self.count_s, float(trial.user_attrs.get("count_seconds", 0)))
            self.feat_new_s = float(trial.user_attrs["feat_seconds"]) - float(trial.user_attrs.get("count_seconds", 0))
        if trial.state == optuna.trial.TrialState.COMPLETE:
            loss = self.loss(trial.values[0])
            if self.best_loss is None or loss < self.best_loss:
                self.best_loss = loss
                self.best_features = {k: v for k, v in json.loads(trial.user_attrs.get("features") or "{}").items()
                                      if k in self.feature_space} or self.best_features
            if s.best is None or loss < s.best:
                s.prev_best, s.prev_best_at_s = s.best, s.best_at_s
                s.best, s.best_at_s, s.stalled = loss, s.spent_s, 0
            else:
                s.stalled += 1
        if fidelity >= 1.0 and trial.state == optuna.trial.TrialState.COMPLETE:
            s.level, s.at_level = len(s.levels) - 1, s.at_level + 1  # measured on all rows: no low fidelities
        elif fidelity >= s.fidelity:
            s.at_level += 1
        self._maybe_grow(s)

    def _maybe_grow(self, s: FamilyState) -> None:
        if s.level + 1 >= len(s.levels):
            return
        nxt = s.levels[s.level + 1]
        leads = s.best is not None and s.best == self.leader() and s.at_level >= 1  # FLAML: grow the leader's sample
        if leads or s.at_level >= TRIALS_PER_LEVEL or s.cost(nxt) <= CHEAP_SHARE * self.budget.total_s:
            s.level, s.at_level = s.level + 1, 0

    def reserve(self, study: optuna.Study) -> float:
        """Seconds to keep for ensemble selection, refit of the chosen model(s), the test and the final fit,
        estimated from the run's own trials (see tune.reserve)."""
        trials = study.get_trials(deepcopy=False)
        ranked = studies.ranked_trials(study)
        if not ranked:  # only low-fidelity trials so far: the final model will be the best of them
            if not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
                return self.budget.reserve_s
            ranked = [studies.best_trial(study)]
        self.post.learn(trials)
        ensemble = self.request.hpo.ensemble != "none" and len(ranked) > 1
        members = ranked[:1]
        from cgtrain.tune.ensemble_select import diverse_top, ensemble_may_win

        # an ensemble's refits are planned while one beats the best trial (an ensemble found later whose refit was
        # not planned gives up members or is dropped at the budget: `choose_ensemble`)
        if ensemble and (self.run_dir is None or ensemble_may_win(self.request, self.run_dir, self.prepared, study,
                                                                  self.may_win)):
            members = diverse_top(ranked, min(self.request.hpo.ensemble_size, ENSEMBLE_RESERVE_MEMBERS))
        self.members = members
        return self.post.seconds(members, ensemble, self.budget.total_s)

    def summary(self) -> dict[str, Any]:
        return {name: {"trials_s": round(s.spent_s, 2), "best_cv": None if s.best is None else -self.sign * s.best,
                       "fidelity": s.fidelity, "skipped": s.skipped or None} for name, s in self.states.items()}


def _prefixed(features: dict[str, Any] | None) -> dict[str, Any]:
    return {f"{studies.FEATURE_PREFIX}.{k}": v for k, v in (features or {}).items()}


def trial_seconds(trial: optuna.trial.FrozenTrial) -> float:
    """What the trial's folds cost (not the one-off fold featurizing the first trial also paid)."""
    folds = trial.user_attrs.get("fold_seconds")
    if folds:
        return float(sum(folds)) + TRIAL_OVERHEAD_S
    return float(trial.user_attrs.get("fit_seconds") or _duration(trial))


def _duration(trial: optuna.trial.FrozenTrial) -> float:
    if trial.datetime_start and trial.datetime_complete:
        return (trial.datetime_complete - trial.datetime_start).total_seconds()
    return 0.0


def optimize(study: optuna.Study, objective, request: TrainingRequest, prepared, budget: Budget, max_trials: int,
             say: Callable[[str], None], callbacks: list | None = None, run_dir: Path | None = None) -> Controller:
    """Run trials until the budget (minus the reserve) or max_trials is spent."""
    import skops.io  # noqa: F401 - the model file's writer (5-8 s to import on a busy machine): paid now, on the clock
    ctl = Controller(request, prepared, budget, say, run_dir)
    for t in study.get_trials(deepcopy=False):  # a resumed study: learn from what is there
        ctl.update(t)
    budget.set_reserve(max(budget.reserve_s, ctl.reserve(study)))
    say(f"automl: {budget.total_s:.0f}s budget, {budget.left():.0f}s left after loading the data; families "
        f"cheapest first: {', '.join(ctl.states)}; fidelity levels {ctl.states[next(iter(ctl.states))].levels}")
    ran = 0
    while ran < max_trials:
        waiting = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))]
        if not waiting:
            nxt = ctl.next_trial()
            if nxt is None:
                break
            study.enqueue_trial(nxt[0], user_attrs=nxt[1])
        elif budget.study_left() <= 0:
            break
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
        ran += 1
        ctl.update(study.trials[-1])
        budget.set_reserve(ctl.reserve(study))
    say(f"automl: {ran} trial(s) in {budget.elapsed():.0f}s; {budget.left():.0f}s left for ensemble, refit and "
        f"test (reserve {budget.reserve_s:.0f}s)")
    record = {**budget.record(), **ctl.post.record(), "families": ctl.summary()}
    study.set_user_attr("automl", json.loads(json.dumps(record, default=_plain)))
    return ctl


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else str(value)
