"""Token docs cached on disk per dataset content; whole-name tokens; chi² column selection."""
import numpy as np
import scipy.sparse as sp

from cgtrain.features import token_cache
from cgtrain.features.selection import Chi2Select
from cgtrain.features.settings import code_featurizer, feature_settings, settings_key
from cgtrain.features.tokenizer import CodeTokenizer, token_doc
from cgtrain.request import FeaturesConfig

CODES = ["int f(char *dataBuffer) { return strlen(dataBuffer) > 10; }", "x = 1", ""]


def test_whole_names_when_the_split_is_off():
    assert "dataBuffer" in token_doc(CODES[0], "c", split_names=False).split()
    assert "dataBuffer" not in token_doc(CODES[0], "c").split() and "buffer" in token_doc(CODES[0], "c").split()
    assert CodeTokenizer("c", split_names=False).transform(CODES[:1]) == [token_doc(CODES[0], "c", False)]


def test_docs_are_tokenised_once_then_read_from_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("CGTRAIN_CACHE_DIR", str(tmp_path))
    first = token_cache.cached_token_docs(CODES, "c", split_names=False)
    assert first == [token_doc(c, "c", False) for c in CODES]
    assert len(list((tmp_path / "tokens").iterdir())) == 1

    def fail(*args, **kwargs):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(token_cache, "token_docs", fail)
    assert token_cache.cached_token_docs(CODES, "c", split_names=False) == first
    # another setting or other content is another key
    assert token_cache.docs_key(CODES, "c", True) != token_cache.docs_key(CODES, "c", False)
    assert token_cache.docs_key(CODES[:2], "c", False) != token_cache.docs_key(CODES, "c", False)


def test_feature_settings_layer_the_trial_over_the_request():
    base = FeaturesConfig(ngram_max=2, min_df=1)
    s = feature_settings(base, {"ngram_max": 3, "split_names": False})
    assert s["ngram_max"] == 3 and s["min_df"] == 1 and s["split_names"] is False and "space" not in s
    assert settings_key(s) != settings_key(feature_settings(base))
    feat = code_featurizer(s)
    assert feat.ngram_max == 3 and feat.min_df == 1


def test_chi2_keeps_the_k_most_label_dependent_columns():
    y = np.arange(200) % 2
    X = sp.random(200, 50, density=0.2, random_state=0, format="csr")
    X = sp.hstack([X, sp.csr_matrix(y[:, None] * 5.0)], format="csr")  # column 50 is the label itself
    sel = Chi2Select(k=5).fit(X, y)
    assert sel.transform(X).shape == (200, 5) and 50 in sel.columns_
    assert Chi2Select(k=500).fit(X, y).transform(X).shape == X.shape  # fewer columns than k: all kept


def test_fold_matrices_from_one_count_pass_equal_a_featurizer_fitted_on_the_fold():
    from cgtrain.features.ngram_counts import NgramCounts, supports

    words = "int char buf len i n if for while return data size ptr + - * = < > ( ) ; { }".split()
    rng = np.random.default_rng(0)
    docs = [" ".join(rng.choice(words, size=rng.integers(5, 60))) for _ in range(160)]
    tr, va = np.arange(0, 160, 2)[:60], np.arange(1, 160, 2)
    counts = NgramCounts(docs)
    for settings in (dict(kind="tfidf", ngram_max=3, min_df=2, max_features=None, sublinear_tf=True, metrics=False),
                     dict(kind="tfidf", ngram_max=2, min_df=4, max_features=None, sublinear_tf=False, metrics=True)):
        assert supports(settings)
        X_tr, X_va = counts.fold(tr, va, settings)
        feat = code_featurizer({**settings, "split_names": True})
        ref_tr, ref_va = feat.fit_transform([docs[i] for i in tr]), feat.transform([docs[i] for i in va])
        assert X_tr.shape == ref_tr.shape and X_va.shape == ref_va.shape
        assert abs(X_tr - ref_tr).max() < 1e-5 and abs(X_va - ref_va).max() < 1e-5
    assert not supports(dict(kind="hashing", ngram_max=2, min_df=2)) and not supports(dict(kind="tfidf", ngram_max=2,
                                                                                          min_df=1))
