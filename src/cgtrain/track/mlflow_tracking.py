"""MLflow tracking of finished runs: the run directory is the record, MLflow the index.

`log_run` reads a finished run directory (request.yaml, dataset.json, study.db,
leaderboard.csv, metrics.json, model files) after training and writes it to an
MLflow store through an explicit `MlflowClient`: one parent run per `cgtrain train`,
one nested run per Optuna trial (params, per-fold metrics, duration), the records
and model files as artifacts, and a new registered model version. No fluent API, no
global active run; training never waits on MLflow, and a failure here leaves the
run directory as it was (`try_log_run` reports it instead of raising).

Store: `--tracking-uri`, else $MLFLOW_TRACKING_URI, else the embedded
`sqlite:///<cwd>/mlruns/mlflow.db` with artifacts in `<cwd>/mlruns/artifacts`
(no server; for any sqlite URI the artifacts go to `artifacts/` beside the database).
"""
from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cgtrain.fsutil import atomic_write_json
from cgtrain.track.environment import ENVIRONMENT_FILE, write_environment
from cgtrain import rundir
from cgtrain.errors import TrackingError  # noqa: F401 (re-exported)
from cgtrain.track.store import artifact_root, quiet_mlflow, resolve_tracking_uri, tracking_client
from cgtrain.artifacts.files import sha256_file
from cgtrain.export import onnx as onnx_export
from cgtrain.registry import model_registry
from cgtrain.registry import promotion
from cgtrain.registry.model_registry import version_tags
from cgtrain.serve.predictor import load_predictor

TRACKING_FILE = rundir.TRACKING  # in the run dir: where it was logged (makes log_run idempotent)
RUN_FILES = (rundir.REQUEST, rundir.DATASET, rundir.LEADERBOARD, rundir.METRICS, rundir.RUN, rundir.ENVIRONMENT,
             rundir.ARTIFACTS, rundir.TEST_PREDICTIONS, rundir.QUARANTINE)
MODEL_FILES = (rundir.MODEL_FILE, rundir.MODEL_JSON, rundir.DECISION, rundir.ONNX_FILE, "weights.safetensors", "vocab.json")
SAMPLE_ROWS = 64
_TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED", "RUNNING": "FAILED",
                 "WAITING": "FAILED"}




@dataclass(frozen=True)
class TrackedRun:
    tracking_uri: str
    experiment_id: str
    run_id: str
    trial_run_ids: tuple[str, ...]
    model_name: str
    model_version: str | None
    alias: str | None  # champion | challenger
    problems: tuple[str, ...] = field(default=())  # soft failures: ONNX unsupported, no held-out rows...
    already_logged: bool = False


def experiment_id(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    return client.create_experiment(name, artifact_location=artifact_root(uri), tags={"cgtrain.request_name": name})


# --- logging a finished run -----------------------------------------------------------------
def log_run(run_dir: Path, tracking_uri: str | None, model_name: str, *, request_path: Path | None = None,
            register: bool = True) -> TrackedRun:
    """Log a finished run directory (parent run + one nested run per trial + artifacts) and register
    its model as a new version of `model_name`. Logging the same run dir twice to the same store
    returns the first record. Raises TrackingError; the run directory keeps its results either way."""
    run_dir = Path(run_dir)
    uri = resolve_tracking_uri(tracking_uri)
    if not (run_dir / rundir.MODEL_JSON).is_file():
        raise TrackingError(f"{run_dir} holds no finished run (no model.json); nothing to log")
    try:
        if not (run_dir / ENVIRONMENT_FILE).is_file():  # first: kept even when the store is unreachable
            write_environment(run_dir, request_path)
        client = tracking_client(uri)
        previous = _already_logged(client, run_dir, uri)
        if previous is not None:
            return previous
        problems = prepare_records(run_dir)
        with quiet_mlflow():
            return _log(client, run_dir, uri, model_name, problems, register)
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any store/IO problem: report, never lose the run
        raise TrackingError(f"logging {run_dir} to {uri} failed: {type(exc).__name__}: {exc}") from exc


def prepare_records(run_dir: Path) -> list[str]:
    """test_predictions.jsonl and the portable formats + artifacts.json in the run dir, made once per
    model (artifacts.json keeps the model's SHA-256); returns the problems met, none of which stops
    logging."""

    sha = json.loads((run_dir / rundir.MODEL_JSON).read_text(encoding="utf-8"))["sha256"]
    record = _json(run_dir / onnx_export.ARTIFACTS_FILE)
    if record.get("model_sha256") != sha:  # none yet, or made for a model since replaced (a resumed refit)
        if record.get("predictions", {}).get("source") == "rebuilt":
            (run_dir / rundir.TEST_PREDICTIONS).unlink(missing_ok=True)
        record = _make_derived_records(run_dir, sha)
    problems = []
    if record.get("predictions", {}).get("problem"):
        problems.append(f"no held-out predictions ({record['predictions']['problem']}); promoting this version "
                        f"will need --force")
    onnx = record.get("formats", {}).get("onnx", {})
    if onnx.get("status") != "ok":
        problems.append(f"onnx: {onnx.get('status', 'absent')} ({onnx.get('reason') or onnx.get('parity')})")
    return problems


def _make_derived_records(run_dir: Path, sha: str) -> dict[str, Any]:
    pipeline = load_predictor(run_dir=run_dir).model  # checksum-verified skops load; a bad model stops here
    predictions: dict[str, Any] = {"source": "pipeline" if (run_dir / rundir.TEST_PREDICTIONS).is_file()
                                   else "rebuilt"}
    sample: Any = []  # held-out code, or a table's rows (a DataFrame)
    try:
        path, held = promotion.ensure_test_predictions(run_dir, pipeline)
        if held is not None:
            sample = held.codes[:SAMPLE_ROWS]
        else:
            ids = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()[:SAMPLE_ROWS]]
            sample = promotion.held_out_inputs(run_dir, ids, SAMPLE_ROWS)
    except Exception as exc:  # noqa: BLE001 - the gate will refuse a version without predictions
        predictions = {"source": None, "problem": f"{type(exc).__name__}: {exc}"[:1000]}
    try:
        return onnx_export.export_run_artifacts(run_dir, sample, pipeline,
                                                extra={"model_sha256": sha, "predictions": predictions})
    except Exception as exc:  # noqa: BLE001 - portable formats are a bonus; the skops model is logged anyway
        return {"predictions": predictions, "formats": {"onnx": {"status": "failed",
                                                                 "reason": f"{type(exc).__name__}: {exc}"}}}


_json = rundir.read_json


def _log(client, run_dir: Path, uri: str, model_name: str, problems: list[str], register: bool) -> TrackedRun:
    records = _read_records(run_dir)
    version_tags = _registry_tags(run_dir, records) if register else {}  # checks the model file first
    exp = experiment_id(client, model_name, uri)
    trials = _study_trials(run_dir)
    started = min((t.datetime_start for t in trials if t.datetime_start), default=None)
    parent = client.create_run(exp, run_name=run_dir.name, tags=_parent_tags(run_dir, records),
                               start_time=_ms(started) if started else None)
    run_id = parent.info.run_id
    try:
        trial_ids = [log_trial(client, exp, run_id, t, records["metric"]) for t in trials]
        log_parent(client, run_id, records)
        log_files(client, run_id, run_dir)
        version = alias = None
        if register:
            mv = model_registry.register(client, model_name, run_id, f"{parent.info.artifact_uri}/model",
                                         version_tags)
            version, alias = str(mv.version), (mv.aliases or [None])[0]
            client.set_tag(run_id, "cgtrain.model_version", f"{model_name}/{version}")
        if problems:
            client.set_tag(run_id, "cgtrain.problems", "\n".join(problems)[:5000])
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    finished = run_dir / rundir.RUN  # written when training ended
    client.set_terminated(run_id, "FINISHED", end_time=int(finished.stat().st_mtime * 1000) if finished.is_file()
                          else None)
    tracked = TrackedRun(uri, exp, run_id, tuple(trial_ids), model_name, version, alias, tuple(problems))
    atomic_write_json(run_dir / TRACKING_FILE, {"tracking_uri": uri, "experiment_id": exp, "run_id": run_id,
                                                 "model_sha256": records["manifest"].get("sha256"),
                                                 "trial_run_ids": trial_ids, "model_name": model_name,
                                                 "model_version": version, "alias": alias, "problems": problems})
    return tracked


def _already_logged(client, run_dir: Path, uri: str) -> TrackedRun | None:
    path = run_dir / TRACKING_FILE
    if not path.is_file():
        return None
    rec = _json(path)
    sha = _json(run_dir / rundir.MODEL_JSON).get("sha256")
    if rec.get("tracking_uri") != uri or rec.get("model_sha256") != sha:
        return None
    try:
        if client.get_run(rec["run_id"]).info.status != "FINISHED":
            return None
    except Exception:  # noqa: BLE001 - not in this store (any more): log again
        return None
    return TrackedRun(uri, rec["experiment_id"], rec["run_id"], tuple(rec["trial_run_ids"]), rec["model_name"],
                      rec["model_version"], rec["alias"], tuple(rec.get("problems", ())), already_logged=True)


def _read_records(run_dir: Path) -> dict[str, Any]:
    def js(name: str) -> dict:
        return _json(run_dir / name)

    request = yaml.safe_load((run_dir / rundir.REQUEST).read_text(encoding="utf-8"))
    metrics = js(rundir.METRICS)
    return {"request": request, "dataset": js(rundir.DATASET), "metrics": metrics, "manifest": js(rundir.MODEL_JSON),
            "run": js(rundir.RUN), "environment": js(rundir.ENVIRONMENT), "artifacts": js(rundir.ARTIFACTS),
            "metric": metrics.get("cv", {}).get("metric") or request.get("validation", {}).get("metric", "f1")}


def _parent_tags(run_dir: Path, r: dict[str, Any]) -> dict[str, str]:
    git = (r["environment"].get("git") or {})
    tags = {"cgtrain.run_dir": str(run_dir.resolve()), "cgtrain.dataset_fingerprint": r["dataset"].get("fingerprint"),
            "cgtrain.family": r["manifest"].get("family"), "cgtrain.model_sha256": r["manifest"].get("sha256"),
            "mlflow.source.name": "cgtrain train", "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": git.get("commit")}
    return {k: str(v) for k, v in tags.items() if v}


def log_parent(client, run_id: str, r: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param

    now = _ms(None)
    best = {f"best.{k}": v for k, v in _flatten(r["manifest"].get("params", {})).items()}
    params = {**_flatten(r["request"]), **best, "best.family": r["manifest"].get("family"),
              "best.trial": r["manifest"].get("trial")}
    m, cv = r["metrics"], r["metrics"].get("cv", {})
    values = {**{f"test_{k}": v for k, v in m.get("test", {}).items()},
              **{f"baseline_majority_{k}": v for k, v in m.get("baseline_majority", {}).items()},
              f"cv_{r['metric']}_mean": cv.get("mean"), f"cv_{r['metric']}_std": cv.get("std"),
              "n_train": m.get("n_train"), "n_test": m.get("n_test"), "rows_used": r["dataset"].get("rows_used"),
              "rows_bad": r["dataset"].get("rows_bad"), "train_seconds": r["run"].get("seconds")}
    for fmt, info in r["artifacts"].get("formats", {}).items():
        values[f"{fmt}_bytes"] = info.get("bytes")
        for scope in ("latency_ms", "model_step_latency_ms"):
            for size, stats in (info.get(scope) or {}).items():
                values[f"{fmt}_{scope.replace('_ms', '')}_{size}_p50_ms"] = stats["p50"]
                values[f"{fmt}_{scope.replace('_ms', '')}_{size}_p95_ms"] = stats["p95"]
        if "parity" in info and "max_abs_diff" in info["parity"]:
            values[f"{fmt}_parity_max_abs_diff"] = info["parity"]["max_abs_diff"]
    metrics = [Metric(k, float(v), now, 0) for k, v in values.items() if _number(v)]
    for k, fold_value in enumerate(cv.get("folds", [])):
        metrics.append(Metric(f"cv_{r['metric']}_fold", float(fold_value), now, k))
    params_list = [Param(k, _param(v)) for k, v in params.items() if v is not None]
    _log_batch(client, run_id, metrics, params_list)


def _study_trials(run_dir: Path) -> list:
    """The finished study's trials, less those re-queued after a crash (their retries are kept)."""
    return rundir.RunDir(run_dir).trials()


def log_trial(client, exp: str, parent_id: str, t, metric: str) -> str:
    """One Optuna trial as a nested MLflow run: params, per-fold metric, reported values, duration."""
    from mlflow.entities import Param

    start = _ms(t.datetime_start) if t.datetime_start else None
    end = _ms(t.datetime_complete) if t.datetime_complete else start
    tags = {"mlflow.parentRunId": parent_id, "cgtrain.trial": str(t.number), "cgtrain.state": t.state.name,
            "cgtrain.family": t.user_attrs.get("family", "")}
    if t.user_attrs.get("error"):
        tags["cgtrain.error"] = str(t.user_attrs["error"])[:5000]
    run_id = client.create_run(exp, start_time=start, tags=tags, run_name=f"trial-{t.number}").info.run_id
    params = {"family": t.user_attrs.get("family"), "trial": t.number, **json.loads(t.user_attrs.get("params", "{}"))}
    _log_batch(client, run_id, _trial_metrics(t, metric, end or _ms(None)),
               [Param(k, _param(v)) for k, v in params.items()])
    client.set_terminated(run_id, _TRIAL_STATUS.get(t.state.name, "FAILED"), end_time=end)
    return run_id


def _trial_metrics(t, metric: str, stamp: int) -> list:
    from mlflow.entities import Metric

    metrics = [Metric(f"fold_{metric}", float(v), stamp, k) for k, v in enumerate(t.user_attrs.get("fold_scores", []))]
    metrics += [Metric("intermediate_value", float(v), stamp, int(step))  # per fold; per epoch for torch nets
                for step, v in sorted(t.intermediate_values.items()) if _number(v)]
    for name, value in ((f"cv_{metric}_mean", t.value), (f"cv_{metric}_std", t.user_attrs.get("cv_std")),
                        ("fit_seconds", t.user_attrs.get("fit_seconds")),
                        ("duration_seconds", t.duration.total_seconds() if t.duration else None)):
        if _number(value):
            metrics.append(Metric(name, float(value), stamp, 0))
    return metrics


def log_files(client, run_id: str, run_dir: Path) -> None:
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    for name in MODEL_FILES:
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name), artifact_path="model")
    with tempfile.TemporaryDirectory() as tmp:  # the model folder is an MLflow Model (pyfunc, no pickle)
        from cgtrain.track.pyfunc import write_mlmodel

        client.log_artifact(run_id, str(write_mlmodel(Path(tmp))), artifact_path="model")


def _registry_tags(run_dir: Path, r: dict[str, Any]) -> dict[str, str]:
    manifest = rundir.ModelManifest.from_dict(r["manifest"])
    actual = sha256_file(run_dir / manifest.file)
    if actual != manifest.sha256:
        raise TrackingError(f"{run_dir / manifest.file} does not match the checksum in model.json; "
                            f"it changed after training, refusing to register it")
    predictions = run_dir / rundir.TEST_PREDICTIONS
    tags = version_tags(manifest, r["request"], r["metrics"],
                        sha256_file(predictions) if predictions.is_file() else None, run_dir)
    onnx = r["artifacts"].get("formats", {}).get("onnx", {})
    tags["cgtrain.onnx"] = onnx.get("status", "absent") + (f": {onnx['reason']}"[:4000] if onnx.get("reason") else "")
    if onnx.get("sha256"):
        tags["cgtrain.onnx_sha256"] = onnx["sha256"]
    return tags


# --- small helpers -----------------------------------------------------------------------
def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node} if prefix else {}


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:6000]


def _ms(moment) -> int:
    """Milliseconds since the epoch (MLflow's timestamps); None: now."""
    return int((moment.timestamp() if moment is not None else time.time()) * 1000)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _log_batch(client, run_id: str, metrics: list, params: list) -> None:
    for i in range(0, max(len(metrics), len(params), 1), 100):  # MLflow caps a batch at 100 params
        client.log_batch(run_id, metrics=metrics[i:i + 100], params=params[i:i + 100])
