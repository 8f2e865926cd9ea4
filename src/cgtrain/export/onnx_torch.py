"""ONNX export of the PyTorch families (`NeuralClassifier`), for `cgtrain.export.onnx`; imported only
when the model is one, so exporting a scikit-learn or LightGBM model needs no torch."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from cgtrain.engine.data import SequenceData, Vocab, encode_docs
from cgtrain.export.onnx_common import VOCAB_FILE, Unsupported, _dense, _one_line, _save_onnx
from cgtrain.models.neural import NETS


def write_safetensors(model, path: Path) -> Path:
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v) for k, v in model.weights_.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"net": model.net, "classes": json.dumps(np.asarray(model.classes_).tolist()),
                "params": json.dumps(model.get_params(), default=str)}
    save_file(tensors, str(path), metadata=metadata)
    return path


def export_torch(model, example, path: Path, out_dir: Path):
    """Write a fitted NeuralClassifier's net as ONNX; returns (step input -> ONNX input, input doc)."""
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
