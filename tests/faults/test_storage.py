"""A run directory that cannot be written: one line, exit 2; after a disk-full failure a --resume completes."""
import json
import resource
import shutil
import subprocess
import sys

import pytest
from faults_kit import ROOT, cgtrain, complete_trials, env, one_error_line


def _limited(limit_bytes: int):
    def apply() -> None:  # in the child only: every file it writes stops growing at limit_bytes (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def test_disk_full_is_one_line_and_the_run_resumes_after(tiny, tmp_path):
    req, _ = tiny
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "cgtrain", "train", str(req), "--run-dir", str(run), "--no-track"],
                          capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300,
                          preexec_fn=_limited(20_000))  # request + dataset records fit, the study database not
    assert proc.returncode == 2, proc.stderr
    one_error_line(proc.stderr, "cannot write", "free space", f"--run-dir {run} --resume")
    assert not (run / "model.skops").exists()
    resumed = cgtrain("train", req, "--run-dir", run, "--no-track", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert complete_trials(run) == 3 and json.loads((run / "run.json").read_text())["status"] == "finished"


def _read_only(directory, *command) -> subprocess.CompletedProcess:
    """COMMAND with `directory` bind-mounted read-only in a private mount namespace (root can't chmod it away)."""
    script = f'mount --bind "{directory}" "{directory}" && mount -o remount,ro,bind "{directory}" && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *map(str, command)], capture_output=True,
                          text=True, env=env(), cwd=ROOT, timeout=300)


def _can_mount_read_only(tmp_path) -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = _read_only(tmp_path, "true")
    return None if probe.returncode == 0 else f"cannot make a read-only mount here: {probe.stderr.strip()[:200]}"


def test_read_only_run_dir_is_one_line_and_left_as_it_was(tiny, tmp_path):
    reason = _can_mount_read_only(tmp_path)
    if reason:
        pytest.skip(reason)
    req, _ = tiny
    run = tmp_path / "run"
    run.mkdir()
    proc = _read_only(run, sys.executable, "-m", "cgtrain", "train", req, "--run-dir", run, "--no-track")
    assert proc.returncode == 2, proc.stderr
    one_error_line(proc.stderr, "cannot write", "Read-only file system", "writable --run-dir")
    assert list(run.iterdir()) == []
