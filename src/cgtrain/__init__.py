"""cgtrain: train, tune, test and use models that find flaws in source code.

The public API (imported lazily, so `import cgtrain` stays light):

- `cgtrain.train(request, data=None, run_dir=None, **overrides)` -> `TrainResult`
- `cgtrain.automl(data, label="label", budget=300, metric=None, run_dir=None)` -> `TrainResult`
- `cgtrain.load(run_dir | model_file | "NAME@alias")` -> `Model` with `.predict` / `.predict_proba`
- `cgtrain.TrainingRequest`, `cgtrain.CgtrainError`, `cgtrain.__version__`
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("cgtrain")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "train": "cgtrain.api", "automl": "cgtrain.api", "load": "cgtrain.api", "Model": "cgtrain.api",
    "TrainResult": "cgtrain.api", "TrainingRequest": "cgtrain.request", "RequestError": "cgtrain.request",
    "CgtrainError": "cgtrain.errors", "UnsafeModelError": "cgtrain.artifacts.files",
}
__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cgtrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
