"""A function-level channel for `bug_spotter`'s head: a linear model over the function's hashed token
n-grams, literal and by role (what a practitioner's TF-IDF baseline sees), kept as plain arrays.

Where the token model judges one place at a time, this sees the function whole: a construct that is
odd anywhere in it (`super(self, ...)`, `is` against a call), whichever token carries it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import SGDClassifier

from cgtrain.features.bug_tokens import Tok


def ngram_strings(toks: Sequence[Tok]) -> list[str]:
    """Literal token 1- to 3-grams and role 2- to 4-grams of a function (newlines as they are)."""
    lit = [t.text for t in toks]
    rol = [t.role for t in toks]
    out = [f"w={w}" for w in lit]
    out += [f"w2={a}|{b}" for a, b in zip(lit, lit[1:])] + [f"w3={a}|{b}|{c}" for a, b, c in zip(lit, lit[1:], lit[2:])]
    for n in (2, 3, 4):
        out += [f"r{n}=" + "|".join(rol[i:i + n]) for i in range(len(rol) - n + 1)]
    return out


class NgramScorer:
    """Flawed-or-not from a function's n-grams (see the module). State: `coef` (float32) and `intercept`."""

    def __init__(self, n_features: int = 2 ** 18, alpha: float = 1e-4, epochs: int = 10, random_state: int = 0,
                 coef: np.ndarray | None = None, intercept: float = 0.0):
        self.n_features, self.alpha, self.epochs, self.random_state = n_features, alpha, epochs, random_state
        self.coef, self.intercept = coef, intercept

    def _X(self, rows: Sequence[Sequence[Tok]]):
        X = FeatureHasher(self.n_features, input_type="string", alternate_sign=False,
                          dtype=np.float32).transform([ngram_strings(t) for t in rows])
        X.data[:] = 1.0
        return X

    def fit(self, rows: Sequence[Sequence[Tok]], y: np.ndarray) -> "NgramScorer":
        clf = SGDClassifier(loss="log_loss", alpha=self.alpha, max_iter=self.epochs, tol=None, average=True,
                            random_state=self.random_state).fit(self._X(rows), y)
        self.coef, self.intercept = clf.coef_[0].astype(np.float32), float(clf.intercept_[0])
        return self

    def decision(self, rows: Sequence[Sequence[Tok]]) -> np.ndarray:
        if self.coef is None or not len(rows):
            return np.zeros(len(rows))
        return np.asarray(self._X(rows) @ np.asarray(self.coef, dtype=np.float32)).ravel() + self.intercept
