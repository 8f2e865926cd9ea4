"""Model files that load without executing code: skops, audited by exact names.

Loading goes in this order, and stops at the first refusal, before any object is built:
the file is a regular file no bigger than the limit; its checksum (when one was recorded)
matches; it is a zip, not a pickle; `registry/audit.py` walks every node of its schema
against the exact allowlist in `registry/allowlist.py` (no module prefixes, no free
callables); skops' own `get_untrusted_types` agrees; only then is it built, with exactly
the names found passed as trusted. Saving refuses what loading would refuse.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable

from cgtrain.errors import UnsafeModelError  # noqa: F401 (re-exported)
from cgtrain.fsutil import atomic_write_bytes
from cgtrain.artifacts.allowlist import TRUSTED_FUNCTIONS, TRUSTED_TYPE_VALUES, TRUSTED_TYPES
from cgtrain.artifacts.audit import AuditError, audit_archive, check_built
from cgtrain import rundir

log = logging.getLogger(__name__)

MAX_MODEL_BYTES = 4 << 30  # a model file larger than this is refused before it is read
ALLOWED_NAMES = TRUSTED_TYPES | TRUSTED_FUNCTIONS | TRUSTED_TYPE_VALUES
REFUSAL_HINT = ("re-train it with cgtrain, or, if you made this file yourself and have inspected it, "
                "pass --trust {name} to load it anyway")


STORE_ARRAYS_OVER = 1 << 20  # bytes




def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def save_model(model: Any, path: str | Path) -> str:
    """Write the model as a skops archive (atomically); returns its checksum."""
    import skops.io as sio  # here, not at import: it loads scikit-learn (and torch, where installed)

    data = canonical_archive(sio.dumps(model))
    try:  # refuse to write what we would refuse to read
        audit_archive(data)
    except AuditError as exc:
        raise UnsafeModelError(f"model holds {exc.name}, which is not on the allowlist ({exc.why}); "
                               f"add its exact name to cgtrain/artifacts/allowlist.py if it is plain data") from None
    atomic_write_bytes(path, data)
    return sha256_file(path)


def load_model(path: str | Path, expected_sha256: str | None, trust: Iterable[str] = ()) -> Any:
    """The model in a skops file, after the checks in the module docstring.

    `trust`: extra exact names a user vouches for (`--trust TYPE`); each one is logged.
    """
    path = Path(path)
    data = _read_bounded(path)
    if expected_sha256 is not None and "sha256:" + hashlib.sha256(data).hexdigest() != expected_sha256:
        raise UnsafeModelError(f"{path}: checksum does not match the one recorded at save time "
                               f"({expected_sha256}); the file was changed or replaced; refusing to load it")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise UnsafeModelError(f"{path}: not a skops archive ({_describe(data)}); refusing to load it: "
                               f"pickle-style files can run code when loaded")
    trust = sorted(set(trust))
    for name in trust:
        log.warning("trusting %s in %s on the user's word (--trust)", name, path)
    import skops.io as sio

    try:
        names = audit_archive(data, extra_trusted=trust)
        unknown = [t for t in sio.get_untrusted_types(data=data) if t not in ALLOWED_NAMES and t not in trust]
    except AuditError as exc:
        hint = REFUSAL_HINT.format(name=exc.name) if exc.trustable else "re-train it with cgtrain"
        raise UnsafeModelError(f"{path}: {exc.why}: {exc.name}; refusing to load it; {hint}") from None
    except Exception as exc:  # skops could not read what the audit accepted: corrupt or hand-made
        raise UnsafeModelError(f"{path}: unreadable skops archive ({type(exc).__name__}); refusing to load it") from None
    if unknown:  # skops found a name the walk did not: never build it
        raise UnsafeModelError(f"{path}: asks for {unknown[0]}, outside the allowlist; refusing to load it; "
                               + REFUSAL_HINT.format(name=unknown[0]))
    try:
        model = sio.loads(data, trusted=names)
    except Exception as exc:
        raise UnsafeModelError(f"{path}: the audited archive failed to load "
                               f"({type(exc).__name__}: {_one_line(exc)}); re-train it with cgtrain") from None
    try:
        check_built(model)
    except AuditError as exc:
        raise UnsafeModelError(f"{path}: {exc.why}: {exc.name}; refusing to use it; re-train it with cgtrain") from None
    return model


def load_run_model(run_dir: str | Path, trust: Iterable[str] = ()) -> tuple[Any, rundir.ModelManifest]:
    """(model, manifest) of a run directory: the file named in model.json, inside the run
    directory, checked against the checksum recorded there and audited like any other file."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / rundir.MODEL_JSON
    if not manifest_path.is_file():
        raise UnsafeModelError(f"{run_dir}: no model.json; is this a finished `cgtrain train` run directory?")
    try:
        data = json.loads(manifest_path.read_bytes()[:1 << 20].decode("utf-8"))
        name, checksum = data["file"], data["sha256"]
        manifest = rundir.ModelManifest.from_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise UnsafeModelError(f"{manifest_path}: unreadable model manifest ({type(exc).__name__}); "
                               f"re-run the training") from None
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise UnsafeModelError(f"{manifest_path}: model file {name!r} is not a file name inside the run directory")
    path = run_dir / name
    if path.is_symlink():
        raise UnsafeModelError(f"{path}: a symbolic link; the model file must be a regular file in the run directory")
    return load_model(path, checksum, trust=trust), manifest


def _read_bounded(path: Path) -> bytes:
    if not path.is_file():
        raise UnsafeModelError(f"model file not found: {path}")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise UnsafeModelError(f"{path}: {size} bytes, over the {MAX_MODEL_BYTES >> 20} MiB limit for a model file")
    return path.read_bytes()


def _one_line(exc: Exception, limit: int = 160) -> str:
    return " ".join(str(exc).split())[:limit]


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


def _describe(data: bytes) -> str:
    head = data[:2]
    return "looks like a Python pickle" if head[:1] == b"\x80" else f"starts with bytes {head!r}"
