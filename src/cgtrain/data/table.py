"""Tabular feature columns of a dataset: numeric, categorical, date-time and text values, validated per row.

A missing value (absent, null, empty, NaN or an NA token such as "NA" or "?") is
kept as missing and imputed inside the model pipeline; so is an infinite number in a
numeric column (`inf`, `-Infinity`: what a division by zero leaves in an exported
table; no estimator takes it as a value). A value that is present but not a number in a
numeric column makes the row bad (quarantined with its line).
"""
from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np
import pandas as pd

from cgtrain.data.labels import as_float, label_key, to_number
from cgtrain.request import DatasetConfig

NA_TOKENS = frozenset({"", "na", "n/a", "nan", "nat", "null", "none", "?", "-"})
NA_CHARS = 8  # longest NA token with some whitespace around it
BOOLEAN_TEXT = {"true": 1.0, "false": 0.0}  # a boolean in a numeric column counts as 1 / 0
Problem = tuple[str, str]


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):  # NA tokens are short: a long value is never one (the common case, fast)
        return len(value) <= NA_CHARS and value.strip().lower() in NA_TOKENS
    return isinstance(value, float) and math.isnan(value)


def numeric_value(name: str, value: Any) -> tuple[float, Problem | None]:
    """(value or NaN when missing, problem)."""
    if _missing(value):
        return math.nan, None
    number = to_number(value)
    if number is None and math.isinf(as_float(value) or 0.0):  # inf / -Infinity: missing (see the module)
        return math.nan, None
    if number is None and (isinstance(value, bool) or str(value).strip().lower() in BOOLEAN_TEXT):
        number = float(value) if isinstance(value, bool) else BOOLEAN_TEXT[str(value).strip().lower()]
    if number is None:
        what = f"{type(value).__name__} {value!r}"[:80]
        return math.nan, ("non_numeric", f"numeric column '{name}': {what} is not a finite number; fix the "
                                         f"value, or list '{name}' under dataset.categorical_columns")
    return number, None


def text_value(name: str, value: Any) -> tuple[str | None, Problem | None]:
    """Date-time and free-text columns: the value as text (None when missing); parsed in the model pipeline,
    where a date that does not parse is a missing one."""
    if _missing(value):
        return None, None
    if isinstance(value, (dict, list)):
        return None, ("bad_text", f"column '{name}': a {type(value).__name__} is not a text or date value")
    return str(value), None


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
        self.text: dict[str, list[str | None]] = {name: [] for name in (*cfg.datetime_columns, *cfg.text_columns)}

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.text]

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
        for name in self.text:
            value, problem = text_value(name, record.get(name))
            if problem:
                return [], problem
            values.append(value)
        return values, None

    def add(self, values: list) -> None:
        n, m = len(self.numeric), len(self.numeric) + len(self.categorical)
        for column, value in zip(self.numeric.values(), values[:n]):
            column.append(value)
        for column, value in zip(self.categorical.values(), values[n:m]):
            column.append(value)
        for column, value in zip(self.text.values(), values[m:]):
            column.append(value)

    def frame(self) -> pd.DataFrame | None:
        if not self.columns:
            return None
        data: dict[str, Any] = {name: np.frombuffer(col, dtype=np.float64).copy() if len(col) else
                                np.zeros(0) for name, col in self.numeric.items()}
        data.update({name: pd.Series(col, dtype=object) for name, col in (*self.categorical.items(),
                                                                          *self.text.items())})
        return pd.DataFrame(data)
