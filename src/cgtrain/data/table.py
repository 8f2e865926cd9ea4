"""Tabular feature columns of a dataset: numeric and categorical values, validated per row.

A missing value (absent, null, empty, NaN or an NA token such as "NA" or "?") is
kept as missing and imputed inside the model pipeline; a value that is present but
not a number in a numeric column makes the row bad (quarantined with its line).
"""
from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np
import pandas as pd

from cgtrain.data.labels import label_key, to_number
from cgtrain.request import DatasetConfig

NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
Problem = tuple[str, str]


def _missing(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and value.strip().lower() in NA_TOKENS


def numeric_value(name: str, value: Any) -> tuple[float, Problem | None]:
    """(value or NaN when missing, problem)."""
    if _missing(value):
        return math.nan, None
    number = to_number(value)
    if number is None:
        what = "a boolean" if isinstance(value, bool) else f"{type(value).__name__} {value!r}"[:80]
        return math.nan, ("non_numeric", f"numeric column '{name}': {what} is not a finite number; fix the "
                                         f"value, or list '{name}' under dataset.categorical_columns")
    return number, None


def categorical_value(name: str, value: Any) -> tuple[str | None, Problem | None]:
    """(canonical text or None when missing, problem)."""
    if _missing(value):
        return None, None
    key = label_key(value)
    if key is None:
        return None, ("bad_category", f"categorical column '{name}': a {type(value).__name__} is not a "
                                      f"category value")
    return key, None


class TableRows:
    """Collects the validated feature values of the good rows."""

    def __init__(self, cfg: DatasetConfig):
        self.numeric = {name: array("d") for name in cfg.numeric_columns}
        self.categorical: dict[str, list[str | None]] = {name: [] for name in cfg.categorical_columns}

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def parse(self, record: dict) -> tuple[list, Problem | None]:
        """The row's values in column order, or the first problem."""
        values = []
        for name in self.numeric:
            value, problem = numeric_value(name, record.get(name))
            if problem:
                return [], problem
            values.append(value)
        for name in self.categorical:
            value, problem = categorical_value(name, record.get(name))
            if problem:
                return [], problem
            values.append(value)
        return values, None

    def add(self, values: list) -> None:
        n = len(self.numeric)
        for column, value in zip(self.numeric.values(), values[:n]):
            column.append(value)
        for column, value in zip(self.categorical.values(), values[n:]):
            column.append(value)

    def frame(self) -> pd.DataFrame | None:
        if not self.columns:
            return None
        data: dict[str, Any] = {name: np.frombuffer(col, dtype=np.float64).copy() if len(col) else
                                np.zeros(0) for name, col in self.numeric.items()}
        data.update({name: pd.Series(col, dtype=object) for name, col in self.categorical.items()})
        return pd.DataFrame(data)
