"""Portable copies of a fitted pipeline, with a parity check, size and latency per format.

The pipeline is tokenizer -> [featurizer] -> model. ONNX cannot run cgtrain's Python
tokenizer or code-metric features, so the ONNX graph holds the *model step only*:

* feature-matrix families (logreg, linear_svm, random_forest, mlp; lightgbm needs
  onnxmltools and is recorded as unsupported): input `features`, float32 [batch, F],
  the dense output of the pipeline's fitted `features` step
  (`pipeline[:-1].transform(codes).toarray()`);
* token families (textcnn, transformer): input `ids`, int64 [batch, tokens], token ids
  from `vocab.json` (`<unk>` = 1 for unknown tokens) of the first `max_len` tokens of each
  token doc (`pipeline[:-1].transform(codes)`), right-padded with 0 to the batch's longest
  row (textcnn: at least 5) or to exactly `max_len` (transformer: the exporter bakes the
  sequence length into the attention reshapes); bigru is unsupported (packed sequences).

Output `probabilities`: float32 [batch, classes], in the order of `model.json`'s classes.
Torch families also get their weights as `weights.safetensors` (tensors named as in the
net's state_dict). `artifacts.json` records, per format: file, bytes, SHA-256, what the
latency covers and p50/p95 milliseconds for one item and for a batch of 64; plus the
ONNX parity check (max |delta probability| against the skops pipeline on held-out rows,
tolerance 1e-4), or why a format is unsupported.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from cgtrain.fsutil import atomic_write_json
from cgtrain.artifacts.files import load_run_model, sha256_file
from cgtrain import rundir
from cgtrain.engine.data import SequenceData
from cgtrain.engine.data import Vocab
from cgtrain.engine.data import encode_docs
from cgtrain.models.neural import NETS
from cgtrain.models.neural import NeuralClassifier

ARTIFACTS_FILE = rundir.ARTIFACTS
ONNX_FILE, WEIGHTS_FILE, VOCAB_FILE = rundir.ONNX_FILE, "weights.safetensors", "vocab.json"
PARITY_TOLERANCE = 1e-4
BATCH = 64
REPEATS = {"single": 30, "batch64": 10}


class Unsupported(Exception):
    """This model cannot be written as ONNX (the reason is recorded, nothing fails)."""


def export_run_artifacts(run_dir: Path, sample_codes: Sequence[str] | None, pipeline=None,
                         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export the run's model (`pipeline`: already loaded from it), measure each format, write
    `artifacts.json` (with `extra` fields); returns the record."""
    run_dir = Path(run_dir)
    if pipeline is None:
        pipeline, manifest = load_run_model(run_dir)
    else:
        manifest = rundir.RunDir(run_dir).manifest()
    skops_path = run_dir / Path(manifest.file if manifest else rundir.MODEL_FILE).name
    for name in (ONNX_FILE, WEIGHTS_FILE, VOCAB_FILE):  # from an earlier model of this run dir, if any
        (run_dir / name).unlink(missing_ok=True)
    record = {**(extra or {}), **export_artifacts(pipeline, list(sample_codes or []), run_dir, skops_path)}
    atomic_write_json(run_dir / ARTIFACTS_FILE, record)
    return record


def export_artifacts(pipeline, sample_codes: list[str], out_dir: Path, skops_path: Path | None = None,
                     repeats: dict[str, int] = REPEATS) -> dict[str, Any]:
    """Write the portable formats of `pipeline` into `out_dir` and measure each; returns the record."""
    out_dir = Path(out_dir)
    model, prefix = pipeline.steps[-1][1], pipeline[:-1]
    batch = (sample_codes * (BATCH // max(1, len(sample_codes)) + 1))[:BATCH] if sample_codes else []
    step_inputs = prefix.transform(batch) if batch else None
    formats: dict[str, Any] = {}
    if skops_path is not None:
        formats["skops"] = {**_file_info(skops_path), "latency_scope": "end to end: code -> probabilities",
                            "latency_ms": _latency(pipeline.predict_proba, batch, repeats),
                            "model_step_latency_ms": _latency(model.predict_proba, step_inputs, repeats)}
    if _is_neural(model):
        formats["safetensors"] = {**_file_info(write_safetensors(model, out_dir / WEIGHTS_FILE)),
                                  "latency_scope": "weights only (load them into the net's code)"}
    formats["onnx"] = onnx_record(pipeline, sample_codes, step_inputs, out_dir, repeats)
    return {"formats": formats, "sample_rows": len(sample_codes), "batch": BATCH}


def onnx_record(pipeline, sample_codes: list[str], step_inputs, out_dir: Path, repeats) -> dict[str, Any]:
    """Export the model step as ONNX, check parity on the sample, time it; or say why it is unsupported."""
    model, prefix = pipeline.steps[-1][1], pipeline[:-1]
    path = out_dir / ONNX_FILE
    try:
        to_input, input_doc = export_onnx(model, prefix.transform(sample_codes[:2] or ["pass"]), path, out_dir)
    except Unsupported as exc:
        path.unlink(missing_ok=True)
        return {"status": "unsupported", "reason": str(exc)}
    info: dict[str, Any] = {"status": "ok", **_file_info(path), "input": input_doc,
                            "output": "probabilities: float32 [batch, classes]",
                            "latency_scope": "model step only, on inputs prepared as documented"}
    if not sample_codes:
        info["parity"] = {"status": "skipped", "reason": "no held-out rows to check on"}
        return info
    session = _session(path)
    feed = session.get_inputs()[0].name

    def run(X: np.ndarray) -> np.ndarray:
        return session.run(["probabilities"], {feed: X})[0]

    try:
        got = np.asarray(run(to_input(prefix.transform(sample_codes))), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - e.g. a shape the exporter baked in
        path.unlink(missing_ok=True)
        return {"status": "unsupported", "reason": f"the exported graph fails on held-out rows: {_one_line(exc)}"}
    expected = np.asarray(pipeline.predict_proba(sample_codes), dtype=np.float64)
    diff = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
    ok = diff <= PARITY_TOLERANCE
    info["parity"] = {"rows": len(sample_codes), "max_abs_diff": diff, "tolerance": PARITY_TOLERANCE, "ok": ok}
    if not ok:
        info["status"] = "parity_failed"
    info["latency_ms"] = _latency(run, to_input(step_inputs), repeats)
    return info


def export_onnx(model, example, path: Path, out_dir: Path) -> tuple[Callable[[Any], np.ndarray], str]:
    """Write `model` (the pipeline's last step) as ONNX; returns (step input -> ONNX input, input doc)."""
    if _is_neural(model):
        return _export_torch(model, example, path, out_dir)
    return _export_sklearn(model, example, path)


# --- scikit-learn ------------------------------------------------------------------------
def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32)


def _register_lightgbm() -> dict[str, int] | None:
    """Teach skl2onnx LightGBM's classifier (onnxmltools' converter); the opsets it can write."""
    from lightgbm import LGBMClassifier
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
                                convert_lightgbm, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    return {"": 17, "ai.onnx.ml": 3}  # onnxmltools writes ai.onnx.ml 3; skl2onnx defaults to a newer one


def _export_sklearn(model, example, path: Path):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    width = _dense(example).shape[1]
    opsets = _register_lightgbm() if type(model).__module__.startswith("lightgbm") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, width]))],
                          options={id(model): {"zipmap": False}}, target_opset=opsets)
    except Exception as exc:  # noqa: BLE001 - skl2onnx raises many kinds for unknown models
        raise Unsupported(f"skl2onnx cannot convert {type(model).__name__}: {_one_line(exc)}") from None
    outputs = [o.name for o in onx.graph.output]
    if "probabilities" not in outputs:
        raise Unsupported(f"{type(model).__name__} converted without a probabilities output ({outputs})")
    doc = f"features: float32 [batch, {width}], the dense output of the pipeline's features step"
    _save_onnx(onx, path, doc)
    return _dense, doc


# --- torch ---------------------------------------------------------------------------------
def _is_neural(model) -> bool:
    return isinstance(model, NeuralClassifier) and hasattr(model, "weights_")


def write_safetensors(model, path: Path) -> Path:
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v) for k, v in model.weights_.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"net": model.net, "classes": json.dumps(np.asarray(model.classes_).tolist()),
                "params": json.dumps(model.get_params(), default=str)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def _export_torch(model, example, path: Path, out_dir: Path):
    if model.net == "bigru":
        raise Unsupported("bigru: packed sequences (pack_padded_sequence) have no export in torch.onnx's "
                          "TorchScript exporter; use the skops file or weights.safetensors")
    net = model._fitted_net()  # rebuilt from weights_ (plain arrays), in eval mode
    if NETS[model.net].input == "features":
        wrapper, to_input = _DenseMLP(net), _dense
        name, axes = "features", {0: "batch"}
        doc = f"features: float32 [batch, {model.n_features_in_}], the dense output of the pipeline's features step"
    else:
        # The exporter bakes the transformer's sequence length into its attention reshapes: fix it at max_len.
        fixed = model.net == "transformer"
        wrapper, to_input = _Probabilities(net), _ids_encoder(model, fixed)
        name, axes = "ids", ({0: "batch"} if fixed else {0: "batch", 1: "tokens"})
        width = f"exactly {model.max_len}" if fixed else f"the batch's longest, at least {NETS[model.net].min_len}"
        doc = (f"ids: int64 [batch, tokens], ids from {VOCAB_FILE} (<unk>=1) of the first {model.max_len} "
               f"tokens of each token doc, right-padded with 0 to {width} tokens")
        (out_dir / VOCAB_FILE).write_text(json.dumps(model.vocab_), encoding="utf-8")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper.eval(), (torch.from_numpy(to_input(example)),), str(path), dynamo=False,
                              input_names=[name], output_names=["probabilities"], opset_version=17,
                              dynamic_axes={name: axes, "probabilities": {0: "batch"}})
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds for unsupported ops
        raise Unsupported(f"torch.onnx.export failed for {model.net}: {_one_line(exc)}") from None
    import onnx

    _save_onnx(onnx.load(str(path)), path, doc)
    return to_input, doc


def _ids_encoder(model, fixed: bool) -> Callable[[Sequence[str]], np.ndarray]:
    vocab = Vocab(model.vocab_)
    min_len = model.max_len if fixed else NETS[model.net].min_len

    def encode(docs) -> np.ndarray:
        data = SequenceData(encode_docs(vocab, list(docs), model.max_len), None, min_len)
        (ids,), _ = data.collate(np.arange(data.n), torch.device("cpu"))
        return ids.numpy()

    return encode


class _Probabilities(nn.Module):
    """net(ids) -> softmax probabilities (what predict_proba returns)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, ids):
        return torch.softmax(self.net(ids).float(), dim=1)


class _DenseMLP(nn.Module):
    """SparseMLP on a dense feature matrix: EmbeddingBag(sum, per-sample weights) == x @ W."""

    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        h = self.mlp.hidden(x @ self.mlp.input.weight + self.mlp.bias)
        return torch.softmax(self.mlp.out(torch.relu(h)), dim=1)


# --- shared pieces -----------------------------------------------------------------------
def _save_onnx(onx, path: Path, input_doc: str) -> None:
    import onnx

    onnx.helper.set_model_props(onx, {"cgtrain.input": input_doc, "cgtrain.output": "probabilities"})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(onx, str(path))


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # comparable latencies; no thread pool fighting training
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _file_info(path: Path) -> dict[str, Any]:
    return {"file": Path(path).name, "bytes": Path(path).stat().st_size, "sha256": sha256_file(path)}


def _latency(fn: Callable[[Any], Any], batch, repeats: dict[str, int]) -> dict[str, Any] | None:
    """p50/p95 milliseconds for one item and for the whole batch (64 items)."""
    if batch is None or _rows(batch) == 0:
        return None
    single = batch[:1]
    fn(single)  # warm-up: lazy module builds, thread pools
    out = {}
    for label, items, n in (("single", single, repeats["single"]), ("batch64", batch, repeats["batch64"])):
        times = []
        for _ in range(max(1, n)):
            start = time.perf_counter()
            fn(items)
            times.append((time.perf_counter() - start) * 1000)
        out[label] = {"p50": round(float(np.percentile(times, 50)), 4),
                      "p95": round(float(np.percentile(times, 95)), 4), "repeats": len(times)}
    return out


def _one_line(exc: Exception, limit: int = 300) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:limit]


def _rows(X) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)
