"""The promotion gate: a challenger replaces the champion only on evidence from the same held-out rows.

Both registered versions carry `test_predictions.jsonl` (id, y_true, proba per held-out
test row) among their run's artifacts. The gate pairs the two files by row id and
computes, for the challenger's request metric:

* McNemar's test on the paired correct/incorrect labels (as statsmodels `mcnemar` computes it, with scipy; the
  exact binomial version when fewer than 25 rows are discordant, else chi-square with
  continuity correction);
* a paired bootstrap CI of the metric difference (challenger - champion, in the
  metric's better direction): a seeded numpy loop draws the same resampled row indices
  for both models (percentile interval, 2,000 resamples, seed 0 by default); metrics
  computed from a confusion matrix are evaluated for all resamples at once.

Rule: promote when the challenger's metric is higher AND (McNemar p < alpha OR the CI's
lower bound > 0). `force=True` with a reason overrides a refusal; the reason and the
statistics are kept as tags on the model version either way.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cgtrain.errors import PromotionRefused, NotComparable  # noqa: F401 (re-exported)
from cgtrain.evaluate.metrics import METRICS, score
from cgtrain.evaluate.significance import bootstrap_difference, mcnemar_test
from cgtrain.fsutil import atomic_write_text
from cgtrain.artifacts.files import sha256_file
from cgtrain import rundir
from cgtrain.core.prepared import prepare
from cgtrain.core.runs import load_run_request
from cgtrain.data.loading import load_dataset
from cgtrain.registry import model_registry as reg
from cgtrain.registry.model_registry import TAG
from cgtrain.request import parse_request
from cgtrain.track.store import quiet_mlflow

PREDICTIONS_FILE = rundir.TEST_PREDICTIONS
ALPHA = 0.05
N_RESAMPLES = 2000
CONFIDENCE = 0.95






# --- test-set predictions -------------------------------------------------------------
@dataclass(frozen=True)
class Predictions:
    ids: np.ndarray  # str, one per held-out row
    y_true: np.ndarray  # class index
    proba: np.ndarray  # (n, k)


def write_predictions(path: str | Path, ids: Sequence, y_true: Sequence[int], proba: np.ndarray) -> Path:
    """One JSON line per held-out row: {"id", "y_true", "proba": [per class]}."""
    lines = [json.dumps({"id": str(i), "y_true": int(y), "proba": [float(v) for v in p]})
             for i, y, p in zip(ids, y_true, np.asarray(proba, dtype=np.float64))]
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_predictions(path: str | Path) -> Predictions:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not rows:
        raise NotComparable(f"{path} holds no predictions")
    return Predictions(np.asarray([r["id"] for r in rows], dtype=object),
                       np.asarray([r["y_true"] for r in rows], dtype=int),
                       np.asarray([r["proba"] for r in rows], dtype=np.float64))


def pair(champion: Predictions, challenger: Predictions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y_true, champion proba, challenger proba) over the same rows, in the champion's order."""
    where = {rid: k for k, rid in enumerate(challenger.ids)}
    missing = [rid for rid in champion.ids if rid not in where]
    if missing or len(where) != len(champion.ids):
        raise NotComparable(
            f"the versions were tested on different rows ({len(champion.ids)} vs {len(challenger.ids)} test rows, "
            f"{len(champion.ids) - len(missing)} shared); train both on the same dataset, seed and "
            f"test_fraction, or use --force with a --reason")
    order = np.asarray([where[rid] for rid in champion.ids])
    if not np.array_equal(champion.y_true, challenger.y_true[order]):
        raise NotComparable("the versions disagree on the true labels of the same test rows; "
                            "they were trained on different versions of the dataset")
    if champion.proba.shape[1] != challenger.proba.shape[1]:
        raise NotComparable("the versions predict different numbers of classes")
    return champion.y_true, champion.proba, challenger.proba[order]


# --- statistics -------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    metric: str
    n: int
    champion: float
    challenger: float
    improvement: float  # challenger - champion, sign flipped for lower-is-better metrics
    ci_low: float
    ci_high: float
    confidence: float
    n_resamples: int
    seed: int
    mcnemar_statistic: float
    mcnemar_p: float
    mcnemar_exact: bool
    only_champion_right: int
    only_challenger_right: int

    def describe(self) -> str:
        return (f"{self.metric}: challenger {self.challenger:.4f} vs champion {self.champion:.4f} "
                f"(improvement {self.improvement:+.4f}, {self.confidence:.0%} paired bootstrap CI "
                f"[{self.ci_low:+.4f}, {self.ci_high:+.4f}], {self.n_resamples} resamples); McNemar "
                f"{'exact' if self.mcnemar_exact else 'chi2'} p={self.mcnemar_p:.4g} "
                f"(only challenger right {self.only_challenger_right}, only champion right "
                f"{self.only_champion_right}, {self.n} rows)")

    def as_tags(self, prefix: str = "cgtrain.gate.") -> dict[str, str]:
        return {prefix + k: str(v) for k, v in asdict(self).items()}


def compare(champion: Predictions, challenger: Predictions, metric: str, *, n_resamples: int = N_RESAMPLES,
            confidence: float = CONFIDENCE, seed: int = 0) -> Evidence:
    y, pa, pb = pair(champion, challenger)
    sign = 1.0 if METRICS.get(metric).greater_is_better else -1.0
    a, b = score(metric, y, pa), score(metric, y, pb)
    low, high = bootstrap_difference(metric, y, pa, pb, sign, n_resamples, confidence, seed)
    stat, p, exact, only_a, only_b = mcnemar_test(y, pa, pb)
    return Evidence(metric, len(y), float(a), float(b), float(sign * (b - a)), float(low), float(high), confidence,
                    n_resamples, seed, stat, p, exact, only_a, only_b)


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    evidence: Evidence | None = None


def decide(evidence: Evidence, alpha: float = ALPHA) -> Decision:
    better = evidence.improvement > 0
    significant = evidence.mcnemar_p < alpha or evidence.ci_low > 0
    if better and significant:
        return Decision(True, f"challenger is better with evidence: {evidence.describe()}", evidence)
    why = ("its metric is not higher" if not better else
           f"the improvement is not significant (McNemar p >= {alpha:g} and the CI includes 0)")
    return Decision(False, f"challenger not promoted: {why}; {evidence.describe()}", evidence)


# --- predictions of a run directory ---------------------------------------------------------
@dataclass(frozen=True)
class HeldOut:
    ids: list[str]
    codes: Any  # the model's inputs: code strings, or a table dataset's rows (a DataFrame)
    y: np.ndarray


def held_out_rows(run_dir: Path) -> HeldOut:
    """The run's held-out test rows, rebuilt with the pipeline's own (deterministic) preparation."""

    run_dir = Path(run_dir)
    request = parse_request(load_run_request(run_dir), str(run_dir / rundir.REQUEST))
    with tempfile.TemporaryDirectory() as tmp:  # prepare writes a quarantine file; keep the run's own
        prepared = prepare(request, Path(tmp), say=lambda _msg: None)
    _check_fingerprint(run_dir, prepared.dataset.fingerprint)
    frame, table = prepared.dataset.frame.iloc[prepared.split.test], prepared.dataset.table
    inputs = table.iloc[prepared.split.test].reset_index(drop=True) if table is not None else frame["code"].tolist()
    return HeldOut(frame["id"].astype(str).tolist(), inputs, prepared.y[prepared.split.test])


def _run_dataset(run_dir: Path):
    """The run's dataset as its request reads it (no re-splitting), checked against the run's fingerprint."""
    request = parse_request(load_run_request(Path(run_dir)), str(Path(run_dir) / rundir.REQUEST))
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(request.dataset, request.task, Path(tmp) / rundir.QUARANTINE, seed=request.seed)
    _check_fingerprint(Path(run_dir), ds.fingerprint)
    return ds


def held_out_codes(run_dir: Path, ids: Sequence[str], limit: int) -> list[str]:
    """Code of the first `limit` of the given held-out rows (reads the dataset, no re-splitting)."""
    ds = _run_dataset(run_dir)
    code = dict(zip(ds.frame["id"].astype(str), ds.frame["code"]))
    return [code[i] for i in list(ids)[:limit] if i in code]


def held_out_inputs(run_dir: Path, ids: Sequence[str], limit: int):
    """The saved model's inputs for the first `limit` of the given held-out rows: their code, or for a table
    dataset their table columns (a DataFrame, as `cgtrain predict` feeds the model)."""
    ds = _run_dataset(run_dir)
    position = {i: k for k, i in enumerate(ds.frame["id"].astype(str))}
    rows = [position[i] for i in list(ids)[:limit] if i in position]
    if ds.table is not None:
        return ds.table.iloc[rows].reset_index(drop=True)
    return [ds.frame["code"].iloc[k] for k in rows]


def ensure_test_predictions(run_dir: Path, model: Any = None) -> tuple[Path, HeldOut | None]:
    """`test_predictions.jsonl` in the run dir: kept when the pipeline wrote it, else made by
    re-scoring the rebuilt held-out rows with the saved model. Returns the path and the rows
    when they had to be rebuilt."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if path.is_file():
        return path, None
    held = held_out_rows(Path(run_dir))
    if model is None:
        from cgtrain.serve.predictor import load_predictor

        model = load_predictor(run_dir=Path(run_dir)).model
    proba = np.asarray(model.predict_proba(held.codes), dtype=np.float64) if len(held.codes) else np.zeros((0, 2))
    return write_predictions(path, held.ids, held.y, proba), held


def _check_fingerprint(run_dir: Path, fingerprint: str) -> None:
    recorded = json.loads((run_dir / rundir.DATASET).read_text(encoding="utf-8")).get("fingerprint")
    if recorded and recorded != fingerprint:
        raise NotComparable(f"the dataset changed since {run_dir} was trained (fingerprint {fingerprint} "
                            f"vs {recorded}); its held-out rows cannot be rebuilt")


# --- promotion on the registry ------------------------------------------------------------
@dataclass(frozen=True)
class PromotionResult:
    name: str
    version: str
    previous_champion: str | None
    decision: Decision
    forced: bool


def version_predictions(client, version) -> Predictions:
    """The held-out predictions logged with a version's run, checked against the registered checksum."""

    with tempfile.TemporaryDirectory() as tmp:
        try:
            with quiet_mlflow():
                local = Path(client.download_artifacts(version.run_id, PREDICTIONS_FILE, tmp))
        except Exception as exc:  # noqa: BLE001 - any store error means: no evidence for this version
            raise NotComparable(f"{version.name}/{version.version} has no logged {PREDICTIONS_FILE} ({exc})") from None
        expected = version.tags.get(TAG + "predictions_sha256")
        if expected and sha256_file(local) != expected:
            raise NotComparable(f"{version.name}/{version.version}: {PREDICTIONS_FILE} does not match the checksum "
                                f"recorded at registration")
        return read_predictions(local)


def promote(client, name: str, version: str | int, *, force: bool = False, reason: str | None = None,
            alpha: float = ALPHA, n_resamples: int = N_RESAMPLES, seed: int = 0) -> PromotionResult:
    """Make `version` the champion of `name` if the gate allows it (or `force` with a `reason`).

    Raises PromotionRefused (statistics in the message, also kept as tags on the version)."""

    if force and not (reason and reason.strip()):
        raise reg.RegistryError("--force needs a --reason saying why the gate is overridden")
    target = reg.get_version(client, name, version)
    champion = reg.alias_version(client, name, reg.CHAMPION)
    number, previous = str(target.version), (str(champion.version) if champion is not None else None)
    if previous == number:
        raise reg.RegistryError(f"{name}/{number} is already the champion")
    decision = gate(client, champion, target, alpha, n_resamples, seed)
    tags = {reg.TAG + "gate.decision": "promote" if decision.promote else "refuse",
            reg.TAG + "gate.reason": decision.reason[:5000], reg.TAG + "gate.champion_version": previous or "",
            **(decision.evidence.as_tags(reg.TAG + "gate.") if decision.evidence else {})}
    if not decision.promote and not force:
        _set_tags(client, name, number, tags)
        raise PromotionRefused(f"{name}/{number}: {decision.reason}; "
                               f"override with --force --reason \"...\" if you must")
    if force:
        tags.update({reg.TAG + "promotion.forced": "true", reg.TAG + "promotion.reason": reason.strip()[:5000]})
    _set_tags(client, name, number, {**tags, reg.TAG + "promotion.previous_champion": previous or ""})
    client.set_registered_model_alias(name, reg.CHAMPION, number)
    if reg.CHALLENGER in target.aliases:
        client.delete_registered_model_alias(name, reg.CHALLENGER)
    if previous is not None:
        client.set_model_version_tag(name, previous, reg.TAG + "promotion.superseded_by", number)
    stale = {"superseded_by"} | (set() if force else {"forced", "reason"})  # left from an earlier promotion
    for key in sorted(reg.TAG + "promotion." + k for k in stale):
        if key in target.tags:
            client.delete_model_version_tag(name, number, key)
    return PromotionResult(name, number, previous, decision, force)


def gate(client, champion, challenger, alpha: float = ALPHA, n_resamples: int = N_RESAMPLES,
         seed: int = 0) -> Decision:
    """The decision for `challenger` against `champion` (None: no champion yet, nothing to beat)."""

    if champion is None:
        return Decision(True, "no champion yet")
    metric = challenger.tags.get(TAG + "metric") or "f1"
    try:
        evidence = compare(version_predictions(client, champion), version_predictions(client, challenger), metric,
                           n_resamples=n_resamples, seed=seed)
    except NotComparable as exc:
        return Decision(False, f"no paired evidence against champion {champion.version}: {exc}")
    return decide(evidence, alpha)


def _set_tags(client, name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
