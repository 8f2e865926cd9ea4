"""The Family record and its registry.

A family builds an unfitted scikit-learn-compatible estimator from params; it
declares its default search space as data and which input it consumes:
"features" (the sparse code-feature matrix) or "tokens" (token docs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from cgtrain.plugins import Registry


@dataclass(frozen=True)
class Family:
    name: str
    build: Callable[[dict[str, Any], int, str | None], Any]  # (params, seed, class_weight) -> estimator
    default_space: dict[str, dict[str, Any]]
    defaults: dict[str, Any] = field(default_factory=dict)  # used for params neither searched nor fixed
    input: Literal["features", "tokens"] = "features"
    description: str = ""
    extra_params: frozenset[str] = frozenset()  # settable in a request's `params`, neither searched nor defaulted

    def param_names(self) -> set[str]:
        return set(self.default_space) | set(self.defaults) | set(self.extra_params)

    def make(self, params: dict[str, Any], seed: int, class_weight: str | None = None) -> Any:
        return self.build({**self.defaults, **params}, seed, class_weight)


FAMILIES: Registry[Family] = Registry("model family")


def register_family(family: Family) -> Family:
    FAMILIES.add(family.name, family)
    return family
