"""Real processes: Ctrl-C, kill -9 and a second `cgtrain train` on one run directory.

Each keeps every finished trial; a --resume ends with exactly n_trials complete."""
import json
import signal
import sqlite3

import pytest
from faults_kit import (cgtrain, complete_trials, invoke, one_error_line, start, tiny_rows, wait_for, write_jsonl,
                        write_request)

N_TRIALS = 5


@pytest.fixture()
def slow(tmp_path):
    """A request whose every trial takes a second or more (a 200-tree forest per fold), so a signal lands
    during the study on any machine; logreg's trials of 0.0-0.1 s let the study end between two polls."""
    data = write_jsonl(tmp_path / "data.jsonl", tiny_rows(60, per_group=4))
    forest = {"family": "random_forest", "params": {"n_estimators": 200, "n_jobs": 1, "max_depth": None,
                                                    "max_features": "sqrt"},
              "space": {"min_samples_leaf": {"type": "int", "low": 1, "high": 5}}}
    return write_request(tmp_path, data, hpo={"n_trials": N_TRIALS}, candidates=[forest]), tmp_path / "run"


def _states(run):
    try:
        with sqlite3.connect(run / "study.db") as db:
            return [s for (s,) in db.execute("select state from trials order by number")]
    except sqlite3.Error:
        return []


def _mid_study(run):
    """At least one trial finished and the next one running."""
    states = _states(run) if (run / "study.db").exists() else []
    return states.count("COMPLETE") >= 1 and states[-1] == "RUNNING"


def _resume(req, run):
    proc = cgtrain("train", req, "--run-dir", run, "--no-track", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert complete_trials(run) == N_TRIALS
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    return proc


def test_ctrl_c_says_how_to_resume_and_resume_ends_with_n_trials(slow):
    req, run = slow
    proc = start("train", req, "--run-dir", run, "--no-track")
    wait_for(lambda: _mid_study(run), what="a running trial", proc=proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    one_error_line(err, "interrupted", f"--run-dir {run} --resume")
    finished = complete_trials(run)
    assert finished >= 1 and not (run / "model.skops").exists() and not (run / "run.json").exists()
    assert "Trial" not in err  # optuna's per-trial failure lines are not shown for an interrupt
    cut = [t for t in _study(run).get_trials() if t.state.name in ("FAIL", "RUNNING")]
    assert len(cut) <= 1  # the trial the interrupt cut short (none if it fell between two trials)
    _resume(req, run)
    trials = _study(run).get_trials()
    for t in cut:  # queued again with its parameters, and run
        again = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
        assert len(again) == 1 and again[0].state.name == "COMPLETE" and again[0].params == t.params


def _study(run):
    import optuna

    return optuna.load_study(study_name=None, storage=f"sqlite:///{run / 'study.db'}")


def test_kill_9_then_resume_takes_over_the_stale_lock(slow):
    req, run = slow
    proc = start("train", req, "--run-dir", run, "--no-track")
    wait_for(lambda: _mid_study(run), what="a running trial", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    holder = json.loads((run / "run.lock").read_text())
    assert holder["pid"] == proc.pid  # the dead process's lock is left behind
    resumed = _resume(req, run)
    assert f"taking over a stale lock on {run} (pid {proc.pid}" in resumed.stdout + resumed.stderr


def test_a_second_process_on_a_running_run_dir_is_refused_and_the_first_finishes(slow):
    req, run = slow
    import cgtrain.cli.main  # noqa: F401 - import the CLI and the pipeline here before the first run starts
    import cgtrain.flows.supervised  # noqa: F401
    first = start("train", req, "hpo.n_trials=15", "--run-dir", run, "--no-track")
    try:
        wait_for(lambda: _mid_study(run), what="a running trial", proc=first)
        for args in ((), ("--resume",)):  # this test's own process is the second one: no start-up to wait for
            second = invoke("train", req, "hpo.n_trials=15", "--run-dir", run, "--no-track", *args)
            assert second.exit_code == 2, second.output
            one_error_line(second.stderr, "is in use by another cgtrain process", f"pid {first.pid}")
        assert first.poll() is None, "the first run ended before the second was tried; make its trials slower"
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert "Traceback" not in err
    assert complete_trials(run) == 15 and (run / "model.skops").is_file()
