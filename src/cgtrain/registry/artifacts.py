"""Model files that load without executing code: skops with an allowlist of types.

A checksum recorded at save time is verified before anything is parsed, and the
types a file asks for must all come from the allowlisted libraries; a pickle
(or anything that is not a skops archive) is refused outright.
"""
from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import skops.io as sio

from cgtrain.fsutil import atomic_write_bytes

TRUSTED_MODULE_PREFIXES = ("sklearn.", "lightgbm.", "cgtrain.features.", "numpy.", "scipy.")
# Our own types, listed one by one: each holds plain data (weights as arrays, vocabularies as lists).
TRUSTED_TYPES = {"collections.OrderedDict", "builtins.slice", "cgtrain.models.neural.NeuralClassifier",
                 "cgtrain.models.hf.finetune.HFClassifier", "cgtrain.models.hf.embed.HFEmbedClassifier",
                 "cgtrain.models.ensemble.EnsembleModel",
                 "cgtrain.models.unsupervised.IsolationForestDetector",
                 "cgtrain.models.unsupervised.AutoencoderDetector",
                 "cgtrain.models.unsupervised.HDBSCANClusterer"}


STORE_ARRAYS_OVER = 1 << 20  # bytes


class UnsafeModelError(Exception):
    """The model file was refused: tampered, not a skops archive, or asks for untrusted types."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def save_model(model: Any, path: str | Path) -> str:
    """Write the model as a skops archive (atomically); returns its checksum."""
    data = canonical_archive(sio.dumps(model))
    untrusted = _not_allowed(sio.get_untrusted_types(data=data))
    if untrusted:  # refuse to write what we would refuse to read
        raise UnsafeModelError(f"model holds types outside the allowlist: {', '.join(untrusted)}")
    atomic_write_bytes(path, data)
    return sha256_file(path)


def load_model(path: str | Path, expected_sha256: str | None) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UnsafeModelError(f"model file not found: {path}")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise UnsafeModelError(f"{path}: checksum does not match the one recorded at save time "
                               f"({expected_sha256}); the file was changed or replaced; refusing to load it")
    if not zipfile.is_zipfile(path):
        raise UnsafeModelError(f"{path}: not a skops archive ({_describe(path)}); refusing to load it: "
                               f"pickle-style files can run code when loaded")
    data = path.read_bytes()
    try:
        requested = sio.get_untrusted_types(data=data)
    except Exception as exc:  # a corrupt or hand-made archive
        raise UnsafeModelError(f"{path}: unreadable skops archive: {exc}") from None
    bad = _not_allowed(requested)
    if bad:
        raise UnsafeModelError(f"{path}: asks for types outside the allowlist: {', '.join(bad)}; refusing to load it")
    return sio.loads(data, trusted=requested)


_ID_PATTERN = re.compile(r'("__id__": )(\d+)|("file": ")(\d+)(\.\w+)"')


def canonical_archive(data: bytes) -> bytes:
    """The same skops archive with reproducible bytes.

    skops names members and memo ids after Python object ids and stamps the
    zip with the current time; renumbering both in order of appearance and
    fixing the timestamps makes equal models give equal files (and hashes).
    """
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = src.read("schema.json").decode("utf-8")
    ids: dict[str, str] = {}

    def renumber(m: re.Match) -> str:
        if m.group(1):
            return m.group(1) + ids.setdefault(m.group(2), str(len(ids)))
        return f'{m.group(3)}{ids.setdefault(m.group(4), str(len(ids)))}{m.group(5)}"'

    schema = _ID_PATTERN.sub(renumber, schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        _write_member(dst, "schema.json", schema.encode("utf-8"))
        renamed = {}
        for name in src.namelist():
            stem, dot, ext = name.partition(".")
            if name != "schema.json":
                renamed[ids.get(stem, stem) + dot + ext] = name
        for new_name in sorted(renamed):  # member order must not depend on object ids either
            _write_member(dst, new_name, src.read(renamed[new_name]))
    return out.getvalue()


def _write_member(archive: zipfile.ZipFile, name: str, payload: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    # Big arrays (network weights) are stored as is: deflate saves ~10% on floats at ~0.1 s per MB.
    big_array = name.endswith(".npy") and len(payload) > STORE_ARRAYS_OVER
    info.compress_type = zipfile.ZIP_STORED if big_array else zipfile.ZIP_DEFLATED
    archive.writestr(info, payload)


def _not_allowed(types: list[str]) -> list[str]:
    return [t for t in types if t not in TRUSTED_TYPES and not t.startswith(TRUSTED_MODULE_PREFIXES)]


def _describe(path: Path) -> str:
    head = path.read_bytes()[:2]
    return "looks like a Python pickle" if head[:1] == b"\x80" else f"starts with bytes {head!r}"
