"""Family `bug_spotter`: a token-level "does this token belong here" classifier, max-pooled to a
function score. Fast on CPU (a linear model over hashed context features, seconds per fit).

Training examples are tokens, not functions. A flawed row whose clean twin is in the training rows
(a function and its mutant, as `synth-bugs` writes them, or a buggy hunk and its fix) gives its bug
tokens as positives and the twin's tokens at the same place as negatives: the model learns exactly
what the change was. A flawed row without a twin gives all its tokens as weak positives (weight
1/length). Clean rows give a sample of their tokens as negatives. Each token is described by its
literal and abstract context and by its relation to the other uses of the same name in the function
(`cgtrain.features.bug_tokens`): what is learned on one module carries to another with other names.

A function's score is the largest token score, with the second largest and its length, turned into a
probability by a small logistic layer fitted on held-out groups of the training rows.
`token_scores(codes)` gives every token's score: where the model thinks the bug is.
Fitted state is plain data (weights as numpy arrays).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.utils.validation import check_is_fitted

from cgtrain.features.codetext import bug_location, find_twins
from cgtrain.models.base import Family, register_family
from cgtrain.features.bug_tokens import Tok, function_tokens, relation_features, token_features


def code_token_features(code: str) -> tuple[list[Tok], list[list[str]]]:
    """A function's tokens and each token's feature strings."""
    toks, _ = function_tokens(code)
    rel = relation_features(toks)
    return toks, [token_features(toks, k, rel) for k in range(len(toks))]


class Coded:
    """Rows as tokens: each row's tokens, and one hashed binary feature row per token, all rows stacked
    (row i's tokens are X[offsets[i]:offsets[i + 1]])."""

    CHUNK = 256  # functions hashed at a time: one hasher call each, never all feature strings at once

    def __init__(self, codes: Sequence[str], n_features: int):
        hasher = FeatureHasher(n_features, input_type="string", alternate_sign=False, dtype=np.float32)
        self.toks: list[list[Tok]] = []
        blocks = []
        for c in range(0, len(codes), self.CHUNK):
            strings: list[list[str]] = []
            for code in codes[c:c + self.CHUNK]:
                toks, f = code_token_features(str(code))
                self.toks.append(toks)
                strings += f
            X = hasher.transform(strings) if strings else sparse.csr_matrix((0, n_features), dtype=np.float32)
            X.data[:] = 1.0
            blocks.append(X)
        self.X = sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix((0, n_features))
        self.offsets = np.concatenate([[0], np.cumsum([len(t) for t in self.toks])]).astype(np.int64)

    def scores(self, w: np.ndarray, b: float) -> list[np.ndarray]:
        """Each row's token scores under the linear model (w, b)."""
        d = np.asarray(self.X @ w).ravel() + b
        return [d[self.offsets[i]:self.offsets[i + 1]] for i in range(len(self.toks))]

    def positions(self, i: int, ks) -> list[int]:
        return [int(self.offsets[i]) + int(k) for k in ks]


def _overlap(toks: list[Tok], start: int, end: int) -> list[int]:
    return [k for k, t in enumerate(toks) if t.start < end and t.end > start]


N_POOLED = 4


def _pool(d: np.ndarray) -> list[float]:
    """Function-level inputs of the final layer: the top token scores, the length, and a soft maximum
    (log-sum-exp), which moves with every token's score: a fix that lowers a token that is not the
    top one still lowers the function's score, so a function and its fix rarely tie."""
    if len(d) == 0:
        return [-10.0, -10.0, 0.0, -10.0]
    top = np.sort(d)[::-1]
    soft = top[0] + np.log(np.exp(d - top[0]).sum())
    return [float(top[0]), float(top[:2].mean()), float(np.log1p(len(d))), float(soft)]


class BugSpotter(ClassifierMixin, BaseEstimator):
    """Token-level bug spotter; `predict_proba` scores functions, `token_scores` explains them."""

    def __init__(self, alpha: float = 1e-5, epochs: int = 20, negatives: int = 30, n_features: int = 2 ** 20,
                 find_pairs: bool = True, class_weight: str | None = None, random_state: int = 0):
        self.alpha, self.epochs, self.negatives, self.n_features = alpha, epochs, negatives, n_features
        self.find_pairs, self.class_weight, self.random_state = find_pairs, class_weight, random_state

    # --- fitting ---------------------------------------------------------------------------------
    def fit(self, X, y):
        codes, y = [str(c) for c in X], np.asarray(y).astype(int)
        self.classes_ = np.unique(y)
        if list(self.classes_) != [0, 1]:
            raise ValueError(f"bug_spotter is binary with labels 0 (clean) / 1 (flawed), got classes {self.classes_}")
        coded = Coded(codes, self.n_features)
        twins = find_twins(codes, y) if self.find_pairs else {}
        pooled = np.zeros((len(codes), N_POOLED))
        for held in self._halves(len(codes), twins):  # out-of-fold scores: the head sees them as on new code
            w, b = self._fit_tokens(codes, y, coded, twins, np.setdiff1d(np.arange(len(codes)), held))
            scores = coded.scores(w, b)
            for i in held:
                pooled[i] = _pool(scores[i])
        self.coef_, self.intercept_ = self._fit_tokens(codes, y, coded, twins, np.arange(len(codes)))
        head = LogisticRegression(C=1.0, max_iter=1000).fit(pooled, y)
        self.head_coef_, self.head_intercept_ = head.coef_[0].copy(), float(head.intercept_[0])
        return self

    def _halves(self, n: int, twins: dict[int, int]) -> list[np.ndarray]:
        """Two halves of the rows with each clean/flawed twin pair kept together."""
        unit = np.arange(n)
        for flawed, clean in twins.items():
            unit[flawed] = clean
        side = (np.random.default_rng(self.random_state).random(n) < 0.5)[unit]
        return [np.flatnonzero(side), np.flatnonzero(~side)]

    def _fit_tokens(self, codes, y, coded: Coded, twins: dict[int, int], rows: np.ndarray) -> tuple[np.ndarray, float]:
        idx, labels, sw = self._examples(codes, y, coded, twins, rows)
        if self.class_weight == "balanced":  # each class the same total weight
            for c in (0, 1):
                sw[labels == c] *= sw.sum() / (2.0 * max(sw[labels == c].sum(), 1e-12))
        clf = SGDClassifier(loss="log_loss", alpha=self.alpha, max_iter=self.epochs, tol=None, average=True,
                            random_state=self.random_state)
        clf.fit(coded.X[idx], labels, sample_weight=sw)
        return clf.coef_[0].astype(np.float32), float(clf.intercept_[0])

    def _examples(self, codes, y, coded: Coded, twins: dict[int, int], rows: np.ndarray):
        """Token rows of `coded.X` with their labels and weights, from the rows `rows` only."""
        rng = np.random.default_rng(self.random_state)
        inside = np.zeros(len(codes), dtype=bool)
        inside[rows] = True
        idx: list[int] = []
        labels: list[int] = []
        weights: list[float] = []

        def add(i: int, ks, label: int, weight: float) -> None:
            pos = coded.positions(i, ks)
            idx.extend(pos), labels.extend([label] * len(pos)), weights.extend([weight] * len(pos))

        paired = {i for i, j in twins.items() if inside[i] and inside[j]}
        for i in sorted(paired):
            j = twins[i]
            _, s, e = bug_location(codes[j], codes[i])
            add(i, _overlap(coded.toks[i], s, e), 1, 1.0)
            _, s, e = bug_location(codes[i], codes[j])
            add(j, _overlap(coded.toks[j], s, e), 0, 1.0)
        for i in rows[y[rows] == 1]:
            n = len(coded.toks[i])
            if i not in paired and n:
                add(i, range(n), 1, 1.0 / n)
        for i in rows[y[rows] == 0]:
            n = len(coded.toks[i])
            add(i, rng.choice(n, size=min(self.negatives, n), replace=False), 0, 1.0)
        return np.asarray(idx, dtype=np.int64), np.asarray(labels), np.asarray(weights, dtype=np.float64)

    # --- scoring ---------------------------------------------------------------------------------
    def token_scores(self, X) -> list[tuple[list[str], np.ndarray]]:
        """Per function: its tokens (as text) and each one's score, high = likely the bug (as bug_locator's;
        the explanation `cgtrain explain` and the QA report show). `token_spans` gives their offsets."""
        check_is_fitted(self, "coef_")
        codes = [str(c) for c in X]
        coded = Coded(codes, self.n_features)
        return [([code[t.start:t.end] for t in toks], d) for code, toks, d
                in zip(codes, coded.toks, coded.scores(self.coef_, self.intercept_))]

    @staticmethod
    def token_spans(X) -> list[list[tuple[int, int]]]:
        """Per function: the (start, end) character offsets of the tokens `token_scores` scores."""
        return [[(t.start, t.end) for t in function_tokens(str(c))[0]] for c in X]

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        coded = Coded([str(c) for c in X], self.n_features)
        pooled = np.array([_pool(d) for d in coded.scores(self.coef_, self.intercept_)]).reshape(-1, N_POOLED)
        return pooled @ self.head_coef_ + self.head_intercept_

    def predict_proba(self, X) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def build(params: dict[str, Any], seed: int, class_weight: str | None) -> BugSpotter:
    return BugSpotter(random_state=seed, class_weight=class_weight, **params)


register_family(Family(
    name="bug_spotter", prior_cost_s=15.0, build=build, input="code", tasks=frozenset({"binary"}),
    extra_params=frozenset({"epochs", "n_features", "find_pairs"}),
    description="token-level bug spotter (bug tokens of clean/flawed pairs vs clean tokens, hashed context and "
                "data-flow features, linear), max-pooled to a function score; fast on CPU",
    default_space={
        "alpha": {"type": "float", "low": 1e-6, "high": 1e-4, "log": True},
        "negatives": {"type": "int", "low": 10, "high": 80, "log": True},
    },
    defaults={"alpha": 1e-5, "negatives": 30, "epochs": 20}))
