"""Token docs -> sparse feature matrix (token n-gram TF-IDF, name-flow TF-IDF, code metrics).

Fitted state holds only sklearn/numpy objects and the module-level functions
`split_tokens` and `cgtrain.features.flow.flow_terms` (both in the allowlist of
function references), so a fitted pipeline round-trips through skops with a trusted
type list limited to cgtrain.*, sklearn.*, numpy.*, scipy.* and builtins.
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from cgtrain.features.code_metrics import METRIC_NAMES, metrics_matrix
from cgtrain.features.flow import flow_terms

KINDS = ("tfidf", "hashing")


def split_tokens(doc: str) -> list[str]:
    """Tokenizer for token docs; a module-level function so skops can store it."""
    return doc.split()


def _as_docs(X, *, allow_empty: bool) -> list[str]:
    if isinstance(X, (str, bytes)):
        raise TypeError("expected a sequence of token docs, got a single string")
    docs = list(X)
    if not docs and not allow_empty:
        raise ValueError("CodeFeaturizer cannot be fitted on an empty collection of docs")
    for doc in docs:
        if not isinstance(doc, str):
            raise TypeError(f"token docs must be str, got {type(doc).__name__}")
    return docs


class CodeFeaturizer(TransformerMixin, BaseEstimator):
    """TF-IDF (or hashed TF-IDF) over token n-grams, plus name-flow terms and scaled code metrics.

    min_df and max_features apply to kind="tfidf" only; n_hash_features to
    kind="hashing" only. name_flow=True adds a TF-IDF block (its own l2 norm,
    min_df as above) over the name-flow terms of docs that carry a numbered copy
    (`cgtrain.features.flow`; ordinal_names docs); none when no doc has one.
    Metric columns are divided by their training maximum (fitted
    `metrics_scale_`), so they stay non-negative, mostly in [0, 1], and zero
    where the metric is zero; unseen docs may exceed 1.
    """

    def __init__(
        self,
        kind: str = "tfidf",
        ngram_max: int = 2,
        max_features: int | None = 50000,
        min_df: int = 2,
        sublinear_tf: bool = True,
        metrics: bool = True,
        n_hash_features: int = 2**18,
        name_flow: bool = False,
    ):
        self.kind = kind
        self.ngram_max = ngram_max
        self.max_features = max_features
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.metrics = metrics
        self.n_hash_features = n_hash_features
        self.name_flow = name_flow

    def _text_params(self) -> dict:
        return dict(
            tokenizer=split_tokens,
            token_pattern=None,
            lowercase=False,
            ngram_range=(1, int(self.ngram_max)),
            dtype=np.float32,
        )

    def _fit_text(self, docs: list[str]) -> sp.csr_matrix:
        if self.kind not in KINDS:
            raise ValueError(f"unknown featurizer kind {self.kind!r}; allowed: {', '.join(KINDS)}")
        if int(self.ngram_max) < 1:
            raise ValueError(f"ngram_max must be >= 1, got {self.ngram_max!r}")
        if self.kind == "tfidf":
            self.vectorizer_ = TfidfVectorizer(
                min_df=self.min_df,
                max_features=self.max_features,
                sublinear_tf=self.sublinear_tf,
                **self._text_params(),
            )
            self.idf_transformer_ = None
            return self._forget_object_ids(self.vectorizer_.fit_transform(docs))
        # Hash raw counts, then let TfidfTransformer weight and L2-normalise.
        self.vectorizer_ = HashingVectorizer(
            n_features=int(self.n_hash_features),
            alternate_sign=False,
            norm=None,
            **self._text_params(),
        )
        self.idf_transformer_ = TfidfTransformer(sublinear_tf=self.sublinear_tf)
        return self.idf_transformer_.fit_transform(self.vectorizer_.transform(docs))

    # skops stores a dict entry by entry as JSON nodes: a 200k-term vocabulary took minutes and
    # tens of MB. Saved as one string array (a single .npy) it takes a second.
    def __getstate__(self):
        state = super().__getstate__()
        for attr in ("vectorizer_", "flow_vectorizer_"):
            vec = state.get(attr)
            if isinstance(vec, TfidfVectorizer) and hasattr(vec, "vocabulary_"):
                vec = copy.copy(vec)
                terms = sorted(vec.vocabulary_, key=vec.vocabulary_.__getitem__)
                del vec.vocabulary_
                key = "vocabulary_terms_" if attr == "vectorizer_" else "flow_terms_"
                state = {**state, attr: vec, key: np.array(terms, dtype=np.str_)}
        return state

    def __setstate__(self, state):
        state = dict(state)
        terms = state.pop("vocabulary_terms_", None)
        flow = state.pop("flow_terms_", None)
        state.setdefault("name_flow", False)  # a model saved before name-flow terms existed
        if "vectorizer_" in state:
            state.setdefault("flow_vectorizer_", None)
        super().__setstate__(state)
        if terms is not None:
            self.vectorizer_.vocabulary_ = {str(t): i for i, t in enumerate(terms.tolist())}
        if flow is not None:
            self.flow_vectorizer_.vocabulary_ = {str(t): i for i, t in enumerate(flow.tolist())}

    def _forget_object_ids(self, result):
        # sklearn caches id(stop_words) on a vectorizer; an object id would make equal models differ on disk.
        for vec in (self.vectorizer_, getattr(self, "flow_vectorizer_", None)):
            if vec is not None:
                vec.__dict__.pop("_stop_words_id", None)
        return result

    def _text(self, docs: list[str]) -> sp.csr_matrix:
        if not docs:  # sklearn's TfidfTransformer rejects 0-row input
            width = self.vectorizer_.n_features if self.idf_transformer_ is not None else len(
                self.vectorizer_.vocabulary_
            )
            return sp.csr_matrix((0, width), dtype=np.float32)
        counts = self._forget_object_ids(self.vectorizer_.transform(docs))
        if self.idf_transformer_ is not None:
            counts = self.idf_transformer_.transform(counts)
        return counts

    def _fit_flow(self, docs: list[str]) -> sp.csr_matrix | None:
        self.flow_vectorizer_ = None
        if not self.name_flow:
            return None
        vec = TfidfVectorizer(analyzer=flow_terms, min_df=self.min_df, sublinear_tf=self.sublinear_tf,
                              dtype=np.float32)
        try:
            flow = vec.fit_transform(docs)
        except ValueError:  # no doc has a numbered copy, or no term reaches min_df: no block
            return None
        self.flow_vectorizer_ = vec
        return self._forget_object_ids(flow)

    def _flow(self, docs: list[str]) -> sp.csr_matrix | None:
        vec = self.flow_vectorizer_
        if vec is None:
            return None
        if not docs:
            return sp.csr_matrix((0, len(vec.vocabulary_)), dtype=np.float32)
        return vec.transform(docs)

    def _fit_metrics(self, docs: list[str]) -> np.ndarray | None:
        if not self.metrics:
            self.metrics_scale_ = None
            return None
        values = metrics_matrix(docs)
        # Divide by the training max, not the std: std-scaled uncentred columns
        # sit around 5-9 and made lbfgs LogisticRegression ~20x slower (500 vs
        # 30 iterations on Juliet); max-scaled ones stay in [0, ~1] and >= 0.
        scale = values.max(axis=0)
        scale[scale <= 0] = 1.0  # all-zero column: leave it as is
        self.metrics_scale_ = scale
        return values

    def _combine(self, text: sp.spmatrix, flow: sp.spmatrix | None, values: np.ndarray | None) -> sp.csr_matrix:
        blocks = [sp.csr_matrix(text, dtype=np.float32)] + ([] if flow is None else [flow])
        if values is not None:
            blocks.append(sp.csr_matrix((values / self.metrics_scale_).astype(np.float32)))
        if len(blocks) == 1:
            return blocks[0]
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def fit(self, X, y=None):
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X, y=None) -> sp.csr_matrix:
        docs = _as_docs(X, allow_empty=False)
        text = self._fit_text(docs)
        return self._combine(text, self._fit_flow(docs), self._fit_metrics(docs))

    def transform(self, X) -> sp.csr_matrix:
        check_is_fitted(self, "vectorizer_")
        docs = _as_docs(X, allow_empty=True)
        values = metrics_matrix(docs) if self.metrics_scale_ is not None else None
        return self._combine(self._text(docs), self._flow(docs), values)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "vectorizer_")
        if self.idf_transformer_ is None:
            names = ["tok:" + t for t in self.vectorizer_.get_feature_names_out()]
        else:
            names = [f"hash:{i}" for i in range(self.vectorizer_.n_features)]
        if self.flow_vectorizer_ is not None:
            names += ["flow:" + t for t in self.flow_vectorizer_.get_feature_names_out()]
        if self.metrics_scale_ is not None:
            names += ["metric:" + m for m in METRIC_NAMES]
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags
