"""Helpers for the fault tests: tiny data, a fast request, the CLI in-process or as a real process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_URI = f"sqlite:///{tempfile.mkdtemp(prefix='cgtrain-faults-mlflow-')}/mlflow.db"
UNSAFE = [("strcpy(dst, src);", "strncpy(dst, src, sizeof(dst) - 1);"), ("gets(buf);", "fgets(buf, 64, stdin);"),
          ("sprintf(out, fmt, x);", "snprintf(out, sizeof(out), fmt, x);")]


def tiny_rows(n_groups: int = 12, per_group: int = 2, same_code: bool = False) -> list[dict]:
    """C functions whose flaw shows in the tokens; each group holds a flawed and a fixed twin."""
    rows = []
    for g in range(n_groups):
        for v in range(per_group // 2 or 1):
            bad, good = UNSAFE[(g + v) % 3]
            for label, call in ((1, bad), (0, good)):
                code = "void f(void) { x(); }" if same_code else \
                    f"void f{g}_{v}(char *src) {{\n    char dst[64];\n    int n{g} = {g};\n    {call}\n}}"
                rows.append({"id": f"g{g}:v{v}:{label}", "code": code, "label": label, "group": f"g{g}"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_request(directory: Path, data_path: Path, **sections) -> Path:
    request = {
        "name": "faults", "seed": 0,
        "dataset": {"path": str(data_path)},
        "features": {"max_features": 500, "ngram_max": 2, "metrics": False},
        "candidates": [{"family": "logreg"}],
        "hpo": {"sampler": "random", "n_trials": 3},
        "validation": {"folds": 2, "test_fraction": 0.25},
        "qa": {"enabled": False},
    }
    for key, value in sections.items():
        request[key] = {**request.get(key, {}), **value} if isinstance(value, dict) else value
    path = directory / "request.yaml"
    path.write_text(yaml.safe_dump(request))
    return path


def env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200", "MLFLOW_TRACKING_URI": MLFLOW_URI,
            **extra}


def cgtrain(*args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`cgtrain ARGS` as a real process (for signals, concurrency and resource limits)."""
    return subprocess.run([sys.executable, "-m", "cgtrain", *map(str, args)], capture_output=True, text=True,
                          env=env(), cwd=kwargs.pop("cwd", ROOT), timeout=timeout, **kwargs)


def start(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cgtrain", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT, **kwargs)


def invoke(*args, input: str | None = None):
    """`cgtrain ARGS` in-process (typer's CliRunner): parsing errors without a process start-up."""
    from typer.testing import CliRunner

    from cgtrain.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def wait_for(predicate, timeout: float = 120, what: str = "condition", proc: subprocess.Popen | None = None) -> None:
    """Poll `predicate`; fail at `timeout`, or at once (with its output) when `proc` ended before it held."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}:\n{(out + err)[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def complete_trials(run_dir: Path) -> int:
    import sqlite3

    with sqlite3.connect(run_dir / "study.db") as db:
        return db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]


def one_error_line(stderr: str, *needles: str) -> str:
    """The single non-empty line of `stderr` (warnings from libraries aside); no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "Warning" not in ln]
    errors = [ln for ln in lines if ln.startswith(("error:", "interrupted", "invalid request"))]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], (needle, stderr)
    return errors[0]


def send(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err
