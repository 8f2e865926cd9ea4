"""Atomic file writes: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Strict JSON (RFC 8259): a NaN or infinity becomes null, with `<key>_not_finite` saying which."""
    text = json.dumps(strict_json(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
    return atomic_write_text(path, text + "\n")


def strict_json(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None; in a dict, `<key>_not_finite` records
    "nan", "inf" or "-inf" beside it, so a reader learns why the value is missing."""
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            out[key] = strict_json(value)
            if _not_finite(value):
                out[f"{key}_not_finite"] = _spelling(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if _not_finite(obj):
        return None
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a numpy scalar
        return strict_json(obj.item())
    return obj


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value) or \
        (hasattr(value, "dtype") and getattr(value, "ndim", None) == 0 and value.dtype.kind == "f"
         and not math.isfinite(float(value)))


def _spelling(value: Any) -> str:
    v = float(value)
    return "nan" if v != v else ("inf" if v > 0 else "-inf")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync_dir(directory: Path) -> None:
    # The rename itself is durable only once the directory entry is flushed.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
