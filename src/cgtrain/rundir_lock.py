"""One process per run directory: an exclusive lock held while a run writes to it.

The lock file (`run.lock`) records who holds it (pid, host, start time) so a refusal can say so.
The lock itself is `fcntl.flock` on that file: the kernel drops it when the holder dies (even by
`kill -9`), so a lock left behind by a dead process is stale by construction and is taken over;
the takeover is reported. Where flock is unavailable, a recorded pid that no longer runs on this
host is likewise taken as stale.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from cgtrain.errors import RunDirError
from cgtrain import rundir

LOCK_FILE = rundir.LOCK


def _holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(info: dict) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {when}"


def _is_stale(info: dict) -> bool:
    return info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) and not _alive(info["pid"])


@contextmanager
def run_dir_lock(run_dir: Path, say: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the run directory's lock for the duration; refuse at once (RunDirError) if another process has it."""
    path = Path(run_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunDirError(f"{run_dir} is in use by another cgtrain process ({_describe(_holder(fd))}); "
                                  f"wait for it to finish, or use another --run-dir") from None
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            info = _holder(fd)  # no flock on this filesystem: trust the recorded pid
            if info.get("pid") and not _is_stale(info) and info.get("pid") != os.getpid():
                raise RunDirError(f"{run_dir} is in use by another cgtrain process ({_describe(info)}); wait for it "
                                  f"to finish, or use another --run-dir (delete {path} if that process is gone)")
        previous = _holder(fd)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            say(f"taking over a stale lock on {run_dir} ({_describe(previous)}: no longer running)")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode("utf-8"), 0)
        os.fsync(fd)
        try:
            yield
        finally:
            try:
                os.ftruncate(fd, 0)  # released cleanly: an empty file is no one's lock
            except OSError:
                pass  # the flock goes with the close all the same
    finally:
        os.close(fd)  # closing drops the flock
