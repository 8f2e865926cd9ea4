"""Table rows (numeric + categorical columns, optionally a code column) -> one sparse feature matrix.

`TabularFeaturizer` is a scikit-learn ColumnTransformer inside the model pipeline, so
imputation and encoding are fitted on training rows only (each CV fold, then the refit):

- numeric: median imputation, then standard scaling;
- categorical: most-frequent imputation, then one-hot (categories unseen in training
  map to all zeros);
- code (optional): a `CodeFeaturizer` over the column's token docs, side by side.

The model input is a DataFrame with those columns; `CodeColumnTokenizer` turns its raw
code column into token docs first (stateless), as `CodeTokenizer` does for code-only models.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted

from cgtrain.features.tokenizer import token_docs

CODE = "code"  # the code column's name in the model input


def _frame(X) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"expected a DataFrame of table columns, got {type(X).__name__}")
    return X


class CodeColumnTokenizer(TransformerMixin, BaseEstimator):
    """Stateless: the frame with its code column replaced by token docs."""

    def __init__(self, language: str | None = None):
        self.language = language

    def fit(self, X, y=None):
        return self

    def transform(self, X) -> pd.DataFrame:
        X = _frame(X).copy()
        X[CODE] = token_docs([str(c) for c in X[CODE]], self.language)
        return X

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


class TabularFeaturizer(TransformerMixin, BaseEstimator):
    """ColumnTransformer over numeric, categorical and (optionally) code columns; CSR float32 out."""

    def __init__(self, numeric: tuple[str, ...] = (), categorical: tuple[str, ...] = (), code=None):
        self.numeric = numeric
        self.categorical = categorical
        self.code = code  # an unfitted CodeFeaturizer, or None

    def _columns(self) -> ColumnTransformer:
        parts = []
        if self.numeric:
            parts.append(("num", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                                           ("scale", StandardScaler())]), list(self.numeric)))
        if self.categorical:
            parts.append(("cat", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=True, dtype=np.float32))]),
                list(self.categorical)))
        if self.code is not None:
            parts.append(("code", clone(self.code), CODE))
        if not parts:
            raise ValueError("TabularFeaturizer needs numeric or categorical columns, or a code featurizer")
        return ColumnTransformer(parts, remainder="drop", sparse_threshold=1.0)

    def _clean(self, X) -> pd.DataFrame:
        """Numeric columns as float (unparseable -> missing); categorical as text, missing as NaN."""
        X = _frame(X)
        missing = [c for c in (*self.numeric, *self.categorical, *([CODE] if self.code is not None else []))
                   if c not in X.columns]
        if missing:
            raise ValueError(f"input lacks column(s) {missing}; the model was trained on "
                             f"{[*self.numeric, *self.categorical]}")
        out = {c: pd.to_numeric(X[c], errors="coerce").astype(np.float64) for c in self.numeric}
        for c in self.categorical:
            col = X[c].astype(object)
            out[c] = col.where(col.notna(), np.nan).map(lambda v: v if v != v else str(v)).astype(object)
        if self.code is not None:
            out[CODE] = X[CODE].tolist()
        return pd.DataFrame(out, index=X.index)

    def fit(self, X, y=None):
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X, y=None) -> sp.csr_matrix:
        self.columns_ = self._columns()
        return self._csr(self.columns_.fit_transform(self._clean(X)))

    def transform(self, X) -> sp.csr_matrix:
        check_is_fitted(self, "columns_")
        return self._csr(self.columns_.transform(self._clean(X)))

    @staticmethod
    def _csr(out) -> sp.csr_matrix:
        return sp.csr_matrix(out, dtype=np.float32)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "columns_")
        names = []
        for name, trans, cols in self.columns_.transformers_:
            if name == "num":
                names += [f"num:{c}" for c in cols]
            elif name == "cat":
                names += [f"cat:{n}" for n in trans.get_feature_names_out(cols)]
            elif name == "code":
                names += list(trans.get_feature_names_out())
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def table_input(table: pd.DataFrame, idx, docs: list[str] | None = None) -> pd.DataFrame:
    """The model input for rows `idx`: the table columns, plus the code (token docs) column."""
    idx = np.asarray(idx)
    frame = table.iloc[idx].reset_index(drop=True)
    if docs is not None:
        frame.insert(0, CODE, [docs[i] for i in idx])
    return frame


def row_texts(texts: list[str], table: pd.DataFrame | None) -> list[str]:
    """Per-row text for duplicate detection: the code (if any) and the row's feature values."""
    if table is None:
        return texts
    values = table.astype(object).where(table.notna(), None).itertuples(index=False, name=None)
    return [f"{t}\x1f{row!r}" for t, row in zip(texts, values)]
