"""The one kill-and-resume harness: `kill -9` a process at a chosen moment, or the worker running a trial."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Callable

import pytest


def _tail(proc: subprocess.Popen) -> str:
    stream = proc.stderr or proc.stdout
    if stream is None:
        return ""
    text = stream.read()
    return (text.decode(errors="replace") if isinstance(text, bytes) else text)[-2000:]


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240, poll: float = 0.02,
              what: str = "the moment to kill") -> None:
    """SIGKILL `proc` as soon as `ready()` holds, and reap it. Fails if it ends first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"the process ended before {what}:\n{_tail(proc)}"
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not reached in {timeout:.0f} s")
            time.sleep(poll)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


class TrialWorkerKiller:
    """In a thread: kill -9 the worker process of the first RUNNING trial that has `marker` in its user
    attributes (its pid is in `worker.pid`). `killed` then maps that trial's number to its params."""

    def __init__(self, open_study: Callable[[], object | None], marker: str = "worker", timeout: float = 200):
        self.open_study, self.marker, self.timeout = open_study, marker, timeout
        self.killed: dict[int, dict] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TrialWorkerKiller":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join(timeout=5)

    def _running(self) -> list:
        import optuna

        try:
            study = self.open_study()
            return study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) if study is not None else []
        except Exception:  # noqa: BLE001 - the study may not exist yet
            return []

    def _run(self) -> None:
        deadline = time.time() + self.timeout
        while time.time() < deadline and not self.killed:
            time.sleep(0.05)
            for t in self._running():
                if self.marker in t.user_attrs and "family" in t.user_attrs:
                    os.kill(t.user_attrs["worker"]["pid"], signal.SIGKILL)
                    self.killed[t.number] = t.params
                    return
