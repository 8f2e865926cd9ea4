"""Registered versions are MLflow Models: `mlflow.pyfunc.load_model("models:/NAME@champion")`.

The version's folder holds `model.skops`, `model.json` (and `decision.json` from QA) beside an
`MLmodel` file whose python_function flavour names this module as its `loader_module` — no
pickled Python object anywhere (MLflow's `python_model` flavour would cloudpickle one). MLflow
calls `_load_pyfunc(data_path)`, which loads through cgtrain's audited loader, checked against
the checksum in `model.json`, and serves what `cgtrain predict` serves: QA's calibrated
probability and decision threshold for a binary model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from cgtrain import rundir
from cgtrain.artifacts.files import load_run_model
from cgtrain.serve.decision import read_decision
from cgtrain.serve.predictor import Predictor

LOADER_MODULE = "cgtrain.track.pyfunc"
DATA = rundir.MODEL_JSON


def write_mlmodel(folder: Path) -> Path:
    """Write the MLmodel file of a model folder (model.skops + model.json) into `folder`."""
    from mlflow.models import Model
    from mlflow.pyfunc import add_to_model

    import cgtrain

    model = Model()
    add_to_model(model, loader_module=LOADER_MODULE, data=DATA)
    model.metadata = {"cgtrain_version": cgtrain.__version__, "serialization": "skops (audited, no pickle)"}
    path = Path(folder) / "MLmodel"
    model.save(str(path))
    return path


def _load_pyfunc(data_path: str) -> "CgtrainPyfunc":
    return CgtrainPyfunc(Path(data_path).parent)


class CgtrainPyfunc:
    """What MLflow serving calls: `predict(DataFrame with the code column (or the table's columns))`
    -> DataFrame with `label` and `probability` (binary), `probability_<class>` (multiclass) or `value`."""

    def __init__(self, folder: Path):
        import json


        model, manifest = load_run_model(folder)
        meta = json.loads((Path(folder) / rundir.MODEL_JSON).read_text(encoding="utf-8"))
        self.predictor = Predictor(model, manifest.classes, meta.get("code_column", "code"),
                                   task=manifest.task, decision=read_decision(folder, manifest.sha256))

    def predict(self, model_input: Any, params: dict | None = None):
        import numpy as np
        import pandas as pd

        p = self.predictor
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame({"code": list(model_input)})
        inputs = p.inputs(frame)
        if p.task in ("regression", "clustering") or not hasattr(p.model, "predict_proba"):
            return pd.DataFrame({"value": p.decide(inputs)}, index=frame.index)
        proba = np.asarray(p.served(p.model.predict_proba(inputs)), dtype=np.float64)
        out = pd.DataFrame({"label": self.predictor.labels(proba)}, index=frame.index)
        if proba.shape[1] == 2:
            out["probability"] = proba[:, 1]
        else:
            for k, c in enumerate(self.predictor.classes):
                out[f"probability_{c}"] = proba[:, k]
        return out
