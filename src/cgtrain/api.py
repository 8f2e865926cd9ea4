"""The Python API: the same runs as the command line, from a notebook or a service.

    import cgtrain
    result = cgtrain.train("examples/python-bugs.yaml", run_dir="runs/demo", hpo__n_trials=5)
    model = cgtrain.load(result.run_dir)            # or a model file, or "NAME@champion"
    model.predict_proba(["def f(x):\\n    return x[len(x)]\\n"])

Overrides are keyword arguments whose `__` stands for the request's dots
(`hpo__n_trials=5` is `hpo.n_trials=5` on the command line). Errors a user can fix raise
`cgtrain.CgtrainError` subclasses (`RequestError`, `DatasetError`, `UnsafeModelError`, ...).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence
from cgtrain import rundir

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from cgtrain.serve.predictor import Predictor
    from cgtrain.request import TrainingRequest


@dataclass(frozen=True)
class TrainResult:
    """What a finished run left in `run_dir`: its held-out metrics and its leaderboard."""
    run_dir: Path
    metrics: dict[str, Any]
    leaderboard: "pd.DataFrame"

    def load(self, trust: Iterable[str] = ()) -> "Model":
        return load(self.run_dir, trust=trust)


def train(request: "TrainingRequest | str | Path | dict", data: "str | Path | pd.DataFrame | None" = None,
          run_dir: str | Path | None = None, *, resume: bool = False, track: bool = False,
          tracking_uri: str | None = None, say: Callable[[str], None] | None = None, **overrides: Any) -> TrainResult:
    """Run a training request (a TrainingRequest, a YAML/JSON path or a dict) into `run_dir`.

    `data` replaces `dataset.path`: a file, or a DataFrame (written to `run_dir/input.jsonl`).
    `track=True` logs the run to MLflow and registers the model, as `cgtrain train` does.
    """
    from cgtrain.request import TrainingRequest, apply_overrides, parse_request, read_request_file

    if isinstance(request, TrainingRequest):
        raw = request.model_dump(mode="json")
    elif isinstance(request, dict):
        raw = json.loads(json.dumps(request))
    else:
        raw = read_request_file(request)
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / str(raw.get("name", "run"))
    if data is not None:
        raw.setdefault("dataset", {})["path"] = str(_data_path(data, run_dir))
    req = parse_request(apply_overrides(raw, _override_strings(overrides)), "train()")
    return _run(req, run_dir, resume, track, tracking_uri, say)


def automl(data: "str | Path | pd.DataFrame", label: str = "label", budget: float = 300.0,
           metric: str | None = None, *, run_dir: str | Path | None = None, task: str | None = None,
           families: Sequence[str] | None = None, seed: int = 0, track: bool = False,
           tracking_uri: str | None = None, say: Callable[[str], None] | None = None, **overrides: Any) -> TrainResult:
    """`cgtrain automl`: every family that fits the data, searched within `budget` seconds."""
    from cgtrain.flows.automl_request import build_request

    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / "automl"
    path = _data_path(data, run_dir)
    req = build_request(path, budget, metric=metric, task=task, families=list(families) if families else None,
                        overrides=_override_strings(overrides), seed=seed, label=None if label == "label" else label)
    return _run(req, run_dir, False, track, tracking_uri, say)


def load(target: str | Path, trust: Iterable[str] = (), tracking_uri: str | None = None, raw: bool = False
         ) -> "Model":
    """A trained model: a run directory, a `.skops` model file, or a registered `NAME@alias` /
    `NAME/VERSION`. Every path goes through the audited loader (no model file can run code).
    A binary model serves QA's calibrated probability and threshold (as its report shows);
    `raw=True` gives the model's own probability and the argmax label."""
    import dataclasses

    from cgtrain.serve.predictor import load_predictor

    path = Path(target)
    if path.is_dir():
        predictor = load_predictor(run_dir=path, trust=trust)
    elif path.is_file():
        predictor = load_predictor(model_path=path, trust=trust)
    else:
        from cgtrain.registry.model_registry import load_registered

        predictor = load_registered(str(target), tracking_uri=tracking_uri, trust=trust)
    return Model(dataclasses.replace(predictor, raw=raw))


class Model:
    """A loaded model: `predict` gives labels as they were in the data (values for regression),
    `predict_proba` one column per class in `classes` — both as `cgtrain predict` serves them."""

    def __init__(self, predictor: "Predictor"):
        self.predictor = predictor

    @property
    def classes(self) -> list:
        return list(self.predictor.classes)

    @property
    def pipeline(self):
        return self.predictor.model

    def predict_proba(self, X: "Sequence[str] | pd.DataFrame"):
        return self.predictor.served(self.pipeline.predict_proba(self.predictor.inputs(X)))

    def predict(self, X: "Sequence[str] | pd.DataFrame") -> list:
        return self.predictor.decide(self.predictor.inputs(X))


# --- helpers --------------------------------------------------------------------------------
def _override_strings(overrides: dict[str, Any]) -> list[str]:
    """`hpo__n_trials=5` -> "hpo.n_trials=5" (the value as JSON, which the YAML parser reads back)."""
    return [f"{key.replace('__', '.')}={json.dumps(value)}" for key, value in overrides.items()]


def _data_path(data: Any, run_dir: Path) -> Path:
    if hasattr(data, "to_json"):  # a DataFrame: a JSONL copy in the run directory, types kept
        from cgtrain.fsutil import atomic_write_text

        text = data.to_json(orient="records", lines=True, date_format="iso")
        return atomic_write_text(Path(run_dir) / "input.jsonl", text if text.endswith("\n") else text + "\n")
    return Path(data)


def _run(req, run_dir: Path, resume: bool, track: bool, tracking_uri: str | None,
         say: Callable[[str], None] | None) -> TrainResult:
    from cgtrain.flows.supervised import train as train_run

    say = say or (lambda message: None)
    result = train_run(req, run_dir, resume=resume, say=say)
    if track:
        from cgtrain.qa.champion import after_tracking
        from cgtrain.track import try_log_run

        request_path = Path(run_dir) / rundir.REQUEST
        if try_log_run(result.run_dir, tracking_uri, req.name, request_path=request_path, say=say) is not None:
            after_tracking(result.run_dir, tracking_uri, say=say)
    return TrainResult(Path(result.run_dir), result.metrics, result.leaderboard)
