"""PyTorch families: TextCNN, BiGRU and a small Transformer over token docs; an MLP over
the sparse feature matrix. One scikit-learn-compatible estimator, `NeuralClassifier`,
trains any of them with `cgtrain.engine.loop.train`.

Fitted state is plain data (`vocab_`: list of str, `weights_`: name -> numpy array),
so a fitted estimator can be stored without pickling torch objects; the torch module
is rebuilt from it on first use.
"""
from __future__ import annotations


import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from cgtrain.evaluate.metrics import METRICS, score
from cgtrain.engine.checkpoint import DirStore
from cgtrain.engine.data import PAD_ID, SequenceData, SparseData, Vocab, encode_docs
from cgtrain.engine.device import resolve_device
from cgtrain.engine.loop import TrainConfig, train

KERNEL_SIZES = (2, 3, 5)


# --- the nets -----------------------------------------------------------------------
class TextCNN(nn.Module):
    """Kim (2014): parallel 1-D convolutions, max-pooled over valid positions only."""

    def __init__(self, vocab_size: int, n_classes: int, embed_dim: int, width: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, width, k) for k in KERNEL_SIZES)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width * len(KERNEL_SIZES), n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != PAD_ID).sum(1)
        x = self.drop(self.embed(ids)).transpose(1, 2)
        pooled = []
        for k, conv in zip(KERNEL_SIZES, self.convs):
            h = torch.relu(conv(x))  # position t sees tokens t..t+k-1
            valid = torch.arange(h.shape[2], device=ids.device) < (lengths - k + 1).clamp(min=1)[:, None]
            pooled.append(h.masked_fill(~valid[:, None, :], 0.0).amax(2))
        return self.out(self.drop(torch.cat(pooled, 1)))


class BiGRU(nn.Module):
    """Bidirectional GRU over packed sequences (padding never enters the recurrence)."""

    def __init__(self, vocab_size: int, n_classes: int, embed_dim: int, width: int, depth: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.gru = nn.GRU(embed_dim, width, num_layers=depth, batch_first=True, bidirectional=True,
                          dropout=dropout if depth > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(2 * width, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = (ids != PAD_ID).sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.drop(self.embed(ids)), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # (depth * 2, batch, width)
        return self.out(self.drop(torch.cat([h[-2], h[-1]], 1)))


class TransformerNet(nn.Module):
    """Pre-norm Transformer encoder, learned positions, masked mean pooling."""

    def __init__(self, vocab_size: int, n_classes: int, embed_dim: int, width: int, depth: int, heads: int,
                 dropout: float, max_len: int):
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be a multiple of heads ({heads})")
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.pos = nn.Embedding(max_len, embed_dim)
        layer = nn.TransformerEncoderLayer(embed_dim, heads, width, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(embed_dim, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != PAD_ID
        x = self.embed(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))[None]
        h = self.norm(self.encoder(self.drop(x), src_key_padding_mask=~mask))
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.out(self.drop(pooled))


class SparseMLP(nn.Module):
    """MLP whose first layer is an EmbeddingBag: x @ W for a sparse row without densifying it."""

    def __init__(self, n_features: int, n_classes: int, width: int, depth: int, dropout: float):
        super().__init__()
        self.input = nn.EmbeddingBag(n_features, width, mode="sum")
        nn.init.normal_(self.input.weight, std=1.0 / math.sqrt(width))
        self.bias = nn.Parameter(torch.zeros(width))
        layers: list[nn.Module] = []
        for _ in range(depth - 1):
            layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width)]
        self.hidden = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(width, n_classes)

    def forward(self, indices: torch.Tensor, offsets: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        h = self.hidden(self.input(indices, offsets, per_sample_weights=values) + self.bias)
        return self.out(self.drop(torch.relu(h)))


@dataclass(frozen=True)
class NetSpec:
    input: str  # "tokens" | "features"
    build: Callable[["NeuralClassifier", int, int], nn.Module]  # (estimator, vocab or feature count, classes)
    min_len: int = 1


NETS: dict[str, NetSpec] = {
    "textcnn": NetSpec("tokens", lambda e, v, k: TextCNN(v, k, e.embed_dim, e.width, e.dropout),
                       min_len=max(KERNEL_SIZES)),
    "bigru": NetSpec("tokens", lambda e, v, k: BiGRU(v, k, e.embed_dim, e.width, e.depth, e.dropout)),
    "transformer": NetSpec("tokens", lambda e, v, k: TransformerNet(v, k, e.embed_dim, e.width, e.depth, e.heads,
                                                                    e.dropout, e.max_len)),
    "mlp": NetSpec("features", lambda e, v, k: SparseMLP(v, k, e.width, e.depth, e.dropout)),
}
_TRAIN_FIELDS = ("epochs", "batch_size", "micro_batch_size", "optimizer", "lr", "weight_decay", "momentum",
                 "schedule", "warmup_frac", "max_grad_norm", "loss", "focal_gamma", "class_weight", "patience",
                 "bucket", "curriculum", "curriculum_start", "curriculum_epochs", "amp", "checkpoint_every",
                 "max_bad_steps", "max_batch_tokens", "device", "deterministic")


# --- the estimator -----------------------------------------------------------------------
class NeuralClassifier(ClassifierMixin, BaseEstimator):
    """A torch net as a scikit-learn classifier. X: token docs ("tokens" nets) or a
    CSR matrix ("mlp"). `history_` holds per-epoch metrics, non-finite events,
    fallbacks and out-of-memory halvings (see cgtrain.engine.loop.FitResult)."""

    def __init__(self, net: str = "textcnn", *, embed_dim: int = 64, width: int = 128, depth: int = 1,
                 heads: int = 4, dropout: float = 0.1, max_len: int = 400, min_freq: int = 1,
                 max_vocab: int | None = 50000, epochs: int = 10, batch_size: int = 32,
                 micro_batch_size: int | None = None, optimizer: str = "adamw", lr: float = 1e-3,
                 weight_decay: float = 0.01, momentum: float = 0.9, schedule: str = "warmup_cosine",
                 warmup_frac: float = 0.1, max_grad_norm: float | None = 1.0, loss: str = "ce",
                 focal_gamma: float = 2.0, class_weight: str | None = None, patience: int | None = 3,
                 val_metric: str = "roc_auc", bucket: bool = True, curriculum: bool = False,
                 curriculum_start: float = 0.3, curriculum_epochs: int = 3, amp: bool = False,
                 checkpoint_every: int = 0, max_bad_steps: int = 3, max_batch_tokens: int | None = None,
                 device: str = "auto", deterministic: bool = False, random_state: int = 0):
        self.net, self.embed_dim, self.width, self.depth, self.heads = net, embed_dim, width, depth, heads
        self.dropout, self.max_len, self.min_freq, self.max_vocab = dropout, max_len, min_freq, max_vocab
        self.epochs, self.batch_size, self.micro_batch_size = epochs, batch_size, micro_batch_size
        self.optimizer, self.lr, self.weight_decay, self.momentum = optimizer, lr, weight_decay, momentum
        self.schedule, self.warmup_frac, self.max_grad_norm = schedule, warmup_frac, max_grad_norm
        self.loss, self.focal_gamma, self.class_weight = loss, focal_gamma, class_weight
        self.patience, self.val_metric, self.bucket = patience, val_metric, bucket
        self.curriculum, self.curriculum_start, self.curriculum_epochs = curriculum, curriculum_start, curriculum_epochs
        self.amp, self.checkpoint_every, self.max_bad_steps = amp, checkpoint_every, max_bad_steps
        self.max_batch_tokens, self.device, self.deterministic = max_batch_tokens, device, deterministic
        self.random_state = random_state

    def fit(self, X, y, *, X_val=None, y_val=None, on_epoch: Callable[[int, float], None] | None = None,
            checkpoint_dir: str | Path | None = None, resume: bool = False, sample_difficulty=None):
        """Train; with X_val/y_val, early stopping on `val_metric` keeps the best epoch and
        `on_epoch(epoch, val_metric)` is called after each epoch (it may raise optuna.TrialPruned).
        `sample_difficulty` (one score per row) orders the curriculum; default: code length."""
        spec = self._spec()
        y = np.asarray(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y, got {len(self.classes_)}")
        if spec.input == "tokens":
            self.vocab_ = Vocab.build(_docs(X), self.min_freq, self.max_vocab).itos
        else:
            self.n_features_in_ = int(X.shape[1])
        cfg = TrainConfig(**{f: getattr(self, f) for f in _TRAIN_FIELDS}, seed=self.random_state)
        device = resolve_device(self.device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the caller's torch RNG is left as it was
            torch.manual_seed(self.random_state)
            net = self._new_net()
            result = train(net, self._data(X, y_idx), cfg, val_fn=self._val_fn(X_val, y_val),
                           greater_is_better=METRICS.get(self.val_metric).greater_is_better, on_epoch=on_epoch,
                           store=DirStore(checkpoint_dir) if checkpoint_dir is not None else None,
                           resume=resume, difficulty=sample_difficulty)
        self.history_ = result.as_dict()
        self.weights_ = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
        self._module = net.eval()
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "weights_")
        return self._proba(self._fitted_net(), self._data(X, None))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    # --- pieces --------------------------------------------------------------------------
    def _spec(self) -> NetSpec:
        if self.net not in NETS:
            raise ValueError(f"net must be one of {sorted(NETS)}, got {self.net!r}")
        return NETS[self.net]

    def _data(self, X, y_idx):
        if self._spec().input == "features":
            return SparseData(X, y_idx)
        vocab = Vocab(self.vocab_)
        return SequenceData(encode_docs(vocab, _docs(X), self.max_len), y_idx, self._spec().min_len)

    def _new_net(self) -> nn.Module:
        size = len(self.vocab_) if self._spec().input == "tokens" else self.n_features_in_
        return self._spec().build(self, size, len(self.classes_))

    def _fitted_net(self) -> nn.Module:
        net = getattr(self, "_module", None)
        if net is None:
            net = self._new_net()
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.weights_.items()})
            self._module = net.eval()
        return net

    def _proba(self, net: nn.Module, data, batch_size: int = 256) -> np.ndarray:
        """Softmax probabilities in input order; batches of similar length cut padding."""
        device = next(net.parameters()).device
        order = np.argsort(data.lengths, kind="stable")
        out = np.empty((data.n, len(self.classes_)), dtype=np.float64)
        was_training = net.training
        net.eval()
        with torch.inference_mode():
            for i in range(0, data.n, batch_size):
                idx = order[i:i + batch_size]
                inputs, _ = data.collate(idx, device)
                out[idx] = torch.softmax(net(*inputs).float(), dim=1).cpu().numpy()
        net.train(was_training)
        return out

    def _val_fn(self, X_val, y_val) -> Callable[[nn.Module], float] | None:
        if X_val is None or y_val is None:
            return None
        y_val = np.asarray(y_val)
        known = np.isin(y_val, self.classes_)  # a class the training rows lack cannot be scored
        if not known.any():
            return lambda net: float("nan")
        data = self._data(X_val, None)
        y_idx = np.searchsorted(self.classes_, y_val[known])
        return lambda net: score(self.val_metric, y_idx, self._proba(net, data)[known])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: the live instance keeps its module
        state.pop("_module", None)  # rebuilt from weights_ on first use
        return state


def _docs(X) -> list[str]:
    if isinstance(X, (str, bytes)):
        raise TypeError("expected a sequence of token docs, got a single string")
    return list(X)


# --- the families ------------------------------------------------------------------------
def _builder(net: str):
    def build(params: dict[str, Any], seed: int, class_weight: str | None) -> NeuralClassifier:
        return NeuralClassifier(net=net, random_state=seed, class_weight=class_weight, **params)

    return build


# the builders the catalogue names (cgtrain.models.catalog.neural)
build_textcnn, build_bigru = _builder("textcnn"), _builder("bigru")
build_transformer, build_mlp = _builder("transformer"), _builder("mlp")
