"""Crash recovery, cancel and the time limit, with real worker processes (`python -m cgtrain worker`)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

from helpers.services import tiny_request


def _complete_trials(run_dir) -> dict[int, tuple]:
    with sqlite3.connect(run_dir / "study.db") as con:
        rows = con.execute("SELECT t.trial_id, t.number, t.datetime_complete, v.value FROM trials t "
                           "JOIN trial_values v ON v.trial_id = t.trial_id WHERE t.state = 'COMPLETE'").fetchall()
        params = {tid: sorted(con.execute("SELECT param_name, param_value FROM trial_params WHERE trial_id = ?",
                                          (tid,)).fetchall()) for tid, *_ in rows}
    return {number: (done_at, value, tuple(params[tid])) for tid, number, done_at, value in rows}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _log(run_dir) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "job.log.jsonl").read_text().splitlines()]


def test_worker_killed_mid_job_another_resumes_it_once_keeping_trials(stack):
    stack.serve(workers=0)
    n_trials = 12
    job = stack.submit("crash", tiny_request("small.jsonl", n_trials=n_trials) | {"qa": {"enabled": False}})
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]
    workers = [stack.start_worker(), stack.start_worker()]  # both import the library now
    stack.wait(job_id, "crash", lambda j: (j["progress"] or {}).get("trials_done", 0) >= 1, timeout=120)
    run_dir = stack.runs_dir / "crash" / f"job-{job_id:06d}"
    holder = int(next(e["worker"] for e in _log(run_dir) if e["event"] == "claimed").split(":")[1])
    first = next(w for w in workers if w.pid == holder)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    child = next(e["pid"] for e in _log(run_dir) if e["event"] == "started")
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:  # the job process dies with its worker
        time.sleep(0.1)
    assert not _alive(child)
    kept = _complete_trials(run_dir)
    assert 1 <= len(kept) < n_trials, "the job should be mid-study when its worker is killed"
    assert stack.call("GET", f"/v1/jobs/{job_id}", "crash").json()["state"] == "running"  # until the lease expires

    final = stack.done(job_id, "crash", timeout=120)  # the other worker takes it over
    assert final["state"] == "succeeded", final
    assert final["attempts"] == 2
    after = _complete_trials(run_dir)
    assert len(after) == n_trials  # none lost, none run twice
    assert {n: after[n] for n in kept} == kept  # the finished trials are the same records
    log = _log(run_dir)
    starts = [e for e in log if e["event"] == "started"]
    assert [(e["attempt"], e["resume"]) for e in starts] == [(1, False), (2, True)]
    assert sum(e["event"] == "succeeded" for e in log) == 1
    assert any("finished trial(s) kept" in e.get("message", "") for e in log)


def test_cancel_stops_a_running_job_at_a_trial_boundary(stack):
    stack.serve(workers=0)
    if not any(w.poll() is None for w in stack.workers):
        stack.start_worker()
    job_id = stack.submit("crash", tiny_request("small.jsonl", n_trials=200) | {"qa": {"enabled": False}}).json()["id"]
    stack.wait(job_id, "crash", lambda j: (j["progress"] or {}).get("trials_done", 0) >= 1, timeout=120)
    assert stack.call("POST", f"/v1/jobs/{job_id}/cancel", "crash").json()["cancel_requested"] is True
    final = stack.done(job_id, "crash", timeout=60)
    assert final["state"] == "cancelled" and "after" in final["error"]
    assert final["progress"]["trials_done"] < 200


def test_a_job_over_its_time_limit_is_stopped(stack):
    stack.serve(workers=0)
    if not any(w.poll() is None for w in stack.workers):
        stack.start_worker()
    resp = stack.submit("crash", tiny_request("small.jsonl", n_trials=500) | {"qa": {"enabled": False}},
                        time_limit_s=4)
    assert resp.json()["time_limit_s"] == 4
    final = stack.done(resp.json()["id"], "crash", timeout=60)
    assert final["state"] == "failed" and "time limit of 4 s" in final["error"]
