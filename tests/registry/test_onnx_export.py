"""Portable artifacts: ONNX of the model step with a parity check, safetensors for torch nets,
size and latency per format; families ONNX cannot take are recorded, never fatal."""
import json
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from safetensors.numpy import load_file
from sklearn.pipeline import Pipeline

from cgtrain.features.featurizer import CodeFeaturizer
from cgtrain.features.tokenizer import CodeTokenizer
from cgtrain.models import FAMILIES
from cgtrain.models.neural import NeuralClassifier
from cgtrain.artifacts.files import save_model
from cgtrain.export.onnx import PARITY_TOLERANCE, Unsupported, export_artifacts, export_onnx

FAST = {"single": 3, "batch64": 2}
WORDS = "alpha beta gamma delta value count index total name item data node size".split()


@pytest.fixture(scope="module")
def data():
    rng = random.Random(0)
    codes, labels = [], []
    for i in range(80):
        a, b, c = rng.sample(WORDS, 3)
        risky = i % 2
        call = f"eval({a}_{b})" if risky else f"int({a}_{b})"
        codes.append(f"def {c}_{i}({a}_{b}):\n    {c} = {call} + {rng.randint(0, 9)}\n    return {c}")
        labels.append(risky)
    return codes, np.asarray(labels)


def fitted(model, codes, y, features=True):
    steps = [("tokens", CodeTokenizer(language="python"))]
    if features:
        steps.append(("features", CodeFeaturizer(max_features=300, min_df=1)))
    return Pipeline([*steps, ("model", model)]).fit(codes, y)


def check_latency(record: dict) -> None:
    for size in ("single", "batch64"):
        assert 0 < record[size]["p50"] <= record[size]["p95"]


@pytest.mark.parametrize("family,params", [("logreg", {}), ("linear_svm", {}), ("random_forest", {"n_estimators": 20}),
                                           ("lightgbm", {"n_estimators": 20, "n_jobs": 1})])
def test_sklearn_families_export_onnx_that_matches_the_skops_model(tmp_path, data, family, params):
    codes, y = data
    pipe = fitted(FAMILIES.get(family).make(params, seed=0), codes, y)
    skops_path = tmp_path / "model.skops"
    save_model(pipe, skops_path)
    record = export_artifacts(pipe, codes[:16], tmp_path, skops_path, repeats=FAST)

    onnx_rec, skops_rec = record["formats"]["onnx"], record["formats"]["skops"]
    assert onnx_rec["status"] == "ok" and onnx_rec["parity"]["ok"], onnx_rec
    assert onnx_rec["parity"]["max_abs_diff"] <= PARITY_TOLERANCE and onnx_rec["parity"]["rows"] == 16
    assert onnx_rec["bytes"] == (tmp_path / "model.onnx").stat().st_size > 0
    assert skops_rec["bytes"] == skops_path.stat().st_size
    check_latency(onnx_rec["latency_ms"])
    check_latency(skops_rec["latency_ms"])
    check_latency(skops_rec["model_step_latency_ms"])
    # the graph takes what its documentation says: the dense feature matrix
    model = onnx.load(str(tmp_path / "model.onnx"))
    assert "features" in {p.key: p.value for p in model.metadata_props}["cgtrain.input"]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    X = pipe[:-1].transform(codes[20:30]).toarray().astype(np.float32)
    got = session.run(["probabilities"], {"features": X})[0]
    np.testing.assert_allclose(got, pipe.predict_proba(codes[20:30]), atol=PARITY_TOLERANCE)


def test_a_model_without_probabilities_is_recorded_as_unsupported_not_failed(tmp_path, data):
    codes, y = data
    pipe = fitted(FAMILIES.get("lightgbm").make({"n_estimators": 10, "n_jobs": 1}, seed=0, task="regression"),
                  codes, y.astype(float))
    record = export_artifacts(pipe, codes[:8], tmp_path, None, repeats=FAST)
    assert record["formats"]["onnx"]["status"] == "unsupported"
    assert "LGBMRegressor" in record["formats"]["onnx"]["reason"]
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("net", ["textcnn", "transformer", "mlp"])
def test_torch_families_export_safetensors_and_onnx(tmp_path, data, net):
    codes, y = data
    clf = NeuralClassifier(net=net, epochs=1, embed_dim=16, width=16, heads=2, max_len=48, batch_size=32,
                           patience=None, device="cpu")
    pipe = fitted(clf, codes, y, features=(net == "mlp"))
    record = export_artifacts(pipe, codes[:12], tmp_path, None, repeats=FAST)

    onnx_rec = record["formats"]["onnx"]
    assert onnx_rec["status"] == "ok" and onnx_rec["parity"]["max_abs_diff"] <= PARITY_TOLERANCE, onnx_rec
    check_latency(onnx_rec["latency_ms"])
    weights = load_file(str(tmp_path / "weights.safetensors"))
    assert set(weights) == set(clf.weights_)
    for name, value in clf.weights_.items():
        np.testing.assert_array_equal(weights[name], value)
    assert record["formats"]["safetensors"]["bytes"] == (tmp_path / "weights.safetensors").stat().st_size
    if net != "mlp":
        assert json.loads((tmp_path / "vocab.json").read_text()) == clf.vocab_


def test_bigru_is_unsupported_with_a_reason(tmp_path):
    clf = NeuralClassifier(net="bigru")
    clf.weights_ = {}
    with pytest.raises(Unsupported, match="packed sequences"):
        export_onnx(clf, ["x"], tmp_path / "model.onnx", tmp_path)
