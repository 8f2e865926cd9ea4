"""Checkpoints: nested training state <-> one file of tensors plus a JSON skeleton.

`pack` turns any nest of dicts, lists, numbers, strings and tensors into a flat
{name: tensor} map and a JSON skeleton; nothing else is stored, so loading
never unpickles an object: the file is read with safetensors when it is
installed, else with `torch.load(..., weights_only=True)`.

Writes are atomic (temp file, fsync, rename, fsync of the directory): a
checkpoint cut off mid-write never replaces the last good one, and a reader
sees the old file or the new one. `MemoryStore` keeps the same packed state in
memory, for rolling back a run that was given no checkpoint directory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cgtrain.fsutil import atomic_write_bytes

try:  # optional: a format that cannot carry code at all
    import safetensors.torch as _safetensors
except ImportError:  # pragma: no cover - depends on the environment
    _safetensors = None

CHECKPOINT_FILE = "checkpoint.ckpt"
_TENSOR, _PAIRS = "__tensor__", "__pairs__"


# --- nest <-> (tensors, skeleton) ------------------------------------------------------
def pack(obj: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Flat tensors (detached, on CPU, copied) and a JSON-able skeleton that names them."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = x.detach().to("cpu", copy=True).contiguous()
            return {_TENSOR: key}
        if isinstance(x, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in x):
                return {k: walk(v) for k, v in x.items()}
            return {_PAIRS: [[walk(k), walk(v)] for k, v in x.items()]}  # int keys (optimizer state)
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        if isinstance(x, np.generic):
            return x.item()
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot checkpoint a {type(x).__name__}; store tensors, numbers, strings, lists, dicts")

    return tensors, walk(obj)


def unpack(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if _TENSOR in x:
                return tensors[x[_TENSOR]]
            if _PAIRS in x:
                return {walk(k): walk(v) for k, v in x[_PAIRS]}
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(skeleton)


# --- bytes -----------------------------------------------------------------------
def to_bytes(state: Any) -> bytes:
    tensors, skeleton = pack(state)
    meta = json.dumps(skeleton, separators=(",", ":"))
    if _safetensors is not None:
        return _safetensors.save(tensors, metadata={"skeleton": meta})
    buf = io.BytesIO()
    torch.save({"tensors": tensors, "skeleton": meta}, buf)
    return buf.getvalue()


def from_bytes(data: bytes) -> Any:
    if data[:2] == b"PK":  # torch.save's zip format
        saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return unpack(saved["tensors"], json.loads(saved["skeleton"]))
    if _safetensors is None:
        raise ValueError("checkpoint was written with safetensors, which is not installed")
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    return unpack(_safetensors.load(data), json.loads(header["__metadata__"]["skeleton"]))


# --- stores ----------------------------------------------------------------------
class DirStore:
    """One checkpoint file in a directory, replaced atomically on each save."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / CHECKPOINT_FILE

    def save(self, state: Any) -> None:
        atomic_write_bytes(self.path, to_bytes(state))

    def load(self) -> Any | None:
        """The last complete checkpoint, or None (a half-written temp file is never read)."""
        if not self.path.is_file():
            return None
        return from_bytes(self.path.read_bytes())


    def discard_partial_writes(self) -> None:
        """Drop temp files a killed writer left behind; only the run that owns the directory calls this."""
        for tmp in self.directory.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            tmp.unlink(missing_ok=True)


class MemoryStore:
    """The last saved state, packed (copied) in memory."""

    def __init__(self) -> None:
        self._packed: tuple[dict[str, torch.Tensor], Any] | None = None

    def save(self, state: Any) -> None:
        self._packed = pack(state)  # pack copies tensors and builds new containers: nothing aliases the run

    def load(self) -> Any | None:
        if self._packed is None:
            return None
        tensors, skeleton = self._packed  # unpack builds new containers, so the skeleton stays untouched
        return unpack({k: v.clone() for k, v in tensors.items()}, skeleton)

    def discard_partial_writes(self) -> None:
        pass


# --- random number generators ------------------------------------------------------
def capture_rng(data_gen: torch.Generator) -> dict[str, Any]:
    """Every RNG the run depends on: Python, NumPy, torch (CPU and CUDA), the data order."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "data": data_gen.get_state(),
    }


def restore_rng(state: dict[str, Any], data_gen: torch.Generator) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    data_gen.set_state(state["data"])


def run_fingerprint(model, data, cfg) -> str:
    """What a checkpoint must match to be resumed: data, model shapes, training settings."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("device", "checkpoint_every", "deterministic")}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(json.dumps({k: list(v.shape) for k, v in model.state_dict().items()}).encode())
    h.update(np.ascontiguousarray(data.lengths).tobytes())
    h.update(data.y.numpy().tobytes())
    return h.hexdigest()
