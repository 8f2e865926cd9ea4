"""Name-flow terms (`features.name_flow`): what happens to each local name, as terms a model can read."""
import numpy as np
import skops.io as sio

from cgtrain.artifacts.audit import audit_archive
from cgtrain.features.featurizer import CodeFeaturizer
from cgtrain.features.flow import flow_terms
from cgtrain.features.ngram_counts import NgramCounts
from cgtrain.features.settings import code_featurizer, feature_settings
from cgtrain.features.tokenizer import token_doc, token_docs
from cgtrain.request import FeaturesConfig

# new T with delete [] (a mismatch) and new T[] with delete [] (a match), statements apart, other names and types
MISMATCH = "void f() { TwoIntsClass * data; data = NULL; data = new TwoIntsClass; if (x) { g(); } delete [] data; }"
MATCH = "void f() { long * buf; buf = NULL; buf = new long[100]; if (y) { h(); } delete [] buf; }"


def _doc(code):
    return token_doc(code, "c", split_names=False, ordinal_names=True)


def test_a_pairing_of_two_uses_is_one_term_whatever_the_names_and_distance():
    bad, good = set(flow_terms(_doc(MISMATCH))), set(flow_terms(_doc(MATCH)))
    assert "@=_new_<v>>>delete_[_]@" in bad  # allocated by `new T`, given back by `delete []`
    # (the right context stops after 5 tokens)
    assert "@=_new_long_[_100>>delete_[_]@" in good and "@=_new_<v>>>delete_[_]@" not in good
    assert "last:delete_[_]@" in bad & good
    renamed = MISMATCH.replace("data", "p").replace("TwoIntsClass", "Node")
    assert set(flow_terms(_doc(renamed))) == bad


def test_no_terms_without_the_numbered_copy():
    assert flow_terms(token_doc(MISMATCH, "c", split_names=False)) == []
    assert feature_settings(FeaturesConfig(name_flow=True))["name_flow"] is False  # needs ordinal_names
    assert feature_settings(FeaturesConfig(name_flow=True, ordinal_names=True))["name_flow"] is True
    docs = token_docs([MISMATCH, MATCH] * 3, "c")
    plain = CodeFeaturizer(min_df=1, metrics=False).fit_transform(docs)
    assert CodeFeaturizer(min_df=1, metrics=False, name_flow=True).fit_transform(docs).shape == plain.shape


def _codes(n, seed=0):
    rng = np.random.default_rng(seed)
    allocs = ["= new T", "= new T [ 10 ]", "= malloc ( 8 )", "= NULL"]
    frees = ["delete v", "delete [ ] v", "free ( v )", "v [ 0 ] = 1", "use ( v )"]
    return [f"void f() {{ char * v; int k; v {rng.choice(allocs)}; k = 1; {rng.choice(frees)}; "
            f"{rng.choice(frees)}; }}".replace(" v ", f" v{i % 3} ") for i in range(n)]


def test_fold_matrices_with_name_flow_equal_a_featurizer_fitted_on_the_fold():
    docs = token_docs(_codes(120), "c", split_names=False, ordinal_names=True)
    tr, va = np.arange(0, 120, 2)[:50], np.arange(1, 120, 2)
    settings = feature_settings(FeaturesConfig(ngram_max=2, min_df=2, max_features=None, metrics=True,
                                               ordinal_names=True, name_flow=True))
    X_tr, X_va = NgramCounts(docs).fold(tr, va, settings)
    feat = code_featurizer(settings)
    ref_tr, ref_va = feat.fit_transform([docs[i] for i in tr]), feat.transform([docs[i] for i in va])
    assert feat.flow_vectorizer_ is not None and len(feat.flow_vectorizer_.vocabulary_) > 5
    assert X_tr.shape == ref_tr.shape and X_va.shape == ref_va.shape
    assert abs(X_tr - ref_tr).max() < 1e-5 and abs(X_va - ref_va).max() < 1e-5


def test_a_fitted_featurizer_with_name_flow_saves_and_loads_through_the_audit():
    docs = token_docs(_codes(40), "c", split_names=False, ordinal_names=True)
    feat = CodeFeaturizer(min_df=1, name_flow=True).fit(docs)
    data = sio.dumps(feat)
    trusted = audit_archive(data)  # raises on a type or function outside the allowlist
    loaded = sio.loads(data, trusted=trusted)
    probe = docs + token_docs(["void g() { char * q; q = new T; free ( q ); }"], "c", False, False, True)
    assert abs(loaded.transform(probe) - feat.transform(probe)).max() == 0
    names = loaded.get_feature_names_out()
    assert any(n.startswith("flow:") for n in names) and len(names) == feat.transform(probe[:1]).shape[1]
    assert loaded.transform([]).shape == (0, len(names))
