"""Attributions against their definitions: linear SHAP, tree SHAP additivity, IG completeness, token spans."""
import json

import numpy as np
import pytest
import scipy.sparse as sp

from cgtrain.qa import explain as ex
from cgtrain.features.tokenizer import tokenize_code


def test_lexemes_cover_the_tokens_in_order():
    code = 'int main(void) {\n  char *s = "hi";\n  strcpy(dstBuffer, s); /* x */ return 0x10;\n}'
    spans = ex.lexemes(code, "c")
    assert [t for *_, ts in spans for t in ts] == tokenize_code(code, "c")
    assert code[spans[0][0]:spans[0][1]] == "int"
    assert any(code[s:e] == "dstBuffer" and len(ts) == 2 for s, e, ts in spans)  # one lexeme, two subwords


def test_linear_shap_is_coef_times_centered_features(qa_run):
    from cgtrain.serve.predictor import load_predictor
    from qa_helpers import held_codes

    pipeline = load_predictor(run_dir=qa_run).model
    codes = held_codes(qa_run)[:40]
    X = sp.csr_matrix(pipeline[:-1].transform(codes))
    explainer, method = ex.feature_explainer(pipeline[-1], X)
    values, base = ex.shap_feature_values(explainer, X)
    assert method == "shap-linear"
    coef = pipeline[-1].coef_[0]
    mean = np.asarray(X.mean(0)).ravel()
    np.testing.assert_allclose(values, (X.toarray() - mean) * coef, atol=1e-6)
    margin = pipeline[-1].decision_function(X)
    np.testing.assert_allclose(values.sum(1) + base, margin, atol=1e-6)


def test_ngram_token_attr_conserves_present_ngrams(qa_run):
    from cgtrain.serve.predictor import load_predictor
    from qa_helpers import held_codes

    pipeline = load_predictor(run_dir=qa_run).model
    featurizer = pipeline[-2]
    code = held_codes(qa_run)[0]
    tokens = pipeline[0].transform([code])[0].split()
    values = np.random.default_rng(0).normal(size=len(featurizer.get_feature_names_out()))
    attr = ex.ngram_token_attr(tokens, values, featurizer)
    present = set()
    vocab = featurizer.vectorizer_.vocabulary_
    for n in range(1, featurizer.ngram_max + 1):
        present |= {vocab[g] for i in range(len(tokens) - n + 1) if (g := " ".join(tokens[i:i + n])) in vocab}
    assert attr.sum() == pytest.approx(values[sorted(present)].sum())


def test_tree_shap_adds_up_to_lightgbm_margin():
    from lightgbm import LGBMClassifier

    X = sp.random(300, 400, density=0.02, format="csr", random_state=0, dtype=np.float32)
    y = (np.asarray(X[:, :20].sum(1)).ravel() > 0.05).astype(int)
    model = LGBMClassifier(n_estimators=30, verbose=-1).fit(X, y)
    explainer, method = ex.feature_explainer(model, X)
    values, base = ex.shap_feature_values(explainer, X[:25])
    assert method == "shap-tree"
    np.testing.assert_allclose(values.sum(1) + base, model.predict(X[:25], raw_score=True), atol=1e-5)


def test_integrated_gradients_complete_for_a_token_net(cwe_jsonl):
    import torch
    from captum.attr import LayerIntegratedGradients
    from sklearn.pipeline import Pipeline

    from cgtrain.features.tokenizer import CodeTokenizer
    from cgtrain.models.neural import NeuralClassifier
    from cgtrain.engine.data import PAD_ID, UNK_ID, Vocab, encode_docs

    rows = [json.loads(line) for line in cwe_jsonl.read_text().splitlines()][:120]
    codes, y = [r["code"] for r in rows], np.array([r["label"] for r in rows])
    pipe = Pipeline([("tokens", CodeTokenizer(language="c")),
                     ("model", NeuralClassifier("textcnn", epochs=2, embed_dim=16, width=16, batch_size=32))])
    pipe.fit(codes, y)
    att = ex.explain(pipe, codes[:6], [0, 1])
    assert att.method == "integrated-gradients" and len(att.rows) == 2
    clf = pipe[-1]
    net = clf._fitted_net().eval()
    ids = encode_docs(Vocab(clf.vocab_), pipe[0].transform(codes[:1]), clf.max_len)[0][None]
    baseline = torch.where(ids != PAD_ID, torch.full_like(ids, UNK_ID), ids)
    with torch.no_grad():
        gap = float(net(ids)[0, 1] - net(baseline)[0, 1])
    assert sum(att.rows[0]["token_attr"]) == pytest.approx(gap, abs=0.05 * max(1.0, abs(gap)))
    lig = LayerIntegratedGradients(lambda i: net(i), net.embed)
    _, delta = lig.attribute(ids, baselines=baseline, target=1, n_steps=32, return_convergence_delta=True)
    assert abs(float(delta)) < 0.05 * max(1.0, abs(gap))


def test_explanations_file_of_the_run(qa_run):
    e = json.loads((qa_run / "explanations.json").read_text())
    assert e["method"] == "shap-linear" and e["n_rows"] >= 4
    assert e["global"]["toward_flawed"], "some n-grams must push toward flawed"
    names = [t["name"] for t in e["global"]["toward_flawed"][:10]]
    assert any(k in " ".join(names) for k in ("strcpy", "gets", "printf")), names
    for example in e["examples"]:
        assert len(example["tokens"]) == len(example["token_attr"])
        assert sum(n for *_, n in example["spans"]) == len(example["tokens"])
