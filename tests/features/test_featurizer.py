import numpy as np
import pytest
import scipy.sparse as sp
import skops.io as sio
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from cgtrain.features.code_metrics import METRIC_NAMES, metrics_matrix, token_metrics
from cgtrain.features.featurizer import CodeFeaturizer, split_tokens
from cgtrain.features.tokenizer import CodeTokenizer, token_docs

CODES = [
    "int f(char *s) { char buf[10]; strcpy(buf, s); return 0; }",
    "int f(char *s) { char buf[10]; strncpy(buf, s, sizeof(buf) - 1); buf[9] = '\\0'; return 0; }",
    "void g(int n) { int *p = malloc(n * sizeof(int)); if (p) { free(p); } }",
    "void g(int n) { int *p = malloc(n); free(p); free(p); }",
    "int h(int a, int b) { if (a > b) { return a - b; } else { return b + a; } }",
    "int h(int a, int b) { return a * b; }",
]
LABELS = [1, 0, 0, 1, 0, 1]
DOCS = token_docs(CODES, "c")


def metric(values, name):
    return values[METRIC_NAMES.index(name)]


def test_token_metrics_known_values():
    doc = "int f ( char * s ) { if ( s [ 0 ] == <chr> ) { return strlen ( s ) + 1 ; } return 0 ; }"
    raw = np.expm1(token_metrics(doc))  # counts are log1p-scaled
    assert metric(raw, "tokens") == pytest.approx(len(doc.split()))
    assert metric(raw, "calls") == pytest.approx(2)  # f( and strlen(, not if(
    assert metric(raw, "branches") == pytest.approx(1)
    assert metric(raw, "nesting") == pytest.approx(2)
    assert metric(raw, "bracket_nesting") == pytest.approx(2)  # ( [ ... ] )
    assert metric(raw, "comparisons") == pytest.approx(1)
    assert metric(raw, "arithmetic") == pytest.approx(2)  # "*" and "+"
    assert metric(raw, "pointer_ops") == pytest.approx(2)  # "*" and "["
    assert metric(raw, "numbers") == pytest.approx(3)
    assert metric(raw, "strings") == pytest.approx(1)
    assert metric(raw, "returns") == pytest.approx(2)
    ratio = metric(token_metrics(doc), "distinct_ratio")
    assert ratio == pytest.approx(len(set(doc.split())) / len(doc.split()))


def test_metrics_matrix_shape_and_empty_doc():
    m = metrics_matrix(["", "a ( ) ;", "} } {"])
    assert m.shape == (3, len(METRIC_NAMES)) and m.dtype == np.float64
    assert not m[0].any() and np.isfinite(m).all()
    assert metrics_matrix([]).shape == (0, len(METRIC_NAMES))


@pytest.mark.parametrize("kind", ["tfidf", "hashing"])
def test_shape_and_feature_names(kind):
    feat = CodeFeaturizer(kind=kind, min_df=1, n_hash_features=2**10)
    X = feat.fit_transform(DOCS)
    names = feat.get_feature_names_out()
    assert sp.isspmatrix_csr(X) and X.shape == (len(DOCS), len(names))
    assert X.dtype in (np.float32, np.float64)
    assert list(names[-len(METRIC_NAMES):]) == ["metric:" + m for m in METRIC_NAMES]
    prefix = "tok:" if kind == "tfidf" else "hash:"
    assert all(n.startswith(prefix) for n in names[: -len(METRIC_NAMES)])
    if kind == "tfidf":
        assert {"tok:strcpy", "tok:buf [", "tok:free ("} <= set(names)
    else:
        assert X.shape[1] == 2**10 + len(METRIC_NAMES)
    assert np.array_equal(feat.transform(DOCS).toarray(), X.toarray())


def test_metric_columns_scaled_to_unit_range():
    feat = CodeFeaturizer(min_df=1)
    block = feat.fit_transform(DOCS)[:, -len(METRIC_NAMES):].toarray()
    assert block.min() >= 0 and block.max() == pytest.approx(1.0)
    assert np.allclose(block.max(axis=0), 1.0)  # every metric varies in DOCS


def test_without_metrics_and_limits():
    feat = CodeFeaturizer(metrics=False, ngram_max=1, min_df=2, max_features=5).fit(DOCS)
    names = feat.get_feature_names_out()
    assert len(names) == 5 and not any(n.startswith("metric:") for n in names)
    assert feat.transform(DOCS).shape == (len(DOCS), 5)


def test_unseen_docs_and_empty_transform():
    feat = CodeFeaturizer(min_df=1).fit(DOCS[:4])
    unseen = token_docs(["zzz_never_seen(qqq); return 42;", ""], "c")
    X = feat.transform(unseen)
    assert X.shape == (2, len(feat.get_feature_names_out()))
    assert np.isfinite(X.toarray()).all()
    assert feat.transform([]).shape == (0, X.shape[1])


def test_deterministic():
    a = CodeFeaturizer(min_df=1).fit_transform(DOCS)
    b = CodeFeaturizer(min_df=1).fit(DOCS).transform(DOCS)
    assert (a != b).nnz == 0


def test_errors():
    with pytest.raises(ValueError, match="'bogus'.*tfidf, hashing"):
        CodeFeaturizer(kind="bogus").fit(DOCS)
    with pytest.raises(ValueError, match="empty"):
        CodeFeaturizer().fit([])
    with pytest.raises(TypeError):
        CodeFeaturizer().fit("int x ;")


def test_clone_and_params():
    feat = CodeFeaturizer(kind="hashing", ngram_max=3, metrics=False)
    twin = clone(feat)
    assert twin.get_params() == feat.get_params()
    fitted = CodeFeaturizer(min_df=1).fit(DOCS)
    assert not hasattr(clone(fitted), "vectorizer_")
    assert split_tokens(" a  b\tc\n") == ["a", "b", "c"]


@pytest.mark.parametrize("kind", ["tfidf", "hashing"])
def test_skops_round_trip(kind):
    pipe = Pipeline(
        [
            ("tokens", CodeTokenizer()),
            ("features", CodeFeaturizer(kind=kind, min_df=1, n_hash_features=2**12)),
            ("model", LogisticRegression()),
        ]
    ).fit(CODES, LABELS)
    data = sio.dumps(pipe)
    untrusted = sio.get_untrusted_types(data=data)
    allowed = ("cgtrain.", "sklearn.", "numpy.", "scipy.", "builtins.")
    assert all(t.startswith(allowed) for t in untrusted), untrusted
    loaded = sio.loads(data, trusted=untrusted)
    probe = CODES + ["void k(void) { char *q = NULL; q[0] = 1; }"]
    assert np.array_equal(loaded.predict(probe), pipe.predict(probe))
    assert np.array_equal(loaded.predict_proba(probe), pipe.predict_proba(probe))
