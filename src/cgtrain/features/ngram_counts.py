"""Fold features for many featurisations from one n-gram count pass over the dataset.

Counting a row's n-grams learns nothing: it is the row's own content. What TF-IDF *fits* (which
columns survive min_df / max_features, their idf, the metric scales) is computed here from each
fold's training rows only, so the fold matrices equal what `CodeFeaturizer(kind="tfidf")` fitted on
the fold's training rows gives (the same vocabulary, idf, sublinear tf and l2 norm), while the
costly tokenising into n-grams happens once per token mode instead of once per fold and trial.
Every ngram_max <= `max_n`, min_df >= 2, max_features, sublinear_tf, name_flow and metrics setting shares it
(name-flow terms are counted once too, on first use).

Columns are counted with min_df=2 over all rows: a column kept by a fold's min_df >= 2 appears
in >= 2 training rows, so none is lost (min_df=1 would keep training singletons: the slow path).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from cgtrain.features.code_metrics import metrics_matrix
from cgtrain.features.featurizer import split_tokens
from cgtrain.features.flow import flow_terms

MAX_N = 4


def supports(settings: dict) -> bool:
    """Settings the shared counts reproduce exactly (the rest go through CodeFeaturizer per fold)."""
    return settings.get("kind") == "tfidf" and int(settings.get("min_df") or 1) >= 2 and \
        int(settings.get("ngram_max") or 1) <= MAX_N


class NgramCounts:
    """Raw n-gram counts (1..max_n) of every row, with each column's n-gram order."""

    def __init__(self, docs: list[str], max_n: int = MAX_N):
        vec = CountVectorizer(tokenizer=split_tokens, token_pattern=None, lowercase=False, ngram_range=(1, max_n),
                              min_df=2, dtype=np.float32)
        self.counts = vec.fit_transform(docs).tocsr()
        terms = vec.get_feature_names_out()
        self.order = np.fromiter((t.count(" ") + 1 for t in terms), dtype=np.int8, count=len(terms))
        self.docs = docs
        self._metrics: np.ndarray | None = None
        self._flow: sp.csr_matrix | None = None

    def flow(self) -> sp.csr_matrix | None:
        """Name-flow term counts of every row (terms in >= 2 rows), or None when no row has any."""
        if self._flow is None:
            vec = CountVectorizer(analyzer=flow_terms, min_df=2, dtype=np.float32)
            try:
                self._flow = vec.fit_transform(self.docs).tocsr()
            except ValueError:  # no doc with a numbered copy
                self._flow = sp.csr_matrix((len(self.docs), 0), dtype=np.float32)
        return self._flow if self._flow.shape[1] else None

    def metrics(self) -> np.ndarray:
        if self._metrics is None:
            self._metrics = metrics_matrix(self.docs)
        return self._metrics

    def fold(self, tr: np.ndarray, va: np.ndarray, settings: dict) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(train, validation) matrices of one fold, fitted on the `tr` rows only."""
        cols = np.flatnonzero(self.order <= int(settings["ngram_max"]))
        X_tr = self.counts[tr][:, cols]
        keep, idf = _fit_columns(X_tr, int(settings["min_df"]), settings.get("max_features"))
        out = [_weight(X_tr[:, keep], idf, settings), _weight(self.counts[va][:, cols[keep]], idf, settings)]
        flow = self.flow() if settings.get("name_flow") else None
        if flow is not None:  # CodeFeaturizer's second block: the same min_df, no max_features
            F_tr = flow[tr]
            keep, idf = _fit_columns(F_tr, int(settings["min_df"]))
            if len(keep):  # else the featurizer adds no block either
                blocks = (_weight(F_tr[:, keep], idf, settings), _weight(flow[va][:, keep], idf, settings))
                out = [sp.hstack([m, f], format="csr", dtype=np.float32) for m, f in zip(out, blocks)]
        if settings.get("metrics"):
            values = self.metrics()
            scale = values[tr].max(axis=0)
            scale[scale <= 0] = 1.0
            out = [sp.hstack([m, sp.csr_matrix((values[rows] / scale).astype(np.float32))], format="csr",
                             dtype=np.float32) for m, rows in zip(out, (tr, va))]
        return out[0], out[1]


def _fit_columns(X_tr: sp.csr_matrix, min_df: int, max_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(kept columns, their idf) as TfidfVectorizer fits them on these training rows: in >= min_df rows, the
    max_features most frequent of those, smooth idf."""
    df = np.bincount(X_tr.indices, minlength=X_tr.shape[1])
    keep = np.flatnonzero(df >= min_df)
    if max_features and len(keep) > int(max_features):
        tf = np.asarray(X_tr.sum(axis=0)).ravel()[keep]
        keep = np.sort(keep[np.argsort(-tf, kind="stable")[: int(max_features)]])
    n = X_tr.shape[0]
    return keep, (np.log((1.0 + n) / (1.0 + df[keep])) + 1.0).astype(np.float32)


def _weight(X: sp.csr_matrix, idf: np.ndarray, settings: dict) -> sp.csr_matrix:
    X = X.astype(np.float32, copy=True).tocsr()
    if settings.get("sublinear_tf", True):
        np.log(X.data, out=X.data)
        X.data += 1.0
    X = X @ sp.diags(idf, format="csr", dtype=np.float32)
    X = X.tocsr()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return (sp.diags(1.0 / norms, format="csr", dtype=np.float32) @ X).astype(np.float32).tocsr()
