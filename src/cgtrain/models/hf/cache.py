"""On-disk cache of per-text arrays (token ids, embeddings), keyed by content hash.

A cache is a directory named after what produced the arrays (tokenizer or
encoder digest plus settings); inside it, each entry is keyed by the SHA-256
of one text, so the folds of a cross-validation, the refit and later runs on
the same rows share work even though each sees a different subset. Entries
are written as new `.npz` shards (atomically, never rewritten) and read with
`allow_pickle=False`: a cache file can hold numbers only, never code.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cgtrain.fsutil import atomic_write_bytes


def default_cache_dir() -> Path:
    return Path(os.environ.get("CGTRAIN_CACHE_DIR") or Path.home() / ".cache" / "cgtrain")


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def settings_key(kind: str, **settings) -> str:
    """A directory name for one producer: its kind and a hash of its settings (digests included)."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:24]}"


class ShardCache:
    """digest -> 1-D array; arrays of one cache share a dtype, lengths may differ."""

    def __init__(self, directory: str | Path | None, dtype):
        self.directory = None if directory is None else Path(directory)
        self.dtype = np.dtype(dtype)
        self._index: dict[str, np.ndarray] = {}
        self._seen: set[str] = set()

    def lookup(self, texts: Sequence[str], compute: Callable[[list[str]], list[np.ndarray]]) -> list[np.ndarray]:
        """The array of each text: from the cache where present, else computed (in one call) and stored."""
        keys = [text_digest(t) for t in texts]
        self._load_new_shards()
        missing = list(dict.fromkeys(k for k in keys if k not in self._index))
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}  # first text of each missing key
            fresh = compute([texts[first[k]] for k in missing])
            new = {k: np.asarray(a, dtype=self.dtype).reshape(-1) for k, a in zip(missing, fresh)}
            self._write_shard(new)
            self._index.update(new)
        return [self._index[k] for k in keys]

    def _load_new_shards(self) -> None:
        if self.directory is None or not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("*.npz")):
            if path.name in self._seen:
                continue
            try:
                with np.load(path, allow_pickle=False) as z:
                    keys, offsets, values = z["keys"], z["offsets"], z["values"]
            except (OSError, ValueError, KeyError):  # a foreign or damaged file: recompute instead
                continue
            self._seen.add(path.name)
            if values.dtype != self.dtype:
                continue
            for i, key in enumerate(keys.tolist()):
                self._index.setdefault(key, values[offsets[i]:offsets[i + 1]])

    def _write_shard(self, entries: dict[str, np.ndarray]) -> None:
        if self.directory is None or not entries:
            return
        keys = list(entries)
        offsets = np.concatenate([[0], np.cumsum([entries[k].size for k in keys])]).astype(np.int64)
        values = np.concatenate([entries[k] for k in keys]).astype(self.dtype, copy=False)
        buf = io.BytesIO()
        np.savez(buf, keys=np.array(keys, dtype="<U64"), offsets=offsets, values=values)
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:32] + ".npz"
        try:
            atomic_write_bytes(self.directory / name, buf.getvalue())
        except OSError:  # a read-only or full cache directory slows the next run down, nothing more
            return
        self._seen.add(name)
