"""Seconds the steps after an AutoML study will take, estimated from what the run itself measured.

After the study come: ensemble selection (on stored out-of-fold predictions), the refit of the
chosen trial(s) on all training rows, the test, and (`validation.final_fit: all`) one more fit on
training + test rows; then the model file. The study keeps exactly that much of the budget.

- Model fits: a trial's fold fit ran on `fold rows x fidelity` rows and took its (slowest) fold's fit
  seconds (the fit alone, recorded per fold; the fold's time when not); a fit on R rows is scaled by
  (R / those rows) ** b, where b (how a family's fit time grows with rows) is fitted on the run's own
  trials of one configuration of that family at two or more row counts (AutoML's fidelity levels, a
  scaling probe), else DEFAULT_EXPONENT. A tree family whose cost follows its columns (chi² top-k,
  histogram bins) shows b well below 1.
- Scaling probe: when a likely final model's family has no measured exponent and what the guess
  may be off by is worth more than measuring it, that trial runs once more on a quarter of its
  rows (a low-fidelity trial like any other) and the exponent is fitted from the two.
- The final fit on training + test rows is planned with the same growth from the folds as the refit (it runs
  under a deadline: a late one is ended at the budget and the refit model kept), and only when it needs at most
  FINAL_SHARE of the budget (else the search gets that time; the refit step decides with the time really left).
- The test: what a fold took beyond its fit (the validation predict), per validation row, times the test rows.
- Featurising: the seconds per row the run's fold features cost (the n-gram count pass included),
  times the rows a refit featurises (training rows fitted, test rows transformed).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import optuna

DEFAULT_EXPONENT = 0.7  # until measured. Fold times carry a fixed part (the forked fit, the validation predict) that
# a refit does not, so they grow below linearly with rows (measured on Juliet and tables: LightGBM 0.4-0.6, logreg
# 0.5-0.8, SGD 0.9, naive Bayes and ridge <= 0.3): a truly linear family refit on 2x its fold rows is under-planned ~20%
MIN_EXPONENT, MAX_EXPONENT = 0.3, 1.3
MIN_SPREAD = 1.8  # row counts at least this far apart (max / min) before an exponent is fitted
SAFETY = 1.0  # on the refit and its test. At 1.1 the reserve planned 6 s more than the steps took on average (Juliet,
# 300 s, six runs on 2026-11-30: planned - took = -4.6 ... +19.6 s; two runs ended 16 and 22 s early), and a late run is
# bounded anyway: the final fit after it gets what is really left (flows.refit), ended at the budget when late
FINAL_SAFETY, FINAL_EXTRA_S = 1.05, 2.0  # what flows.refit asks for before a final fit (+ saving the model);
# the fit is scaled linearly in rows, above the measured growth of every family (0.6-0.9)
FINAL_SHARE = 1 / 3  # a final fit is planned only when it needs at most this share of the budget. At 0.2 a machine 2x
# slower than usual left it out on every Juliet split (300 s: LightGBM + 2 linear members on 51k rows, ~70 s): the
# search kept those 70 s for trials that added little, the try on what was left stopped at the budget, and the saved
# model had not seen 20% of the families: held-out F1 0.913 / 0.908 / 0.904, and 0.925 / 0.928 / 0.913 with it planned
FINAL_OVERRUN_SHARE = 0.03  # a budget is kept to +-5%: a final fit whose estimate passes it by at most this share of
# the budget still runs (Juliet, 300 s: skipped for 2 s, the run ended at 269 s with a model that had not seen 20% of
# the families)
FINAL_TRY_SHARE = 0.25  # a budgeted final fit (ended at the budget when late) is tried when the time it may take is at
# least this share of its estimate (estimates are off by up to 2x either way on a busy machine: Juliet, LightGBM
# folds of one trial 15.7 and 22.9 s, its refit 22.2 s; a try that runs late ends within the +-5% the budget allows)
SELECT_BASE_S = 0.4  # choosing an ensemble: reading the members' OOF predictions, scoring voting and stacking ...
SELECT_PER_VALUE_S = 2e-6  # ... per OOF value (rows x members x classes). `select` alone took 0.02 s on 150 rows x 5
# members and 0.1-0.26 s on 50k (2026-12-01); 1.5 s + 0.5% of the budget, the constant before, left a 60 s budget on a
# 178-row table ~5% of its study unused (wine: 0.07 s taken)
PROBE_FIDELITY = 0.25  # a scaling probe's share of the fold rows
PROBE_MIN_ROWS = 500
PROBE_GAIN = 2.0  # ... run when what it may free is worth this many times its cost
PROBE_WORTH = 0.05  # ... and this share of what the study has left
PROBE_SHARE = 0.5  # ... and its cost is at most this share of what the study has left
COUNT_SHARE = 0.5  # a refit's vectoriser fit costs about half the run's n-gram count pass (Juliet, 42.7k of 53k rows,
# measured side by side: 0.52 with names as they are, 0.53 with numbered names too)
TAIL_S = 3.0  # writing the model, test predictions and records, the process exit (measured 1-5 s, busy machine): the
# most a tail is planned, on the largest data; TAIL_BASE_S + TAIL_PER_ROW_S per row below that (wine, 178 rows: 1.1 s
# from the refit to the process exit; Juliet, 53k rows: 1.7 s)
TAIL_BASE_S, TAIL_PER_ROW_S = 1.5, 3e-5


def tail_seconds(rows: int) -> float:
    """Seconds after the test for a run on `rows` rows: the model and records written, the process ended."""
    return min(TAIL_S, TAIL_BASE_S + TAIL_PER_ROW_S * rows)


def final_fit_need(fit_s: float, n_train: int, n_all: int) -> float:
    """Seconds the final fit on all `n_all` rows needs after a refit on `n_train` rows took `fit_s`:
    the refit step starts it only when the budget has this much left (else it keeps the refit model)."""
    return FINAL_SAFETY * fit_s * n_all / max(n_train, 1) + FINAL_EXTRA_S


def _done(trials: Iterable[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    return [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("fold_seconds")]


def slowest_fold(trial: optuna.trial.FrozenTrial, n_folds: int) -> float:
    folds = trial.user_attrs.get("fold_seconds") or []
    return float(np.max(folds)) if folds else float(trial.user_attrs.get("fit_seconds") or 0) / max(n_folds, 1)


def slowest_fit(trial: optuna.trial.FrozenTrial, n_folds: int) -> float:
    """The slowest fold's fit alone, when the trial recorded it: a fold also forks, predicts its validation rows and
    sends them back, which a refit does not do, and which does not grow like the fit (Juliet, 2 folds of 21k rows:
    complement NB fit 0.09 s of a 0.21 s fold, random forest 1.27 of 2.27 s; LightGBM 23.4 of 24.3 s)."""
    fits = trial.user_attrs.get("fold_fit_seconds") or []
    return float(np.max(fits)) if fits else slowest_fold(trial, n_folds)


def _fit_median(trial: optuna.trial.FrozenTrial) -> float:
    return float(np.median(trial.user_attrs.get("fold_fit_seconds") or trial.user_attrs["fold_seconds"]))


def row_exponent(trials: Iterable[optuna.trial.FrozenTrial], family: str, fold_rows: float) -> float | None:
    """How a family's fit seconds (a fold's, when no fit alone was recorded) grow with its training rows, or None
    when no one configuration of it ran at two row counts far enough apart. The slope (log-log) is fitted within
    each configuration (its params and featurisation: a trial at fidelity 1 with twice the trees is no point on the
    curve of one at 0.25; mixing them read LightGBM's 0.69 as 0.97 on Juliet: its refit planned 25.6 s, took
    21.2 s); the median over configurations."""
    groups: dict[tuple, dict[float, list[float]]] = {}
    for t in _done(trials):
        if t.user_attrs.get("family") == family:
            rows = fold_rows * float(t.user_attrs.get("fidelity", 1.0))
            key = (str(t.user_attrs.get("params")), str(t.user_attrs.get("features")))
            seconds = _fit_median(t)
            groups.setdefault(key, {}).setdefault(round(rows), []).append(seconds)
    slopes = []
    for points in groups.values():
        rows = sorted(r for r in points if r > 0)
        if len(rows) < 2 or rows[-1] / rows[0] < MIN_SPREAD:
            continue
        x = np.log(np.array(rows, dtype=float))
        y = np.log(np.array([max(float(np.median(points[r])), 1e-3) for r in rows]))
        slopes.append(float(np.polyfit(x, y, 1)[0]))
    return float(np.clip(np.median(slopes), MIN_EXPONENT, MAX_EXPONENT)) if slopes else None


class PostStudy:
    """Estimates for the steps after the study, from the trials so far (see the module's docstring)."""

    def __init__(self, prepared, final_fit: bool):
        self.n_folds = len(prepared.folds)
        self.fold_rows = float(np.median([len(tr) for tr, _ in prepared.folds]))
        self.val_rows = float(np.median([len(va) for _, va in prepared.folds]))
        self.n_train, self.n_test = len(prepared.split.train), len(prepared.split.test)
        self.n_classes = int(getattr(prepared, "n_classes", 0) or 1)  # OOF columns per row (1: regression)
        self.final_fit = final_fit and self.n_test > 0
        self.feat_per_row = 0.0  # seconds of featurising per training row (a fold's features incl. counting)
        self.fold_feat: dict[str, float] = {}  # featurisation (trial attr "features") -> seconds per fold built
        self.final_planned = False  # the last estimate planned a final fit
        self.count_s = 0.0  # the n-gram count pass (a refit's vectoriser fit costs about COUNT_SHARE of it)
        self.exponents: dict[str, float] = {}

    def learn(self, trials: list[optuna.trial.FrozenTrial]) -> None:
        families = {t.user_attrs.get("family") for t in _done(trials)}
        self.exponents = {f: b for f in families if (b := row_exponent(trials, f, self.fold_rows)) is not None}
        for t in trials:
            self._features(t)

    def _features(self, t: optuna.trial.FrozenTrial) -> None:
        built = float(t.user_attrs.get("feat_seconds", 0.0) or 0.0)
        if built <= 0:
            return
        counted = float(t.user_attrs.get("count_seconds", 0.0) or 0.0)  # one pass over every row, not per fold
        self.count_s = max(self.count_s, counted)
        key = str(t.user_attrs.get("features") or "")
        self.fold_feat[key] = max(self.fold_feat.get(key, 0.0), (built - counted) / self.n_folds)
        self.feat_per_row = max(self.feat_per_row, self._rate(self.fold_feat[key]))

    def _rate(self, per_fold: float) -> float:
        rows = max(self.n_train, 1)  # a fold featurises ~ all training rows (fits on its part, transforms the rest)
        return (per_fold + COUNT_SHARE * self.count_s) / rows

    def feat_rate(self, members: list[optuna.trial.FrozenTrial]) -> float:
        """Seconds per row of featurising for these members: the sum over their distinct featurisations (an ensemble
        whose members featurise differently fits each featurizer: Juliet 300 s, a LightGBM without name-flow terms
        beside linear members with them, planned with one featurisation, left the final fit 46 of 67 s), each at
        its own cost (an explored, dearer featurisation that none of them uses does not count), else the dearest
        seen."""
        keys = {str(t.user_attrs.get("features") or "") for t in members}
        rates = [self._rate(self.fold_feat[k]) if k in self.fold_feat else self.feat_per_row for k in sorted(keys)]
        return sum(rates) if rates else self.feat_per_row

    def exponent(self, family: str) -> float:
        return self.exponents.get(family, DEFAULT_EXPONENT)

    def fit_seconds(self, trial: optuna.trial.FrozenTrial, rows: float) -> float:
        """One fit of the trial's model on `rows` rows (featurising aside)."""
        seen = self.fold_rows * max(float(trial.user_attrs.get("fidelity", 1.0)), 1e-3)
        scale = (max(rows, 1.0) / max(seen, 1.0)) ** self.exponent(str(trial.user_attrs.get("family")))
        return slowest_fit(trial, self.n_folds) * scale

    def predict_seconds(self, trial: optuna.trial.FrozenTrial, rows: float) -> float:
        """Predicting `rows` rows (the test): the fold's time beyond its fit, per validation row (0 when the trial
        recorded no separate fit: its fold time is planned for the fit, which covers it)."""
        extra = max(slowest_fold(trial, self.n_folds) - slowest_fit(trial, self.n_folds), 0.0)
        return extra * rows / max(self.val_rows, 1.0)

    def refit_seconds(self, members: list[optuna.trial.FrozenTrial], budget_s: float | None = None,
                      final_fit: bool | None = None) -> float:
        """Refit of these members on the training rows and their test, then the final fit when planned: for it
        the time the refit step asks (`final_fit_need`), else it would be skipped. A final fit that would take
        more than FINAL_SHARE of the budget is not planned: the search gets that time, the refit model is kept.
        `final_fit=False` leaves the final fit out (None: as the run's request says)."""
        rate = self.feat_rate(members)
        fit = sum(self.fit_seconds(t, self.n_train) for t in members) + rate * self.n_train
        test = rate * self.n_test + sum(self.predict_seconds(t, self.n_test) for t in members)  # featurised, predicted
        seconds = SAFETY * (fit + test)
        self.final_planned = False
        if self.final_fit if final_fit is None else (final_fit and self.final_fit):
            n_all = self.n_train + self.n_test  # the same growth as the refit (fold -> training rows), no extra margin:
            final = sum(self.fit_seconds(t, n_all) for t in members) + rate * n_all + FINAL_EXTRA_S
            # the final fit runs under a deadline (flows.refit) and gets whatever the refit's SAFETY did not use, so
            # a margin here only ended runs early (Juliet 300 s: planned 42.6 s, took 32.5 s, with linear growth x
            # SAFETY x FINAL_SAFETY, the rule before)
            self.final_planned = budget_s is None or final <= FINAL_SHARE * budget_s
            seconds += final if self.final_planned else 0.0
        return seconds

    def seconds(self, members: list[optuna.trial.FrozenTrial], ensemble: bool, budget_s: float) -> float:
        values = self.n_train * len(members) * max(self.n_classes, 1)
        select = SELECT_BASE_S + SELECT_PER_VALUE_S * values if ensemble else 0.0
        refit = self.refit_seconds(members, budget_s)
        tail = tail_seconds(self.n_train + self.n_test)
        tail = max(1.0, tail - FINAL_EXTRA_S) if self.final_planned else tail  # the final fit's need holds 2 s
        return refit + select + tail  # for writing the model already

    def scaling_probe(self, members: list[optuna.trial.FrozenTrial], left_s: float,
                      probed: set[str]) -> tuple[optuna.trial.FrozenTrial, float] | None:
        """(trial, fidelity) to run again on fewer rows, so its family's exponent is measured; or None."""
        rows = [self.n_train] + ([self.n_train + self.n_test] if self.final_fit else [])
        for t in members:
            family = str(t.user_attrs.get("family"))
            if family in self.exponents or family in probed or float(t.user_attrs.get("fidelity", 1.0)) < 1.0:
                continue
            if self.fold_rows * PROBE_FIDELITY < PROBE_MIN_ROWS:
                continue
            fold = slowest_fold(t, self.n_folds)
            guess = sum(fold * (r / self.fold_rows) ** DEFAULT_EXPONENT for r in rows)
            low = sum(fold * (r / self.fold_rows) ** MIN_EXPONENT for r in rows)
            high = sum(fold * (r / self.fold_rows) ** MAX_EXPONENT for r in rows)
            cost = fold * self.n_folds * PROBE_FIDELITY ** DEFAULT_EXPONENT  # its folds on a quarter of the rows
            gain = SAFETY * max(guess - low, high - guess)  # what the guess may be off by
            if gain > max(PROBE_GAIN * cost, PROBE_WORTH * left_s) and cost <= PROBE_SHARE * left_s:
                return t, PROBE_FIDELITY
        return None

    def record(self) -> dict:
        return {"row_exponents": {f: round(b, 3) for f, b in self.exponents.items()},
                "feat_ms_per_row": round(1000 * self.feat_per_row, 4)}
