"""What a study adds around each CV fold: out-of-fold predictions, fidelity, time limits, costs.

`TrialHooks` is handed to the pipeline's evaluator, which calls it around every fold:

- out-of-fold (OOF) class probabilities of every full-fidelity trial are stored in
  `oof/trial_NNNNN.npz` (numpy, no pickle) for ensembles of the top trials;
- an AutoML trial may run at a lower fidelity: a stratified sample of each fold's
  training rows (its `fidelity` user attribute, set when the trial was queued);
- a per-trial time limit: a fold is not started when the folds so far say it would
  end past the limit, and neural trials stop between epochs (the trial is pruned,
  with user attribute `timed_out`);
- inference latency (ms per 1000 rows) and model size (KiB) of the first fold's model,
  for multi-objective studies.
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna

from cgtrain.fsutil import atomic_write_bytes
from cgtrain import rundir

OOF_DIR = rundir.OOF_DIR


ENSEMBLE = "ensemble"  # oof/ensemble.npz: the kept ensemble's cross-fitted out-of-fold predictions


def oof_path(run_dir: Path, trial_number: int | str) -> Path:
    name = ENSEMBLE if trial_number == ENSEMBLE else f"trial_{int(trial_number):05d}"
    return Path(run_dir) / OOF_DIR / f"{name}.npz"


def save_oof(run_dir: Path, trial_number: int | str, folds: list[np.ndarray]) -> Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{f"fold{k}": np.asarray(p, dtype=np.float32) for k, p in enumerate(folds)})
    return atomic_write_bytes(oof_path(run_dir, trial_number), buf.getvalue())


def load_oof(run_dir: Path, trial_number: int | str) -> list[np.ndarray] | None:
    """The trial's (or, for "ensemble", the kept ensemble's) per-fold validation predictions, or None."""
    path = oof_path(run_dir, trial_number)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return [data[f"fold{k}"].astype(np.float64) for k in range(len(data.files))]


def subsample(n_rows: int, y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices: `fraction` of each class (at least 2 rows of each), seeded."""
    rng = np.random.default_rng(seed)
    if y.dtype.kind == "f":  # regression targets: a plain random sample
        return np.sort(rng.choice(n_rows, size=min(n_rows, max(2, int(np.ceil(fraction * n_rows)))), replace=False))
    keep = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        take = min(len(rows), max(2, int(np.ceil(fraction * len(rows)))))
        keep.append(rng.choice(rows, size=take, replace=False))
    return np.sort(np.concatenate(keep))


def take_rows(X: Any, idx: np.ndarray) -> Any:
    """Rows of a sparse/dense matrix, a DataFrame, or a list of documents."""
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if isinstance(X, list):
        return [X[i] for i in idx]
    return X[idx]


class TrialTimeout(optuna.TrialPruned):
    """The trial would run past its time limit; it is pruned, not failed."""


class TrialHooks:
    """Called by the evaluator around each fold of a trial (one instance per study)."""

    def __init__(self, run_dir: Path | None = None, seed: int = 0, store_oof: bool = True,
                 measure_costs: bool = False, limit_s: Callable[[optuna.Trial], float | None] | None = None):
        self.run_dir, self.seed, self.store_oof, self.measure_costs = run_dir, seed, store_oof, measure_costs
        self.limit_s = limit_s or (lambda trial: None)
        self._state: dict[int, dict[str, Any]] = {}

    def _of(self, trial) -> dict[str, Any]:
        return self._state.setdefault(trial.number,
                                      {"start": time.perf_counter(), "oof": [], "fold_s": [], "fit_s": []})

    @staticmethod
    def fidelity(trial) -> float:
        return float(trial.user_attrs.get("fidelity", 1.0))

    def start(self, trial) -> None:
        """The trial's clock starts here (before its first fold's features are built)."""
        self._of(trial)

    def time_left(self, trial) -> float | None:
        limit = self.limit_s(trial)
        return None if limit is None else limit - (time.perf_counter() - self._of(trial)["start"])

    def check_time(self, trial, k: int, need_s: float) -> None:
        """Stop the trial (pruned, `timed_out`) when `need_s` more seconds would run past its limit."""
        left = self.time_left(trial)
        if left is not None and need_s > left:
            spent = round(time.perf_counter() - self._of(trial)["start"], 2)
            trial.set_user_attr("timed_out", spent)
            raise TrialTimeout(f"trial time limit: ~{need_s:.1f}s needed with {left:.1f}s left after {k} fold(s)")

    def run_fold(self, trial, k: int, fit_predict: Callable[[], tuple], interruptible: bool) -> tuple:
        """(model, proba, fit seconds) of one fold, from `fit_predict` giving the same. Under a time limit a fit that
        cannot stop itself (scikit-learn solvers, LightGBM) runs in a child process that is ended at the limit; it
        returns (None, proba, fit seconds)."""
        left = self.time_left(trial)
        if left is None:
            return fit_predict()
        from cgtrain.tune.deadline import DeadlineExceeded, call_within

        try:  # the training loop checks the limit at every step; a forked child sends back only the predictions
            return call_within(fit_predict, left, True) if interruptible else \
                (None, *call_within(lambda: fit_predict()[1:], left, False))
        except DeadlineExceeded:
            spent = round(time.perf_counter() - self._of(trial)["start"], 2)
            trial.set_user_attr("timed_out", spent)
            trial.set_user_attr("fit_stopped", True)
            what = f"training in fold {k}" if interruptible else f"a fit of fold {k}"
            raise TrialTimeout(f"trial time limit: {what} was stopped after {spent:.1f}s") from None

    def before_fold(self, trial, k: int, X_tr, y_tr):
        """Check the time limit, then give the rows this trial trains on (all, or a sample)."""
        state = self._of(trial)
        limit = self.limit_s(trial)
        if limit is not None:
            spent = time.perf_counter() - state["start"]
            per_fold = max(state["fold_s"], default=0.0)  # the slowest fold so far: fold times vary
            if spent + per_fold > limit:
                trial.set_user_attr("timed_out", round(spent, 2))
                raise TrialTimeout(f"trial time limit {limit:.1f}s: {spent:.1f}s spent after {k} fold(s)")
        state["fold_start"] = time.perf_counter()
        fraction = self.fidelity(trial)
        if fraction >= 1.0:
            return X_tr, y_tr
        idx = subsample(len(y_tr), np.asarray(y_tr), fraction, self.seed + k)
        return take_rows(X_tr, idx), np.asarray(y_tr)[idx]

    def on_epoch(self, trial, report: Callable[[int, float], None] | None):
        """Wrap the per-epoch reporter: a neural trial also stops between epochs at its time limit."""
        def on_epoch(epoch: int, value: float) -> None:
            limit = self.limit_s(trial)
            spent = time.perf_counter() - self._of(trial)["start"]
            if limit is not None and spent > limit:
                trial.set_user_attr("timed_out", round(spent, 2))
                raise TrialTimeout(f"trial time limit {limit:.1f}s reached after epoch {epoch}")
            if report is not None:
                report(epoch, value)

        return on_epoch

    def after_fold(self, trial, k: int, model, X_va, proba: np.ndarray, fit_s: float | None = None) -> None:
        state = self._of(trial)
        state["fold_s"].append(time.perf_counter() - state.get("fold_start", state["start"]))
        if fit_s is not None:
            state["fit_s"].append(fit_s)
        state["oof"].append(np.asarray(proba))
        if self.measure_costs and k == 0 and model is not None:
            trial.set_user_attr("latency_ms", latency_ms(model, X_va))
            trial.set_user_attr("model_kb", model_kb(model))

    def trial_done(self, trial) -> None:
        state = self._state.pop(trial.number, None)
        if state is None:
            return
        trial.set_user_attr("fold_seconds", [round(s, 3) for s in state["fold_s"]])
        if len(state["fit_s"]) == len(state["fold_s"]):  # the fits alone (no fork, no validation predict)
            trial.set_user_attr("fold_fit_seconds", [round(s, 3) for s in state["fit_s"]])
        if self.store_oof and self.run_dir is not None and self.fidelity(trial) >= 1.0:
            save_oof(self.run_dir, trial.number, state["oof"])

    def forget(self, trial) -> None:
        """A trial that ended early (pruned, failed): drop what was collected for it."""
        self._state.pop(trial.number, None)


def latency_ms(model, X, repeats: int = 3) -> float:
    """Median time of predict_proba on X, in milliseconds per 1000 rows."""
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_proba(X)
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1000 * 1000 / max(n, 1), 4)


def model_kb(model) -> float:
    """The size of the model as a skops archive, in KiB."""
    import skops.io as sio

    return round(len(sio.dumps(model)) / 1024, 2)
