"""What a trial or a run cost: wall and CPU time, peak RSS, GPU memory, model size, inference latency.

`measure()` is a context manager around any piece of work; its `Usage` is plain data
(stored as an Optuna trial user attribute and in `resources.json`). Peak RSS is the
kernel's high-water mark (VmHWM); on Linux it is reset at the start of each measurement
(`/proc/self/clear_refs`), elsewhere it is the process's peak so far. GPU memory is
torch's peak allocation, reported only when CUDA is in use.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np


@dataclass
class Usage:
    wall_s: float = 0.0
    cpu_s: float = 0.0  # user + system, all threads of this process
    peak_rss_mb: float | None = None
    gpu_peak_mb: float | None = None  # None: no CUDA in use

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def peak_rss_mb() -> float | None:
    """The process's resident-set high-water mark in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # "5": reset the peak RSS to the current RSS
            fh.write("5")
    except OSError:
        pass


def _cuda():
    if "torch" not in sys.modules:  # nothing imported torch: no GPU work happened here
        return None
    torch = sys.modules["torch"]
    return torch.cuda if torch.cuda.is_available() and torch.cuda.is_initialized() else None


@contextmanager
def measure() -> Iterator[Usage]:
    """Measure the block; the yielded Usage is filled in when the block ends (even on error)."""
    usage = Usage()
    _reset_peak_rss()
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield usage
    finally:
        usage.wall_s = time.perf_counter() - wall
        usage.cpu_s = time.process_time() - cpu
        usage.peak_rss_mb = peak_rss_mb()
        cuda = _cuda()
        if cuda is not None:
            usage.gpu_peak_mb = cuda.max_memory_allocated() / 2**20


def latency(predict: Callable[[Sequence], Any], items: Sequence, *, singles: int = 30,
            batch: int = 256) -> dict[str, Any]:
    """Single-item latency p50/p95 (ms) over up to `singles` items, and batch throughput (items/s)."""
    items = list(items)
    if not items:
        return {"n_single": 0}
    predict(items[:1])  # warm-up: lazy module builds, caches
    times = []
    for item in items[:singles]:
        start = time.perf_counter()
        predict([item])
        times.append((time.perf_counter() - start) * 1000)
    chunk = items[:batch]
    start = time.perf_counter()
    predict(chunk)
    elapsed = time.perf_counter() - start
    return {"n_single": len(times), "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p95_ms": round(float(np.percentile(times, 95)), 3), "batch_rows": len(chunk),
            "batch_rows_per_s": round(len(chunk) / elapsed, 1) if elapsed > 0 else None}


def file_size_mb(path: Path) -> float | None:
    return round(os.path.getsize(path) / 2**20, 3) if Path(path).is_file() else None
