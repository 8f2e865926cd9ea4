"""Family `bug_spotter`: a token-level "does this token belong here" classifier, pooled to a function
score. On CPU (linear models over hashed features; about a minute and a half for 8,000 functions on 2 cores).

Training examples are tokens, not functions. A flawed row whose clean twin is in the training rows
(a function and its mutant, as `synth-bugs` writes them, or a buggy hunk and its fix) gives its bug
tokens as positives and the twin's tokens at the same place as negatives: the model learns exactly
what the change was. A flawed row without a twin gives all its tokens as weak positives (weight
1/length). Clean rows give a sample of their tokens as negatives, and a few one-token rewrites of
themselves (`bug_augment`: another operator of the class, a neighbouring integer, another local or
attribute name, a dropped `not`) as extra positives against the original token. Each token is
described by its literal and abstract context, its place in the statement and in the syntax tree
(`cgtrain.features.bug_tree`: its node, the operands beside it), its relation to the other uses of
the same name (`cgtrain.features.bug_tokens`), and, for operator-like tokens, its
surprisal under a masked-token model of the clean rows (`bug_slots`): what is learned on one module
carries to another with other names.

The rows are cut into `folds` folds (twins kept together). Per fold, the token model, the slot
model and an n-gram channel (`bug_ngrams`) are fitted on the other folds and score the fold; a
logistic head (`bug_head`, over the inputs and their pairwise products) learns the function score
from those out-of-fold inputs: the top token scores, their
soft maximum, the function's length and data-flow counts, the top surprisals, the soft maximum per
kind of place, the like-for-like contrast of each replaceable token with its alternatives, and the
n-gram score. New code is scored by every fold's models and the head's outputs averaged, so it is
seen exactly as the head saw its training rows. `token_scores(codes)` gives every token's score
(the folds' mean): where the model thinks the bug is. Fitted state is plain data (numpy arrays).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction import FeatureHasher
from sklearn.linear_model import SGDClassifier
from sklearn.utils.validation import check_is_fitted

from cgtrain.features.codetext import bug_location, find_twins
from cgtrain.features.bug_tokens import (Tok, function_tokens, relation_features, syntax_context, syntax_strings,
                                           token_features)
from cgtrain.models.bug_augment import contrast_features, rewritten
from cgtrain.models.bug_head import fit_head, head_decision
from cgtrain.models.bug_ngrams import NgramScorer
from cgtrain.models.bug_slots import SlotModel


FLOW_STATS = ("unread_locals", "unused_params", "early_reads")


def surprisal_features(s: float | None, cls: str) -> list[str]:
    """A slot token's surprisal under the slot model as thermometer features (>= 0.5, >= 1, ... nats)."""
    if s is None:
        return []
    return [f"sur>={b}" for b in range(1, min(int(s * 2), 12) + 1)] + [f"sur{cls}>={b}" for b in range(1, min(int(s), 6) + 1)]


def code_token_features(toks: list[Tok], sur: dict[int, float] | None = None, ctx=None) -> list[list[str]]:
    """Each token's feature strings (context, data flow, and the slot model's surprisal where it has one)."""
    ctx = syntax_context(toks) if ctx is None else ctx
    rel = relation_features(toks)
    syn = {i: syntax_strings(c, toks[i].text, toks[i].role) for i, c in ctx.items()}
    sur = sur or {}
    return [token_features(toks, k, rel) + syn.get(k, []) + surprisal_features(sur.get(k), toks[k].role)
            for k in range(len(toks))]


def _hash(hasher: FeatureHasher, strings: list[list[str]], n_features: int):
    X = hasher.transform(strings) if strings else sparse.csr_matrix((0, n_features), dtype=np.float32)
    X.data[:] = 1.0
    return X


class Coded:
    """Rows as tokens: each row's tokens, and one hashed binary feature row per token, all rows stacked
    (row i's tokens are X[offsets[i]:offsets[i + 1]]), and each row's data-flow counts (log1p)."""

    CHUNK = 256  # functions hashed at a time: one hasher call each, never all feature strings at once

    def __init__(self, tokenised: Sequence[tuple[list[Tok], dict]], n_features: int,
                 surprisal: Sequence[dict[int, float]] | None = None):
        hasher = FeatureHasher(n_features, input_type="string", alternate_sign=False, dtype=np.float32)
        self.toks: list[list[Tok]] = [t for t, _ in tokenised]
        sur = [sorted((surprisal[i] if surprisal is not None else {}).values(), reverse=True) + [0.0, 0.0]
               for i in range(len(self.toks))]
        self.stats = np.column_stack([
            np.log1p(np.array([[st[k] for k in FLOW_STATS] for _, st in tokenised], dtype=np.float64)
                     .reshape(len(self.toks), len(FLOW_STATS))),
            np.array([[s[0], s[0] + s[1]] for s in sur], dtype=np.float64).reshape(len(self.toks), 2)])
        blocks, cblocks, site_row, site_n = [], [], [], []
        for c in range(0, len(self.toks), self.CHUNK):
            strings: list[list[str]] = []
            contrast: list[list[str]] = []
            for i in range(c, min(c + self.CHUNK, len(self.toks))):
                ctx = syntax_context(self.toks[i])
                strings += code_token_features(self.toks[i], surprisal[i] if surprisal is not None else None, ctx)
                for _, rows in contrast_features(self.toks[i], ctx):
                    site_row.append(i), site_n.append(len(rows))
                    contrast += rows
            blocks.append(_hash(hasher, strings, n_features)), cblocks.append(_hash(hasher, contrast, n_features))
        self.X = sparse.vstack(blocks, format="csr") if blocks else sparse.csr_matrix((0, n_features))
        self.Xc = sparse.vstack(cblocks, format="csr") if cblocks else sparse.csr_matrix((0, n_features))
        self.site_row, self.site_n = np.asarray(site_row, dtype=np.int64), np.asarray(site_n, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum([len(t) for t in self.toks])]).astype(np.int64)
        self.rewrites: Rewrites | None = None

    def contrasts(self, w: np.ndarray, b: float) -> np.ndarray:
        """Per row: [largest, soft maximum of, log count of] its places' margins, the score of the token
        that is there less the soft maximum of the alternatives' (`bug_augment.contrast_features`)."""
        out = np.tile([-5.0, -5.0, 0.0], (len(self.toks), 1))
        if not len(self.site_n):
            return out
        d = np.asarray(self.Xc @ np.asarray(w, dtype=np.float32)).ravel() + b
        start = np.concatenate([[0], np.cumsum(self.site_n)[:-1]])
        actual = np.zeros(len(d), dtype=bool)
        actual[start] = True
        alt, counts = d[~actual], self.site_n - 1
        at = np.concatenate([[0], np.cumsum(counts)[:-1]])
        top = np.maximum.reduceat(alt, at)
        margin = d[start] - (top + np.log(np.add.reduceat(np.exp(alt - np.repeat(top, counts)), at)))
        rows, first = np.unique(self.site_row, return_index=True)
        big = np.maximum.reduceat(margin, first)
        soft = big + np.log(np.add.reduceat(np.exp(margin - np.repeat(big, np.diff(np.append(first, len(margin))))), first))
        out[rows] = np.column_stack([big, soft, np.log1p(np.diff(np.append(first, len(margin))))])
        return out

    def scores(self, w: np.ndarray, b: float) -> list[np.ndarray]:
        """Each row's token scores under the linear model (w, b)."""
        d = np.asarray(self.X @ np.asarray(w, dtype=np.float32)).ravel() + b
        return [d[self.offsets[i]:self.offsets[i + 1]] for i in range(len(self.toks))]

    def positions(self, i: int, ks) -> list[int]:
        return [int(self.offsets[i]) + int(k) for k in ks]


class Rewrites:
    """Bug tokens made from the clean training rows (`bug_augment`): one hashed feature row per changed
    token (`X`, from the row `origin`), and the coded position of the token each rewrite replaced
    (`neg`, from the row `neg_origin`), a negative in the same place. Each rewrite's surprisals come
    from the slot model of the other half, as its row's own do."""

    def __init__(self, codes, toks, y, halves, slot_models, n: int, n_features: int, seed: int):
        hasher = FeatureHasher(n_features, input_type="string", alternate_sign=False, dtype=np.float32)
        strings: list[list[str]] = []
        origin, neg, neg_origin = [], [], []
        offsets = np.concatenate([[0], np.cumsum([len(t) for t in toks])]).astype(np.int64)
        for held, model in zip(halves, slot_models):
            done = rewritten(codes, toks, [i for i in held if y[i] == 0], n, seed) if n else []
            sur = model.surprisal([t for _, _, t, _ in done]) if model is not None else [None] * len(done)
            for (i, k, new, changed), s in zip(done, sur):
                feats = code_token_features(new, s)
                strings += [feats[j] for j in changed]
                origin += [i] * len(changed)
                neg.append(offsets[i] + k), neg_origin.append(i)
        self.X = hasher.transform(strings) if strings else sparse.csr_matrix((0, n_features), dtype=np.float32)
        self.X.data[:] = 1.0
        self.origin, self.neg, self.neg_origin = (np.asarray(a, dtype=np.int64) for a in (origin, neg, neg_origin))


def _overlap(toks: list[Tok], start: int, end: int) -> list[int]:
    return [k for k, t in enumerate(toks) if t.start < end and t.end > start]


GROUPS = (frozenset({"<", "<=", ">", ">=", "==", "!=", "is", "in"}),
          frozenset({"+", "-", "*", "/", "//", "%", "+=", "-=", "*=", "/=", "//=", "%="}),
          frozenset({"and", "or", "not"}), frozenset({"True", "False", "None"}))
N_GROUPS = len(GROUPS) + 5  # + numbers, locals and parameters, attributes, other names, the rest
N_POOLED = 4 + len(FLOW_STATS) + 2 + N_GROUPS + 3


def token_group(t: Tok) -> int:
    """The kind of place a token is, for pooling: operators by class, constants, numbers, names by role."""
    for g, members in enumerate(GROUPS):
        if t.text in members:
            return g
    if t.role == "NUM" or t.role.lstrip("-").isdigit():
        return len(GROUPS)
    roles = {"L": 1, "P": 1, "A": 2, "G": 3, "B": 3, "self": 3, "cls": 3}
    return len(GROUPS) + roles.get(t.role, 4)


def _pool(d: np.ndarray, stats, toks: Sequence[Tok], contrast) -> list[float]:
    """Function-level inputs of the final layer: the top token scores, the length, and a soft maximum
    (log-sum-exp), which moves with every token's score: a fix that lowers a token that is not the
    top one still lowers the function's score, so a function and its fix rarely tie; the function's
    data-flow counts (a local stored and never read, a parameter never used: what a misused variable
    leaves behind away from the token that changed) and slot surprisals; and the soft maximum within
    each kind of place (`token_group`), so the head can weigh an odd operator and an odd name apart."""
    groups = [-10.0] * N_GROUPS
    if len(d) == 0:
        return [-10.0, -10.0, 0.0, -10.0, *stats, *groups, *contrast]
    top = np.sort(d)[::-1]
    soft = top[0] + np.log(np.exp(d - top[0]).sum())
    g = np.array([token_group(t) for t in toks])
    for k in np.unique(g):
        dk = d[g == k]
        groups[k] = float(dk.max() + np.log(np.exp(dk - dk.max()).sum()))
    return [float(top[0]), float(top[:2].mean()), float(np.log1p(len(d))), float(soft), *stats, *groups, *contrast]


def _pooled(coded: Coded, w: np.ndarray, b: float) -> np.ndarray:
    """Every row's head inputs under the token model (w, b)."""
    scores, contrast = coded.scores(w, b), coded.contrasts(w, b)
    rows = [_pool(d, st, t, c) for d, st, t, c in zip(scores, coded.stats, coded.toks, contrast)]
    return np.array(rows, dtype=np.float64).reshape(len(scores), N_POOLED)


class BugSpotter(ClassifierMixin, BaseEstimator):
    """Token-level bug spotter; `predict_proba` scores functions, `token_scores` explains them."""

    def __init__(self, alpha: float = 1e-5, epochs: int = 20, negatives: int = 100, n_features: int = 2 ** 20,
                 find_pairs: bool = True, slots: bool = True, rewrites: int = 4, rewrite_weight: float = 0.25,
                 folds: int = 4, ngram_alpha: float = 1e-4, head_C: float = 0.1, class_weight: str | None = None,
                 random_state: int = 0):
        self.alpha, self.epochs, self.negatives, self.n_features = alpha, epochs, negatives, n_features
        self.find_pairs, self.slots, self.rewrites, self.class_weight = find_pairs, slots, rewrites, class_weight
        self.rewrite_weight, self.folds, self.ngram_alpha, self.head_C = rewrite_weight, folds, ngram_alpha, head_C
        self.random_state = random_state

    # --- fitting ---------------------------------------------------------------------------------
    def fit(self, X, y):
        codes, y = [str(c) for c in X], np.asarray(y).astype(int)
        self.classes_ = np.unique(y)
        if list(self.classes_) != [0, 1]:
            raise ValueError(f"bug_spotter is binary with labels 0 (clean) / 1 (flawed), got classes {self.classes_}")
        tokenised = [function_tokens(c) for c in codes]
        twins = find_twins(codes, y) if self.find_pairs else {}
        halves = self._halves(len(codes), twins)
        toks = [t for t, _ in tokenised]
        surprisal, slot_models = self._fit_slots(toks, y, halves)
        coded = Coded(tokenised, self.n_features, surprisal)
        coded.rewrites = Rewrites(codes, toks, y, halves, slot_models, self.rewrites, self.n_features, self.random_state)
        pooled = np.zeros((len(codes), N_POOLED + 1))
        coefs, intercepts, ngram = [], [], []
        for held in halves:  # each fold scored by the models of the other folds: as new code is
            rest = np.setdiff1d(np.arange(len(codes)), held)
            w, b = self._fit_tokens(codes, y, coded, twins, rest)
            coefs.append(w), intercepts.append(b)
            ngram.append(NgramScorer(alpha=self.ngram_alpha, random_state=self.random_state).fit([toks[i] for i in rest], y[rest]))
            pooled[held, :N_POOLED] = _pooled(coded, w, b)[held]
            pooled[held, N_POOLED] = ngram[-1].decision([toks[i] for i in held])
        # weights kept as float16 (the saved model is a quarter the size; scores move by ~1e-3)
        self.coef_, self.intercept_ = np.vstack(coefs).astype(np.float16), np.array(intercepts)
        self.ngram_coef_ = np.vstack([g.coef for g in ngram]).astype(np.float16)
        self.ngram_intercept_ = np.array([g.intercept for g in ngram])
        self.head_mean_, self.head_scale_, self.head_coef_, self.head_intercept_ = fit_head(pooled, y, self.head_C)
        return self

    def _fit_slots(self, toks: list[list[Tok]], y: np.ndarray, halves: list[np.ndarray]):
        """Per half, the slot model fitted on the other half's clean rows, and each training row's
        surprisals from the one its half has (out of fold, as new code sees them)."""
        self.slot_classes_, self.slot_coef_, self.slot_intercept_ = None, None, None
        if not self.slots:
            return None, [None] * len(halves)
        surprisal: list[dict] = [{} for _ in toks]
        models = []
        for held in halves:
            rest = np.setdiff1d(np.flatnonzero(y == 0), held)
            models.append(SlotModel(random_state=self.random_state).fit([toks[i] for i in rest]))
            for i, s in zip(held, models[-1].surprisal([toks[i] for i in held])):
                surprisal[i] = s
        if all(m.coef is not None for m in models):
            self.slot_classes_ = [list(m.classes) for m in models]
            self.slot_coef_ = [m.coef.astype(np.float16) for m in models]
            self.slot_intercept_ = [m.intercept for m in models]
        return surprisal, models

    def _coded(self, codes: list[str]) -> list[Coded]:
        """New rows as each token model sees them: token model k was trained on the rows outside fold k,
        whose surprisals come from the slot models of the other folds (fold k + 1's stands for them)."""
        tokenised = [function_tokens(c) for c in codes]
        if getattr(self, "slot_coef_", None) is None:
            return [Coded(tokenised, self.n_features)] * len(self.intercept_)
        out = []
        for k in range(len(self.intercept_)):
            j = (k + 1) % len(self.intercept_)
            model = SlotModel(classes=list(self.slot_classes_[j]), coef=self.slot_coef_[j],
                              intercept=self.slot_intercept_[j])
            out.append(Coded(tokenised, self.n_features, model.surprisal([t for t, _ in tokenised])))
        return out

    def _halves(self, n: int, twins: dict[int, int]) -> list[np.ndarray]:
        """`folds` folds of the rows with each clean/flawed twin pair kept together."""
        unit = np.arange(n)
        for flawed, clean in twins.items():
            unit[flawed] = clean
        side = np.random.default_rng(self.random_state).integers(0, self.folds, n)[unit]
        return [np.flatnonzero(side == k) for k in range(self.folds)]

    def _fit_tokens(self, codes, y, coded: Coded, twins: dict[int, int], rows: np.ndarray) -> tuple[np.ndarray, float]:
        idx, labels, sw = self._examples(codes, y, coded, twins, rows)
        if self.class_weight == "balanced":  # each class the same total weight
            for c in (0, 1):
                sw[labels == c] *= sw.sum() / (2.0 * max(sw[labels == c].sum(), 1e-12))
        clf = SGDClassifier(loss="log_loss", alpha=self.alpha, max_iter=self.epochs, tol=None, average=True,
                            random_state=self.random_state)
        X = coded.X[idx]
        if coded.rewrites is not None and coded.rewrites.origin.size:  # rewritten clean rows: more bug tokens
            inside = np.zeros(len(codes), dtype=bool)
            inside[rows] = True
            pos, neg = inside[coded.rewrites.origin], inside[coded.rewrites.neg_origin]
            X = sparse.vstack([X, coded.rewrites.X[pos], coded.X[coded.rewrites.neg[neg]]], format="csr")
            labels = np.concatenate([labels, np.ones(pos.sum(), dtype=int), np.zeros(neg.sum(), dtype=int)])
            sw = np.concatenate([sw, np.full(pos.sum() + neg.sum(), self.rewrite_weight)])
        clf.fit(X, labels, sample_weight=sw)
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
        """Per function: its tokens (as text) and each one's score (the two token models' mean), high =
        likely the bug (as bug_locator's; the explanation `cgtrain explain` and the QA report show).
        `token_spans` gives their offsets."""
        check_is_fitted(self, "coef_")
        codes = [str(c) for c in X]
        coded = self._coded(codes)
        scores = [c.scores(w, b) for c, w, b in zip(coded, self.coef_, self.intercept_)]
        return [([code[t.start:t.end] for t in toks], np.mean([s[i] for s in scores], axis=0))
                for i, (code, toks) in enumerate(zip(codes, coded[0].toks))]

    @staticmethod
    def token_spans(X) -> list[list[tuple[int, int]]]:
        """Per function: the (start, end) character offsets of the tokens `token_scores` scores."""
        return [[(t.start, t.end) for t in function_tokens(str(c))[0]] for c in X]

    def decision_function(self, X) -> np.ndarray:
        """The head over each token model's pooled scores, averaged over the two."""
        check_is_fitted(self, "coef_")
        coded = self._coded([str(c) for c in X])
        out = []
        for k, (c, w, b) in enumerate(zip(coded, self.coef_, self.intercept_)):
            ngram = NgramScorer(coef=self.ngram_coef_[k], intercept=float(self.ngram_intercept_[k])).decision(c.toks)
            pooled = np.column_stack([_pooled(c, w, b), ngram])
            if getattr(self, "head_mean_", None) is None:  # a model saved before the head had products
                out.append(pooled @ self.head_coef_ + self.head_intercept_)
                continue
            out.append(head_decision(pooled, self.head_mean_, self.head_scale_, self.head_coef_, self.head_intercept_))
        return np.mean(out, axis=0)

    def predict_proba(self, X) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def build(params: dict[str, Any], seed: int, class_weight: str | None) -> BugSpotter:
    return BugSpotter(random_state=seed, class_weight=class_weight, **params)
