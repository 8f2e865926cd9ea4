"""Tiny clean/flawed twin rows for the bug-model tests: each clean function and one mutant of it."""
from __future__ import annotations

import random

import numpy as np

from cgtrain.data.synth_bugs import BUG_KINDS, mutate, normalise

SOURCES = [
    "def f{i}(items, limit):\n    total = 0\n    for x in items[1:limit]:\n        if x > limit and not total:\n"
    "            total = total + x\n    return total",
    "def g{i}(a, b=1):\n    if a.size is None:\n        return a.start\n    c = a.start * b\n    return c",
    "def h{i}(self, key, default=None):\n    value = self.data.get(key)\n    if value is None:\n"
    "        return default\n    return value[0:len(value) - 1]",
]


def twin_rows(n_per_source: int, sources: list[str] = SOURCES) -> tuple[list[str], np.ndarray]:
    """(codes, labels): per source and i, the normalised clean function (0) then a mutant of it (1)."""
    codes, y = [], []
    for i in range(n_per_source):
        for src in sources:
            text = src.format(i=i)
            kind = BUG_KINDS[(i + len(codes)) % len(BUG_KINDS)]
            mutant = next((m for k in (kind, *BUG_KINDS) if (m := mutate(text, k, random.Random(i)))), None)
            codes += [normalise(text), mutant]
            y += [0, 1]
    return codes, np.array(y)
