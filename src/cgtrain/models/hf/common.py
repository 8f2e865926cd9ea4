"""What both encoder families share: the encoder kept as plain data, tokens, batched inference."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from cgtrain.models.hf import encoder as enc
from cgtrain.models.hf.cache import default_cache_dir
from cgtrain.models.hf.tokens import CodeTokens, EncodedData, Truncation


def files_digest(files: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + np.asarray(files[name], dtype=np.uint8).tobytes())
    return h.hexdigest()


class EncoderBacked:
    """Mixin for estimators holding a pre-trained encoder. Fitted state (plain data, skops-safe):
    `encoder_config_` (JSON), `tokenizer_files_` (name -> uint8 array), `encoder_weights_`
    (name -> array). Expects the attributes model_path, max_length, truncation, head_frac,
    use_cache, cache_dir."""

    def _load_pretrained(self):
        """(encoder, tokenizer) from model_path; records them as the fitted encoder state."""
        encoder, tokenizer = enc.load_encoder(self.model_path)
        self.encoder_config_ = encoder.config.to_json_string(use_diff=False)
        self.tokenizer_files_ = enc.tokenizer_files(tokenizer)
        self._live = {"tokenizer": tokenizer}
        return encoder, tokenizer

    def _tokenizer(self):
        live = self.__dict__.setdefault("_live", {})
        if "tokenizer" not in live:
            live["tokenizer"] = enc.rebuild_tokenizer(self.tokenizer_files_)
        return live["tokenizer"]

    def _rebuilt_encoder(self, weights: dict[str, np.ndarray], prefix: str = ""):
        encoder = enc.rebuild_encoder(self.encoder_config_)
        state = {k[len(prefix):]: torch.from_numpy(np.array(v)) for k, v in weights.items() if k.startswith(prefix)}
        encoder.load_state_dict(state, strict=True)
        return encoder.eval()

    def _code_tokens(self) -> CodeTokens:
        live = self.__dict__.setdefault("_live", {})
        if "tokens" not in live:
            live["tokens"] = CodeTokens(self._tokenizer(), Truncation(self.max_length, self.truncation, self.head_frac),
                                        files_digest(self.tokenizer_files_), self._cache_root())
        return live["tokens"]

    def _cache_root(self) -> Path | None:
        if not self.use_cache:
            return None
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: the live instance keeps its torch objects
        for key in ("_live", "_module"):
            state.pop(key, None)  # rebuilt from the plain-data state on first use
        return state


def batched(fn: Callable[..., torch.Tensor], data: EncodedData, batch_size: int, device: torch.device) -> np.ndarray:
    """fn(ids, mask) over the rows of `data` in batches of similar length (less padding);
    returns the outputs as float64 rows in input order."""
    order = np.argsort(data.lengths, kind="stable")
    out: np.ndarray | None = None
    with torch.inference_mode():
        for i in range(0, data.n, batch_size):
            idx = order[i:i + batch_size]
            inputs, _ = data.collate(idx, device)
            rows = fn(*inputs).float().cpu().numpy()
            if out is None:
                out = np.empty((data.n, rows.shape[1]), dtype=np.float64)
            out[idx] = rows
    return out if out is not None else np.empty((0, 0))
