"""Paths a caller may name: datasets inside the data root, uploads by content, artifacts by allowlist."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from cgtrain import rundir
from cgtrain.errors import PathRefused  # noqa: F401 (re-exported)

UPLOADS = "uploads"  # under the data root: uploads/<sha256>.<format>
UPLOAD_FORMATS = {"jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "csv": ".csv", "parquet": ".parquet"}
SHA_RE = re.compile(r"^sha256:([0-9a-f]{64})$")

# artifact name -> file in the run dir (the name picks a constant; no path is built from it)
ARTIFACTS = {
    "report.html": (rundir.REPORT, "text/html; charset=utf-8"),
    "metrics.json": (rundir.METRICS, "application/json"),
    "leaderboard.csv": (rundir.LEADERBOARD, "text/csv; charset=utf-8"),
    "model.skops": (rundir.MODEL_FILE, "application/octet-stream"),
    "model.json": (rundir.MODEL_JSON, "application/json"),
    "dataset.json": (rundir.DATASET, "application/json"),
    "request.yaml": (rundir.REQUEST, "text/plain; charset=utf-8"),
    "qa.json": (rundir.QA, "application/json"),
    "resources.json": (rundir.RESOURCES, "application/json"),
    "explanations.json": (rundir.EXPLANATIONS, "application/json"),
    "test_predictions.jsonl": (rundir.TEST_PREDICTIONS, "application/x-ndjson"),
    "quarantine.jsonl": (rundir.QUARANTINE, "application/x-ndjson"),
    "run.json": (rundir.RUN, "application/json"),
    "model.onnx": (rundir.ONNX_FILE, "application/octet-stream"),
    "job.log.jsonl": ("job.log.jsonl", "application/x-ndjson"),
}
JOB_LOG = "job.log.jsonl"




def resolve_in_root(data_root: Path, value: str, field: str = "dataset.path") -> Path:
    """`value` (relative, inside `data_root`, symlinks followed) as an absolute path, or PathRefused."""
    root = data_root.resolve()
    if not value or "\x00" in value:
        raise PathRefused(f"{field}: empty or invalid path; give a path relative to the data root")
    pure = PurePosixPath(value)
    if pure.is_absolute() or value.startswith("~") or re.match(r"^[A-Za-z]:[\\/]", value):
        raise PathRefused(f"{field} {value!r} is absolute; give a path relative to the data root")
    if ".." in pure.parts or "\\" in value:
        raise PathRefused(f"{field} {value!r} contains '..' or '\\'; give a path inside the data root")
    target = root / pure
    if not target.exists():
        raise PathRefused(f"{field} {value!r} does not exist under the data root; upload it (POST /v1/datasets) "
                          f"or fix the path")
    real = target.resolve(strict=True)
    if real != root and root not in real.parents:
        raise PathRefused(f"{field} {value!r} leads outside the data root (a symlink); copy the data into it")
    return real


async def store_upload(data_root: Path, chunks, fmt: str, max_bytes: int) -> tuple[str, str, int]:
    """Write an upload content-addressed; returns (sha256, path relative to the root, size).
    Raises OverflowError past `max_bytes`."""
    directory = data_root.resolve() / UPLOADS
    directory.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise OverflowError(size)
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        sha = digest.hexdigest()
        rel = f"{UPLOADS}/{sha}{UPLOAD_FORMATS[fmt]}"
        os.replace(tmp, data_root.resolve() / rel)  # same content, same name: replacing is harmless
        return sha, rel, size
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def artifact_file(run_dir: str, name: str) -> tuple[Path, str] | None:
    """The allowlisted file `name` of a run directory, if it is a regular file there."""
    entry = ARTIFACTS.get(name)
    if entry is None:
        return None
    path = Path(run_dir) / entry[0]
    if path.is_symlink() or not path.is_file():
        return None
    return path, entry[1]
