"""Raw code -> subword ids for an encoder: head+tail truncation, caching, dynamic padding.

Long functions keep their head (signature, declarations) and their tail
(the last statements, the return): the ids between are dropped, not the
end. Untruncated ids are cached per text (see cache.ShardCache), so every
max_length / truncation setting reuses one tokenization. Batches are padded
to their own longest row (dynamic padding); the loop's length bucketing
(`train.data.plan_epoch`) keeps rows of one batch similar in length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from cgtrain.models.hf.cache import ShardCache, settings_key
from cgtrain.engine.data import SequenceData

TRUNCATIONS = ("head", "tail", "head_tail")


@dataclass(frozen=True)
class Truncation:
    max_length: int = 256   # ids per row, special tokens included
    mode: str = "head_tail"
    head_frac: float = 0.5  # head_tail: the share of the budget kept from the start

    def __post_init__(self):
        if self.mode not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {self.mode!r}")
        if not 0.0 <= self.head_frac <= 1.0:
            raise ValueError(f"head_frac must be in [0, 1], got {self.head_frac}")

    def cut(self, ids: np.ndarray, budget: int) -> np.ndarray:
        if len(ids) <= budget:
            return ids
        if self.mode == "head":
            return ids[:budget]
        if self.mode == "tail":
            return ids[len(ids) - budget:]
        head = math.ceil(budget * self.head_frac)
        return np.concatenate([ids[:head], ids[len(ids) - (budget - head):]])


class CodeTokens:
    """A fast tokenizer wrapped for code rows: ids with the model's special tokens around them."""

    def __init__(self, tokenizer, truncation: Truncation, tokenizer_digest: str, cache_dir: Path | None):
        self.tokenizer, self.truncation = tokenizer, truncation
        self.prefix, self.suffix = special_template(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        budget = truncation.max_length - len(self.prefix) - len(self.suffix)
        if budget < 1:
            raise ValueError(f"max_length {truncation.max_length} leaves no room beside the special tokens")
        self.budget = budget
        directory = None if cache_dir is None else Path(cache_dir) / settings_key("tokens", tok=tokenizer_digest)
        self.cache = ShardCache(directory, np.int32)

    def encode(self, codes: Sequence[str]) -> list[torch.Tensor]:
        raw = self.cache.lookup(list(codes), self._tokenize)
        pre, suf = np.asarray(self.prefix, np.int64), np.asarray(self.suffix, np.int64)
        return [torch.from_numpy(np.concatenate([pre, self.truncation.cut(r.astype(np.int64), self.budget), suf]))
                for r in raw]

    def data(self, codes: Sequence[str], y=None) -> "EncodedData":
        return EncodedData(self.encode(codes), y, self.pad_id)

    def _tokenize(self, codes: list[str]) -> list[np.ndarray]:
        ids = self.tokenizer(codes, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        return [np.asarray(row, dtype=np.int32) for row in ids]


def special_template(tokenizer) -> tuple[list[int], list[int]]:
    """The special ids a single sequence gets before and after its text ([CLS] .. [SEP], <s> .. </s>)."""
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return list(full[:i]), list(full[i + len(bare):])
    return [], []


class EncodedData(SequenceData):
    """Subword ids; a batch is (ids, attention mask), padded to the batch's longest row."""

    def __init__(self, seqs: list[torch.Tensor], y=None, pad_id: int = 0):
        super().__init__(seqs, y)
        self.pad_id = pad_id

    def collate(self, idx: np.ndarray, device: torch.device) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        ids = pad_sequence([self.seqs[i] for i in idx], batch_first=True, padding_value=self.pad_id)
        lengths = torch.as_tensor(self.lengths[idx])
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        return (ids.to(device), mask.to(device)), self.y[idx].to(device)


def codes_of(X) -> list[str]:
    """Raw code strings from a list, array or Series (what the pipeline passes for input 'code')."""
    if isinstance(X, (str, bytes)):
        raise TypeError("expected a sequence of code strings, got a single string")
    return [str(x) for x in X]
