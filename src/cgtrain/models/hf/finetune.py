"""Family `hf_finetune`: fine-tune a local pre-trained encoder on raw code with cgtrain's loop.

`HFClassifier` is a scikit-learn classifier over raw code strings. It trains
with `cgtrain.engine.loop.train`, so checkpoints (bit-identical resume on
CPU), AMP, gradient accumulation, early stopping on a validation metric,
stability fallbacks, OOM halving and per-epoch pruning all apply as for the
other torch families. Fine-tuning controls (truncation, freezing, gradual
unfreezing, layer-wise LR decay, warm-up) are parameters, searchable as data.

`save_pretrained(dir)` writes a directory `transformers` loads directly
(`AutoModel.from_pretrained(dir)`: the fine-tuned encoder, safetensors, with
its tokenizer) plus the head (`cgtrain_head.safetensors`, `cgtrain.json`);
`HFClassifier.from_pretrained(dir)` reads it back.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from cgtrain.evaluate.metrics import METRICS, score
from cgtrain.models.hf import encoder as enc
from cgtrain.models.hf.common import EncoderBacked, batched
from cgtrain.models.hf.net import EncoderClassifier
from cgtrain.models.hf.tokens import codes_of
from cgtrain.engine.checkpoint import DirStore
from cgtrain.engine.device import resolve_device
from cgtrain.engine.loop import TrainConfig, train

HEAD_FILE, META_FILE = "cgtrain_head.safetensors", "cgtrain.json"
_TRAIN_FIELDS = ("epochs", "batch_size", "micro_batch_size", "optimizer", "lr", "weight_decay", "schedule",
                 "warmup_frac", "max_grad_norm", "loss", "focal_gamma", "class_weight", "patience", "bucket",
                 "amp", "checkpoint_every", "max_bad_steps", "max_batch_tokens", "device", "deterministic")
_NET_FIELDS = ("dropout", "pooling", "freeze_embeddings", "freeze_layers", "unfreeze_per_epoch", "layer_lr_decay")


class HFClassifier(EncoderBacked, ClassifierMixin, BaseEstimator):
    """A pre-trained encoder + linear head over pooled token states, fine-tuned on raw code.
    `history_` holds the loop's per-epoch record (see cgtrain.engine.loop.FitResult)."""

    def __init__(self, model_path: str | None = None, *, max_length: int = 256, truncation: str = "head_tail",
                 head_frac: float = 0.5, pooling: str = "mean", dropout: float = 0.1,
                 freeze_embeddings: bool = False, freeze_layers: int = 0, unfreeze_per_epoch: int = 0,
                 layer_lr_decay: float = 1.0, epochs: int = 3, batch_size: int = 16,
                 micro_batch_size: int | None = None, optimizer: str = "adamw", lr: float = 5e-5,
                 weight_decay: float = 0.01, schedule: str = "warmup_cosine", warmup_frac: float = 0.1,
                 max_grad_norm: float | None = 1.0, loss: str = "ce", focal_gamma: float = 2.0,
                 class_weight: str | None = None, patience: int | None = 2, val_metric: str = "roc_auc",
                 bucket: bool = True, amp: bool = False, checkpoint_every: int = 0, max_bad_steps: int = 3,
                 max_batch_tokens: int | None = None, max_train_rows: int | None = None, device: str = "auto",
                 deterministic: bool = False, use_cache: bool = True, cache_dir: str | None = None,
                 random_state: int = 0):
        self.model_path, self.max_length, self.truncation, self.head_frac = model_path, max_length, truncation, head_frac
        self.pooling, self.dropout, self.freeze_embeddings, self.freeze_layers = pooling, dropout, freeze_embeddings, freeze_layers
        self.unfreeze_per_epoch, self.layer_lr_decay = unfreeze_per_epoch, layer_lr_decay
        self.epochs, self.batch_size, self.micro_batch_size, self.optimizer = epochs, batch_size, micro_batch_size, optimizer
        self.lr, self.weight_decay, self.schedule, self.warmup_frac = lr, weight_decay, schedule, warmup_frac
        self.max_grad_norm, self.loss, self.focal_gamma, self.class_weight = max_grad_norm, loss, focal_gamma, class_weight
        self.patience, self.val_metric, self.bucket, self.amp = patience, val_metric, bucket, amp
        self.checkpoint_every, self.max_bad_steps, self.max_batch_tokens = checkpoint_every, max_bad_steps, max_batch_tokens
        self.max_train_rows, self.device, self.deterministic = max_train_rows, device, deterministic
        self.use_cache, self.cache_dir, self.random_state = use_cache, cache_dir, random_state

    def fit(self, X, y, *, X_val=None, y_val=None, on_epoch: Callable[[int, float], None] | None = None,
            checkpoint_dir: str | Path | None = None, resume: bool = False):
        """Fine-tune; with X_val/y_val, early stopping on `val_metric` keeps the best epoch and
        `on_epoch(epoch, val_metric)` runs after each epoch (it may raise optuna.TrialPruned)."""
        codes, y = self._budget(codes_of(X), np.asarray(y))
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes in y, got {len(self.classes_)}")
        cfg = TrainConfig(**{f: getattr(self, f) for f in _TRAIN_FIELDS}, seed=self.random_state)
        device = resolve_device(self.device)
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            torch.manual_seed(self.random_state)  # head init (and any weights the checkpoint lacks)
            encoder, _ = self._load_pretrained()
            net = self._new_net(encoder)
            data = self._code_tokens().data(codes, y_idx)
            result = train(net, data, cfg, val_fn=self._val_fn(X_val, y_val), on_epoch=on_epoch,
                           greater_is_better=METRICS.get(self.val_metric).greater_is_better,
                           store=DirStore(checkpoint_dir) if checkpoint_dir is not None else None, resume=resume)
        self.history_ = result.as_dict()
        self.weights_ = enc.encoder_arrays(net)
        self._module = net.eval()
        self._keep_val_proba()
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "weights_")
        codes = codes_of(X)
        memo = self.__dict__.get("_live", {}).get("val_proba")
        if memo is not None and memo[0] == _digest(codes):
            return memo[1].copy()
        return self._proba(self._fitted_net(), self._code_tokens().data(codes))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    # --- pieces --------------------------------------------------------------------------
    def _budget(self, codes: list[str], y: np.ndarray) -> tuple[list[str], np.ndarray]:
        """At most max_train_rows rows (stratified, seeded): a fixed fine-tuning budget on a CPU."""
        if not self.max_train_rows or len(codes) <= self.max_train_rows:
            return codes, y
        from sklearn.model_selection import train_test_split

        idx = np.arange(len(codes))
        try:
            keep, _ = train_test_split(idx, train_size=self.max_train_rows, stratify=y, random_state=self.random_state)
        except ValueError:  # a class too small to stratify
            keep = np.random.default_rng(self.random_state).choice(idx, self.max_train_rows, replace=False)
        keep = np.sort(keep)
        return [codes[i] for i in keep], y[keep]

    def _new_net(self, encoder) -> EncoderClassifier:
        return EncoderClassifier(encoder, len(self.classes_), **{f: getattr(self, f) for f in _NET_FIELDS})

    def _fitted_net(self) -> EncoderClassifier:
        net = getattr(self, "_module", None)
        if net is None:
            net = self._new_net(enc.rebuild_encoder(self.encoder_config_))
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.weights_.items()})
            self._module = net.to(resolve_device(self.device)).eval()
        return net

    def _proba(self, net: EncoderClassifier, data, batch_size: int = 64) -> np.ndarray:
        was_training = net.training
        net.eval()
        try:
            logits = batched(net, data, batch_size, next(net.parameters()).device)
        finally:
            net.train(was_training)
        logits = logits.reshape(data.n, len(self.classes_))
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    def _val_fn(self, X_val, y_val) -> Callable[[torch.nn.Module], float] | None:
        if X_val is None or y_val is None:
            return None
        y_val = np.asarray(y_val)
        known = np.isin(y_val, self.classes_)  # a class the training rows lack cannot be scored
        if not known.any():
            return lambda net: float("nan")
        codes = codes_of(X_val)
        data = self._code_tokens().data(codes)
        y_idx = np.searchsorted(self.classes_, y_val[known])
        live = self.__dict__.setdefault("_live", {})

        def val(net) -> float:
            live["last_val"] = (_digest(codes), self._proba(net, data))
            return score(self.val_metric, y_idx, live["last_val"][1][known])

        return val

    def _keep_val_proba(self) -> None:
        """Encoder inference is the cost on a CPU: when the final weights are those validated last
        (the last epoch was the best), a later predict_proba of the same rows (the CV score) reuses
        those probabilities instead of running the encoder over them again."""
        live = self.__dict__.setdefault("_live", {})
        last = live.pop("last_val", None)
        history = self.history_["history"]
        if last is not None and history and self.history_["best_epoch"] == history[-1]["epoch"]:
            live["val_proba"] = last

    # --- a directory transformers loads ----------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        """Encoder (model.safetensors + config) and tokenizer as transformers writes them, plus the
        head; replaces `directory` atomically (a reader sees the old model or the new one)."""
        from safetensors.numpy import save_file

        check_is_fitted(self, "weights_")
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self._fitted_net().encoder.save_pretrained(tmp)
            enc.write_tokenizer_files(self.tokenizer_files_, tmp)
            head = {k[len("head."):]: np.ascontiguousarray(v) for k, v in self.weights_.items() if k.startswith("head.")}
            save_file(head, str(tmp / HEAD_FILE))
            meta = {"family": "hf_finetune", "classes": np.asarray(self.classes_).tolist(),
                    "params": {k: v for k, v in self.get_params().items() if k not in ("cache_dir", "model_path")}}
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
            _usual_permissions(tmp)
            _replace_dir(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "HFClassifier":
        """The fitted classifier a `save_pretrained` directory holds."""
        from safetensors.numpy import load_file

        directory = Path(directory)
        if not (directory / META_FILE).is_file() or not (directory / HEAD_FILE).is_file():
            raise enc.HFModelError(f"model_path: {str(directory)!r} has no {META_FILE} / {HEAD_FILE}; it is not a "
                                   f"directory written by HFClassifier.save_pretrained")
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        est = cls(model_path=str(directory), **meta["params"])
        encoder, _ = est._load_pretrained()
        est.classes_ = np.asarray(meta["classes"])
        head = {f"head.{k}": v for k, v in load_file(str(directory / HEAD_FILE)).items()}
        est.weights_ = {**{f"encoder.{k}": v for k, v in enc.encoder_arrays(encoder).items()}, **head}
        return est


def _digest(codes: list[str]) -> str:
    h = hashlib.sha256()
    for c in codes:
        h.update(hashlib.sha256(c.encode("utf-8", "surrogatepass")).digest())
    return h.hexdigest()


def _usual_permissions(directory: Path) -> None:
    """mkdtemp (and safetensors) make owner-only entries; give the directory the umask's usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(directory, 0o777 & ~umask)
    for f in directory.iterdir():
        os.chmod(f, 0o666 & ~umask)


def _replace_dir(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- the family ------------------------------------------------------------------------------
def build(params: dict[str, Any], seed: int, class_weight: str | None) -> HFClassifier:
    return HFClassifier(random_state=seed, class_weight=class_weight, **params)
