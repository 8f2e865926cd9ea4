"""What a run ran on: Python and package versions, OS, CPU, GPU/CUDA, data and code identity.

`snapshot` gathers it as a plain dict; `write_environment` stores it as
`environment.json` in the run directory (and `log_run` logs that file). Nothing
here imports torch unless it is installed, and nothing here fails a run: a
piece that cannot be found is recorded as null.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from cgtrain.fsutil import atomic_write_json
from cgtrain import rundir

ENVIRONMENT_FILE = rundir.ENVIRONMENT
# distribution names (pip's), in the order they are shown
KEY_PACKAGES = ("cgtrain", "numpy", "scipy", "pandas", "scikit-learn", "lightgbm", "torch", "optuna", "skops",
                "mlflow", "mlflow-skinny", "onnx", "onnxruntime", "skl2onnx", "statsmodels", "safetensors")


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_info() -> dict[str, Any]:
    model = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"model": model, "machine": platform.machine(), "logical_cores": os.cpu_count(),
            "usable_cores": affinity}


def gpu_info() -> dict[str, Any]:
    """CUDA as torch sees it (torch is the only GPU user here); no torch: nothing to report."""
    try:
        import torch
    except ImportError:
        return {"torch": None, "cuda_available": False}
    info: dict[str, Any] = {"torch_cuda_build": torch.version.cuda, "cuda_available": bool(torch.cuda.is_available())}
    if info["cuda_available"]:
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def git_state(path: Path | None) -> dict[str, Any] | None:
    """Commit and dirtiness of the git repository holding `path`; None outside a repository."""
    if path is None:
        return None
    directory = Path(path).resolve()
    directory = directory if directory.is_dir() else directory.parent

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status), "root": git("rev-parse", "--show-toplevel")}


def snapshot(run_dir: Path, request_path: Path | None = None) -> dict[str, Any]:
    """The environment of this process plus the run's data and code identity."""
    run_dir = Path(run_dir)
    dataset = _read_json(run_dir / rundir.DATASET)
    request = _read_yaml(run_dir / rundir.REQUEST)
    return {
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "packages": package_versions(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "cpu": cpu_info(),
        "gpu": gpu_info(),
        "dataset": {"path": dataset.get("path"), "fingerprint": dataset.get("fingerprint"),
                    "rows_used": dataset.get("rows_used")},
        "seed": request.get("seed"),
        "request_file": str(request_path) if request_path else None,
        "git": git_state(request_path),
    }


def write_environment(run_dir: Path, request_path: Path | None = None) -> dict[str, Any]:
    """Write `environment.json` into the run directory; returns what was written."""
    env = snapshot(run_dir, request_path)
    atomic_write_json(Path(run_dir) / ENVIRONMENT_FILE, env)
    return env


_read_json = rundir.read_json


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
