"""What the ONNX exporters share (cgtrain.export.onnx for scikit-learn / LightGBM, onnx_torch for the nets)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

VOCAB_FILE = "vocab.json"


class Unsupported(Exception):
    """This model cannot be written as ONNX (the reason is recorded, nothing fails)."""


def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32)


def _save_onnx(onx, path: Path, input_doc: str) -> None:
    import onnx

    onnx.helper.set_model_props(onx, {"cgtrain.input": input_doc, "cgtrain.output": "probabilities"})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onx, str(path))


def _one_line(exc: Exception, limit: int = 300) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:limit]
