"""The journal file that worker processes on one machine share a study through, with a lock that dies with its holder.

Optuna's default lock for `JournalFileBackend` is a symlink that a holder removes when it is done. A
worker killed while it appends (kill -9, the OOM killer) leaves that symlink behind: every other process
waits 30 s before it breaks it, and two waiters that break it in turn can each remove the other's fresh
lock, after which one of them gets `RuntimeError: did not possess lock` from a write that *did* land (a
killed trial was then marked stale but never failed nor queued again). `FlockLock` takes `flock(2)` on a
side file instead: the kernel drops it the moment its process dies, so nobody waits and nobody breaks it.
"""
from __future__ import annotations

import fcntl
import os
import threading
import warnings
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock  # the interface the backend calls; not re-exported

LOCK_SUFFIX = ".flock"


class FlockLock(BaseJournalFileLock):
    """An exclusive `flock` on `PATH.flock`, held by one open file per acquire (threads of one process
    exclude each other too); released explicitly, or by the kernel when the holder dies."""

    def __init__(self, journal_path: str) -> None:
        self._path = journal_path + LOCK_SUFFIX
        self._held = threading.local()

    def acquire(self) -> bool:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._held.fd = fd
        return True

    def release(self) -> None:
        fd = getattr(self._held, "fd", None)
        if fd is None:
            raise RuntimeError(f"{self._path}: released without being held")
        self._held.fd = None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def open_journal(path: str | Path) -> optuna.storages.JournalStorage:
    """Optuna's JournalStorage on `path` (created with its folder when missing), locked by `FlockLock`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=FlockLock(str(path))))
