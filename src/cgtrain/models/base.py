"""The Family record and its registry.

A family builds an unfitted scikit-learn-compatible estimator from params; it
declares its default search space as data and which input it consumes:
"features" (the sparse code-feature matrix), "tokens" (token docs) or "code"
(the raw code strings, for pre-trained encoders with their own tokenizers).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from cgtrain.extras import missing, require
from cgtrain.plugins import Registry


@dataclass(frozen=True)
class Lazy:
    """A callable named "module:attribute", imported on first call: a family's builder can live in a
    module that imports torch or LightGBM while the family's metadata costs nothing to know."""
    target: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[dict[str, Any], int, str | None], Any]  # (params, seed, class_weight) -> estimator
    default_space: dict[str, dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)  # used for params neither searched nor fixed
    input: Literal["features", "tokens", "code"] = "features"  # "code": raw code strings (HF encoders)
    description: str = ""
    extra_params: frozenset[str] = frozenset()  # settable in a request's `params`, neither searched nor defaulted
    tasks: frozenset[str] = frozenset({"binary", "multiclass"})  # the request tasks it can learn
    variants: dict[str, Callable[[dict[str, Any], int, str | None], Any]] = field(default_factory=dict)
    # task -> build, where a task needs another estimator (e.g. "regression": a regressor)
    check_params: Callable[[dict[str, Any]], None] | None = None  # a request's fixed params, checked at load
    # time; raises ValueError naming the param, its value and the fix (e.g. a model directory that is unusable)
    # Capabilities, declared (never found by duck typing):
    epoch_validation: bool = False  # fit(X, y, X_val=, y_val=, on_epoch=) with `val_metric`: per-epoch validation,
    # early stopping, pruning between epochs; `history_["best_epoch"]` after fit (the refit trains that many epochs)
    saves_hf_dir: bool = False  # the fitted model's save_pretrained(dir) writes a directory transformers loads
    requires: tuple[str, ...] = ()  # modules outside the core install that its builder imports
    extra: str = ""  # the pip extra that brings them: pip install 'cgtrain[<extra>]'
    prior_cost_s: float | None = None  # AutoML's cost prior: CPU seconds per 1000 training rows per fold with the
    # defaults, before the run has measured any (every supervised family declares one; a test checks)

    def param_names(self) -> set[str]:
        return set(self.default_space) | set(self.defaults) | set(self.extra_params)

    def missing(self) -> list[str]:
        """The required modules that are not installed ([] when the family can be used)."""
        return missing(self.requires)

    def check_available(self) -> None:
        """Raise MissingExtra (one line with the pip command) when a required module is not installed."""
        require(f"family '{self.name}'", self.requires, self.extra)

    def supports(self, task: str) -> bool:
        return task in self.tasks

    def make(self, params: dict[str, Any], seed: int, class_weight: str | None = None, task: str | None = None) -> Any:
        if task is not None and not self.supports(task):
            raise ValueError(f"family '{self.name}' does not support task '{task}'; it supports "
                             f"{', '.join(sorted(self.tasks))}")
        self.check_available()
        build = self.variants.get(task, self.build) if task is not None else self.build
        return build({**self.defaults, **params}, seed, class_weight)


FAMILIES: Registry[Family] = Registry("model family")


def register_family(family: Family) -> Family:
    FAMILIES.add(family.name, family)
    return family
