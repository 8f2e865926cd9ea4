"""Optional dependencies: what is installed, and one line with the pip command when it is not.

The core install (`pip install cgtrain`) has the classical families, Optuna, the CLI and the API;
torch, transformers, MLflow, QA, ONNX, the service and Ray are extras (see pyproject.toml).
"""
from __future__ import annotations

import importlib.util
from functools import cache

from cgtrain.errors import MissingExtra


@cache
def installed(module: str) -> bool:
    """Whether a top-level module can be imported, found without importing it."""
    return importlib.util.find_spec(module) is not None


def missing(modules: tuple[str, ...] | list[str]) -> list[str]:
    return [m for m in modules if not installed(m)]


def require(what: str, modules: tuple[str, ...] | list[str], extra: str) -> None:
    """Raise MissingExtra ("<what> needs X, which is not installed; pip install 'cgtrain[extra]'")."""
    absent = missing(modules)
    if absent:
        raise MissingExtra(what, absent, extra)
