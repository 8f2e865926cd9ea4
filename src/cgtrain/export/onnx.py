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

import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from cgtrain.export.onnx_common import VOCAB_FILE, Unsupported, _dense, _one_line, _save_onnx
from cgtrain.extras import missing
from cgtrain.fsutil import atomic_write_json
from cgtrain.artifacts.files import load_run_model, sha256_file
from cgtrain import rundir

ARTIFACTS_FILE = rundir.ARTIFACTS
ONNX_FILE, WEIGHTS_FILE = rundir.ONNX_FILE, "weights.safetensors"
PARITY_TOLERANCE = 1e-4
ONNX_NEEDS = ("onnx", "onnxruntime", "skl2onnx", "onnxmltools")  # the [onnx] extra
BATCH = 64
REPEATS = {"single": 30, "batch64": 10}


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
    sample = [] if sample_codes is None else sample_codes if hasattr(sample_codes, "iloc") else list(sample_codes)
    record = {**(extra or {}), **export_artifacts(pipeline, sample, run_dir, skops_path)}
    atomic_write_json(run_dir / ARTIFACTS_FILE, record)
    return record


def export_artifacts(pipeline, sample_codes: list[str], out_dir: Path, skops_path: Path | None = None,
                     repeats: dict[str, int] = REPEATS) -> dict[str, Any]:
    """Write the portable formats of `pipeline` into `out_dir` and measure each; returns the record."""
    out_dir = Path(out_dir)
    model, prefix = pipeline.steps[-1][1], pipeline[:-1]
    batch = _batch(sample_codes, BATCH)
    step_inputs = prefix.transform(batch) if len(batch) else None
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


def _batch(sample, size: int):
    """`size` rows made by repeating the sample (code strings, or a table's rows as a DataFrame)."""
    if not len(sample):
        return []
    repeat = size // len(sample) + 1
    if hasattr(sample, "iloc"):
        import pandas as pd

        return pd.concat([sample] * repeat, ignore_index=True).iloc[:size]
    return (list(sample) * repeat)[:size]


def onnx_record(pipeline, sample_codes: list[str], step_inputs, out_dir: Path, repeats) -> dict[str, Any]:
    """Export the model step as ONNX, check parity on the sample, time it; or say why it is unsupported."""
    model, prefix = pipeline.steps[-1][1], pipeline[:-1]
    path = out_dir / ONNX_FILE
    absent = missing(ONNX_NEEDS)
    if absent:
        return {"status": "skipped", "reason": f"needs {', '.join(absent)}: pip install 'cgtrain[onnx]'"}
    try:
        to_input, input_doc = export_onnx(model, prefix.transform(sample_codes[:2] if len(sample_codes) else ["pass"]),
                                          path, out_dir)
    except Unsupported as exc:
        path.unlink(missing_ok=True)
        return {"status": "unsupported", "reason": str(exc)}
    info: dict[str, Any] = {"status": "ok", **_file_info(path), "input": input_doc,
                            "output": "probabilities: float32 [batch, classes]",
                            "latency_scope": "model step only, on inputs prepared as documented"}
    if not len(sample_codes):
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


# --- torch (export/onnx_torch.py, imported only for a neural model) ------------------------------
def _is_neural(model) -> bool:
    return type(model).__name__ == "NeuralClassifier" and type(model).__module__ == "cgtrain.models.neural" \
        and hasattr(model, "weights_")


def write_safetensors(model, path: Path) -> Path:
    from cgtrain.export.onnx_torch import write_safetensors as write

    return write(model, path)


def _export_torch(model, example, path: Path, out_dir: Path):
    from cgtrain.export.onnx_torch import export_torch

    return export_torch(model, example, path, out_dir)


# --- shared pieces -----------------------------------------------------------------------
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


def _rows(X) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)
