"""Label columns -> model targets, one coder per task.

classification: raw labels -> class indices (binary defaults to 0/1, true/false);
regression: numbers -> float targets; anomaly / clustering: an optional label
(anomaly: 0/1 like binary, clustering: any classes) used only to evaluate, and
-1 where a row has none.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from cgtrain.data.formats import DatasetError
from cgtrain.request import DatasetConfig

BINARY_ALIASES = {"0": 0, "1": 1, "false": 0, "true": 1}
UNLABELLED = -1
Problem = tuple[str, str]  # (quarantine reason, detail)


def present(value: Any) -> bool:
    return value is not None and value != "" and not (isinstance(value, float) and math.isnan(value))


def label_key(value: Any) -> str | None:
    """Canonical text of a label: 1, 1.0, "1" -> "1"; True, "TRUE" -> "true"; None: not a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        text = value.strip()
        return text.lower() if text.lower() in ("true", "false") else text
    return None


def _blank(value: Any) -> bool:
    return not present(value) or (isinstance(value, str) and value.isspace())


class LabelCoder:
    """Maps raw labels to class indices; for multiclass without classes, learns them from the data.
    `optional`: a missing label is not a problem but UNLABELLED (unsupervised tasks)."""

    dtype = np.int64

    def __init__(self, cfg: DatasetConfig, task: str, optional: bool = False):
        self.optional, self.task = optional, task
        self.learn = task in ("binary", "multiclass", "clustering") and cfg.classes is None
        if self.learn:
            self.classes, self.mapping = None, {}
        elif cfg.classes is None:
            self.classes, self.mapping = (0, 1), dict(BINARY_ALIASES)
        else:
            self.classes, self.mapping = tuple(cfg.classes), self._mapping(cfg.classes, task)
        self.allowed = "any value" if self.learn else ", ".join(repr(c) for c in self.classes)

    @staticmethod
    def _mapping(classes: list, task: str) -> dict[str, int]:
        if task in ("binary", "anomaly") and len(classes) != 2:
            order = "[normal, anomaly]" if task == "anomaly" else "[negative, positive]"
            raise DatasetError(f"dataset.classes lists {len(classes)} labels, task {task} needs exactly 2 "
                               f"({order}); list two" + (" or set task: multiclass" if task == "binary" else ""))
        if len(classes) < 2:
            raise DatasetError(f"dataset.classes lists {len(classes)} label; a model needs at least 2")
        keys = [label_key(c) for c in classes]
        if len(set(keys)) != len(keys):
            raise DatasetError(f"dataset.classes {classes!r} lists the same label twice; list each once")
        return {k: i for i, k in enumerate(keys)}

    def label(self, value: Any) -> tuple[int | None, Problem | None]:
        if _blank(value):
            return (UNLABELLED, None) if self.optional else (None, ("missing_label", "no label"))
        key = label_key(value)
        idx = self.mapping.get(key)
        if idx is None and self.learn and key is not None:
            if self.task == "binary" and len({_ident(k) for k in (*self.mapping, key)}) > 2:
                return None, ("unknown_label", f"label {value!r} would be a third class beside "
                                               f"{', '.join(map(repr, self.mapping))} (task: binary); set task: "
                                               f"multiclass, or list the two labels in dataset.classes")
            idx = self.mapping[key] = len(self.mapping)
        if idx is None:
            return None, ("unknown_label", f"label {value!r} is not one of: {self.allowed}")
        return idx, None

    def finish(self, labels: np.ndarray) -> tuple[tuple, np.ndarray]:
        if not self.learn:
            return self.classes, labels
        classes, order = learned_classes(list(self.mapping))
        remap = np.empty(len(self.mapping), dtype=np.int64)
        for key, new in order.items():
            remap[self.mapping[key]] = new
        if len(labels):
            labels = np.where(labels >= 0, remap[np.maximum(labels, 0)] if len(classes) else labels, labels)
        return tuple(classes), labels

    def check(self, labels: np.ndarray, classes: tuple, where: str) -> None:
        present_ = np.unique(labels[labels >= 0])
        if not self.optional and len(present_) < 2:
            found = ", ".join(repr(classes[i]) for i in present_) or "none"
            raise DatasetError(f"the good rows of {where} hold {len(present_)} class ({found}); a model needs "
                               f"at least 2: check dataset.label_column and dataset.classes")


class TargetCoder:
    """Regression: the label is a finite number."""

    dtype = np.float64
    optional = False
    allowed = "a finite number"

    def label(self, value: Any) -> tuple[float | None, Problem | None]:
        if _blank(value):
            return None, ("missing_label", "no label")
        number = to_number(value)
        if number is None:
            return None, ("non_numeric_label", f"label {value!r} is not a finite number (task: regression)")
        return number, None

    def finish(self, labels: np.ndarray) -> tuple[tuple, np.ndarray]:
        return (), labels

    def check(self, labels: np.ndarray, classes: tuple, where: str) -> None:
        if len(labels) < 2 or np.ptp(labels) == 0:
            raise DatasetError(f"the good rows of {where} hold {len(np.unique(labels))} distinct target "
                               f"value(s); regression needs a target that varies: check dataset.label_column")


class NoLabels:
    """Unsupervised without a label column: every row is UNLABELLED."""

    dtype = np.int64
    optional = True
    allowed = "none"

    def label(self, value: Any) -> tuple[int, None]:
        return UNLABELLED, None

    def finish(self, labels: np.ndarray) -> tuple[tuple, np.ndarray]:
        return (), labels

    def check(self, labels: np.ndarray, classes: tuple, where: str) -> None:
        return None


def _ident(key: str) -> str:
    """One binary class however it is spelt: 1 / true, 0 / false."""
    return str(BINARY_ALIASES.get(key, key))


def learned_classes(keys: list[str]) -> tuple[list, dict[str, int]]:
    """Labels as found -> (class values in index order, key -> index).

    0/1 and true/false (mixed): (0, 1); only true/false: (False, True); whole numbers: ints in numeric
    order; other numbers: floats in numeric order; anything else: the text, sorted. The values are what
    `cgtrain predict` prints, so a label comes back as the data had it ("credit card", "yes", 7, True)."""
    if keys and set(keys) <= {"true", "false"}:
        return [False, True], {k: int(k == "true") for k in keys}
    if keys and set(keys) <= set(BINARY_ALIASES):
        return [0, 1], {k: BINARY_ALIASES[k] for k in keys}
    numbers = {k: to_number(k) for k in keys}
    if keys and all(v is not None for v in numbers.values()):
        values = sorted(set(numbers.values()))
        typed = [int(v) if all(float(x).is_integer() for x in values) else v for v in values]
        return typed, {k: values.index(numbers[k]) for k in keys}
    ordered = sorted(keys)
    return ordered, {k: i for i, k in enumerate(ordered)}


def as_float(value: Any) -> float | None:
    """A float (infinite and NaN included) from an int, float or numeric text; None otherwise (bools are not
    numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def to_number(value: Any) -> float | None:
    """A finite float from an int, float or numeric text; None otherwise (bools are not numbers)."""
    number = as_float(value)
    return number if number is not None and math.isfinite(number) else None


def make_coder(cfg: DatasetConfig, task: str):
    if task == "regression":
        return TargetCoder()
    if task in ("anomaly", "clustering"):
        return NoLabels() if cfg.label_column is None else LabelCoder(cfg, task, optional=True)
    if task in ("binary", "multiclass"):
        return LabelCoder(cfg, task)
    raise DatasetError(f"unknown task '{task}'; choose binary, multiclass, regression, anomaly or clustering")
