"""Data for the loop: vocabulary and encoding, in-memory datasets, epoch plans.

An epoch plan is the list of effective batches (arrays of example indices)
drawn from one explicit `torch.Generator`; the loop checkpoints the plan and
the generator, so a resumed run sees exactly the batches it would have seen.
Batches are bucketed by length (sorted inside windows of `window_batches`
batches, then the batch order shuffled) to cut padding; curriculum pacing
restricts an epoch to the easiest part of the data and widens it each epoch.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch.nn.utils.rnn import pad_sequence

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


# --- vocabulary --------------------------------------------------------------------
class Vocab:
    """Token -> id, built from training docs only; unknown tokens map to <unk>."""

    def __init__(self, itos: Sequence[str]):
        if list(itos[:2]) != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}")
        self.itos = list(itos)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}

    @classmethod
    def build(cls, docs: Iterable[str], min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        """Most frequent tokens first (ties by token), those seen fewer than min_freq times left out."""
        counts = Counter(tok for doc in docs for tok in doc.split())
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in (PAD, UNK)),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[:max(0, max_size - 2)]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, doc: str, max_len: int) -> torch.Tensor:
        """The first max_len tokens as ids; an empty doc becomes [<unk>] (never a 0-length row)."""
        get = self.stoi.get
        ids = [get(tok, UNK_ID) for tok in doc.split()[:max_len]] or [UNK_ID]
        return torch.tensor(ids, dtype=torch.long)


def encode_docs(vocab: Vocab, docs: Iterable[str], max_len: int) -> list[torch.Tensor]:
    if isinstance(docs, (str, bytes)):
        raise TypeError("expected a sequence of token docs, got a single string")
    return [vocab.encode(doc, max_len) for doc in docs]


# --- datasets: n, lengths, y, collate(indices) -> (inputs, y) -------------------------
class SequenceData:
    """Token-id sequences; a batch is (ids padded to the batch's longest, >= min_len)."""

    def __init__(self, seqs: list[torch.Tensor], y: np.ndarray | None = None, min_len: int = 1):
        self.seqs = seqs
        self.n = len(seqs)
        self.lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=self.n)
        self.y = torch.as_tensor(np.zeros(self.n) if y is None else np.asarray(y), dtype=torch.long)
        self.min_len = min_len

    def padded_tokens(self, idx: np.ndarray) -> int:
        """Tokens the batch occupies once padded: the memory a batch costs."""
        return int(len(idx) * max(self.min_len, int(self.lengths[idx].max())))

    def collate(self, idx: np.ndarray, device: torch.device) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        ids = pad_sequence([self.seqs[i] for i in idx], batch_first=True, padding_value=PAD_ID)
        if ids.shape[1] < self.min_len:
            ids = torch.nn.functional.pad(ids, (0, self.min_len - ids.shape[1]), value=PAD_ID)
        return (ids.to(device),), self.y[idx].to(device)


class SparseData:
    """Rows of a CSR feature matrix; a batch is (indices, offsets, values) for nn.EmbeddingBag."""

    def __init__(self, X, y: np.ndarray | None = None):
        self.X = sp.csr_matrix(X, dtype=np.float32)
        self.n = self.X.shape[0]
        self.lengths = np.diff(self.X.indptr).astype(np.int64)
        self.y = torch.as_tensor(np.zeros(self.n) if y is None else np.asarray(y), dtype=torch.long)

    def padded_tokens(self, idx: np.ndarray) -> int:
        return int(self.lengths[idx].sum())

    def collate(self, idx: np.ndarray, device: torch.device) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        rows = self.X[idx]
        inputs = (torch.from_numpy(rows.indices.astype(np.int64)),
                  torch.from_numpy(rows.indptr[:-1].astype(np.int64)),
                  torch.from_numpy(rows.data))
        return tuple(t.to(device) for t in inputs), self.y[idx].to(device)


# --- epoch plans -------------------------------------------------------------------
def curriculum_size(n: int, epoch: int, start_frac: float, ramp_epochs: int) -> int:
    """ceil(frac * n), frac growing linearly from start_frac at epoch 0 to 1 at epoch ramp_epochs."""
    frac = 1.0 if ramp_epochs <= 0 else min(1.0, start_frac + (1.0 - start_frac) * epoch / ramp_epochs)
    return min(n, max(1, math.ceil(frac * n)))


def curriculum_pool(difficulty: np.ndarray, epoch: int, start_frac: float, ramp_epochs: int) -> np.ndarray:
    """Indices of the easiest curriculum_size(...) examples (ties keep their original order)."""
    size = curriculum_size(len(difficulty), epoch, start_frac, ramp_epochs)
    return np.sort(np.argsort(np.asarray(difficulty), kind="stable")[:size])


def plan_epoch(lengths: np.ndarray, batch_size: int, gen: torch.Generator, pool: np.ndarray | None = None,
               bucket: bool = True, window_batches: int = 50) -> list[np.ndarray]:
    """Shuffled effective batches over `pool` (all examples by default).

    Without bucketing: a random permutation cut into batches. With bucketing:
    the permutation is cut into windows of window_batches * batch_size, each
    window sorted by length and cut into batches, and the batch order shuffled.
    Only the last batch can be short, so len(plan) == ceil(len(pool) / batch_size).
    """
    pool = np.arange(len(lengths)) if pool is None else np.asarray(pool)
    order = pool[torch.randperm(len(pool), generator=gen).numpy()]
    if bucket:
        window = batch_size * window_batches
        order = np.concatenate([w[np.argsort(lengths[w], kind="stable")]
                                for w in np.split(order, range(window, len(order), window))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches


def total_batches(n: int, batch_size: int, epochs: int, curriculum_start: float | None = None,
                  curriculum_epochs: int = 0) -> int:
    """Effective batches over all epochs (the schedules' horizon); curriculum epochs are shorter."""
    sizes = [n if curriculum_start is None else curriculum_size(n, e, curriculum_start, curriculum_epochs)
             for e in range(epochs)]
    return max(1, sum(math.ceil(s / batch_size) for s in sizes))


def micro_batches(indices: np.ndarray, micro_batch: int) -> list[np.ndarray]:
    """An effective batch cut into consecutive micro-batches of at most micro_batch examples."""
    return [indices[i:i + micro_batch] for i in range(0, len(indices), micro_batch)]


def accumulation_steps(batch_size: int, micro_batch: int) -> int:
    return math.ceil(batch_size / micro_batch)


def plan_to_tensors(plan: list[np.ndarray] | None) -> dict[str, torch.Tensor] | None:
    if plan is None:
        return None
    flat = np.concatenate(plan) if plan else np.zeros(0, dtype=np.int64)
    return {"indices": torch.from_numpy(flat.astype(np.int64)),
            "sizes": torch.tensor([len(b) for b in plan], dtype=torch.long)}


def plan_from_tensors(saved: dict[str, torch.Tensor] | None) -> list[np.ndarray] | None:
    if saved is None:
        return None
    flat, sizes = saved["indices"].numpy(), saved["sizes"].tolist()
    return np.split(flat, np.cumsum(sizes)[:-1]) if sizes else []
