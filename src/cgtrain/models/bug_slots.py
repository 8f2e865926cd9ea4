"""Naturalness of operator-like tokens: a masked-token model of normal code, for `bug_spotter`.

Many one-token bugs put a wrong member of a small closed class where another belongs: `<` for
`<=`, `and` for `or`, `+` for `-`, `True` for `False`, `1` for `0`, `is` for `==`. Whether a member
fits is a question about normal code, not about bugs: `SlotModel` learns, from the tokens of clean
functions only, to predict which member of its class a slot holds from the slot's context with the
token itself masked (the neighbouring tokens literally and by role, the statement it sits in). A
token's surprisal, -log P(actual member | context) among its class's members, is high where the
code reads unlike normal code: what a language model of code flags, without needing any bug to
learn from (so it cannot learn a generator's quirks). `bug_spotter` turns the surprisal into token
features and fits the slot model out of fold, so training rows see it as new code does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import SGDClassifier

from cgtrain.features.bug_tokens import Tok

CLASSES: tuple[tuple[str, ...], ...] = (
    ("<", "<=", ">", ">=", "==", "!=", "is", "in"),
    ("+", "-", "*", "/", "//", "%"),
    ("+=", "-=", "*=", "/=", "//=", "%="),
    ("and", "or"),
    ("True", "False", "None"),
    tuple(str(k) for k in range(10)),
)
_CLASS_OF = {t: k for k, members in enumerate(CLASSES) for t in members}
_STATEMENT_HEADS = frozenset({"if", "elif", "while", "return", "assert", "for", "yield", "del", "raise", "with"})


def slot_positions(toks: Sequence[Tok]) -> list[int]:
    """Indices of the tokens that belong to one of the closed classes."""
    return [i for i, t in enumerate(toks) if t.text in _CLASS_OF]


def slot_context(toks: Sequence[Tok], i: int) -> list[str]:
    """Features of slot i's context with the token itself masked: neighbours literally and by role,
    and the statement around it (its first token, its other tokens as a bag)."""
    def lit(k: int) -> str:
        return toks[k].text if 0 <= k < len(toks) else "^" if k < 0 else "$"

    def rol(k: int) -> str:
        return toks[k].role if 0 <= k < len(toks) else "^" if k < 0 else "$"

    cls = _CLASS_OF[toks[i].text]
    lo = i
    while lo > 0 and not toks[lo - 1].text.startswith("NL"):
        lo -= 1
    hi = i
    while hi + 1 < len(toks) and not toks[hi + 1].text.startswith("NL"):
        hi += 1
    head = toks[lo].text if toks[lo].text in _STATEMENT_HEADS else toks[lo].role
    out = [f"c={cls}", f"l={lit(i - 1)}", f"r={lit(i + 1)}", f"lr={lit(i - 1)}|{lit(i + 1)}",
           f"ll={lit(i - 2)}|{lit(i - 1)}", f"rr={lit(i + 1)}|{lit(i + 2)}",
           f"Rl={rol(i - 2)}|{rol(i - 1)}", f"Rr={rol(i + 1)}|{rol(i + 2)}", f"Rlr={rol(i - 1)}|{rol(i + 1)}",
           f"Rw={rol(i - 2)}|{rol(i - 1)}|{rol(i + 1)}|{rol(i + 2)}", f"h={head}", f"hr={head}|{lit(i + 1)}",
           f"pos={min(i - lo, 4)}|{min(hi - i, 4)}"]
    out += [f"s={toks[k].text}" for k in range(max(lo, i - 8), min(hi + 1, i + 9)) if k != i]
    node, fld, up, left, right = toks[i].tree
    if node:  # its place in the syntax tree (`bug_tree`), the token itself masked
        out += [f"tn={node}|{fld}", f"tu={up}|{node}", f"tlr={left}|{right}", f"tl={node}|{left}", f"tr={node}|{right}"]
    return [f"{cls}:{f}" for f in out]


class SlotModel:
    """Which member of its class each slot holds, from its masked context (see the module). Fitted state
    is plain data: `classes` (list of str), `coef` ([classes, n_features] float32), `intercept`."""

    def __init__(self, n_features: int = 2 ** 15, alpha: float = 1e-5, epochs: int = 8, random_state: int = 0,
                 classes: list[str] | None = None, coef: np.ndarray | None = None, intercept: np.ndarray | None = None):
        self.n_features, self.alpha, self.epochs, self.random_state = n_features, alpha, epochs, random_state
        self.classes, self.coef, self.intercept = classes, coef, intercept

    def _X(self, feats: list[list[str]]):
        X = FeatureHasher(self.n_features, input_type="string", alternate_sign=False, dtype=np.float32).transform(feats)
        X.data[:] = 1.0
        return X

    def fit(self, rows: Sequence[Sequence[Tok]]) -> "SlotModel":
        feats, labels = [], []
        for toks in rows:
            for i in slot_positions(toks):
                feats.append(slot_context(toks, i)), labels.append(toks[i].text)
        if len(set(labels)) < 2:
            return self  # nothing to learn from: every surprisal is 0
        clf = SGDClassifier(loss="log_loss", alpha=self.alpha, max_iter=self.epochs, tol=None,
                            random_state=self.random_state).fit(self._X(feats), labels)
        coef, intercept = clf.coef_, clf.intercept_
        if len(clf.classes_) == 2:  # sklearn keeps one row for two classes: the second class's margin
            coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
        self.classes = [str(c) for c in clf.classes_]
        self.coef, self.intercept = coef.astype(np.float32), intercept.astype(np.float32)
        return self

    def surprisal(self, rows: Sequence[Sequence[Tok]]) -> list[dict[int, float]]:
        """Per row: slot index -> -log P(actual member | context) among the class members seen in training."""
        where = [(r, i) for r, toks in enumerate(rows) for i in slot_positions(toks)]
        out: list[dict[int, float]] = [{} for _ in rows]
        if self.coef is None or not where:
            return out
        coef = np.asarray(self.coef, dtype=np.float32)
        scores = np.asarray(self._X([slot_context(rows[r], i) for r, i in where]) @ coef.T) + self.intercept
        col = {c: k for k, c in enumerate(self.classes)}
        for (r, i), s in zip(where, scores):
            members = [col[m] for m in CLASSES[_CLASS_OF[rows[r][i].text]] if m in col]
            actual = col.get(rows[r][i].text)
            if actual is None or len(members) < 2:
                continue
            z = s[members]
            out[r][i] = float(np.log(np.exp(z - z.max()).sum()) + z.max() - s[actual])
        return out
