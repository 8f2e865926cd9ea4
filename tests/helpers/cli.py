"""Running `python -m cgtrain` as a user would (a fresh process), and reading what it wrote."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# One MLflow store per session: a new one spends seconds creating its tables.
MLFLOW_URI = f"sqlite:///{tempfile.mkdtemp(prefix='cgtrain-mlflow-')}/mlflow.db"


def cgtrain_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "cgtrain", *map(str, args)]


def env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "MLFLOW_TRACKING_URI": MLFLOW_URI, "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1", **extra}


def cgtrain(*args, check=False, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cgtrain_cmd(*args), capture_output=True, text=True, env=env(),
                          cwd=kwargs.pop("cwd", ROOT), timeout=kwargs.pop("timeout", 600), **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"cgtrain {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
