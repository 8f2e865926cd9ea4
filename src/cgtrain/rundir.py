"""The run directory: every file name a run writes, and typed readers for them (MLflow FileStore's rule).

A run directory is the contract between training, prediction, QA, the registry and the service: each
module that reads or writes one takes the name from here, never spells it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from cgtrain.quiet import optuna_quiet

REQUEST = "request.yaml"  # the request as run, every default filled in
DATASET = "dataset.json"  # fingerprint, rows read / quarantined / used, classes, split sizes
QUARANTINE = "quarantine.jsonl"  # rows that could not be used, with line numbers and reasons
CONFLICTS = "label_conflicts.jsonl"  # code bodies that carry more than one label
STUDY_DB = "study.db"  # the Optuna study (SQLite) of a single-process run
JOURNAL = "study.journal"  # the study shared by worker processes (Optuna JournalStorage)
STUDY_NAME = "cgtrain"  # the study's name in a shared storage without hpo.study_name (and in study.db before 0.2)
OOF_DIR = "oof"  # out-of-fold predictions per trial (for ensembles)
LEADERBOARD = "leaderboard.csv"
PARETO = "pareto_front.json"
MODEL_FILE = "model.skops"  # the fitted pipeline (audited skops)
MODEL_JSON = "model.json"  # the model manifest: see ModelManifest
HF_DIR = "hf_model"  # fine-tuned encoders: safetensors + tokenizer, for AutoModel.from_pretrained
METRICS = "metrics.json"  # held-out test metrics, CV summary, baselines
RUN = "run.json"  # {"status": "finished", ...} once the run completed
TEST_PREDICTIONS = "test_predictions.jsonl"  # per held-out row: id, y_true, proba, segments
DECISION = "decision.json"  # the threshold and calibration predict applies, bound to the model's sha256
QA = "qa.json"
EXPLANATIONS = "explanations.json"
REPORT = "report.html"
ENVIRONMENT = "environment.json"
ARTIFACTS = "artifacts.json"  # exported formats (ONNX) and their parity
RESOURCES = "resources.json"  # time, memory and size of training and inference
ONNX_FILE = "model.onnx"
TRACKING = "tracking.json"  # where the run was logged (makes log_run idempotent)
LOCK = "run.lock"
UNSUPERVISED_ROWS = {"anomaly": "scores.jsonl", "clustering": "clusters.jsonl"}


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from `path`; {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class ModelManifest:
    """model.json: which file holds the model, its checksum, and what it predicts."""

    file: str
    sha256: str
    format: str = "skops"
    family: str = ""
    params: Any = field(default_factory=dict)
    classes: list = field(default_factory=list)
    task: str | None = None
    language: str | None = None
    trial: int | None = None
    hf_dir: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelManifest":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in out.items() if not (k == "hf_dir" and v is None)}


class RunDir:
    """Typed access to one run directory's records."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def manifest(self) -> ModelManifest | None:
        data = read_json(self.path / MODEL_JSON)
        return ModelManifest.from_dict(data) if data.get("file") and data.get("sha256") else None

    def request(self) -> dict[str, Any]:
        """The stored request as data ({} when absent); parse it with cgtrain.request.parse_request."""
        import yaml

        try:
            data = yaml.safe_load((self.path / REQUEST).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return {}
        return data if isinstance(data, dict) else {}

    def dataset(self) -> dict[str, Any]:
        return read_json(self.path / DATASET)

    def metrics(self) -> dict[str, Any]:
        return read_json(self.path / METRICS)

    def finished(self) -> bool:
        return read_json(self.path / RUN).get("status") == "finished"

    def has_study(self) -> bool:
        return (self.path / STUDY_DB).exists() or (self.path / JOURNAL).exists()

    def study_url(self) -> str:
        return f"sqlite:///{self.path / STUDY_DB}"

    def trials(self) -> list:
        """The study's trials less those re-queued after a crash (their retries are kept); [] without a study."""
        if not (self.path / STUDY_DB).is_file():
            return []
        return [t for t in self.study().get_trials(deepcopy=False) if not t.user_attrs.get("stale")]

    def study(self):
        """The run's one Optuna study in study.db (named after the request; "cgtrain" in older runs)."""
        import optuna

        with optuna_quiet():  # no "study name was omitted" log line
            return optuna.load_study(study_name=None, storage=self.study_url())

    def test_rows(self) -> list[dict[str, Any]]:
        """test_predictions.jsonl, one dict per held-out row."""
        text = (self.path / TEST_PREDICTIONS).read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def trial_records(self) -> list[dict[str, Any]]:
        """Per trial: number, state, family, value, params, resources, intermediate values, fit seconds."""
        return [{"trial": t.number, "state": t.state.name.lower(), "value": t.value,
                 "family": t.user_attrs.get("family"), "params": t.params, "resources": t.user_attrs.get("resources"),
                 "intermediate": {int(k): v for k, v in t.intermediate_values.items()},
                 "fit_seconds": t.user_attrs.get("fit_seconds")}
                for t in self.trials()]
