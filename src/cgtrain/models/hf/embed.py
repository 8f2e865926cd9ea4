"""Family `hf_embed`: frozen encoder embeddings + a classical head; the fast CPU option.

Each function becomes the mean of its token states under a frozen pre-trained
encoder (padding excluded); a logistic regression (on standardised vectors)
or LightGBM learns from those. Embeddings are cached on disk per text, keyed
by the encoder's content hash, the truncation settings and the text's hash
(`cache.ShardCache`), so cross-validation folds, the refit, later trials and
later runs over the same rows embed each function once.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from cgtrain.models.hf import encoder as enc
from cgtrain.models.hf.cache import ShardCache, settings_key
from cgtrain.models.hf.common import EncoderBacked, batched, files_digest
from cgtrain.models.hf.net import pool
from cgtrain.models.hf.tokens import codes_of
from cgtrain.engine.device import resolve_device

HEADS = ("logreg", "lightgbm")


class HFEmbedClassifier(EncoderBacked, ClassifierMixin, BaseEstimator):
    """Mean-pooled frozen-encoder embeddings of raw code -> `head` ("logreg" | "lightgbm")."""

    def __init__(self, model_path: str | None = None, *, max_length: int = 256, truncation: str = "head_tail",
                 head_frac: float = 0.5, head: str = "logreg", C: float = 1.0, n_estimators: int = 300,
                 num_leaves: int = 31, learning_rate: float = 0.05, batch_size: int = 32, device: str = "auto",
                 class_weight: str | None = None, use_cache: bool = True, cache_dir: str | None = None,
                 random_state: int = 0):
        self.model_path, self.max_length, self.truncation, self.head_frac = model_path, max_length, truncation, head_frac
        self.head, self.C, self.n_estimators, self.num_leaves = head, C, n_estimators, num_leaves
        self.learning_rate, self.batch_size, self.device, self.class_weight = learning_rate, batch_size, device, class_weight
        self.use_cache, self.cache_dir, self.random_state = use_cache, cache_dir, random_state

    def fit(self, X, y):
        codes = codes_of(X)
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        encoder, _ = self._load_pretrained()
        self.encoder_weights_ = enc.encoder_arrays(encoder)
        self.encoder_digest_ = enc.state_digest(self.encoder_weights_, self.encoder_config_)
        self.__dict__["_live"]["encoder"] = encoder.eval()
        self.head_ = self._new_head().fit(self.transform(codes), np.asarray(y))
        self.classes_ = self.head_.classes_
        return self

    def transform(self, X) -> np.ndarray:
        """The embedding of each function: float32 [rows, hidden size]."""
        check_is_fitted(self, "encoder_weights_")
        codes = codes_of(X)
        rows = self._embedding_cache().lookup(codes, self._embed)
        return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "head_")
        return self.head_.predict_proba(self.transform(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    # --- pieces --------------------------------------------------------------------------
    def _embed(self, codes: list[str]) -> list[np.ndarray]:
        data = self._code_tokens().data(codes)
        encoder = self._encoder()
        device = resolve_device(self.device)
        encoder.to(device)

        def pooled(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return pool(encoder(input_ids=ids, attention_mask=mask).last_hidden_state, mask, "mean")

        return list(batched(pooled, data, self.batch_size, device).astype(np.float32))

    def _encoder(self):
        live = self.__dict__.setdefault("_live", {})
        if "encoder" not in live:
            live["encoder"] = self._rebuilt_encoder(self.encoder_weights_)
        return live["encoder"]

    def _embedding_cache(self) -> ShardCache:
        root = self._cache_root()
        key = settings_key("embed", encoder=self.encoder_digest_, tokenizer=files_digest(self.tokenizer_files_),
                           max_length=self.max_length, truncation=self.truncation, head_frac=self.head_frac,
                           pooling="mean")
        return ShardCache(None if root is None else root / key, np.float32)

    def _new_head(self):
        if self.head == "logreg":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            return make_pipeline(StandardScaler(), LogisticRegression(
                C=self.C, max_iter=2000, class_weight=self.class_weight, random_state=self.random_state))
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_estimators=self.n_estimators, num_leaves=self.num_leaves,
                              learning_rate=self.learning_rate, class_weight=self.class_weight,
                              random_state=self.random_state, n_jobs=2, verbose=-1)


def build(params: dict[str, Any], seed: int, class_weight: str | None) -> HFEmbedClassifier:
    return HFEmbedClassifier(random_state=seed, class_weight=class_weight, **params)
