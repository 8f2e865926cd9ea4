"""cgtrain: train, tune, test and use models that find flaws in source code.

The public API (imported lazily, so `import cgtrain` stays light):

- `cgtrain.train(request, data=None, run_dir=None, **overrides)` -> `TrainResult`
- `cgtrain.automl(data, label="label", budget=300, metric=None, run_dir=None)` -> `TrainResult`
- `cgtrain.load(run_dir | model_file | "NAME@alias")` -> `Model` with `.predict` / `.predict_proba`
- `cgtrain.TrainingRequest`, `cgtrain.CgtrainError`, `cgtrain.__version__`
"""
from __future__ import annotations

import sys
import types
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
    "CgtrainError": "cgtrain.errors", "UnsafeModelError": "cgtrain.registry.artifacts",
}
__all__ = sorted([*_LAZY, "__version__"])


# `cgtrain.train` and `cgtrain.automl` are the API's functions, yet the package also has the
# submodules `cgtrain/train/` (the PyTorch loop) and `cgtrain/automl.py` (the AutoML request).
# Python binds a submodule on its parent when it is imported, which would replace the function;
# this module class keeps the functions. `from cgtrain.train.loop import ...` is unaffected
# (imports go through sys.modules); to reach the submodule object, use sys.modules or importlib.
_API_NAMES = ("train", "automl")


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API_NAMES and isinstance(value, types.ModuleType):
            return  # the submodule stays in sys.modules; the attribute stays the API function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cgtrain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
