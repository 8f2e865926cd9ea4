"""Registered models on the MLflow Model Registry (same store as tracking).

A registered model is named after the request's `name`; each `log_run` adds a
version whose source is the run's `model/` artifact folder. Aliases:
`champion` (what `NAME` and `NAME@champion` load) and `challenger` (the newest
registration while a champion exists; the first version ever becomes champion).

Tags on each version (prefix `cgtrain.`) keep what loading and the promotion gate
need without trusting the artifact folder: the model file's SHA-256 taken at
registration, the classes, the metric and the predictions' checksum.
"""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cgtrain import rundir
from cgtrain.errors import RegistryError  # noqa: F401 (re-exported)
from cgtrain.artifacts.files import UnsafeModelError, load_model
from cgtrain.serve.decision import DECISION_FILE
from cgtrain.serve.decision import read_decision
from cgtrain.track.store import quiet_mlflow
from cgtrain.track.store import tracking_client

if TYPE_CHECKING:  # MLflow is imported where it is used: importing RegistryError stays cheap
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

CHAMPION, CHALLENGER = "champion", "challenger"
TAG = "cgtrain."
MODEL_DIR = "model"  # the run's artifact folder holding the model files




@dataclass(frozen=True)
class VersionRef:
    name: str
    version: str | None = None  # None: look up `alias`
    alias: str | None = None


_SPEC = re.compile(r"^(?P<name>[^@]+?)(?:@(?P<alias>[A-Za-z0-9_.-]+)|/(?P<version>\d+))?$")


def parse_spec(spec: str) -> VersionRef:
    """`NAME@alias`, `NAME/VERSION`, or `NAME` (its champion)."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise RegistryError(f"cannot read model {spec!r}; write NAME@champion, NAME@challenger or NAME/VERSION")
    if m["version"]:
        return VersionRef(m["name"], version=m["version"])
    return VersionRef(m["name"], alias=m["alias"] or CHAMPION)


def registered_names(client: MlflowClient) -> list[str]:
    return sorted(rm.name for rm in client.search_registered_models())


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def get_version(client: MlflowClient, name: str, version: str | int) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise RegistryError(unknown_message(client, name, f"version {version}")) from None


def resolve(client: MlflowClient, spec: str) -> ModelVersion:
    ref = parse_spec(spec)
    if ref.version is not None:
        return get_version(client, ref.name, ref.version)
    found = alias_version(client, ref.name, ref.alias)
    if found is None:
        raise RegistryError(unknown_message(client, ref.name, f"alias @{ref.alias}"))
    return found


def unknown_message(client: MlflowClient, name: str, what: str) -> str:
    names = registered_names(client)
    if name not in names:
        from cgtrain.plugins import did_you_mean

        hint = did_you_mean(name, names) if names else ""
        known = ", ".join(names) or "none yet"
        return f"no registered model {name!r}{hint} (registered: {known})"
    versions = versions_of(client, name)
    listed = ", ".join(f"{v.version}" + (f" (@{', @'.join(v.aliases)})" if v.aliases else "") for v in versions)
    return f"model {name!r} has no {what}; its versions: {listed}"


def versions_of(client: MlflowClient, name: str) -> list[ModelVersion]:
    """Every version of `name`, oldest first, with its aliases (a search leaves them out)."""
    found = client.search_model_versions(f"name = '{name}'")
    return [client.get_model_version(name, str(v.version)) for v in sorted(found, key=lambda v: int(v.version))]


def register(client: MlflowClient, name: str, run_id: str, source: str, tags: dict[str, str]) -> ModelVersion:
    """A new version of `name` from a logged run; it becomes champion if none exists, else challenger."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="cgtrain models trained from requests named " + name)
    version = client.create_model_version(name, source=source, run_id=run_id, tags=tags)
    alias = CHALLENGER if alias_version(client, name, CHAMPION) is not None else CHAMPION
    client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


def version_tags(manifest: rundir.ModelManifest, request: dict[str, Any], metrics: dict[str, Any],
                 predictions_sha256: str | None, run_dir: Path) -> dict[str, str]:
    """What loading and the gate need, kept in the registry rather than in the artifact folder."""
    dataset = request.get("dataset", {})
    metric = metrics.get("cv", {}).get("metric") or request.get("validation", {}).get("metric", "f1")
    tags = {
        "sha256": manifest.sha256, "model_file": manifest.file, "format": manifest.format,
        "family": manifest.family, "params": json.dumps(manifest.params, sort_keys=True),
        "classes": json.dumps(manifest.classes), "task": manifest.task or "",
        "metric": metric, f"test_{metric}": str(metrics.get("test", {}).get(metric, "")),
        "code_column": dataset.get("code_column", "code") or "",  # "": table columns only
        "id_column": json.dumps(dataset.get("id_column", "id")),
        "run_dir": str(Path(run_dir).resolve()), "predictions_sha256": predictions_sha256 or "",
    }
    return {TAG + k: v[:5000] for k, v in tags.items()}


def load_registered(spec: str, tracking_uri: str | None = None, trust=()):
    """A Predictor for `NAME@alias` / `NAME/VERSION` / `NAME` from the registry.

    The model file is fetched from the version's source and loaded with the safe skops
    loader against the checksum recorded at registration: a tampered file, a pickle or
    an archive asking for untrusted types is refused (UnsafeModelError) without running it.
    """

    client = tracking_client(tracking_uri, create=False)
    version = resolve(client, spec)
    tags = version.tags
    expected = tags.get(TAG + "sha256")
    if not expected:
        raise UnsafeModelError(f"{version.name}/{version.version} has no checksum recorded at registration; "
                               f"refusing to load it")

    from cgtrain.serve.predictor import Predictor  # pandas and the features: only when a model is served

    with tempfile.TemporaryDirectory() as tmp:
        local = download(version, tags.get(TAG + "model_file", rundir.MODEL_FILE), Path(tmp))
        model = load_model(local, expected, trust=trust)
        try:  # QA's calibration + threshold, bound to this model's checksum (served as reported)
            decision = read_decision(download(version, DECISION_FILE, Path(tmp)), expected)
        except UnsafeModelError:  # none was logged (no QA, or not binary)
            decision = None
    return Predictor(model, json.loads(tags.get(TAG + "classes", "[0, 1]")),
                     tags.get(TAG + "code_column", "code") or None, json.loads(tags.get(TAG + "id_column", '"id"')),
                     tags.get(TAG + "task") or None, decision=decision)


def download(version: ModelVersion, file: str, dst: Path) -> Path:
    """One file of a version's model folder, copied to `dst`."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException


    if "/" in file or file in ("", ".", ".."):
        raise UnsafeModelError(f"{version.name}/{version.version}: odd model file name {file!r}")
    try:
        with quiet_mlflow():
            return Path(download_artifacts(artifact_uri=f"{version.source.rstrip('/')}/{file}", dst_path=str(dst)))
    except (MlflowException, OSError) as exc:
        raise UnsafeModelError(f"{version.name}/{version.version}: model file {file} not found at "
                               f"{version.source}: {exc}") from None
