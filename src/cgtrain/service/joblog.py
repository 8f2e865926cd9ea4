"""Structured per-job log: JSON lines appended to job.log.jsonl in the job's run directory."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cgtrain.service.paths import JOB_LOG


class JobLog:
    def __init__(self, run_dir: str | Path, job_id: int, attempt: int, worker: str, process: str):
        self.path = Path(run_dir) / JOB_LOG
        self.base = {"job": job_id, "attempt": attempt, "worker": worker, "process": process, "pid": os.getpid()}

    def event(self, event: str, **fields) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"ts": round(time.time(), 3), **self.base, "event": event, **fields}, default=str)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # one write() per line
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)

    def say(self, message: str) -> None:
        self.event("message", message=str(message))


def read_log(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / JOB_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
