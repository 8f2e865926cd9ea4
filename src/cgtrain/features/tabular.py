"""Table rows (numeric, categorical, date-time, text columns, optionally a code column) -> one sparse matrix.

`TabularFeaturizer` is a scikit-learn ColumnTransformer inside the model pipeline, so
imputation and encoding are fitted on training rows only (each CV fold, then the refit):

- numeric: median imputation, then standard scaling;
- categorical: a missing value is its own level "(missing)"; up to MAX_ONEHOT levels (in the
  training rows) one-hot (categories unseen in training map to all zeros); more levels: the
  MAX_ONEHOT - 1 most frequent one-hot plus "infrequent", each level's frequency, and (given
  the labels) its cross-fitted target mean (scikit-learn's TargetEncoder) — never a
  10k-wide one-hot;
- date-time: `DatetimeExpander` -> year, month, day, weekday, hour and days since 1970
  (an unparseable date is a missing one), median-imputed and scaled;
- text: TF-IDF word 1-2-grams per column (sublinear tf, at most TEXT_FEATURES terms);
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
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler, TargetEncoder
from sklearn.utils.validation import check_is_fitted

from cgtrain.features.tokenizer import token_docs

CODE = "code"  # the code column's name in the model input
MISSING = "(missing)"  # a missing categorical value is a level of its own
MAX_ONEHOT = 32  # levels in the training rows up to which a categorical column is one-hot encoded
TEXT_FEATURES = 5000  # TF-IDF terms per text column
DATE_PARTS = ("year", "month", "day", "weekday", "hour", "days")


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


class DatetimeExpander(TransformerMixin, BaseEstimator):
    """Stateless: date-time text columns -> DATE_PARTS numbers each (NaN where a value is missing or no date)."""

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        return np.hstack([date_parts(frame.iloc[:, j]) for j in range(frame.shape[1])]) if frame.shape[1] \
            else np.zeros((len(frame), 0))

    def __sklearn_is_fitted__(self) -> bool:
        return True


def parse_dates(values: pd.Series) -> pd.Series:
    """Text -> UTC timestamps (NaT where missing or not a date); ISO 8601 fast, any other layout slower."""
    text = pd.Series(values, dtype=object).where(pd.notna(values), None)
    try:
        return pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return pd.to_datetime(text, errors="coerce", utc=True, format="mixed")


def date_parts(values: pd.Series) -> np.ndarray:
    when = parse_dates(values)
    if when.isna().all() and pd.Series(values).notna().any():
        when = pd.to_datetime(pd.Series(values, dtype=object), errors="coerce", utc=True, format="mixed")
    dt = when.dt
    days = (when - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds() / 86400.0
    parts = [dt.year, dt.month, dt.day, dt.day_of_week, dt.hour, days]
    return np.column_stack([np.asarray(p, dtype=np.float64) for p in parts])


class FrequencyEncoder(TransformerMixin, BaseEstimator):
    """Each categorical value -> its share of the training rows (0 for a value unseen in training)."""

    def fit(self, X, y=None):
        frame = pd.DataFrame(X)
        self.n_features_in_ = frame.shape[1]
        self.shares_ = [frame.iloc[:, j].astype(str).value_counts(normalize=True).to_dict()
                        for j in range(frame.shape[1])]
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "shares_")
        frame = pd.DataFrame(X)
        return np.column_stack([frame.iloc[:, j].astype(str).map(share).fillna(0.0).to_numpy(np.float64)
                                for j, share in enumerate(self.shares_)])

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray([f"{c}_freq" for c in (input_features if input_features is not None else
                                                  range(self.n_features_in_))], dtype=object)


def target_type(y) -> str:
    y = np.asarray(y)
    if y.dtype.kind == "f":
        return "continuous"
    return "binary" if len(np.unique(y)) <= 2 else "multiclass"


class TabularFeaturizer(TransformerMixin, BaseEstimator):
    """ColumnTransformer over numeric, categorical, date-time, text and (optionally) code columns; CSR float32 out."""

    def __init__(self, numeric: tuple[str, ...] = (), categorical: tuple[str, ...] = (), code=None,
                 datetime: tuple[str, ...] = (), text: tuple[str, ...] = ()):
        self.numeric = numeric
        self.categorical = categorical
        self.code = code  # an unfitted CodeFeaturizer, or None
        self.datetime = datetime
        self.text = text

    def _columns(self, frame: pd.DataFrame, y=None) -> ColumnTransformer:
        parts = []
        if self.numeric:
            parts.append(("num", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                                           ("scale", StandardScaler())]), list(self.numeric)))
        few = [c for c in self.categorical if frame[c].nunique() <= MAX_ONEHOT]
        many = [c for c in self.categorical if c not in few]
        if few:
            parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=True, dtype=np.float32), few))
        if many:
            parts.append(("many", self._many_levels(y), many))
        if self.datetime:
            parts.append(("date", Pipeline([("parts", DatetimeExpander()),
                                            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                                            ("scale", StandardScaler())]), list(self.datetime)))
        for c in self.text:
            filled = int((frame[c] != "").sum())
            if filled:  # an empty text column has nothing to learn (and TF-IDF would find no terms)
                parts.append((f"text:{c}", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True,
                                                           min_df=2 if filled >= 50 else 1,
                                                           max_features=TEXT_FEATURES, dtype=np.float32), c))
        if self.code is not None:
            parts.append(("code", clone(self.code), CODE))
        if not parts:
            raise ValueError("TabularFeaturizer needs numeric or categorical columns, or a code featurizer")
        return ColumnTransformer(parts, remainder="drop", sparse_threshold=1.0)

    @staticmethod
    def _many_levels(y) -> FeatureUnion:
        """Many levels: the frequent ones one-hot, each level's frequency and (with labels) its target mean."""
        encoders = [("top", OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_ONEHOT,
                                          sparse_output=True, dtype=np.float32)),
                    ("freq", FrequencyEncoder())]
        if y is not None:
            encoders.append(("target", Pipeline([("mean", TargetEncoder(target_type=target_type(y))),
                                                 ("scale", StandardScaler())])))
        return FeatureUnion(encoders)

    def _clean(self, X) -> pd.DataFrame:
        """Numeric columns as float (unparseable -> missing); categorical as text ("(missing)"), text as text."""
        X = _frame(X)
        missing = [c for c in (*self.numeric, *self.categorical, *self.datetime, *self.text,
                               *([CODE] if self.code is not None else [])) if c not in X.columns]
        if missing:
            raise ValueError(f"input lacks column(s) {missing}; the model was trained on "
                             f"{[*self.numeric, *self.categorical, *self.datetime, *self.text]}")
        out = {c: pd.to_numeric(X[c], errors="coerce").astype(np.float64) for c in self.numeric}
        for c in self.categorical:
            out[c] = _as_text(X[c], MISSING)
        for c in self.datetime:
            out[c] = _as_text(X[c], None)
        for c in self.text:
            out[c] = _as_text(X[c], "")
        if self.code is not None:
            out[CODE] = X[CODE].tolist()
        return pd.DataFrame(out, index=X.index)

    def fit(self, X, y=None):
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X, y=None) -> sp.csr_matrix:
        frame = self._clean(X)
        self.columns_ = self._columns(frame, y)
        return self._csr(self.columns_.fit_transform(frame, y))

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
            elif name in ("cat", "many"):
                names += [f"cat:{n}" for n in trans.get_feature_names_out(cols)]
            elif name == "date":
                names += [f"date:{c}_{part}" for c in cols for part in DATE_PARTS]
            elif name.startswith("text:"):
                names += [f"{name}:{t}" for t in trans.get_feature_names_out()]
            elif name == "code":
                names += list(trans.get_feature_names_out())
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def _as_text(values: pd.Series, fill):
    """Values as text (True -> "True", 3.0 -> "3.0" as read), missing ones as `fill`."""
    col = values.astype(object)
    return col.where(col.notna(), None).map(lambda v: fill if v is None else str(v)).astype(object)


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
